"""A deploy as the director runs it: N instances with a persistent disk each, max_in_flight 5, through bin/cpi.

Every CPI call is a ``bin/cpi`` process (as the director spawns them) against an in-process simulator with the
``realistic`` timing profile scaled by ``--scale``.  ``--in-flight`` instances are worked on at once (the
director's ``max_in_flight``); the calls of one instance run one after another, in the director's order:

* create:   create_vm (ephemeral disk, manual network), set_vm_metadata, create_disk (in the VM's zone),
            attach_disk;
* recreate: detach_disk, delete_vm, create_vm (given the disk's CID for locality, a new agent id),
            set_vm_metadata, attach_disk (the VM is replaced, the disk re-attached);
* resize:   detach_disk, resize_disk (to twice the size), attach_disk (the director's native resize with
            ``enable_cpi_resize_disk``: it resizes the disk while detached);
* delete:   detach_disk, delete_vm, delete_disk.

Per phase and in total it reports the wall time, the CPU seconds of all CPI processes (user + system, from
``os.wait4`` of each; ``RUSAGE_CHILDREN`` gives the same total) and of this process (the simulator and the driver),
the API requests per command (polls of queryAsyncJobResult apart) and the jobs.  For scale it also prints a
*floor*: the phase's waves (``ceil(N / in_flight)``) times one instance's chain of unavoidable jobs
(``critical_path.py``), what the phase would take if every call cost only its chain.  At the end the simulator must
hold exactly what it held before (``sim.inventory()``).

There is no ratio target: the script exits non-zero when a call fails or something is left behind.

    .venv/bin/python bench/deploy.py [--instances 20] [--in-flight 5] [--scale 0.25] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import machine, write_config
from critical_path import MANUAL, POLL, JobRecorder, run_cpi

DISK_MIB = 2048
EPHEMERAL_MIB = 4096
CALL_FAILED = (RuntimeError, OSError, ValueError)  # what run_cpi raises for a failed call
FIRST_IP = 100              # instance i gets 10.1.0.(100 + i) on bosh-isolated
# One call's unavoidable jobs in this deploy (as critical_path.CHAINS, with the variants these calls meet): stages
# run one after another, the jobs of a stage side by side.
CALL_CHAINS: dict[str, list[list[str]]] = {
    "create_vm": [["deployVirtualMachine"], ["deleteTags"]],
    "set_vm_metadata": [["createTags"]],
    "create_disk": [["createVolume"], ["deleteTags"]],
    "attach_disk": [["attachVolume:running"]],
    "detach_disk": [["detachVolume:running"]],
    "delete_vm": [["destroyVirtualMachine:expunge"]],
    "resize_disk": [["resizeVolume"]],
    "delete_disk": [],
}
PHASES = {
    "create": ["create_vm", "set_vm_metadata", "create_disk", "attach_disk"],
    "recreate": ["detach_disk", "delete_vm", "create_vm", "set_vm_metadata", "attach_disk"],
    "resize": ["detach_disk", "resize_disk", "attach_disk"],
    "delete": ["detach_disk", "delete_vm", "delete_disk"],
}


class Director:
    """The instances' state and the calls that change it; one thread per instance in flight."""

    def __init__(self, config: Path, stemcell: str) -> None:
        self.config = config
        self.stemcell = stemcell
        self.vms: dict[int, str] = {}
        self.disks: dict[int, str] = {}
        self.generation: dict[int, int] = defaultdict(int)
        self.lock = threading.Lock()
        self.calls: list[dict] = []        # method, phase, wall, cpu
        self.errors: list[str] = []

    def call(self, phase: str, instance: int, method: str, *arguments):
        try:
            call = run_cpi(self.config, method, *arguments)
            result = call.result
        except CALL_FAILED as exc:
            with self.lock:
                self.errors.append(f"{phase} instance {instance} {method}: {exc}".splitlines()[0][:500])
            raise
        with self.lock:
            self.calls.append({"phase": phase, "method": method, "wall": call.wall, "cpu": call.cpu})
        return result

    def create_vm(self, phase: str, i: int) -> None:
        self.generation[i] += 1
        disks = [self.disks[i]] if i in self.disks else []
        network = {"private": {**MANUAL, "ip": f"10.1.0.{FIRST_IP + i}"}}
        env = {"bosh": {"group": "bench-deploy-worker", "groups": ["bench", "deploy", "worker"]}}
        vm, _ = self.call(phase, i, "create_vm", f"agent-{i}-{self.generation[i]}", self.stemcell,
                          {"compute_offering": "small", "disk": EPHEMERAL_MIB}, network, disks, env)
        self.vms[i] = vm
        self.call(phase, i, "set_vm_metadata", vm, {
            "director": "bench", "deployment": "deploy", "job": "worker", "index": str(i),
            "id": f"{i:08x}-0000-4000-8000-000000000000", "name": f"worker/{i:08x}-0000-4000-8000-000000000000"})

    def run(self, phase: str, i: int) -> None:
        try:
            if phase == "create":
                self.create_vm(phase, i)
                self.disks[i] = self.call(phase, i, "create_disk", DISK_MIB, {}, self.vms[i])
                self.call(phase, i, "attach_disk", self.vms[i], self.disks[i])
            elif phase == "recreate":
                self.call(phase, i, "detach_disk", self.vms[i], self.disks[i])
                self.call(phase, i, "delete_vm", self.vms.pop(i))
                self.create_vm(phase, i)
                self.call(phase, i, "attach_disk", self.vms[i], self.disks[i])
            elif phase == "resize":
                self.call(phase, i, "detach_disk", self.vms[i], self.disks[i])
                self.call(phase, i, "resize_disk", self.disks[i], 2 * DISK_MIB)
                self.call(phase, i, "attach_disk", self.vms[i], self.disks[i])
            elif phase == "delete":
                self.call(phase, i, "detach_disk", self.vms[i], self.disks[i])
                self.call(phase, i, "delete_vm", self.vms.pop(i))
                self.call(phase, i, "delete_disk", self.disks.pop(i))
        except CALL_FAILED:
            return  # recorded in self.errors; this instance's remaining calls are skipped, as a failed task stops

    def clean_up(self) -> None:
        """After a failure: remove what is left, so the inventory check says what leaked despite the cleanup."""
        for i, vm in list(self.vms.items()):
            if i in self.disks:
                self._quietly("detach_disk", vm, self.disks[i])
            self._quietly("delete_vm", vm)
        for disk in list(self.disks.values()):
            self._quietly("delete_disk", disk)

    def _quietly(self, method: str, *arguments) -> None:
        try:
            _ = run_cpi(self.config, method, *arguments).result
        except CALL_FAILED as exc:
            self.errors.append(f"cleanup {method}: {exc}".splitlines()[0][:500])


