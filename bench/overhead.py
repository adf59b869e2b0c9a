"""Per-call overhead: bin/cpi for `info` and `has_vm` against baselines measured in the same run.

Targets: info <= 3x `python3 -c pass`; has_vm (against a local simulator) <=
1.3x `python3 -c "import requests, pydantic"` — nothing beyond the unavoidable
imports may cost more than a third of them.  Also prints the heaviest imports
of the has_vm path (python -X importtime).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import BIN_CPI, VENV_PYTHON, base_python, director_env, interleaved_medians, machine, request, write_config

INFO_TARGET = 3.0
HAS_VM_TARGET = 1.3


def measure(rounds: int) -> dict:
    from cloudstack_simulator import Simulator

    with Simulator(scenario="advanced") as sim, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "cpi.json", sim)
        env = director_env()
        commands = {
            "python3 -c pass": ([base_python(), "-c", "pass"], None, env),
            "info via bin/cpi": ([str(BIN_CPI), str(config)], request("info"), env),
            "import requests, pydantic": ([str(VENV_PYTHON), "-c", "import requests, pydantic"], None, env),
            "has_vm via bin/cpi": ([str(BIN_CPI), str(config)],
                                   request("has_vm", "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"), env),
        }
        medians = interleaved_medians(commands, rounds)
    return {
        "medians_ms": {name: round(seconds * 1000, 1) for name, seconds in medians.items()},
        "info_ratio": medians["info via bin/cpi"] / medians["python3 -c pass"],
        "has_vm_ratio": medians["has_vm via bin/cpi"] / medians["import requests, pydantic"],
    }


def top_imports(limit: int = 12) -> list[tuple[int, str]]:
    """Cumulative import times of the has_vm path's top-level imports, heaviest first."""
    code = ("from cloudstack_cpi import rpc, context, config; from cloudstack_cpi.cloudstack import client; "
            "from cloudstack_cpi.actions import vms")
    completed = subprocess.run([str(VENV_PYTHON), "-X", "importtime", "-c", code], capture_output=True, text=True)
    rows = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative_us, name = line.split("|")
        if name.startswith(" ") and not name.startswith("  "):  # depth 1: imported directly by the code
            rows.append((int(cumulative_us), name.strip()))
    return sorted(rows, reverse=True)[:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.rounds)
    result["machine"] = machine()
    result["top_imports_ms"] = [(round(us / 1000, 1), name) for us, name in top_imports()]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, ms in result["medians_ms"].items():
            print(f"{name:<28} {ms:8.1f} ms (median of {args.rounds})")
        print(f"info / python3 -c pass              = {result['info_ratio']:.2f}x (target <= {INFO_TARGET}x)")
        print(f"has_vm / import requests, pydantic  = {result['has_vm_ratio']:.2f}x (target <= {HAS_VM_TARGET}x)")
        print("heaviest imports on the has_vm path (cumulative ms):")
        for ms, name in result["top_imports_ms"]:
            print(f"  {ms:8.1f}  {name}")
        print(f"machine: {result['machine']}")
    ok = result["info_ratio"] <= INFO_TARGET and result["has_vm_ratio"] <= HAS_VM_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
