"""Critical path per CPI method: wall time of each bin/cpi call against the chain of CloudStack jobs it cannot avoid.

Every method runs through ``bin/cpi`` (a process per call, as the director runs it) against an in-process simulator
with the ``realistic`` timing profile (src/cloudstack_simulator/timing.py) scaled by ``--scale``; the whole scenario
runs ``--repeat`` times and each figure is the median.  The simulator records no start or end time of its jobs, so
this script wraps, in its own process and without changing the simulator's code, that simulator instance's
``State.submit_job`` (a job's command, timing variant, duration, due time), ``JobManager._run`` (when the job ended)
and ``_log_request`` (when each request came).

For each method it prints the chain (the jobs that CloudStack's rules make run one after another for that method,
see ``CHAINS``; the jobs of one stage may run side by side, so a stage costs its longest job), the wall time and the
overhead ``wall - chain``, split into

* serial: job time beyond the chain (a job counts from its submission to its due time): jobs off the chain waited
  for one after another (tags, a static NAT release the expunge does anyway, a volume created after the VM rather
  than beside it): waits that could overlap with the chain;
* idle: time in which no job ran: process start and imports, lookups and other synchronous requests, noticing a
  finished job late (the CPI polls at 8 % of the time waited), writing the answer and the process's exit.

It also lists the jobs of every method that misses or runs jobs off the chain (``--verbose``: of all, with every
request's time).

Target (issue 17): ``wall <= 1.10 x chain + 0.1 s`` per method, for real job durations.  Scaling the jobs down
shrinks the 10 % but not what a call costs whatever its jobs last, so what is compared is

    median wall <= 1.10 x chain + 0.1 s + P + F

* ``chain``: the chain's job durations as the simulator ran them (scaled);
* ``0.1 s``: the CPI's own per-call work (its code, its requests, noticing late): real seconds, not scaled;
* ``P``: the unavoidable cost of one process of a Python CPI that speaks HTTPS, measured in the same run with the
  venv's own interpreter: the median wall time of ``python -I -c "import http.client, ssl, json"`` (what the CPI's
  transport is built on), or of that and ``pydantic`` for create_vm, which reads its cloud_properties with the
  models; one baseline process runs just before each CPI call, so load drifts alike over both;
* ``F``: for each job shorter than the CPI's first poll (50 ms), what that poll adds (``50 ms - job``): an artefact
  of scaling (no realistic job is that short), 0 at ``--scale`` >= 0.1.

At ``--scale 1`` this is the issue's target plus ``P``.  The column ``strict`` and the last line judge the issue's
form without ``P``: ``wall <= 1.10 x chain + 0.1 s + F``, which a call whose chain is short can only meet when the
process start, the imports and the requests together stay under 0.1 s plus 10 % of its jobs.  Until 2026-11-30 the
CPI imported requests and P was ``import requests`` (0.2 to 0.3 s here); it now sends on http.client
(cloudstack/transport.py).

    .venv/bin/python bench/critical_path.py [--scale 0.25] [--repeat 3] [--quick] [--verbose] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from _common import BIN_CPI, VENV_PYTHON, director_env, machine, request, run_once, write_config

TOLERANCE = 1.10          # the chain may take 10 % longer (polling late, requests between jobs)
FIXED_ALLOWANCE = 0.1     # seconds: per-call work of the CPI itself, not scaled
FIRST_POLL = 0.05         # the CPI's first queryAsyncJobResult comes 50 ms after a job starts (PollPolicy.first)
POLL = "queryasyncjobresult"
PYDANTIC_METHODS = frozenset({"create_vm"})  # it reads cloud_properties with the models (create_disk and
# create_stemcell read the usual ones without pydantic: tests/contract/test_bin_cpi.py)

MANUAL = {"type": "manual", "netmask": "255.255.255.0", "gateway": "10.1.0.1", "dns": ["10.1.0.1"],
          "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}
VIP_IP = "203.0.113.10"   # pre-allocated to the account on bosh-isolated in the advanced scenario

# The unavoidable chain of each method: stages that must run one after another; the jobs of one stage may run side
# by side (a stage costs its longest job).  A stage whose key is marked optional ("?") counts only when the job ran
# (it is needed only in some states); a required stage whose job is missing is reported.  Keys are "command" or
# "command:variant" (the simulator's timing variant).  Every other job the call ran is off the chain.
CHAINS: dict[str, list[list[str]]] = {
    # One deployVirtualMachine job makes, boots and configures the VM (issue 17): started, with the user data
    # written before it (its MACs chosen by the CPI) and the ephemeral disk as the deploy's own data disk
    # (diskofferingid).  Nothing else has to wait for it but the steps that need a running VM: enableStaticNat is
    # synchronous (no job).  The VM's and the data disk's tags run beside the deploy once its first answer gives
    # the ids: off the chain.  Last, the deleteTags that takes the unconfirmed mark off (issue 16: what a killed
    # call made must stay findable until the call is about to answer, so this follows everything else).  The
    # stopped way (the fallback for clouds that refuse chosen MACs) would be deploy:stopped beside createVolume,
    # attachVolume, the first startVirtualMachine (which creates the volumes), deleteTags: 1 + 2 + 29 + 0.5 s.
    "create_vm (ephemeral disk)": [["deployVirtualMachine"], ["deleteTags"]],
    "create_vm (vip, static NAT)": [["deployVirtualMachine"], ["deleteTags"]],
    "has_vm": [],                                                       # one listVirtualMachines
    # Only the keys whose value changes are deleted (CloudStack refuses createTags of a key the resource has) and
    # must be deleted before they are created again; the display name is updateVirtualMachine, synchronous.
    "set_vm_metadata": [["deleteTags?"], ["createTags"]],
    "reboot_vm": [["rebootVirtualMachine"]],
    # createVolume; its tags can run beside it once its first answer gives the id: off the chain.
    "create_disk": [["createVolume"], ["deleteTags"]],
    "attach_disk": [["attachVolume"]],                                  # to a running VM
    # createSnapshot; the snapshot's id is in its first answer, so its tags can run beside it: off the chain.
    "snapshot_disk": [["createSnapshot"], ["deleteTags"]],
    "delete_snapshot": [["deleteSnapshot"]],
    "detach_disk": [["detachVolume"]],                                  # from a running VM
    "resize_disk": [["resizeVolume"]],                                  # a detached disk that was attached (Ready)
    "delete_disk": [],                                                  # deleteVolume is synchronous
    # destroyVirtualMachine with expunge.  The expunge disables the VM's static NAT itself (UserVmManagerImpl
    # cleanupVmResources: "disable static nat for the ip address ... as a part of vm expunge"; the simulator does
    # the same), so a disableStaticNat job before it is off the chain; deleting the ephemeral volume afterwards is
    # synchronous (deleteVolume).
    "delete_vm (vip, static NAT)": [["destroyVirtualMachine:expunge"]],
    "delete_vm (ephemeral disk)": [["destroyVirtualMachine:expunge"]],
}


# -- recording the simulator's jobs ------------------------------------------------------------------------------


@dataclass
class JobRecord:
    id: str
    command: str
    variant: str | None
    seconds: float
    submitted: float              # time.monotonic() of this process
    due: float                    # submitted + seconds: when the simulator may end it (its next tick)
    ended: float | None = None    # when the simulator ended it (a request or its 50 ms ticker ticked)
    status: int = 0

    @property
    def key(self) -> str:
        return f"{self.command}:{self.variant}" if self.variant else self.command


class JobRecorder:
    """Wraps one in-process simulator's ``State.submit_job``, ``JobManager._run`` and ``_log_request`` (instance
    attributes only: the simulator's code is unchanged)."""

    def __init__(self, sim) -> None:
        self.records: list[JobRecord] = []
        self.requests: list[tuple[float, str]] = []   # (time.monotonic(), command) of every API request
        self._lock = threading.Lock()
        state = sim.state
        submit_job, jobs = state.submit_job, state.jobs
        run, log_request = jobs._run, sim._log_request

        def recording_submit(**kwargs):
            seconds = kwargs.get("seconds")
            variant = kwargs.get("variant")
            if seconds is None:
                seconds = jobs.duration(kwargs["command"], variant)
            else:  # only submit_checked passes a duration: the "rejected" one of a job its own checks refused
                variant = "rejected"
            job = submit_job(**kwargs)
            with self._lock:
                self.records.append(JobRecord(job.id, kwargs["command"], variant, seconds, job.due - seconds,
                                              job.due))
            return job

        def recording_run(job):
            run(job)
            ended = time.monotonic()
            with self._lock:
                for record in reversed(self.records):
                    if record.id == job.id:
                        record.ended, record.status = ended, job.status
                        break

        def recording_log_request(command, params):
            with self._lock:
                self.requests.append((time.monotonic(), command))
            log_request(command, params)

        state.submit_job = recording_submit
        jobs._run = recording_run
        sim._log_request = recording_log_request

    def mark(self) -> tuple[int, int]:
        with self._lock:
            return len(self.records), len(self.requests)

    def since(self, mark: tuple[int, int]) -> tuple[list[JobRecord], list[tuple[float, str]]]:
        with self._lock:
            return list(self.records[mark[0]:]), list(self.requests[mark[1]:])


