"""Parallel create_vm/delete_vm: 32 concurrent pairs of bin/cpi calls against one pair, with 1 s simulated jobs.

A director with many workers runs many CPI processes at once; each waits on CloudStack jobs, so the wall time of
32 pairs should stay close to that of one (target: at most 2x).  Each pair is create_vm (dynamic network, no
ephemeral disk) then delete_vm of that VM, each a bin/cpi process as the director runs it.  Also checks that
every call succeeded, no IP was handed out twice, and nothing is left.

    .venv/bin/python bench/parallel.py [--pairs 32] [--job-seconds 1] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, machine

sys.path.insert(0, str(ROOT))

TARGET_RATIO = 2.0


def run_pairs(sim, config: Path, tmp: Path, stemcell: str, pairs: int, tag: str) -> dict:
    from tests.reliability.harness import call

    errors: list[str] = []
    ips: list[tuple[str, str]] = []
    lock = threading.Lock()

    def pair(i: int) -> None:
        network = {"net": {"type": "dynamic", "default": ["dns", "gateway"],
                           "cloud_properties": {"name": "bosh-shared"}}}
        created, _ = call(config, tmp, "create_vm", f"agent-{tag}-{i}", stemcell, {"compute_offering": "small"},
                          network, [], {})
        if created["error"]:
            with lock:
                errors.append(created["error"]["message"])
            return
        vm_id, answered = created["result"]
        with lock:
            ips.append(("bosh-shared", answered["net"]["ip"]))
        deleted, _ = call(config, tmp, "delete_vm", vm_id)
        if deleted["error"]:
            with lock:
                errors.append(deleted["error"]["message"])

    started = time.monotonic()
    threads = [threading.Thread(target=pair, args=(i,)) for i in range(pairs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    duplicates = [ip for ip, n in collections.Counter(ips).items() if n > 1]
    inventory = sim.inventory()
    return {"pairs": pairs, "seconds": round(seconds, 2), "errors": errors, "duplicate_ips": duplicates,
            "left_vms": len(inventory["virtualmachines"]), "left_volumes": len(inventory["volumes"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from cloudstack_simulator import Simulator
    from tests.reliability.harness import write_config

    with tempfile.TemporaryDirectory() as tmp, Simulator(scenario="advanced", job_seconds=args.job_seconds) as sim:
        config = write_config(Path(tmp) / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key)
        with sim.state.lock:
            stemcell = next(t["id"] for t in sim.state.templates.values() if t["name"] == "bosh-stemcell-existing")
        run_pairs(sim, config, Path(tmp), stemcell, 1, "warm")  # page cache, bytecode
        single = run_pairs(sim, config, Path(tmp), stemcell, 1, "one")
        many = run_pairs(sim, config, Path(tmp), stemcell, args.pairs, "many")
    ratio = many["seconds"] / single["seconds"]
    report = {"machine": machine(), "job_seconds": args.job_seconds, "single": single, "parallel": many,
              "ratio": round(ratio, 2), "target_ratio": TARGET_RATIO, "ok": ratio <= TARGET_RATIO}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"parallel create_vm/delete_vm pairs, {args.job_seconds:g} s jobs ({machine()})")
        print(f"  1 pair:        {single['seconds']:.2f} s")
        print(f"  {args.pairs} pairs:      {many['seconds']:.2f} s  (errors {len(many['errors'])}, duplicate IPs "
              f"{len(many['duplicate_ips'])}, left VMs {many['left_vms']}, left volumes {many['left_volumes']})")
        print(f"  ratio:         {ratio:.2f}x  (target <= {TARGET_RATIO:g}x: {'ok' if report['ok'] else 'MISSED'})")
        for error in many["errors"][:5]:
            print(f"    error: {error}")
    clean = not many["errors"] and not many["duplicate_ips"] and not many["left_vms"] and not many["left_volumes"]
    return 0 if clean and report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
