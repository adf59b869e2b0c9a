"""CloudStack API requests per CPI method, counted at the simulator.

Counts every request each bin/cpi call makes (polls of queryAsyncJobResult
separately), flags any request repeated with the same parameters within one
call (a lookup made twice), and compares with the committed baseline
bench/api_calls.json: a count that grows fails (tests/lifecycle/test_api_call_counts.py
runs the same scenario).  `--update` rewrites the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _common import call_cpi, write_config

BASELINE = Path(__file__).with_name("api_calls.json")
POLL = "queryasyncjobresult"
MANUAL = {"type": "manual", "ip": "10.1.0.60", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
          "dns": ["10.1.0.2"], "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}
DYNAMIC = {"type": "dynamic", "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-shared"}}
ENV = {"bosh": {"group": "bench", "groups": ["bench"]}}


def _image(directory: Path) -> Path:
    path = directory / "image"
    with open(path, "wb") as handle:
        handle.truncate(8 << 20)
        handle.seek(510)
        handle.write(b"\x55\xaa")
    return path


def measure() -> dict[str, dict]:
    """Run one call of each kind against a fresh simulator; return counts per step."""
    from cloudstack_simulator import Simulator

    rows: dict[str, dict] = {}
    with Simulator(scenario="advanced") as sim, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "cpi.json", sim)

        def step(name: str, method: str, *arguments):
            sim.clear_request_log()
            result = call_cpi(config, method, *arguments)
            log = list(sim.request_log)
            commands = [command for command, _ in log]
            seen = Counter((command, json.dumps(params, sort_keys=True)) for command, params in log if command != POLL)
            rows[name] = {"requests": len(commands) - commands.count(POLL), "polls": commands.count(POLL),
                          "repeated": sorted({c for (c, _), n in seen.items() if n > 1})}
            return result

        stemcell = step("create_stemcell (post, KVM)", "create_stemcell", str(_image(Path(tmp))),
                        {"name": "bench", "version": "1", "hypervisor": "kvm", "disk_format": "raw",
                         "os_distro": "ubuntu"})  # as every real stemcell.MF has: an OS type KVM paravirtualises
        vm_manual = step("create_vm (manual)", "create_vm", "agent-1", stemcell, {"compute_offering": "small"},
                         {"private": MANUAL}, [], ENV)[0]
        vm_dynamic = step("create_vm (dynamic)", "create_vm", "agent-2", stemcell, {"compute_offering": "small"},
                          {"private": DYNAMIC}, [], ENV)[0]
        vm_two = step("create_vm (two NICs + ephemeral)", "create_vm", "agent-3", stemcell,
                      {"compute_offering": "small", "disk": 4096},
                      {"private": {**MANUAL, "ip": "10.1.0.61"}, "shared": {**DYNAMIC, "default": []}}, [], ENV)[0]
        step("has_vm", "has_vm", vm_manual)
        step("set_vm_metadata", "set_vm_metadata", vm_manual, {"director": "d", "deployment": "b", "job": "j",
                                                                "index": "0", "name": "j/0"})
        disk = step("create_disk", "create_disk", 2048, {}, vm_manual)
        step("attach_disk", "attach_disk", vm_manual, disk)
        step("get_disks", "get_disks", vm_manual)
        snapshot = step("snapshot_disk", "snapshot_disk", disk, {"deployment": "b", "job": "j", "index": 0})
        step("delete_snapshot", "delete_snapshot", snapshot)
        step("detach_disk", "detach_disk", vm_manual, disk)
        step("resize_disk", "resize_disk", disk, 4096)
        step("delete_disk", "delete_disk", disk)
        step("reboot_vm", "reboot_vm", vm_manual)
        step("delete_vm", "delete_vm", vm_manual)
        step("delete_vm (with ephemeral)", "delete_vm", vm_two)
        call_cpi(config, "delete_vm", vm_dynamic)
        step("delete_stemcell", "delete_stemcell", stemcell)
    return rows


def regressions(rows: dict[str, dict], baseline: dict[str, dict]) -> list[str]:
    problems = []
    for name, row in rows.items():
        if row["repeated"]:
            problems.append(f"{name}: the same request made twice: {', '.join(row['repeated'])}")
        before = baseline.get(name)
        if before and row["requests"] > before["requests"]:
            problems.append(f"{name}: {row['requests']} requests, baseline {before['requests']}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true", help="write the measured counts as the new baseline")
    args = parser.parse_args()
    rows = measure()
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    print(f"{'CPI call':<36} {'requests':>8} {'polls':>6} {'baseline':>9}")
    for name, row in rows.items():
        print(f"{name:<36} {row['requests']:>8} {row['polls']:>6} {baseline.get(name, {}).get('requests', '-'):>9}")
    if args.update:
        BASELINE.write_text(json.dumps({k: {"requests": v["requests"]} for k, v in rows.items()}, indent=2) + "\n")
        print(f"baseline written to {BASELINE}")
        return 0
    problems = regressions(rows, baseline)
    for problem in problems:
        print("REGRESSION:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