# -- one bin/cpi call with its CPU time ----------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    response: dict
    started: float                # time.monotonic() before the process was spawned
    answered: float               # its answer line arrived
    wall: float                   # spawned -> reaped
    cpu: float                    # user + system seconds of the bin/cpi process (os.wait4)
    stderr: str = ""

    @property
    def result(self):
        if self.response.get("error"):
            raise RuntimeError(f"{self.method}: {self.response['error']}\n{self.stderr[-2000:]}")
        return self.response["result"]


def run_cpi(config: Path, method: str, *arguments, api_version: int = 2) -> Call:
    """One bin/cpi process, as the director runs it; reaped with os.wait4 for its own CPU time."""
    with tempfile.TemporaryFile() as errors:
        started = time.monotonic()
        process = subprocess.Popen([str(BIN_CPI), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=errors, env=director_env())
        process.stdin.write(request(method, *arguments, api_version=api_version))
        process.stdin.close()
        stdout = process.stdout.readline()
        answered = time.monotonic()
        stdout += process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if process.returncode != 0 or stdout.count(b"\n") != 1:
        raise RuntimeError(f"{method}: bin/cpi exited {process.returncode} with {stdout[:300]!r}\n{stderr[-2000:]}")
    return Call(method, json.loads(stdout), started, answered, wall, usage.ru_utime + usage.ru_stime, stderr)


# -- the chain and the overhead ------------------------------------------------------------------------------------


def _matches(key: str, job: JobRecord) -> bool:
    command, _, variant = key.partition(":")
    return job.command == command and (not variant or job.variant == variant)


def chain_of(stages: list[list[str]], jobs: list[JobRecord]) -> tuple[float, list[str], list[JobRecord], list[str]]:
    """(chain seconds, the chain's stages as text, the jobs off the chain, required chain jobs that did not run)."""
    unused = list(jobs)
    total, described, missing = 0.0, [], []
    for stage in stages:
        picked = []
        for key in stage:
            optional = key.endswith("?")
            key = key.rstrip("?")
            job = next((j for j in unused if _matches(key, j)), None)
            if job is None:
                if not optional:
                    missing.append(key)
                continue
            unused.remove(job)
            picked.append(job)
        if picked:
            total += max(j.seconds for j in picked)
            described.append(" | ".join(f"{j.key} {j.seconds:.2f}" for j in picked))
    return total, described, unused, missing


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def analyse(name: str, call: Call, jobs: list[JobRecord], requests: list[tuple[float, str]]) -> dict:
    """The chain, the overhead and its parts for one call.  A job counts as running from its submission to its due
    time (its duration in the profile); how late the CPI notices that it ended is idle time, not job time."""
    chain, chain_text, off_chain, missing = chain_of(CHAINS[name], jobs)
    end = call.started + call.wall
    span = [(j.submitted, j.due) for j in jobs]
    busy = _length(_union(span))
    counts = Counter(command for _, command in requests)
    return {
        "method": name,
        "jobs": [{"job": j.key, "seconds": round(j.seconds, 3), "submitted": round(j.submitted - call.started, 3),
                  "due": round(j.due - call.started, 3),
                  "ended": None if j.ended is None else round(j.ended - call.started, 3), "status": j.status}
                 for j in jobs],
        "requests_timeline": [(round(t - call.started, 3), command) for t, command in requests],
        "chain_jobs": chain_text,
        "off_chain_jobs": [f"{j.key} {j.seconds:.2f}" for j in off_chain],
        "missing_chain_jobs": missing,
        "failed_jobs": [j.key for j in jobs if j.status != 1],
        "chain": chain,
        "wall": call.wall,
        "overhead": call.wall - chain,
        "serialised": busy - chain,                                     # job time beyond the chain
        "idle": call.wall - busy,                                       # no job running
        "startup": min((s for s, _ in span), default=end) - call.started,  # spawn -> first job submitted
        "tail": end - max((e for _, e in span), default=end),          # last job due -> process gone
        "exit": end - call.answered,                                    # answer written -> process gone
        "poll_floor": sum(max(0.0, FIRST_POLL - j.seconds) for j in jobs),
        "cpu": call.cpu,
        "requests": sum(n for c, n in counts.items() if c != POLL),
        "polls": counts[POLL],
    }


def summarise(runs: list[dict], process_cost: float) -> dict:
    """The median run of one method (by wall time), judged against its allowance."""
    walls = sorted(run["wall"] for run in runs)
    median_wall = statistics.median(walls)
    row = dict(min(runs, key=lambda run: abs(run["wall"] - median_wall)))
    numbers = ("chain", "overhead", "serialised", "idle", "startup", "tail", "exit", "cpu", "poll_floor")
    for key in numbers:
        row[key] = statistics.median(run[key] for run in runs)
    row["wall"] = median_wall
    row["walls"] = walls
    row["process_cost"] = process_cost
    row["allowance"] = TOLERANCE * row["chain"] + FIXED_ALLOWANCE + process_cost + row["poll_floor"]
    row["strict_allowance"] = TOLERANCE * row["chain"] + FIXED_ALLOWANCE + row["poll_floor"]
    sound = not any(run["missing_chain_jobs"] for run in runs) and not any(run["failed_jobs"] for run in runs)
    row["met"] = median_wall <= row["allowance"] and sound
    row["strict"] = median_wall <= row["strict_allowance"] and sound
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}


