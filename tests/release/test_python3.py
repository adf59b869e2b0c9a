"""The python3 package: the CPython it compiles is the one release/src/python3/sources.txt pins.

In `make test` (seconds): the pins agree with config/blobs.yml, the package
spec and docs/release.md; the packaging script refuses a blob whose SHA-256 is
not the pinned one before it compiles anything, and its final check fails an
interpreter whose version, build identifier or libexpat is not the pinned one;
scripts/gather-blobs fetches from a pool (a local HTTP server here), falls
back to the next one without printing the first one's 404, and refuses a file
that is not the pinned one.

The real compile takes minutes, so it is a slow test (CPI_SLOW=1, and the
blobs from scripts/gather-blobs): it runs the packaging script as bosh
create-env does, checks the installed interpreter's version, build identifier,
libexpat and a few of the security fixes, installs the cloudstack_cpi package on
it from the gathered wheels and answers `info` through the rendered bin/cpi:

  release/scripts/gather-blobs --no-bosh
  CPI_SLOW=1 .venv/bin/python -m pytest tests/release/test_python3.py -k compiled -s
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import importlib.machinery
import importlib.util
import os
import platform
import pyexpat
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import RELEASE, ROOT, RUBY, load_yaml, render_job
from .test_release_lint import package_files

PACKAGE = RELEASE / "packages" / "python3"
SOURCES_TXT = RELEASE / "src" / "python3" / "sources.txt"
BLOBS = RELEASE / "blobs"


def _load_gather_blobs():
    path = RELEASE / "scripts" / "gather-blobs"
    loader = importlib.machinery.SourceFileLoader("gather_blobs", str(path))
    spec = importlib.util.spec_from_loader("gather_blobs", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gather_blobs"] = module
    loader.exec_module(module)
    return module


gather_blobs = _load_gather_blobs()
SOURCES = gather_blobs.read_sources(SOURCES_TXT)
BY_ROLE = {source.role: source for source in SOURCES}


def _build_id() -> str:
    return "debian/" + BY_ROLE["cpython"].version


def _upstream(source) -> str:
    return source.version.split("-", 1)[0]


def test_sources_pin_debians_python_and_libexpat():
    assert set(BY_ROLE) == {"cpython", "cpython-patches", "expat"} and len(SOURCES) == 3
    cpython, patches, expat = BY_ROLE["cpython"], BY_ROLE["cpython-patches"], BY_ROLE["expat"]
    # Debian's file names: <package>_<upstream>.orig.tar.* and <package>_<version>.debian.tar.*
    assert re.fullmatch(rf"{re.escape(cpython.package)}_{re.escape(_upstream(cpython))}\.orig\.tar\.(gz|xz|bz2)",
                        cpython.file)
    assert patches.package == cpython.package and patches.version == cpython.version
    assert patches.file == f"{patches.package}_{patches.version}.debian.tar.xz"
    assert re.fullmatch(rf"expat_{re.escape(_upstream(expat))}\.orig\.tar\.(gz|xz|bz2)", expat.file)
    assert gather_blobs.python_minor(SOURCES) == ".".join(_upstream(cpython).split(".")[:2])


def test_blobs_yml_records_exactly_the_pinned_sources():
    recorded = {path: record for path, record in (load_yaml(RELEASE / "config" / "blobs.yml") or {}).items()
                if path.startswith("python3/")}
    assert recorded == {source.blob: {"size": source.size, "sha": f"sha256:{source.sha256}"} for source in SOURCES}


def test_spec_bundles_the_pins_the_patches_and_the_pinned_blobs():
    _, bundled = package_files(load_yaml(PACKAGE / "spec"))
    patches = {f"python3/patches/{path.name}" for path in (RELEASE / "src" / "python3" / "patches").glob("*.patch")}
    assert patches, "the local patches are in src/python3/patches"
    assert bundled == {"python3/sources.txt", *patches, *(source.blob for source in SOURCES)}


def test_local_patches_say_why():
    for patch in (RELEASE / "src" / "python3" / "patches").glob("*.patch"):
        text = patch.read_text()
        assert text.startswith("Description: "), patch.name
        assert "\n--- a/" in text and "\n+++ b/" in text, f"{patch.name}: a -p1 unified diff"


def test_docs_name_the_pinned_versions():
    text = (ROOT / "docs" / "release.md").read_text()
    for source in SOURCES:
        assert source.version in text, f"docs/release.md does not name {source.package} {source.version}"
    assert _build_id() in text


def _compile_dir(tmp_path: Path, blobs: dict[str, bytes | Path]) -> Path:
    compile_dir = tmp_path / "compile"
    (compile_dir / "python3" / "patches").mkdir(parents=True)
    shutil.copy(SOURCES_TXT, compile_dir / "python3" / "sources.txt")
    for patch in (RELEASE / "src" / "python3" / "patches").glob("*.patch"):
        shutil.copy(patch, compile_dir / "python3" / "patches" / patch.name)
    for name, content in blobs.items():
        target = compile_dir / "python3" / name
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
    shutil.copy(PACKAGE / "packaging", compile_dir / "packaging")
    return compile_dir


def _run_packaging(compile_dir: Path, target: Path, timeout: float) -> subprocess.CompletedProcess:
    """As bosh create-env runs it: bash -x packaging, with only PATH, LD_LIBRARY_PATH and BOSH_* set."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LD_LIBRARY_PATH": "",
        "BOSH_COMPILE_TARGET": str(compile_dir),
        "BOSH_INSTALL_TARGET": str(target),
        "BOSH_PACKAGE_NAME": "python3",
        "BOSH_PACKAGES_DIR": str(target.parent),
    }
    return subprocess.run(["bash", "-x", "packaging"], cwd=compile_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_packaging_refuses_a_blob_that_is_not_the_pinned_one(tmp_path):
    wrong = {source.file: b"not the pinned file\n" for source in SOURCES}
    completed = _run_packaging(_compile_dir(tmp_path, wrong), tmp_path / "packages" / "python3", timeout=60)
    assert completed.returncode != 0
    first = SOURCES[0]
    assert f"python3/{first.file} has SHA-256 " in completed.stderr
    assert f"pins {first.sha256}" in completed.stderr
    assert "./configure" not in completed.stderr, "refused before building anything"


def test_packaging_says_which_blob_is_missing(tmp_path):
    completed = _run_packaging(_compile_dir(tmp_path, {}), tmp_path / "packages" / "python3", timeout=60)
    assert completed.returncode != 0
    assert f"python3/{SOURCES[0].file} is missing: run scripts/gather-blobs" in completed.stderr


def _final_check() -> str:
    """The Python the packaging script runs on the interpreter it installed."""
    script = (PACKAGE / "packaging").read_text()
    match = re.search(r"<<'PYTHON'[^\n]*\n(.*?)\nPYTHON\n", script, re.S)
    assert match, "packaging ends with a Python check of the installed interpreter"
    return match.group(1)


def test_packagings_final_check_accepts_only_the_pinned_interpreter():
    def check(*expected: str) -> int:
        return subprocess.run([sys.executable, "-I", "-", *expected], input=_final_check(), capture_output=True,
                              text=True).returncode

    this = [platform.python_version(), platform.python_build()[0], pyexpat.EXPAT_VERSION]
    assert check(*this) == 0
    pinned = [_upstream(BY_ROLE["cpython"]), _build_id(), f"expat_{_upstream(BY_ROLE['expat'])}"]
    for index in range(3):
        expected = list(this)
        expected[index] = pinned[index] if pinned[index] != this[index] else "something-else"
        assert check(*expected) != 0, f"an interpreter that is not {expected[index]} passes"


class _Pool(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@contextlib.contextmanager
def _serve(directory: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Pool, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _source(tmp_path: Path, content: bytes):
    source = gather_blobs.Source("cpython", "python3.99", "3.99.0-1", "python3.99_3.99.0.orig.tar.gz",
                                 len(content), hashlib.sha256(content).hexdigest())
    pool = tmp_path / "www" / "pool" / "main" / "p" / "python3.99"
    pool.mkdir(parents=True)
    (tmp_path / "www" / "empty-pool").mkdir()
    return source, pool


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


def _apt_helper_reaches_localhost() -> bool:
    if not os.access(gather_blobs.APT_HELPER, os.X_OK):
        return False
    if shutil.which("apt-config") is None:
        return False
    dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True).stdout
    return "Proxy" not in dump  # an apt proxy would not reach our 127.0.0.1 server


@pytest.fixture(params=["urllib", "apt-helper"])
def downloader(request, monkeypatch):
    if request.param == "urllib":
        monkeypatch.setattr(gather_blobs, "APT_HELPER", "/nonexistent/apt-helper")
    elif not _apt_helper_reaches_localhost():
        pytest.skip("no apt-helper here, or apt is configured with a proxy")
    return request.param


def test_gather_blobs_falls_back_to_the_next_pool_quietly(tmp_path, capsys, no_proxy, downloader):
    content = b"pretend CPython source\n" * 100
    source, pool = _source(tmp_path, content)
    (pool / source.file).write_bytes(content)
    with _serve(tmp_path / "www") as base:
        fetched = gather_blobs.fetch_source(source, tmp_path / "work", None, [f"{base}/empty-pool", f"{base}/pool/main"])
    assert fetched.read_bytes() == content
    err = capsys.readouterr().err
    assert f"fetched {source.blob} ({len(content)} bytes, SHA-256 as pinned)" in err
    # The pools' URLs are named in the output; their random port may hold "404" (clone 43 ran on port 40449).
    unnamed = err.replace(base, "<server>")
    assert "404" not in unnamed and "E: " not in unnamed and "Err:" not in unnamed, err


def test_gather_blobs_refuses_a_file_that_is_not_the_pinned_one(tmp_path, capsys, no_proxy, downloader):
    source, pool = _source(tmp_path, b"the pinned content\n")
    (pool / source.file).write_bytes(b"something else\n")
    with _serve(tmp_path / "www") as base, pytest.raises(SystemExit) as exited:
        gather_blobs.fetch_source(source, tmp_path / "work", None, [f"{base}/pool/main"])
    assert "no pool has python3.99_3.99.0.orig.tar.gz 3.99.0-1 with the pinned checksum" in str(exited.value)
    assert "apt-cache showsrc python3.99" in str(exited.value)


def test_gather_blobs_takes_and_checks_a_sources_dir(tmp_path, capsys):
    content = b"given\n"
    source, _ = _source(tmp_path, content)
    given = tmp_path / "given"
    given.mkdir()
    (given / source.file).write_bytes(content)
    assert gather_blobs.fetch_source(source, tmp_path / "work", given, []) == given / source.file
    (given / source.file).write_bytes(b"tampered\n")
    with pytest.raises(SystemExit, match="is not the file sources.txt pins"):
        gather_blobs.fetch_source(source, tmp_path / "work", given, [])


def test_pool_urls_follow_debians_layout():
    source = gather_blobs.Source("expat", "expat", "2.8.3-1~deb13u1", "expat_2.8.3-1~deb13u1.debian.tar.xz", 1, "0" * 64)
    assert gather_blobs.pool_url("http://deb.debian.org/debian/pool/main/", source) == \
        "http://deb.debian.org/debian/pool/main/e/expat/expat_2.8.3-1~deb13u1.debian.tar.xz"
    plus = gather_blobs.Source("cpython-patches", "python3.11", "3.11.2-6+deb12u8",
                               "python3.11_3.11.2-6+deb12u8.debian.tar.xz", 1, "0" * 64)
    assert gather_blobs.pool_url("http://x/pool/main", plus).endswith("/p/python3.11/python3.11_3.11.2-6%2Bdeb12u8.debian.tar.xz")
    lib = gather_blobs.Source("x", "libxml2", "1", "libxml2_1.orig.tar.xz", 1, "0" * 64)
    assert "/libx/libxml2/" in gather_blobs.pool_url("http://x/pool/main", lib)


# --- the real compile (minutes): CPI_SLOW=1 -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CPI_SLOW") != "1", reason="slow (compiles CPython, minutes): set CPI_SLOW=1")
def test_compiled_python3_is_the_pinned_one_and_runs_the_cpi(tmp_path):
    missing = [source.blob for source in SOURCES if not (BLOBS / source.blob).is_file()]
    wheels = sorted((BLOBS / "cloudstack_cpi").glob("*.whl")) if (BLOBS / "cloudstack_cpi").is_dir() else []
    if missing or not wheels:
        pytest.skip(f"run release/scripts/gather-blobs first (missing: {missing or 'cloudstack_cpi wheels'})")
    packages = tmp_path / "packages"
    target = packages / "python3"
    compile_dir = _compile_dir(tmp_path, {source.file: BLOBS / source.blob for source in SOURCES})
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    completed = _run_packaging(compile_dir, target, timeout=3600)
    elapsed, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    assert completed.returncode == 0, completed.stderr[-5000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"\npython3 package compiled in {elapsed:.0f} s ({cpu:.0f} s of CPU) on {os.cpu_count()} CPUs; "
          f"load average now {' '.join(f'{load:.1f}' for load in os.getloadavg())}")

    python = target / "bin" / "python3"
    probe = subprocess.run([str(python), "-I", "-c", """if True:
        import platform, pyexpat, sys, urllib.parse
        print(platform.python_version()); print(platform.python_build()[0]); print(pyexpat.EXPAT_VERSION)
        print(sys.version.replace("\\n", " "))
        # CVE-2023-24329: leading blanks no longer hide the scheme.
        print(urllib.parse.urlsplit(" https://example.com/").scheme)
        # CVE-2024-11168 and CVE-2025-0938: brackets only around IPv6 addresses.
        for url in ("http://[abc]/", "http://[www.example.com]/"):
            try:
                urllib.parse.urlsplit(url)
                print("accepted", url)
            except ValueError:
                print("refused")
        """], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=True)
    version, build, expat, sys_version, scheme, *brackets = probe.stdout.splitlines()
    assert (version, build, expat) == (_upstream(BY_ROLE["cpython"]), _build_id(), f"expat_{_upstream(BY_ROLE['expat'])}")
    assert _build_id() in sys_version
    assert scheme == "https"
    assert brackets == ["refused", "refused"]
    assert (target / "SOURCES").read_text() == SOURCES_TXT.read_text()

    # The CPI on it: the cloudstack_cpi package from the gathered wheels, then `info` through bin/cpi.
    cpi_compile = tmp_path / "compile-cpi"
    (cpi_compile / "cloudstack_cpi").mkdir(parents=True)
    for wheel in wheels:
        shutil.copy(wheel, cpi_compile / "cloudstack_cpi" / wheel.name)
    shutil.copy(RELEASE / "packages" / "cloudstack_cpi" / "packaging", cpi_compile / "packaging")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": "",
           "BOSH_COMPILE_TARGET": str(cpi_compile), "BOSH_INSTALL_TARGET": str(packages / "cloudstack_cpi"),
           "BOSH_PACKAGE_NAME": "cloudstack_cpi", "BOSH_PACKAGES_DIR": str(packages)}
    installed = subprocess.run(["bash", "-x", "packaging"], cwd=cpi_compile, env=env, capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stderr[-5000:]
    if RUBY is None:
        pytest.skip("compiled and installed; rendering bin/cpi needs ruby")
    job = render_job({"cloudstack": {"endpoint": "http://127.0.0.1:9/client/api", "api_key": "k",
                                     "secret_access_key": "s"}}, tmp_path / "jobs" / "cloudstack_cpi")
    (job / "bin" / "cpi").chmod(0o755)
    answered = subprocess.run(
        [str(job / "bin" / "cpi")], input=b'{"method":"info","arguments":[],"context":{"director_uuid":"d"},"api_version":1}',
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BOSH_PACKAGES_DIR": str(packages),
             "BOSH_JOBS_DIR": str(tmp_path / "jobs")}, capture_output=True, timeout=60)
    assert answered.returncode == 0, answered.stderr.decode()
    assert b'"error": null' in answered.stdout, answered.stdout