def _chain_seconds(sim, method: str) -> float:
    total = 0.0
    for stage in CALL_CHAINS[method]:
        total += max(sim.timing.seconds(*key.split(":", 1)) if ":" in key else sim.timing.seconds(key)
                     for key in stage)
    return total


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_phase(sim, director: Director, recorder: JobRecorder, phase: str, instances: int, in_flight: int) -> dict:
    mark, log_mark, calls_mark = recorder.mark(), len(sim.request_log), len(director.calls)
    children, own = _cpu_children(), _cpu_self()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=f"instance-{phase}") as pool:
        list(pool.map(lambda i: director.run(phase, i), range(instances)))
    wall = time.monotonic() - started
    children, own = _cpu_children() - children, _cpu_self() - own
    jobs, _ = recorder.since(mark)
    commands = Counter(command for command, _ in sim.request_log[log_mark:])
    calls = director.calls[calls_mark:]
    per_instance_chain = sum(_chain_seconds(sim, method) for method in PHASES[phase])
    floor = math.ceil(instances / in_flight) * per_instance_chain
    by_method: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        by_method[call["method"]].append(call["wall"])
    return {
        "phase": phase,
        "wall": round(wall, 2),
        "calls": len(calls),
        "calls_per_method": {method: len(walls) for method, walls in by_method.items()},
        "median_call_wall": {method: round(sorted(walls)[len(walls) // 2], 2) for method, walls in by_method.items()},
        "cpi_cpu": round(sum(call["cpu"] for call in calls), 2),
        "children_cpu": round(children, 2),
        "self_cpu": round(own, 2),
        "requests": sum(n for command, n in commands.items() if command != POLL),
        "polls": commands[POLL],
        "requests_per_command": dict(sorted(((c, n) for c, n in commands.items() if c != POLL),
                                            key=lambda item: (-item[1], item[0]))),
        "jobs": len(jobs),
        "jobs_per_command": dict(Counter(job.key for job in jobs).most_common()),
        "job_seconds": round(sum(job.seconds for job in jobs), 2),
        "floor": round(floor, 2),
        "wall_over_floor": round(wall / floor, 2) if floor else None,
    }


def measure(instances: int, in_flight: int, scale: float) -> dict:
    from cloudstack_simulator import Simulator

    started = time.monotonic()
    with Simulator(scenario="advanced", timing="realistic", timing_scale=scale) as sim, \
            tempfile.TemporaryDirectory() as tmp:
        recorder = JobRecorder(sim)
        config = write_config(Path(tmp) / "cpi.json", sim)
        with sim.state.lock:
            stemcell = next(t["id"] for t in sim.state.templates.values() if t["name"] == "bosh-stemcell-existing")
        before = sim.inventory()
        run_cpi(config, "has_vm", "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77")  # warm bytecode and page cache
        director = Director(config, stemcell)
        phases = []
        for phase in PHASES:
            phases.append(run_phase(sim, director, recorder, phase, instances, in_flight))
            if director.errors:
                break
        if director.errors:
            director.clean_up()
        after = sim.inventory()
    left = {key: {"before": before.get(key), "after": value} for key, value in after.items()
            if value != before.get(key)}
    total = {"phase": "total"}
    for key in ("wall", "calls", "cpi_cpu", "children_cpu", "self_cpu", "requests", "polls", "jobs", "job_seconds",
                "floor"):
        total[key] = round(sum(phase[key] for phase in phases), 2)
    total["wall_over_floor"] = round(total["wall"] / total["floor"], 2) if total["floor"] else None
    commands: Counter = Counter()
    for phase in phases:
        commands.update(phase["requests_per_command"])
    total["requests_per_command"] = dict(commands.most_common())
    return {"machine": machine(), "load_average": os.getloadavg(), "instances": instances, "in_flight": in_flight,
            "scale": scale, "seconds": round(time.monotonic() - started, 1), "phases": phases, "total": total,
            "errors": director.errors, "leftovers": left}


def print_report(report: dict) -> None:
    print(f"deploy of {report['instances']} instances with a persistent disk each, max_in_flight "
          f"{report['in_flight']}, through bin/cpi; realistic timing x {report['scale']:g} ({report['machine']}, "
          f"load average {report['load_average'][0]:.1f})\n")
    print(f"{'phase':<9} {'wall s':>7} {'floor s':>7} {'x floor':>7} {'calls':>5} {'CPI cpu s':>9} {'cpu/call':>8} "
          f"{'sim cpu s':>9} {'requests':>8} {'polls':>6} {'jobs':>5}")
    for row in [*report["phases"], report["total"]]:
        per_call = row["cpi_cpu"] / row["calls"] if row["calls"] else 0.0
        print(f"{row['phase']:<9} {row['wall']:7.1f} {row['floor']:7.1f} {row['wall_over_floor'] or 0:7.2f} "
              f"{row['calls']:>5} {row['cpi_cpu']:9.1f} {per_call:8.2f} {row['self_cpu']:9.1f} {row['requests']:>8} "
              f"{row['polls']:>6} {row['jobs']:>5}")
    print("\nfloor: waves x one instance's chain of unavoidable jobs; CPI cpu: user + system of all bin/cpi processes "
          "(os.wait4);\nsim cpu: this process (simulator and driver).  Requests per command (without polls):")
    for row in report["phases"]:
        listed = ", ".join(f"{command} {n}" for command, n in row["requests_per_command"].items())
        print(f"  {row['phase']:<9} {listed}")
        calls = ", ".join(f"{method} {wall:.2f}" for method, wall in row["median_call_wall"].items())
        print(f"  {'':<9} median wall of a call (s): {calls}")
    for error in report["errors"][:10]:
        print(f"ERROR: {error}")
    if report["leftovers"]:
        print(f"LEFT IN THE SIMULATOR: {report['leftovers']}")
    else:
        print("nothing left in the simulator (inventory as before the deploy)")
    print(f"({report['seconds']:.0f} s in all)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, help="instances deployed (default 20; --quick: 5)")
    parser.add_argument("--in-flight", type=int, default=5, help="instances worked on at once (max_in_flight)")
    parser.add_argument("--scale", type=float, help="timing_scale of the realistic profile (default 0.25; "
                                                     "--quick: 0.05)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 instances, scale 0.05")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.instances is None:
        args.instances = 5 if args.quick else 20
    if args.scale is None:
        args.scale = 0.05 if args.quick else 0.25
    if not 1 <= args.instances <= 150 or args.in_flight < 1 or not (args.scale > 0 and math.isfinite(args.scale)):
        parser.error("--instances must be 1 to 150, --in-flight at least 1, --scale a positive number")
    report = measure(args.instances, args.in_flight, args.scale)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if not report["errors"] and not report["leftovers"] else 1


if __name__ == "__main__":
    sys.exit(main())