# -- the scenario --------------------------------------------------------------------------------------------------


HTTP_MODULES = "import http.client, ssl, json"
BASELINES = {HTTP_MODULES: HTTP_MODULES, f"{HTTP_MODULES}, pydantic": f"{HTTP_MODULES}, pydantic"}


def baseline_kind(method: str) -> str:
    return f"{HTTP_MODULES}, pydantic" if method in PYDANTIC_METHODS else HTTP_MODULES


def run_baseline(kind: str) -> float:
    return run_once([str(VENV_PYTHON), "-I", "-c", BASELINES[kind]], None, director_env())


def run_methods(sim, config: Path, recorder: JobRecorder, samples: dict[str, list[float]], tag: str) -> list[dict]:
    """Every method once, in the order a director uses them; before each call one run of its baseline (P), so
    that the machine's load drifts alike over both."""
    with sim.state.lock:
        stemcell = next(t["id"] for t in sim.state.templates.values() if t["name"] == "bosh-stemcell-existing")
    rows: list[dict] = []

    def step(name: str, method: str, *arguments):
        kind = baseline_kind(method)
        samples[kind].append(run_baseline(kind))
        mark = recorder.mark()
        call = run_cpi(config, method, *arguments)
        result = call.result
        jobs, requests = recorder.since(mark)
        rows.append(analyse(name, call, jobs, requests))
        return result

    small = {"compute_offering": "small"}
    env = {"bosh": {"group": "bench-critical-path", "groups": ["bench"]}}
    vm, _ = step("create_vm (ephemeral disk)", "create_vm", f"agent-cp-{tag}-1", stemcell, {**small, "disk": 4096},
                 {"private": {**MANUAL, "ip": "10.1.0.50"}}, [], env)
    vip_vm, _ = step("create_vm (vip, static NAT)", "create_vm", f"agent-cp-{tag}-2", stemcell, small,
                     {"private": {**MANUAL, "ip": "10.1.0.51"},
                      "public": {"type": "vip", "ip": VIP_IP, "cloud_properties": {}}}, [], env)
    step("has_vm", "has_vm", vm)
    step("set_vm_metadata", "set_vm_metadata", vm, {"director": "bench", "deployment": "critical-path",
                                                    "job": "db", "index": "0", "name": "db/0c4f", "id": "0c4f"})
    step("reboot_vm", "reboot_vm", vm)
    disk = step("create_disk", "create_disk", 2048, {}, vm)
    step("attach_disk", "attach_disk", vm, disk)
    snapshot = step("snapshot_disk", "snapshot_disk", disk, {"deployment": "critical-path", "job": "db", "index": 0})
    step("delete_snapshot", "delete_snapshot", snapshot)
    step("detach_disk", "detach_disk", vm, disk)   # the director resizes a detached disk
    step("resize_disk", "resize_disk", disk, 4096)
    step("delete_disk", "delete_disk", disk)
    step("delete_vm (vip, static NAT)", "delete_vm", vip_vm)
    step("delete_vm (ephemeral disk)", "delete_vm", vm)
    return rows


