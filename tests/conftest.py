"""Shared fixtures: spawn bin/cpi exactly as the director does, and run simulators."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Property tests draw the same examples on every run and every clone (derandomize, no example database), so
# a fresh clone passes or fails the same way every time; every failure they ever found is kept as an explicit
# example next to its test. Randomized runs are the soaks under bench/ (HYPOTHESIS_PROFILE=random here).
hypothesis_settings.register_profile("fixed", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("random", derandomize=False, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))

ROOT = Path(__file__).resolve().parent.parent
BIN_CPI = ROOT / "bin" / "cpi"


def bare_env(tmp: Path | str) -> dict[str, str]:
    """The director's environment for CPI processes (external_cpi.rb: unsetenv_others)."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp)}


class CpiResult:
    def __init__(self, completed: subprocess.CompletedProcess) -> None:
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr.decode("utf-8", "replace")
        self.response = json.loads(completed.stdout)

    @property
    def result(self):
        return self.response["result"]

    @property
    def error(self):
        return self.response["error"]

    def ok(self):
        assert self.error is None, f"CPI error: {self.error}\n--- stderr ---\n{self.stderr}"
        return self.result


SECRET_KEY_WORDS = ("password", "secret", "private_key", "certificate", "cert", "token")


def _secret_leaves(value, under_secret_key=False):
    """String values stored under secret-looking keys, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _secret_leaves(item, under_secret_key or any(w in str(key).lower() for w in SECRET_KEY_WORDS))
    elif isinstance(value, list):
        for item in value:
            yield from _secret_leaves(item, under_secret_key)
    elif isinstance(value, str) and under_secret_key and len(value) >= 6:
        yield value


def secrets_of(config_path, payload) -> set[str]:
    """What must never appear in any CPI output: config secrets, agent credentials, sensitive env values."""
    found: set[str] = set()
    try:
        config = json.loads(Path(config_path).read_text())
    except (OSError, ValueError):
        config = {}
    if isinstance(config, dict):
        found.update(_secret_leaves(config))
        mbus = (config.get("agent") or {}).get("mbus") if isinstance(config.get("agent"), dict) else None
        if isinstance(mbus, str) and "@" in mbus:
            from urllib.parse import urlsplit

            password = urlsplit(mbus).password
            if password and len(password) >= 6:
                found.add(password)
    if isinstance(payload, dict) and payload.get("method") == "create_vm":
        arguments = payload.get("arguments") or []
        if len(arguments) > 5:
            found.update(_secret_leaves(arguments[5]))
    return found


def run_cpi(payload, config_path, *, env=None, tmp="/tmp", timeout=300) -> CpiResult:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    completed = subprocess.run(
        [str(BIN_CPI), str(config_path)],
        input=data,
        capture_output=True,
        env=env if env is not None else bare_env(tmp),
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr.decode()
    assert completed.stdout.count(b"\n") == 1 and completed.stdout.endswith(b"\n"), completed.stdout
    output = completed.stdout + completed.stderr
    for secret in secrets_of(config_path, payload):
        assert secret.encode() not in output, f"a secret leaked into the CPI's output ({len(secret)} chars)"
    assert b"signature=" not in output.lower(), "a request signature leaked into the CPI's output"
    return CpiResult(completed)


def request(method: str, *arguments, api_version: int | None = 2, context: dict | None = None) -> dict:
    body = {
        "method": method,
        "arguments": list(arguments),
        "context": {"director_uuid": "director-uuid-1", "request_id": "cpi-424242", **(context or {})},
    }
    if api_version is not None:
        body["api_version"] = api_version
    return body


def write_config(path: Path, endpoint: str, api_key: str, secret_key: str, **cloudstack) -> Path:
    config = {
        "cloudstack": {
            "endpoint": endpoint,
            "api_key": api_key,
            "secret_access_key": secret_key,
            "default_zone": cloudstack.pop("default_zone", "zone-1"),
            "default_key_name": cloudstack.pop("default_key_name", "bosh"),
            **cloudstack,
        },
        "agent": {
            "mbus": "nats://nats:nats-password-0123@10.0.0.6:4222",
            "ntp": ["0.pool.ntp.org"],
            "blobstore": {"provider": "dav", "options": {"endpoint": "http://10.0.0.6:25250", "user": "agent",
                                                          "password": "blobstore-secret-0123"}},
        },
    }
    path.write_text(json.dumps(config))
    return path


class Cpi:
    """A CPI bound to one config: ``cpi.call("has_vm", vm_cid)``."""

    def __init__(self, config_path: Path, tmp: Path, stemcell_api_version: int = 3) -> None:
        self.config_path = config_path
        self.tmp = tmp
        self.stemcell_api_version = stemcell_api_version
        self.transcript: list[CpiResult] = []

    def call(self, method: str, *arguments, api_version: int = 2, context: dict | None = None) -> CpiResult:
        ctx = {"vm": {"stemcell": {"api_version": self.stemcell_api_version}}, **(context or {})}
        result = run_cpi(request(method, *arguments, api_version=api_version, context=ctx), self.config_path,
                         tmp=self.tmp)
        self.transcript.append(result)
        return result

    def ok(self, method: str, *arguments, **kwargs):
        return self.call(method, *arguments, **kwargs).ok()


def existing_stemcell(sim) -> str:
    """The id of the built-in scenarios' ready template "bosh-stemcell-existing", read from the simulator's state
    (no API request, so no injected fault and nothing in the request log)."""
    with sim.state.lock:
        return next(t["id"] for t in sim.state.templates.values() if t["name"] == "bosh-stemcell-existing")


def _start_simulator(scenario: str, **options):
    simulator = pytest.importorskip("cloudstack_simulator")
    return simulator.Simulator(scenario=scenario, **options).start()


@pytest.fixture
def simulator():
    sim = _start_simulator("advanced")
    yield sim
    sim.stop()


@pytest.fixture
def basic_simulator():
    sim = _start_simulator("basic")
    yield sim
    sim.stop()


@pytest.fixture
def user_simulator():
    """The advanced cloud seen by a plain user account under the real server's defaults (may not expunge)."""
    sim = _start_simulator("advanced-user")
    yield sim
    sim.stop()


def cpi_for(sim, tmp_path: Path, **cloudstack) -> Cpi:
    """A CPI whose config points at ``sim``."""
    return Cpi(write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key, **cloudstack), tmp_path)


@pytest.fixture
def cpi(simulator, tmp_path) -> Cpi:
    return cpi_for(simulator, tmp_path)


@pytest.fixture
def basic_cpi(basic_simulator, tmp_path) -> Cpi:
    return cpi_for(basic_simulator, tmp_path, default_zone="basic-zone")


@pytest.fixture
def user_cpi(user_simulator, tmp_path) -> Cpi:
    return cpi_for(user_simulator, tmp_path)
