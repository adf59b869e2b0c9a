"""The cloudstack_cpi package compiled offline, then driven through the rendered bin/cpi.

A stand-in python3 package (bin/python3 -> this machine's base interpreter,
>= 3.11 like the bundled one) replaces the compiled CPython; the wheel blobs
are made offline by tests/release/wheels.py.  The packaging script runs with
the isolated environment bosh create-env gives it (PATH, LD_LIBRARY_PATH and
BOSH_*, no HOME).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import wheels
from .conftest import RELEASE, ROOT, RUBY, needs_ruby, render_job

PACKAGE = RELEASE / "packages" / "cloudstack_cpi"
INFO = {"method": "info", "arguments": [], "context": {"director_uuid": "d-1", "request_id": "cpi-1"}, "api_version": 1}


def _install(base: Path) -> Path:
    """~/.bosh/installations/<uuid>/ after bosh create-env compiled the packages."""
    packages, compile_dir = base / "packages", base / "compile" / "cloudstack_cpi"
    (packages / "python3" / "bin").mkdir(parents=True)
    interpreter = Path(getattr(sys, "_base_executable", sys.executable))
    (packages / "python3" / "bin" / "python3").symlink_to(interpreter)

    blobs = compile_dir / "cloudstack_cpi"
    blobs.mkdir(parents=True)
    wheels.pack_project(ROOT, blobs)
    for dist in [*wheels.project_dependencies(ROOT), "pip"]:
        wheels.repack(dist, blobs)
    shutil.copy(PACKAGE / "packaging", compile_dir / "packaging")

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
        "BOSH_COMPILE_TARGET": str(compile_dir),
        "BOSH_INSTALL_TARGET": str(packages / "cloudstack_cpi"),
        "BOSH_PACKAGE_NAME": "cloudstack_cpi",
        "BOSH_PACKAGES_DIR": str(packages),
    }
    completed = subprocess.run(["bash", "-x", "packaging"], cwd=compile_dir, env=env, capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return base


def _check_venv(installation):
    target = installation / "packages" / "cloudstack_cpi"
    python = target / "bin" / "python3"
    assert (target / "pyvenv.cfg").is_file()
    completed = subprocess.run(
        [str(python), "-I", "-c", ("import cloudstack_cpi, pydantic_core, certifi, click, sys; "
                                   "print(cloudstack_cpi.__file__); print(sys.prefix)")],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=True,
    )
    module, prefix = completed.stdout.split()
    assert Path(module).is_relative_to(target), "the CPI must come from the package, not the checkout"
    assert Path(prefix) == target
    assert not any((target / "lib").rglob("pip/__init__.py")), "pip ran from its wheel, it is not installed"


def test_packaging_fails_clearly_without_the_python3_package(tmp_path):
    compile_dir = tmp_path / "compile"
    (compile_dir / "cloudstack_cpi").mkdir(parents=True)
    shutil.copy(PACKAGE / "packaging", compile_dir / "packaging")
    completed = subprocess.run(
        ["bash", "packaging"], cwd=compile_dir, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "BOSH_COMPILE_TARGET": str(compile_dir),
             "BOSH_INSTALL_TARGET": str(tmp_path / "target"), "BOSH_PACKAGES_DIR": str(tmp_path / "packages")},
    )
    assert completed.returncode != 0
    assert "python3 package must be compiled first" in completed.stderr


def _create_env_job(installation, properties):
    jobs = installation / "jobs"
    if jobs.exists():
        shutil.rmtree(jobs)
    job = render_job(properties, jobs / "cloudstack_cpi")
    (job / "bin" / "cpi").chmod(0o755)
    return job


def _run_cpi(installation, job, request, tmp_path):
    # bosh create-env: the operator's environment plus BOSH_PACKAGES_DIR and BOSH_JOBS_DIR.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "BOSH_PACKAGES_DIR": str(installation / "packages"), "BOSH_JOBS_DIR": str(installation / "jobs"),
           "PYTHONPATH": "/nonexistent-operator-setting"}
    completed = subprocess.run([str(job / "bin" / "cpi")], input=json.dumps(request).encode(), env=env,
                               capture_output=True, timeout=60)
    assert completed.returncode == 0, completed.stderr.decode()
    return json.loads(completed.stdout), completed.stderr.decode()


def _check_info(installation, tmp_path):
    job = _create_env_job(installation, {"cloudstack": {
        "endpoint": "http://127.0.0.1:9/client/api", "api_key": "k", "secret_access_key": "s"}})
    response, _ = _run_cpi(installation, job, INFO, tmp_path)
    assert response["error"] is None
    from cloudstack_cpi.actions.info import STEMCELL_FORMATS
    from cloudstack_cpi.rpc import MAX_API_VERSION

    assert response["result"] == {"api_version": MAX_API_VERSION, "stemcell_formats": list(STEMCELL_FORMATS)}
    assert isinstance(response["result"]["api_version"], int) and response["result"]["api_version"] >= 2


def _check_has_vm(installation, simulator, tmp_path):
    job = _create_env_job(installation, {
        "cloudstack": {"endpoint": simulator.endpoint, "api_key": simulator.api_key,
                       "secret_access_key": simulator.secret_key, "default_zone": "zone-1",
                       "log_level": "debug"},
        "agent": {"mbus": "https://mbus:mbus-password@0.0.0.0:6868",
                  "blobstore": {"provider": "local", "options": {"blobstore_path": "/var/vcap/micro_bosh/data/cache"}}},
    })
    request = {"method": "has_vm", "arguments": ["vm-that-is-not-there"], "context": INFO["context"], "api_version": 2}
    response, stderr = _run_cpi(installation, job, request, tmp_path)
    assert response["error"] is None, response
    assert response["result"] is False
    assert stderr, "the CPI log goes to stderr, which bin/cpi leaves to the director"
    assert simulator.secret_key not in stderr and simulator.secret_key not in json.dumps(response)


def test_packaged_cpi_installs_offline_and_answers_through_the_rendered_bin_cpi(tmp_path, simulator):
    # One test, so that pytest-xdist workers do not each compile the package.
    installation = _install(tmp_path / "installation")
    _check_venv(installation)
    if RUBY is None:
        pytest.skip("installed and checked; " + needs_ruby.kwargs["reason"])
    _check_info(installation, tmp_path)
    _check_has_vm(installation, simulator, tmp_path)