def leftovers(sim, before: dict) -> dict:
    after = sim.inventory()
    return {key: value for key, value in after.items() if value != before.get(key)}


def measure(scale: float, repeat: int) -> dict:
    from cloudstack_simulator import Simulator

    samples: dict[str, list[float]] = {kind: [] for kind in BASELINES}
    runs: dict[str, list[dict]] = {}
    started = time.monotonic()
    with Simulator(scenario="advanced", timing="realistic", timing_scale=scale) as sim, \
            tempfile.TemporaryDirectory() as tmp:
        recorder = JobRecorder(sim)
        config = write_config(Path(tmp) / "cpi.json", sim)
        before = sim.inventory()
        for kind in BASELINES:                                               # warm bytecode and page cache
            run_baseline(kind)
        run_cpi(config, "has_vm", "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77")
        for i in range(repeat):
            for row in run_methods(sim, config, recorder, samples, str(i)):
                runs.setdefault(row["method"], []).append(row)
        left = leftovers(sim, before)
    costs = {kind: statistics.median(values) for kind, values in samples.items()}
    rows = [summarise(method_runs, costs[baseline_kind(name.split(" ")[0])]) for name, method_runs in runs.items()]
    return {"machine": machine(), "load_average": os.getloadavg(), "scale": scale, "repeat": repeat,
            "seconds": round(time.monotonic() - started, 1),
            "process_cost_ms": {kind: round(seconds * 1000, 1) for kind, seconds in costs.items()},
            "process_cost_samples": {kind: len(values) for kind, values in samples.items()},
            "methods": rows, "leftovers": left, "missed": [row["method"] for row in rows if not row["met"]],
            "missed_strict": [row["method"] for row in rows if not row["strict"]]}


