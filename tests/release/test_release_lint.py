"""What `bosh create-release` checks in release/, without the bosh CLI.

Read in cloudfoundry/bosh-cli at commit 19ee1a8d9adeb784eb62892517be53c2dfa5f814:

- releasedir/fs_release_dir.go, BuildRelease: syncs the blobs, then reads the
  release directory (jobs, packages, src and blobs).
- releasedir/fs_config.go: config/final.yml is YAML with a non-empty `name`
  (or `final_name`, not both) and a `blobstore.provider`.
- releasedir/fs_blobs_dir.go, Blobs and SyncBlobs: config/blobs.yml is YAML
  mapping each blob path to size/sha/object_id; every path must be a safe local
  path (common/util/file_helper.go SafeJoinPath: filepath.IsLocal, so no
  absolute path and no ".."); symlinks under blobs/ are refused; files under
  blobs/ that blobs.yml does not list are deleted; entries without object_id
  are never downloaded, so their files must already be in blobs/.
- release/provider.go NewDirReader: packages read their files from src/ and
  blobs/.
- release/pkg/dir_reader.go: a package needs spec and packaging; each `files`
  glob (bosh-utils RecursiveGlob, doublestar) must match at least one file in
  src/ or blobs/ ("Missing files for pattern"); `excluded_files` are removed;
  packaging and pre_packaging may not come through `files`; every match goes
  through isPackageableFile, which resolves src/ itself with
  ReadAndFollowLink, so a missing src/ fails every package with "lstat
  .../src: no such file or directory" (what a fresh clone did before src/ was
  kept in git).
- release/pkg/package.go AttachDependencies and release/pkg/sort.go: every
  dependency is a package of the release ("Expected to find package '%s'
  since it's a dependency of package '%s'"), with no cycle.
- release/job/dir_reader.go: the job directory's name is the spec's name; the
  spec and every template named in `templates` (read from templates/) are
  fingerprinted, so a missing template fails; the monit file is included when
  present.  release/job/job.go AttachCompilablePackages: every package of a job
  exists ("Expected to find package '%s' since it's a dependency of job").
- The director refuses a job without a monit file when the release is
  uploaded (bosh-director's ReleaseJob: JobMissingMonit, "Job ... is missing
  monit file"), so it is checked here too.

Blobs are not in git: the `files` globs are matched against the paths
config/blobs.yml lists, which is what the release has once
scripts/gather-blobs (or `bosh sync-blobs` from a final blobstore) has run.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess

import pytest

from .conftest import RELEASE, load_yaml

PACKAGES = sorted(path for path in (RELEASE / "packages").iterdir() if path.is_dir())
JOBS = sorted(path for path in (RELEASE / "jobs").iterdir() if path.is_dir())
SRC = RELEASE / "src"


def doublestar(pattern: str) -> re.Pattern:
    """bmatcuk/doublestar v1 (bosh-utils RecursiveGlob): ** spans directories, * and ? stay within one."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:[^/]*/)*", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif char == "*":
            out, i = out + "[^/]*", i + 1
        elif char == "?":
            out, i = out + "[^/]", i + 1
        elif char == "{":
            end = pattern.index("}", i)
            out += "(?:" + "|".join(re.escape(option) for option in pattern[i + 1:end].split(",")) + ")"
            i = end + 1
        elif char == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1:end].replace("!", "^", 1) + "]"
            i = end + 1
        else:
            out, i = out + re.escape(char), i + 1
    return re.compile(out + r"\Z")


def is_local(path: str) -> bool:
    """Go's filepath.IsLocal on Unix: not empty, not absolute, and lexically inside (a/../b is, ../b is not)."""
    if not path or path.startswith("/"):
        return False
    normal = posixpath.normpath(path)
    return normal != ".." and not normal.startswith("../")


def blob_paths() -> set[str]:
    return set(load_yaml(RELEASE / "config" / "blobs.yml") or {})


def src_files() -> set[str]:
    """Files isPackageableFile accepts: regular files (or symlinks) reached without leaving src/."""
    files = set()
    for path in SRC.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            continue
        relative = path.relative_to(SRC).as_posix()
        if path.is_symlink():
            files.add(relative)
            continue
        try:
            if path.resolve().relative_to(SRC.resolve()).as_posix() == relative:
                files.add(relative)
        except ValueError:  # reached through a symlinked directory that leads out of src/
            pass
    return files


def package_files(spec: dict) -> tuple[dict[str, set[str]], set[str]]:
    """Each `files` glob with what it matches in src/ and blobs.yml, and what the package finally bundles."""
    candidates = src_files() | blob_paths()
    matched = {glob: {path for path in candidates if doublestar(glob).match(path)} for glob in spec.get("files") or []}
    excluded = {path for glob in spec.get("excluded_files") or [] for path in candidates if doublestar(glob).match(path)}
    bundled = set().union(*matched.values()) - excluded if matched else set()
    return matched, bundled


def test_final_yml_names_the_release_and_a_blobstore():
    final = load_yaml(RELEASE / "config" / "final.yml")
    assert isinstance(final, dict)
    assert bool(final.get("name")) != bool(final.get("final_name")), "exactly one of name and final_name"
    assert final.get("blobstore", {}).get("provider"), "Expected non-empty 'blobstore.provider'"


def test_blobs_yml_parses_and_lists_safe_local_paths():
    blobs = load_yaml(RELEASE / "config" / "blobs.yml")
    assert isinstance(blobs, dict), "config/blobs.yml must be a mapping (`--- {}` when empty)"
    for path, record in blobs.items():
        assert is_local(path), f"Invalid blob path '{path}': must be a safe local path"
        assert set(record) <= {"size", "sha", "object_id"}, path
        assert isinstance(record.get("size"), int) and record["size"] > 0, path
        assert re.fullmatch(r"sha256:[0-9a-f]{64}|[0-9a-f]{40}", str(record.get("sha"))), path


