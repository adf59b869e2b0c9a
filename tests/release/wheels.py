"""Wheel blobs for the packaging test, made without any network.

The release's real blobs come from PyPI (scripts/gather-blobs).  Tests cannot
reach it, and `pip wheel` cannot rebuild installed distributions offline
(building needs the sdist and the build backend).  So:

- each dependency (and pip itself) is re-packed from this interpreter's
  site-packages: the files its dist-info RECORD lists, with the installed
  WHEEL file's tags (pydantic-core keeps its platform tag), minus what the
  installer added (INSTALLER, REQUESTED, direct_url.json) and bytecode;
- cloudstack-cpi itself is installed editable here, so its wheel is packed
  from src/ with the metadata of pyproject.toml.

Both are ordinary wheels, so the packaging script's `pip install --no-index
--find-links` runs exactly as it does on a compile VM.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import re
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _write_wheel(path: Path, dist_info: str, files: list[tuple[str, bytes]]) -> Path:
    record = [_record_line(name, data) for name, data in files]
    record.append(f"{dist_info}/RECORD,,")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


def repack(dist_name: str, out_dir: Path) -> Path:
    """A wheel of the installed distribution ``dist_name``."""
    dist = metadata.distribution(dist_name)
    files: list[tuple[str, bytes]] = []
    dist_info = None
    for entry in dist.files or []:
        arcname = entry.as_posix()
        if arcname.startswith("..") or "__pycache__" in arcname or arcname.endswith(".pyc"):
            continue
        parent = entry.parts[0]
        if parent.endswith(".dist-info"):
            dist_info = parent
            if entry.name in INSTALLER_FILES:
                continue
        source = Path(entry.locate())
        if source.is_file():
            files.append((arcname, source.read_bytes()))
    assert dist_info, f"{dist_name}: no dist-info in RECORD"
    wheel_meta = dict(files)[f"{dist_info}/WHEEL"].decode()
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    interpreters, abis, platforms = (sorted({tag.split("-")[i] for tag in tags}) for i in range(3))
    tag = "-".join(".".join(part) for part in (interpreters, abis, platforms))
    name, version = dist_info[: -len(".dist-info")].rsplit("-", 1)
    return _write_wheel(out_dir / f"{name}-{version}-{tag}.whl", dist_info, files)


def dependency_closure(dist_name: str) -> list[str]:
    """Installed distributions ``dist_name`` needs (markers evaluated here), without itself."""
    seen: dict[str, str] = {}
    pending = [dist_name]
    while pending:
        current = pending.pop()
        for spec in metadata.requires(current) or []:
            requirement = Requirement(spec)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = _normalize(requirement.name)
            if key not in seen:
                seen[key] = requirement.name
                pending.append(requirement.name)
    seen.pop(_normalize(dist_name), None)
    return sorted(seen.values())


def project_dependencies(root: Path) -> list[str]:
    """pyproject.toml's runtime dependencies and everything they need, as installed here."""
    names: dict[str, str] = {}
    for spec in tomllib.loads((root / "pyproject.toml").read_text())["project"].get("dependencies", []):
        name = Requirement(spec).name
        for dist in [name, *dependency_closure(name)]:
            names.setdefault(_normalize(dist), dist)
    return sorted(names.values())


def pack_project(root: Path, out_dir: Path) -> Path:
    """A wheel of this checkout: the packages pyproject.toml names, with its metadata."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    project = pyproject["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    dist_info = f"{name}-{version}.dist-info"
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {version}",
             f"Requires-Python: {project.get('requires-python', '>=3')}"]
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    files: list[tuple[str, bytes]] = []
    for package in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        package_dir = root / package
        for source in sorted(package_dir.rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts and source.suffix != ".pyc":
                arcname = f"{package_dir.name}/{source.relative_to(package_dir).as_posix()}"
                files.append((arcname, source.read_bytes()))
    files.append((f"{dist_info}/METADATA", ("\n".join(lines) + "\n").encode()))
    files.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: tests.release\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    return _write_wheel(out_dir / f"{name}-{version}-py3-none-any.whl", dist_info, files)
