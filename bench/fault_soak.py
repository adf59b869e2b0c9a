"""Fault soak: every mutating CPI method through bin/cpi, many times, under injected faults and kill -9.

Each iteration, driven like a director (tests/reliability/harness.py, ``Soak``): create_stemcell (the post, url and
volume strategies in turn), create_vm (manual + dynamic network + vip, ephemeral disk; ``lbs`` joining a rule the CPI
creates with open_firewall and an operator's rule, one rule without open_firewall, or none, in turn),
set_vm_metadata, reboot_vm, create_disk, attach_disk, set_disk_metadata, snapshot_disk, delete_snapshot, detach_disk,
resize_disk, update_disk, delete_disk, delete_vm, delete_stemcell.  The simulator injects 5xx, dropped connections,
throttling, slow answers, failed jobs and lost answers; with probability ``--kill-rate`` a bin/cpi process is killed
with SIGKILL when the simulator sees a random one of its requests (before or after acting on it).  A failed call is
re-run as the director and an operator would; after a dead process the operator re-runs the task later.  At the
end (faults off) every VM, volume, snapshot, template, public IP, static NAT, load balancer rule and membership,
firewall rule, tag and file in the CPI's TMPDIR that the director does not know is a leak, traced to the call it
appeared in and the point where that call was killed, with a command that reproduces it.

    .venv/bin/python bench/fault_soak.py --iterations 14 [--workers 2] [--seed 1] [--kill-rate 0.1] [--json]
    .venv/bin/python bench/fault_soak.py --workers 1 --iterations 1 --start 2 --no-faults --kill-rate 0 \\
        --kill create_stemcell@detachvolume:after       # one chosen kill (METHOD@N or METHOD@COMMAND[#K], :before)
    .venv/bin/python bench/fault_soak.py --workers 1 --iterations 1 --no-faults --kill-rate 0 \\
        --fault update_disk@resizevolume:drop           # one chosen fault (METHOD@COMMAND:KIND)
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
    parser.add_argument("--iterations", type=int, default=20, help="lifecycles (15 methods each)")
    parser.add_argument("--workers", type=int, default=2, choices=(1, 2), help="concurrent directors")
    parser.add_argument("--seed", type=int, default=1, help="seeds the faults and the kills")
    parser.add_argument("--kill-rate", type=float, default=0.1, help="chance that a bin/cpi process is killed")
    parser.add_argument("--kill", action="append", default=[], metavar="METHOD@WHERE[:MODE]",
                        help="kill the next call of METHOD at its WHERE-th request, or at COMMAND[#K] (repeatable)")
    parser.add_argument("--fault", action="append", default=[], metavar="METHOD@COMMAND:KIND",
                        help="give the next COMMAND request of the next call of METHOD the fault KIND (error, drop, "
                             "throttle, drop_after_action, job_failure), whatever the rates (repeatable)")
    parser.add_argument("--no-faults", action="store_true", help="inject no random faults")
    parser.add_argument("--start", type=int, default=0, help="number of the first iteration (picks the variants)")
    parser.add_argument("--bin-cpi", type=Path, default=ROOT / "bin" / "cpi",
                        help="the CPI executable to soak (default: this checkout's bin/cpi)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    args = parser.parse_args(argv)

    from tests.reliability.harness import DEFAULT_FAULTS, open_soak

    faults = {} if args.no_faults else DEFAULT_FAULTS
    with tempfile.TemporaryDirectory() as tmp, \
            open_soak(Path(tmp), seed=args.seed, workers=args.workers, faults=faults, kill_rate=args.kill_rate,
                      kills=tuple(args.kill), bin_cpi=args.bin_cpi, scripted=tuple(args.fault)) as soak:
        soak.run(args.iterations, start=args.start)
        report = soak.report()
    report = {"machine": machine(), "seed": args.seed, "workers": args.workers, "kill_rate": args.kill_rate,
              **report, "leaks": [leak.as_dict() for leak in report["leaks"]]}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, args)
    ok = not (report["leaked"] or report["problems"] or report["mismatches"] or report["gave_up"])
    return 0 if ok else 1


def print_report(report: dict, args) -> None:
    modes = report["kill_modes"]
    print(f"fault soak: {report['iterations']}/{args.iterations} lifecycles in {report['seconds']} s "
          f"({args.workers} directors, seed {args.seed}, kill rate {args.kill_rate}; {report['machine']})")
    print(f"  bin/cpi calls:        {report['calls']}  {report['calls_by_method']}")
    print(f"  faults injected:      {report['faults_total']}  {report['faults_injected']}")
    print(f"  kills (SIGKILL):      {report['kills']}  {report['kills_by_method']}  (before the request acted "
          f"{modes.get('before', 0)}, after {modes.get('after', 0)}; {report['kill_points_not_reached']} kill points "
          f"not reached: the call ended first)")
    print(f"  failed calls:         {report['failed_calls']}  {report['failures_by_method']}")
    print(f"  error types:          {report['error_types']}")
    print(f"  director retries:     {report['director_retries']}  (re-runs after a kill, time passed: "
          f"{report['time_passes']})")
    for label, key in (("failures after kills", "failed_after_kill"), ("gave up", "gave_up"),
                       ("contract problems", "problems"), ("false success claims", "mismatches")):
        print(f"  {label + ':':<22}{len(report[key])}")
        for text in report[key][:10]:
            print(f"    {text}")
    print(f"  files left beside stemcell images (the director removes the directory): "
          f"{len(report['stemcell_dir_files'])}")
    print(f"  resources leaked:     {report['leaked']}  {report['leaks_by_kind']}")
    for finding in report["findings"]:
        label = f"documented ({finding['documented']})" if finding["documented"] else "NOT DOCUMENTED"
        print(f"    {finding['count']} x {finding['kind']}: {finding['where']}  [{label}]")
        for example in finding["examples"]:
            print(f"        {example[:200]}")
        for line in finding["log"]:
            print(f"        log: {line[:200]}")
        if finding["reproduce"]:
            print(f"        reproduce: {finding['reproduce']}")


if __name__ == "__main__":
    sys.exit(main())
