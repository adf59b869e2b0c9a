"""Fault soak: the BOSH lifecycle through bin/cpi, many times, against a simulator injecting every kind of fault.

Each iteration: create_vm (manual + dynamic network + vip, ephemeral disk), create_disk, attach_disk,
snapshot_disk, delete_snapshot, detach_disk, delete_disk, delete_vm, driven like a director (failed calls
re-run, cleanups re-run until they succeed; see tests/reliability/harness.py).  Prints calls, faults injected
by kind, failed calls, director-style retries, contract problems and resources leaked (must be zero).

    .venv/bin/python bench/fault_soak.py --iterations 20 [--workers 2] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import ROOT, machine

sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, choices=(1, 2), help="concurrent directors")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    args = parser.parse_args(argv)

    from cloudstack_simulator import FaultConfig, Simulator
    from tests.reliability.harness import DEFAULT_FAULTS, leaks_of, run_lifecycles, write_config

    with tempfile.TemporaryDirectory() as tmp, \
            Simulator(scenario="advanced", seed=args.seed, faults=FaultConfig(**DEFAULT_FAULTS)) as sim:
        config = write_config(Path(tmp) / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key)
        figures, lifecycles = run_lifecycles(sim, config, Path(tmp), args.iterations, workers=args.workers)
        sim.set_faults(FaultConfig())
        faults = sim.fault_counts
        leaks = leaks_of(sim, lifecycles)
        mismatches = [m for lc in lifecycles for m in lc.mismatches]
    report = {"machine": machine(), "seed": args.seed, "fault_rates": DEFAULT_FAULTS, **figures,
              "faults_injected": faults, "faults_total": sum(faults.values()),
              "leaks": {k: v for k, v in leaks.items() if v}, "leaked": sum(len(v) for v in leaks.values()),
              "mismatches": mismatches}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"fault soak: {figures['iterations']}/{args.iterations} lifecycles in {figures['seconds']} s "
              f"({args.workers} directors, seed {args.seed}; {machine()})")
        print(f"  bin/cpi calls:        {figures['calls']}")
        print(f"  failed calls:         {figures['failed_calls']}  {figures['failures_by_method']}")
        print(f"  director retries:     {figures['director_retries']}  (gave up: {figures['gave_up']})")
        print(f"  error types:          {figures['error_types']}")
        print(f"  faults injected:      {sum(faults.values())}  {faults}")
        print(f"  contract problems:    {len(figures['problems'])}")
        for problem in figures["problems"][:10]:
            print(f"    {problem}")
        print(f"  false success claims: {len(mismatches)}")
        print(f"  resources leaked:     {report['leaked']}  {report['leaks']}")
    ok = not report["leaked"] and not figures["problems"] and not mismatches and not figures["gave_up"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