def print_report(report: dict, verbose: bool) -> None:
    print(f"critical path per CPI method through bin/cpi, realistic timing x {report['scale']:g}, median of "
          f"{report['repeat']} ({report['machine']}, load average {report['load_average'][0]:.1f})")
    costs, counts = report["process_cost_ms"], report["process_cost_samples"]
    print("P, the process cost (python -I -c ..., medians, interleaved with the calls): "
          + ", ".join(f"'{kind}' {costs[kind]:.0f} ms (of {counts[kind]})" for kind in costs))
    print("met: wall <= 1.10 x chain + 0.1 s + P + F (F: first-poll floor of jobs under 50 ms, "
          "0 at --scale >= 0.1)\n")
    print(f"{'method':<28} {'chain':>6} {'wall':>6} {'overh.':>6} {'serial':>6} {'idle':>5} {'P':>5} {'exit':>5} "
          f"{'allow':>6} {'req':>3} {'polls':>5} {'cpu':>5}  met  strict")
    for row in report["methods"]:
        print(f"{row['method']:<28} {row['chain']:6.2f} {row['wall']:6.2f} {row['overhead']:6.2f} "
              f"{row['serialised']:6.2f} {row['idle']:5.2f} {row['process_cost']:5.2f} {row['exit']:5.2f} "
              f"{row['allowance']:6.2f} {row['requests']:>3} {row['polls']:>5} {row['cpu']:5.2f}  "
              f"{'yes' if row['met'] else 'NO ':<4} {'yes' if row['strict'] else 'NO'}")
    print("\nseconds. overhead = wall - chain = serial (job time beyond the chain: waits that could overlap) + idle "
          "(no job running:\nprocess start, imports, requests, noticing a job late, exit); exit = answer written -> "
          "process gone (part of idle).\n")
    for row in report["methods"]:  # every method's jobs and chain; the timeline of those that miss or could overlap
        print(f"{row['method']}: chain [{' -> '.join(row['chain_jobs']) or 'no job'}]"
              + (f"; off the chain: {', '.join(row['off_chain_jobs'])}" if row["off_chain_jobs"] else "")
              + (f"; MISSING chain jobs: {', '.join(row['missing_chain_jobs'])}" if row["missing_chain_jobs"] else "")
              + (f"; FAILED jobs: {', '.join(row['failed_jobs'])}" if row["failed_jobs"] else ""))
        if not verbose and row["met"] and not row["off_chain_jobs"]:
            continue
        print(f"    walls {', '.join(f'{w:.2f}' for w in row['walls'])}; in the median run:")
        for job in row["jobs"]:
            ended = job["ended"] if job["ended"] is not None else float("nan")
            print(f"    job {job['job']:<30} {job['seconds']:6.2f} s  submitted +{job['submitted']:.2f}  "
                  f"due +{job['due']:.2f}  ended +{ended:.2f}  status {job['status']}")
        if verbose:
            print("    requests: " + ", ".join(f"+{t:.2f} {command}" for t, command in row["requests_timeline"]))
        print(f"    spawn -> first job {row['startup']:.2f} s, last job due -> gone {row['tail']:.2f} s "
              f"(of which answer -> gone {row['exit']:.2f} s)")
    if report["leftovers"]:
        print(f"LEFT IN THE SIMULATOR: {report['leftovers']}")
    print(f"missed: {', '.join(report['missed']) or 'none'}   ({report['seconds']:.0f} s in all)")
    print(f"missed without P (wall <= 1.10 x chain + 0.1 s + F): {', '.join(report['missed_strict']) or 'none'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, help="timing_scale of the realistic profile (default 0.25; "
                                                     "--quick: 0.05)")
    parser.add_argument("--repeat", type=int, help="runs of the whole scenario, medians reported (default 3; "
                                                    "--quick: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: scale 0.05, one run")
    parser.add_argument("--verbose", action="store_true", help="every method's jobs and requests, not only misses'")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.scale is None:
        args.scale = 0.05 if args.quick else 0.25
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if not (args.scale > 0 and math.isfinite(args.scale)) or args.repeat < 1:
        parser.error("--scale must be a positive number and --repeat at least 1")
    try:
        report = measure(args.scale, args.repeat)
    except (RuntimeError, OSError, ValueError) as exc:  # a failed call: nothing to measure
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, args.verbose)
    return 0 if not report["missed"] and not report["leftovers"] else 1


if __name__ == "__main__":
    sys.exit(main())