def test_blobs_dir_has_no_symlinks():
    blobs_dir = RELEASE / "blobs"
    if not blobs_dir.exists():
        pytest.skip("no release/blobs here (scripts/gather-blobs makes it)")
    assert not [path for path in blobs_dir.rglob("*") if path.is_symlink()], \
        "Bailing because symlinks found in blobs directory"


def test_src_exists_and_git_keeps_it():
    assert SRC.is_dir(), "every package would fail with: lstat release/src: no such file or directory"
    git = shutil.which("git")
    if git is None:
        return
    listed = subprocess.run([git, "ls-files", "--", str(SRC)], cwd=RELEASE, capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an unpacked tarball, say)
        return
    tracked = listed.stdout.split()
    untracked = subprocess.run([git, "ls-files", "--others", "--exclude-standard", "--", str(SRC)],
                               cwd=RELEASE, capture_output=True, text=True).stdout.split()
    assert tracked or untracked, "git keeps no file in release/src: a fresh clone has no src/"
    ignored = subprocess.run([git, "ls-files", "--others", "--ignored", "--exclude-standard", "--", str(SRC)],
                             cwd=RELEASE, capture_output=True, text=True).stdout.split()
    assert not ignored, f"gitignored files in release/src would be missing from a fresh clone: {ignored}"


def test_src_placeholder_is_not_bundled_by_any_package():
    readme = SRC / "README.md"
    assert readme.is_file(), "release/src/README.md keeps the folder in git and says what belongs there"
    for package in PACKAGES:
        _, bundled = package_files(load_yaml(package / "spec"))
        assert "README.md" not in bundled, package.name


@pytest.mark.parametrize("package", PACKAGES, ids=lambda path: path.name)
def test_package_has_spec_and_packaging(package):
    spec = load_yaml(package / "spec")
    assert isinstance(spec, dict) and spec.get("name"), "Unmarshalling package spec"
    assert (package / "packaging").is_file(), f"Expected to find '{package / 'packaging'}' for package '{package.name}'"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda path: path.name)
def test_package_files_globs_match_src_or_blobs(package):
    spec = load_yaml(package / "spec")
    assert spec.get("files"), "a package without files has nothing to compile"
    for glob in [*(spec.get("files") or []), *(spec.get("excluded_files") or [])]:
        assert is_local(glob), f"'{glob}': globs are relative to src/ and blobs/"
    matched, bundled = package_files(spec)
    for glob, paths in matched.items():
        assert paths, f"Missing files for pattern '{glob}' (package {package.name}; blobs from config/blobs.yml)"
    assert not {"packaging", "pre_packaging"} & bundled, "packaging and pre_packaging may not come through 'files'"


def test_package_dependencies_exist_without_cycles():
    specs = {spec["name"]: spec for spec in (load_yaml(package / "spec") for package in PACKAGES)}
    assert len(specs) == len(PACKAGES), "package names are unique"
    for name, spec in specs.items():
        for dependency in spec.get("dependencies") or []:
            assert dependency in specs, f"Expected to find package '{dependency}' since it's a dependency of package '{name}'"

    def visit(name, trail):
        assert name not in trail, f"Circular dependency detected while sorting packages: {' -> '.join([*trail, name])}"
        for dependency in specs[name].get("dependencies") or []:
            visit(dependency, [*trail, name])

    for name in specs:
        visit(name, [])


@pytest.mark.parametrize("job", JOBS, ids=lambda path: path.name)
def test_job_spec_templates_monit_and_packages(job):
    spec = load_yaml(job / "spec")
    assert spec.get("name") == job.name, f"Job directory '{job.name}' does not match job name '{spec.get('name')}' in spec"
    packages = {load_yaml(package / "spec")["name"] for package in PACKAGES}
    for package in spec.get("packages") or []:
        assert package in packages, f"Expected to find package '{package}' since it's a dependency of job '{job.name}'"
    templates = spec.get("templates") or {}
    for source, destination in templates.items():
        assert is_local(source) and is_local(destination), f"{source} -> {destination}: relative paths only"
        assert (job / "templates" / source).is_file(), f"template {source} is missing from {job / 'templates'}"
    assert (job / "monit").is_file() or list(job.glob("*.monit")), f"Job '{job.name}' is missing monit file"


@pytest.mark.parametrize("glob, path, matches", [
    ("python3/Python-*", "python3/Python-3.11.2.tgz", True),
    ("python3/*.orig.tar.*", "python3/python3.11_3.11.2.orig.tar.gz", True),
    ("cloudstack_cpi/*.whl", "cloudstack_cpi/sub/x.whl", False),
    ("cloudstack_cpi/**/*.whl", "cloudstack_cpi/sub/x.whl", True),
    ("cloudstack_cpi/**/*.whl", "cloudstack_cpi/x.whl", True),
    ("python3/{a,b}.txt", "python3/b.txt", True),
    ("*", "README.md", True),
    ("python3/*", "README.md", False),
])
def test_glob_semantics(glob, path, matches):
    assert bool(doublestar(glob).match(path)) is matches


@pytest.mark.parametrize("path, local", [
    ("python3/x.tgz", True), ("a/../b", True), ("/abs/x.tgz", False), ("../x", False), ("a/../../x", False),
    ("..", False), ("", False),
])
def test_is_local(path, local):
    assert is_local(path) is local
