"""Helpers shared by the benchmarks: interpreters, timing, simulator configs."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN_CPI = ROOT / "bin" / "cpi"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python3"
sys.path.insert(0, str(ROOT / "src"))


def base_python() -> str:
    """The real interpreter behind the venv (not a pyenv shim, which is itself a bash script)."""
    return getattr(sys, "_base_executable", sys.executable)


def director_env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
            "TMPDIR": os.environ.get("TMPDIR", "/tmp")}


def run_once(argv: list[str], stdin: bytes | None = None, env=None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - started


def interleaved_medians(commands: dict[str, tuple[list[str], bytes | None, dict | None]],
                        rounds: int) -> dict[str, float]:
    """Run the commands round-robin (so drift in machine load hits all alike) and return medians."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv, stdin, env in commands.values():  # warm caches (bytecode, page cache)
        run_once(argv, stdin, env)
    for _ in range(rounds):
        for name, (argv, stdin, env) in commands.items():
            samples[name].append(run_once(argv, stdin, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def write_config(path: Path, sim, **cloudstack) -> Path:
    config = {"cloudstack": {"endpoint": sim.endpoint, "api_key": sim.api_key, "secret_access_key": sim.secret_key,
                             "default_zone": "zone-1", "default_key_name": "bosh", **cloudstack},
              "agent": {"mbus": "nats://nats:bench-password@10.1.0.6:4222", "ntp": []}}
    path.write_text(json.dumps(config))
    return path


def request(method: str, *arguments, api_version: int = 2) -> bytes:
    return json.dumps({"method": method, "arguments": list(arguments),
                       "context": {"director_uuid": "bench", "request_id": "cpi-100000",
                                   "vm": {"stemcell": {"api_version": 3}}},
                       "api_version": api_version}).encode()


def call_cpi(config: Path, method: str, *arguments) -> dict:
    completed = subprocess.run([str(BIN_CPI), str(config)], input=request(method, *arguments), capture_output=True,
                               env=director_env(), check=True)
    response = json.loads(completed.stdout)
    if response["error"]:
        raise RuntimeError(f"{method}: {response['error']}\n{completed.stderr.decode()}")
    return response["result"]


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"
