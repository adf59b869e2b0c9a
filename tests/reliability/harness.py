"""The BOSH lifecycle through bin/cpi against a fault-injecting simulator, driven the way a director drives it.

Used by ``tests/reliability/test_fault_lifecycle.py`` (a few iterations) and ``bench/fault_soak.py`` (many).

Director behaviour imitated here (bosh-cpi-contract.md §2.3): create_vm is re-run on ``VMCreationFailed`` with
``ok_to_retry``; any other failed call is re-run as an operator re-runs a failed task (up to ``max_attempts``
tries in all); cleanup calls (detach_disk, delete_snapshot, delete_disk, delete_vm) are re-run until they succeed.
Every error answer is checked: one of the ten BOSH types, one line, naming what the CPI was doing, and retryable
(every injected fault is transient: an error it causes carries ``ok_to_retry`` when its type is one the director
retries by itself, and never suggests it on other types, whose ok_to_retry the director ignores).  What each successful
answer claims is checked against the simulator's state.  At the end, with faults off, the simulator must hold no
VM, volume, snapshot, template, static NAT or public IP that the CPI did not hand to the "director".
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cloudstack_cpi.errors import ALL_TYPES, RETRIABLE_TYPES
from tests.conftest import existing_stemcell

ROOT = Path(__file__).resolve().parents[2]
BIN_CPI = ROOT / "bin" / "cpi"
DIRECTOR_UUID = "director-reliability"

# What each method's error message must start with (the breadcrumb naming what the CPI was doing).
BREADCRUMBS = {
    "create_vm": "Creating VM for agent ",
    "delete_vm": "Deleting VM ",
    "has_vm": "Looking for VM ",
    "create_disk": "Creating disk ",
    "attach_disk": "Attaching disk ",
    "detach_disk": "Detaching disk ",
    "snapshot_disk": "Snapshotting disk ",
    "delete_snapshot": "Deleting snapshot ",
    "delete_disk": "Deleting disk ",
}
CLEANUP_METHODS = frozenset({"delete_vm", "delete_disk", "delete_snapshot", "detach_disk"})
LEAK_KINDS = ("virtualmachines", "volumes", "snapshots", "templates", "staticnat", "publicips")

# The fault mix of issue 7: every kind on, small delays.
DEFAULT_FAULTS = dict(error_rate=0.05, drop_rate=0.02, throttle_rate=0.05, slow_rate=0.02, slow_seconds=0.05,
                      job_failure_rate=0.05, drop_after_action_rate=0.02)


def write_config(path: Path, endpoint: str, api_key: str, secret_key: str, **cloudstack) -> Path:
    config = {
        "cloudstack": {"endpoint": endpoint, "api_key": api_key, "secret_access_key": secret_key,
                       "default_zone": "zone-1", "default_key_name": "bosh", **cloudstack},
        "agent": {"mbus": "nats://nats:reliability-password@10.1.0.6:4222", "ntp": ["0.pool.ntp.org"]},
    }
    path.write_text(json.dumps(config))
    return path


def request(method: str, *arguments, api_version: int = 2) -> bytes:
    return json.dumps({
        "method": method, "arguments": list(arguments),
        "context": {"director_uuid": DIRECTOR_UUID, "request_id": "cpi-700007", "vm": {"stemcell": {"api_version": 3}}},
        "api_version": api_version,
    }).encode()


def env_for(tmp: Path) -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp)}


def spawn(config: Path, tmp: Path, method: str, *arguments) -> subprocess.Popen:
    process = subprocess.Popen([str(BIN_CPI), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env_for(tmp))
    process.stdin.write(request(method, *arguments))
    process.stdin.close()
    return process


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[dict, str]:
    """The response of a spawned bin/cpi (which must exit 0 with exactly one JSON line) and its stderr."""
    stdout = process.stdout.read()
    stderr = process.stderr.read().decode("utf-8", "replace")
    process.wait(timeout)
    process.stdout.close()
    process.stderr.close()
    if process.returncode != 0 or stdout.count(b"\n") != 1:
        raise AssertionError(f"bin/cpi exited {process.returncode} with stdout {stdout[:500]!r}\n{stderr}")
    return json.loads(stdout), stderr


def call(config: Path, tmp: Path, method: str, *arguments) -> tuple[dict, str]:
    return finish(spawn(config, tmp, method, *arguments))


def error_problems(method: str, error: dict, *, expect_retryable: bool = True) -> list[str]:
    """How an error answer breaks the contract (empty when it does not)."""
    problems = []
    message = str(error.get("message", ""))
    if error.get("type") not in ALL_TYPES:
        problems.append(f"{method}: unknown error type {error.get('type')!r}")
    if "\n" in message or "\r" in message:
        problems.append(f"{method}: message of more than one line: {message!r}")
    prefix = BREADCRUMBS.get(method)
    if prefix and not message.startswith(prefix):
        problems.append(f"{method}: message does not say what the CPI was doing: {message!r}")
    if expect_retryable and error.get("type") in RETRIABLE_TYPES and error.get("ok_to_retry") is not True:
        problems.append(f"{method}: a transient fault answered without ok_to_retry: {error}")
    if error.get("type") not in RETRIABLE_TYPES and error.get("ok_to_retry") is not False:
        problems.append(f"{method}: ok_to_retry on a type the director does not retry: {error}")
    if method == "create_vm" and error.get("type") != "Bosh::Clouds::VMCreationFailed":
        problems.append(f"create_vm: a transient fault is {error.get('type')}, not VMCreationFailed, so the "
                        f"director would not retry it: {message!r}")
    return problems


class GaveUp(Exception):
    pass


@dataclass
class Stats:
    calls: int = 0                       # bin/cpi processes run
    failed: int = 0                      # of which answered an error
    retries: int = 0                     # director-style re-runs of a failed call
    gave_up: int = 0                     # calls that never succeeded within max_attempts
    failures_by_method: Counter = field(default_factory=Counter)
    error_types: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)   # one error message per method
    iterations: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"iterations": self.iterations, "calls": self.calls, "failed_calls": self.failed,
                "director_retries": self.retries, "gave_up": self.gave_up,
                "failures_by_method": dict(self.failures_by_method), "error_types": dict(self.error_types),
                "contract_problems": len(self.problems), "seconds": round(self.seconds, 1)}


class Director:
    """Runs CPI calls like the director: re-runs failures, checks every error answer."""

    def __init__(self, config: Path, tmp: Path, stats: Stats, *, max_attempts: int = 8,
                 cleanup_attempts: int = 40) -> None:
        self.config, self.tmp, self.stats = config, tmp, stats
        self.max_attempts, self.cleanup_attempts = max_attempts, cleanup_attempts

    def call(self, method: str, *arguments):
        limit = self.cleanup_attempts if method in CLEANUP_METHODS else self.max_attempts
        for attempt in range(1, limit + 1):
            if attempt > 1:
                self.stats.retries += 1
            response, stderr = call(self.config, self.tmp, method, *arguments)
            self.stats.calls += 1
            error = response["error"]
            if error is None:
                return response["result"]
            self.stats.failed += 1
            self.stats.failures_by_method[method] += 1
            self.stats.error_types[error["type"]] += 1
            self.stats.examples.setdefault(method, error["message"])
            self.stats.problems.extend(error_problems(method, error))
            if error["type"] not in RETRIABLE_TYPES and "looks transient" not in stderr:
                self.stats.problems.append(f"{method}: a transient fault's log does not say it is transient")
        self.stats.gave_up += 1
        raise GaveUp(f"{method} failed {limit} times; last: {error['message']}")


class Lifecycle:
    """One simulator, one director; ``run(n)`` does n full lifecycles and checks the cloud afterwards."""

    VIPS = ("203.0.113.10", "203.0.113.11")   # the advanced scenario's public IPs allocated to the account

    def __init__(self, sim, config: Path, tmp: Path, *, max_attempts: int = 8, worker: int = 0) -> None:
        self.sim = sim
        self.worker = worker
        self.stats = Stats()
        self.director = Director(config, tmp, self.stats, max_attempts=max_attempts)
        self.known: dict[str, set[str]] = {"vms": set(), "disks": set(), "snapshots": set()}
        self.mismatches: list[str] = []
        self.stemcell = existing_stemcell(sim)

    # -- the simulator's view (its state, read directly: no API call, no fault)

    def _vm(self, vm_id: str) -> dict | None:
        with self.sim.state.lock:
            vm = self.sim.state.vms.get(vm_id)
            return dict(vm, _nics=[dict(nic) for nic in vm["_nics"]]) if vm else None

    def _volume(self, volume_id: str) -> dict | None:
        with self.sim.state.lock:
            volume = self.sim.state.volumes.get(volume_id)
            return dict(volume) if volume else None

    def _public_ip(self, address: str) -> dict:
        with self.sim.state.lock:
            return dict(next(ip for ip in self.sim.state.publicips.values() if ip["ipaddress"] == address))

    def _expect(self, condition: bool, text: str) -> None:
        if not condition:
            self.mismatches.append(text)

    # -- one lifecycle

    def iteration(self, i: int) -> None:
        d = self.director
        manual_ip = f"10.1.0.{50 + 100 * self.worker + i % 100}"
        vip = self.VIPS[self.worker]
        networks = {
            "private": {"type": "manual", "ip": manual_ip, "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.1"], "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}},
            "second": {"type": "dynamic", "default": [], "cloud_properties": {"name": "bosh-shared"}},
            "public": {"type": "vip", "ip": vip, "cloud_properties": {}},
        }
        props = {"compute_offering": "small", "disk": 1024}
        vm_id = disk_id = snapshot_id = None
        attached = False
        try:
            vm_id, answered = d.call("create_vm", f"agent-{self.worker}-{i}", self.stemcell, props, networks, [], {"bosh": {}})
            self.known["vms"].add(vm_id)
            vm = self._vm(vm_id)
            self._expect(vm is not None and vm["state"] == "Running", f"create_vm {vm_id}: not Running: {vm and vm['state']}")
            if vm:
                ips = {nic["networkname"]: nic["ipaddress"] for nic in vm["_nics"]}
                self._expect(ips.get("bosh-isolated") == manual_ip, f"create_vm {vm_id}: manual IP {ips}")
                self._expect(answered["second"]["ip"] == ips.get("bosh-shared"), f"create_vm {vm_id}: dynamic IP")
            nat = self._public_ip(vip)
            self._expect(nat["isstaticnat"] and nat.get("virtualmachineid") == vm_id, f"create_vm {vm_id}: no static NAT")

            disk_id = d.call("create_disk", 2048, {}, vm_id)
            self.known["disks"].add(disk_id)
            self._expect(self._volume(disk_id) is not None, f"create_disk {disk_id}: no such volume")

            hint = d.call("attach_disk", vm_id, disk_id)
            attached = True
            volume = self._volume(disk_id) or {}
            self._expect(volume.get("virtualmachineid") == vm_id, f"attach_disk {disk_id}: not attached to {vm_id}")
            serial = disk_id.replace("-", "")[:20]  # KVM: the serial's udev link (docs/disks.md)
            self._expect(isinstance(hint, dict) and hint.get("path") == f"/dev/disk/by-id/virtio-{serial}",
                         f"attach_disk {disk_id}: hint {hint!r}")

            snapshot_id = d.call("snapshot_disk", disk_id, {"deployment": "soak", "job": "db", "index": i,
                                                            "director_uuid": DIRECTOR_UUID})
            self.known["snapshots"].add(snapshot_id)
            with self.sim.state.lock:
                self._expect(snapshot_id in self.sim.state.snapshots, f"snapshot_disk {snapshot_id}: no such snapshot")
            d.call("delete_snapshot", snapshot_id)
            self.known["snapshots"].discard(snapshot_id)
            snapshot_id = None

            d.call("detach_disk", vm_id, disk_id)
            attached = False
            self._expect(not (self._volume(disk_id) or {}).get("virtualmachineid"), f"detach_disk {disk_id}: still attached")
            d.call("delete_disk", disk_id)
            self.known["disks"].discard(disk_id)
            disk_id = None
            d.call("delete_vm", vm_id)
            self.known["vms"].discard(vm_id)
            vm_id = None
            self.stats.iterations += 1
        except GaveUp:
            pass  # counted in stats.gave_up; clean up below as an operator would
        finally:
            if snapshot_id:
                d.call("delete_snapshot", snapshot_id)
                self.known["snapshots"].discard(snapshot_id)
            if disk_id:
                if attached and vm_id:
                    d.call("detach_disk", vm_id, disk_id)
                d.call("delete_disk", disk_id)
                self.known["disks"].discard(disk_id)
            if vm_id:
                d.call("delete_vm", vm_id)
                self.known["vms"].discard(vm_id)

    def run(self, iterations: int) -> dict:
        started = time.monotonic()
        for i in range(iterations):
            self.iteration(i)
        self.stats.seconds = time.monotonic() - started
        return self.stats.as_dict()


def run_lifecycles(sim, config: Path, tmp: Path, iterations: int, *, workers: int = 1) -> tuple[dict, list[Lifecycle]]:
    """``iterations`` lifecycles spread over ``workers`` concurrent directors (each its own VIP and IPs)."""
    import threading

    if not 1 <= workers <= len(Lifecycle.VIPS):
        raise ValueError(f"workers must be 1..{len(Lifecycle.VIPS)}")
    lifecycles = [Lifecycle(sim, config, tmp, worker=w) for w in range(workers)]
    shares = [iterations // workers + (1 if w < iterations % workers else 0) for w in range(workers)]
    failures: list[BaseException] = []

    def work(lifecycle: Lifecycle, count: int) -> None:
        try:
            lifecycle.run(count)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(lc, n)) for lc, n in zip(lifecycles, shares, strict=False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    total = Stats()
    for lc in lifecycles:
        st = lc.stats
        total.calls += st.calls
        total.failed += st.failed
        total.retries += st.retries
        total.gave_up += st.gave_up
        total.iterations += st.iterations
        total.failures_by_method.update(st.failures_by_method)
        total.error_types.update(st.error_types)
        total.problems.extend(st.problems)
        for method, text in st.examples.items():
            total.examples.setdefault(method, text)
    total.seconds = time.monotonic() - started
    return total.as_dict() | {"problems": total.problems, "examples": total.examples}, lifecycles


def leaks_of(sim, lifecycles: list[Lifecycle]) -> dict[str, list[str]]:
    """What the cloud holds that no director was told about (call with faults off)."""
    inventory = sim.inventory()
    known = {"virtualmachines": set(), "volumes": set(), "snapshots": set()}
    for lc in lifecycles:
        known["virtualmachines"] |= lc.known["vms"]
        known["volumes"] |= lc.known["disks"]
        known["snapshots"] |= lc.known["snapshots"]
    return {kind: [item for item in inventory[kind] if item not in known.get(kind, set())] for kind in LEAK_KINDS}
