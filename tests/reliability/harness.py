"""The BOSH lifecycle through bin/cpi against a fault-injecting simulator, driven the way a director drives it.

Used by ``tests/reliability/test_fault_lifecycle.py`` (a few iterations) and ``bench/fault_soak.py`` (many).

Director behaviour imitated here (bosh-cpi-contract.md §2.3): create_vm is re-run on ``VMCreationFailed`` with
``ok_to_retry``; any other failed call is re-run as an operator re-runs a failed task (up to ``max_attempts``
tries in all); cleanup calls (detach_disk, delete_snapshot, delete_disk, delete_vm) are re-run until they succeed.
Every error answer is checked: one of the ten BOSH types, one line, naming what the CPI was doing, and retryable
(every injected fault is transient: an error it causes carries ``ok_to_retry`` when its type is one the director
retries by itself, and never suggests it on other types, whose ok_to_retry the director ignores).  What each successful
answer claims is checked against the simulator's state.  At the end, with faults off, the simulator must hold no
VM, volume, snapshot, template, static NAT, public IP, load balancer or firewall rule, or tag that the CPI did not
hand to the "director".

``Soak`` and ``open_soak`` (issue 16, below) are the longer form ``bench/fault_soak.py`` and ``test_fault_soak.py`` run:
every mutating method (the three stemcell upload strategies, create_vm with and without ``lbs``), and bin/cpi
processes killed with SIGKILL when the simulator sees a chosen request of theirs, followed by what a director and
an operator do after a dead CPI process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
LEAK_KINDS = ("virtualmachines", "volumes", "snapshots", "templates", "staticnat", "publicips", "loadbalancerrules",
              "firewallrules", "tags")

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


def error_problems(method: str, error: dict, *, expect_retryable: bool = True,
                   breadcrumbs: dict[str, str] | None = None, transient: bool = True) -> list[str]:
    """How an error answer breaks the contract (empty when it does not).

    ``transient=False``: the failure need not come from a transient fault (a repeat after a killed call may
    meet what the killed call left), so neither ``ok_to_retry`` nor create_vm's VMCreationFailed is required."""
    problems = []
    message = str(error.get("message", ""))
    if error.get("type") not in ALL_TYPES:
        problems.append(f"{method}: unknown error type {error.get('type')!r}")
    if "\n" in message or "\r" in message:
        problems.append(f"{method}: message of more than one line: {message!r}")
    prefix = (BREADCRUMBS if breadcrumbs is None else breadcrumbs).get(method)
    if prefix and not message.startswith(prefix):
        problems.append(f"{method}: message does not say what the CPI was doing: {message!r}")
    if (expect_retryable and transient and error.get("type") in RETRIABLE_TYPES
            and error.get("ok_to_retry") is not True):
        problems.append(f"{method}: a transient fault answered without ok_to_retry: {error}")
    if error.get("type") not in RETRIABLE_TYPES and error.get("ok_to_retry") is not False:
        problems.append(f"{method}: ok_to_retry on a type the director does not retry: {error}")
    if transient and method == "create_vm" and error.get("type") != "Bosh::Clouds::VMCreationFailed":
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
    leaks = {kind: [item for item in inventory[kind] if item not in known.get(kind, set())]
             for kind in LEAK_KINDS if kind != "tags"}
    with sim.state.lock:  # tags of resources that are gone, or that are themselves leaks
        leaked = {*leaks["virtualmachines"], *leaks["volumes"], *leaks["snapshots"], *leaks["templates"]}
        leaks["tags"] = [f"{t['resourcetype']} {t['resourceid']} {t['key']}={t['value']}" for t in sim.state.tags
                         if t["resourceid"] in leaked or not resource_exists(sim.state, t["resourcetype"],
                                                                             t["resourceid"])]
    return leaks


# The simulator's collection for each taggable resource type the CPI tags (None: no collection to look in).
TAGGED_COLLECTIONS = {"UserVm": "vms", "Volume": "volumes", "Snapshot": "snapshots", "Template": "templates",
                      "LoadBalancer": "lbrules", "FirewallRule": "fwrules", "PublicIpAddress": "publicips",
                      "PortForwardingRule": "pfrules", "AffinityGroup": "affinitygroups", "Network": "networks",
                      "SecurityGroup": "secgroups", "Vpc": "vpcs"}


def resource_exists(state, resource_type: str, resource_id: str) -> bool:
    """Whether the tagged resource still exists (hold ``state.lock``); an unknown type counts as existing."""
    collection = TAGGED_COLLECTIONS.get(resource_type)
    if collection is None or not hasattr(state, collection):
        return True
    return resource_id in getattr(state, collection)


# =====================================================================================================================
# The soak of issue 16: every mutating method, SIGKILL at random points, every kind of leak.
#
# What a director does after a CPI process died (bosh-cpi-contract.md §1.4, §2.3): it reads an empty stdout, which
# is an InvalidResponse, not a retriable error, so the task fails; the operator re-runs it later, which calls the
# same method again (create_vm: a new create_vm for the same instance, with the same IPs).  The director never
# learns what the dead call made.  "Later" is modelled by moving every ``created`` in the simulator back by
# TIME_PASSES before that re-run (as tests/lifecycle backdates a volume): longer than every age rule the CPI uses to
# recognise what a killed call left (docs/reliability.md "Killed with SIGKILL": the unconfirmed mark's bounds, at
# most 3.5 hours with the default timeouts; timeout.create_vm; the volume strategy's timeouts plus an hour), so each
# of those rules gets its chance.
# =====================================================================================================================

SOAK_BREADCRUMBS = {**BREADCRUMBS, "create_stemcell": "Creating stemcell ", "delete_stemcell": "Deleting stemcell ",
                    "reboot_vm": "Rebooting VM ", "set_vm_metadata": "Setting metadata of VM ",
                    "set_disk_metadata": "Setting metadata of disk ", "resize_disk": "Resizing disk ",
                    "update_disk": "Updating disk "}
SOAK_CLEANUP_METHODS = CLEANUP_METHODS | {"delete_stemcell"}
MUTATING_METHODS = ("create_stemcell", "delete_stemcell", "create_vm", "delete_vm", "reboot_vm", "set_vm_metadata",
                    "create_disk", "delete_disk", "attach_disk", "detach_disk", "set_disk_metadata", "resize_disk",
                    "update_disk", "snapshot_disk", "delete_snapshot")
STRATEGIES = ("post", "url", "volume")      # cloudstack.stemcell.upload_strategy (auto is post or url)
LB_VARIANTS = ("web+ops", "api", "none")    # create_vm's lbs: see Soak.lbs
SOAK_LEAK_KINDS = ("virtualmachines", "volumes", "snapshots", "templates", "staticnat", "publicips",
                   "loadbalancerrules", "lbmembers", "firewallrules", "portforwardingrules", "affinitygroups",
                   "tags", "tempfiles")
POLL = "queryasyncjobresult"  # not counted for kill points: how often a job is polled depends on timing
TIME_PASSES = 24 * 3600       # seconds between a killed call and the operator's re-run (see above)
FIRST_GUESS = 12              # requests of a method not yet seen to finish (kill points are drawn within)
CALL_TIMEOUT = 600
MIB = 1 << 20
CA_FILE = re.compile(r"^cloudstack-cpi-ca-[0-9a-f]{32}\.pem$")  # content-addressed, shared by design
STEMCELL = {"name": "bosh-soak-kvm-ubuntu-jammy-go_agent", "infrastructure": "cloudstack", "hypervisor": "kvm",
            "disk": 1, "disk_format": "raw", "container_format": "bare", "os_type": "linux", "os_distro": "ubuntu",
            "architecture": "x86_64"}
# What the docs say a killed call may leave (docs/reliability.md "Killed with SIGKILL", docs/load-balancers.md).
UNMARKED = ("docs/reliability.md, Killed with SIGKILL: killed between its create's answer and its createTags, the "
            "resource has no mark")
CONFIRMED = ("docs/reliability.md, Killed with SIGKILL: killed between taking the mark off and answering")
UNTAGGED_RULE = "docs/reliability.md and load-balancers.md: a rule a killed create_vm had not yet tagged stays"
# What each create makes and the next call of its kind looks for (by its mark): (method, kind, name pattern).
PRODUCTS = {("create_disk", "volumes"): re.compile(r"^bosh-disk-"),
            ("snapshot_disk", "snapshots"): re.compile(r"^bosh-snapshot-"),
            ("create_stemcell", "templates"): re.compile(r""),
            # the volume strategy's work volume and snapshot (upload_volume.WORK_VOLUME_NAME), marked the same way
            ("create_stemcell", "volumes"): re.compile(r"-[0-9a-f]{8}-work$"),
            ("create_stemcell", "snapshots"): re.compile(r"-[0-9a-f]{8}-work$"),
            ("create_vm", "virtualmachines"): re.compile(r"^vm-"),
            ("create_vm", "volumes"): re.compile(r"^vm-.*-ephemeral$")}


def documented_window(kind: str, call: CallRecord, name: str, tags: list[str],
                      last: tuple[str, int] | None = None) -> str | None:
    """The documented window a leak left by the killed ``call`` falls in, or None (a finding).  ``last``: the final
    mutation (command, occurrence) of a call of the same kind that answered."""
    _, command, nth, mode = call.kill or (0, "", 0, "")
    if (mode == "after" and command == "deletetags" and call.method in {m for m, _ in PRODUCTS}
            and (last is None or last == (command, nth))):
        return CONFIRMED  # the mark was off: everything the create made was done, and is the director's to lose
    if call.method == "create_vm" and kind in ("loadbalancerrules", "firewallrules"):
        return UNTAGGED_RULE if "cpi_created=true" not in tags else None
    product = PRODUCTS.get((call.method, kind))
    if product is None or not product.search(name):
        return None
    return UNMARKED if not tags else None


# The methods that can make a resource of each kind: a resource that appeared while calls of both workers ran is
# traced to the call that can make it.
MAKERS = {"virtualmachines": {"create_vm"}, "volumes": {"create_vm", "create_disk", "create_stemcell"},
          "snapshots": {"snapshot_disk", "create_stemcell"}, "templates": {"create_stemcell"},
          "staticnat": {"create_vm"}, "publicips": {"create_vm"}, "loadbalancerrules": {"create_vm"},
          "lbmembers": {"create_vm"}, "firewallrules": {"create_vm"}, "portforwardingrules": {"create_vm"},
          "affinitygroups": {"create_vm"}}
LOG_WORTH_KEEPING = re.compile(r"\b(ERROR|WARN\w*)\b|Could not|by hand")


def parse_scripted_fault(text: str) -> tuple[str, str, str]:
    """``METHOD@COMMAND:KIND``: the next request of COMMAND sent by the next call of METHOD gets the fault KIND
    (error, drop, throttle, drop_after_action; job_failure: its job fails)."""
    method, _, rest = text.partition("@")
    command, _, kind = rest.partition(":")
    if method not in MUTATING_METHODS or not command or kind not in (
            "error", "drop", "throttle", "drop_after_action", "job_failure"):
        raise ValueError(f"not a fault: {text!r} (METHOD@COMMAND:KIND, KIND one of error, drop, throttle, "
                         "drop_after_action, job_failure)")
    return method, command, kind


class KilledBeforeActing(Exception):
    """Raised inside the simulator's request handling: the request dies with its sender and is never acted on."""


@dataclass(frozen=True)
class KillPoint:
    """Where a bin/cpi process is killed: at its ``at``-th request (polls not counted), or at the ``nth`` request of
    ``command``; ``mode`` "after" lets that request act (its answer is lost with the process), "before" not."""

    at: int | None = None
    command: str | None = None
    nth: int = 1
    mode: str = "after"

    @classmethod
    def parse(cls, text: str) -> tuple[str, KillPoint]:
        """``METHOD@N[:MODE]`` or ``METHOD@COMMAND[#K][:MODE]`` (what the soak prints for each kill)."""
        method, _, rest = text.partition("@")
        where, _, mode = rest.partition(":")
        mode = mode or "after"
        if method not in MUTATING_METHODS or not where or mode not in ("before", "after"):
            raise ValueError(f"not a kill point: {text!r} (METHOD@N[:before|after] or METHOD@COMMAND[#K][:MODE], "
                             f"METHOD one of {', '.join(MUTATING_METHODS)})")
        if where.isdigit():
            return method, cls(at=int(where), mode=mode)
        command, _, nth = where.partition("#")
        return method, cls(command=command.lower(), nth=int(nth or 1), mode=mode)


@dataclass
class _Watched:
    """One running bin/cpi process as its worker's endpoint sees it."""

    pid: int
    point: KillPoint | None
    counted: int = 0
    commands: list[str] = field(default_factory=list)   # every request, in order, polls included
    repeats: list[bool] = field(default_factory=list)   # per counted request: the same request as the one before
    seen: Counter = field(default_factory=Counter)
    killed: tuple[int, str, int, str] | None = None      # (request number, command, its occurrence, mode)
    _last: tuple = ()

    def see(self, command: str, params: dict) -> str | None:
        """Count a request; the kill mode when this is the kill point."""
        self.commands.append(command)
        self.seen[command] += 1
        if command == POLL:
            return None
        self.counted += 1
        sent = tuple(sorted((k, str(v)) for k, v in params.items() if k.lower() not in ("expires", "signature")))
        self.repeats.append(sent == self._last)  # a request sent again at once (after a 429 or 5xx on a read)
        self._last = sent
        point = self.point
        if point is None:
            return None
        if (point.at == self.counted) if point.command is None else (
                point.command == command and point.nth == self.seen[command]):
            self.killed = (self.counted, command, self.seen[command], point.mode)
            return point.mode
        return None


class RequestTap:
    """One API endpoint per worker onto the one simulator.  Each request a worker's bin/cpi process sends is counted
    before the simulator acts on it, and the process (its whole process group) is killed with SIGKILL at its kill
    point.  The simulator's code is unchanged: each worker gets a server of its own (the simulator's server class,
    remembering which worker a connection came to), and the simulator instance's ``_log_request``, which its handler
    calls before acting, is wrapped (as bench/critical_path.py does)."""

    def __init__(self, sim, workers: int) -> None:
        from cloudstack_simulator.server import Handler, SimHTTPServer

        tap = self

        class WorkerServer(SimHTTPServer):
            def __init__(self, worker: int) -> None:
                self.worker = worker
                super().__init__(("127.0.0.1", 0), Handler, sim)

            def process_request_thread(self, request, client_address):  # one thread per connection
                tap._local.worker = self.worker
                super().process_request_thread(request, client_address)

        self.sim = sim
        self._local = threading.local()
        self._lock = threading.Lock()
        self._watched: dict[int, _Watched] = {}
        self._original = sim._log_request
        sim._log_request = self._log_request
        self._servers = [WorkerServer(w) for w in range(workers)]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def endpoint(self, worker: int) -> str:
        return f"http://127.0.0.1:{self._servers[worker].server_address[1]}/client/api"

    def watch(self, worker: int, pid: int, point: KillPoint | None) -> None:
        with self._lock:
            self._watched[worker] = _Watched(pid, point)

    def release(self, worker: int) -> _Watched:
        with self._lock:
            return self._watched.pop(worker)

    def _log_request(self, command: str, params: dict) -> None:
        worker = getattr(self._local, "worker", None)
        mode = None
        if worker is not None:
            with self._lock:
                watched = self._watched.get(worker)
                if watched is not None and watched.killed is None:
                    mode = watched.see(command, params)
                    if mode:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(watched.pid, signal.SIGKILL)  # a group this harness started
        self._original(command, params)
        if mode == "before":
            raise KilledBeforeActing(command)

    def close(self) -> None:
        self.sim._log_request = self._original
        for server in self._servers:
            server.shutdown()
            server.server_close()


@dataclass
class CallRecord:
    """One bin/cpi process of the soak."""

    seq: int
    worker: int
    iteration: int
    method: str
    key: str                     # method/variant
    attempt: int
    started: float               # wall clock (temp files are matched to calls by their times)
    ended: float = 0.0
    outcome: str = ""            # ok, error, killed
    error: dict | None = None
    requests: list[str] = field(default_factory=list)   # counted requests, in order
    repeats: list[bool] = field(default_factory=list)   # which of them repeated the one before
    kill: tuple[int, str, int, str] | None = None
    born: dict[str, set] = field(default_factory=dict)  # what appeared in the cloud while it ran
    log: list[str] = field(default_factory=list)         # its log's warnings and errors

    def where_killed(self) -> str:
        if not self.kill:
            return ""
        number, command, nth, mode = self.kill
        return f"killed {mode} request {number} ({command} #{nth})"

    def kill_spec(self) -> str:
        """A ``--kill`` for the same point without faults: the request killed at, or (killed at a read) after the
        last mutation before it acted, counted without the requests sent again at once after a fault (a 429, a
        5xx on a read), which a run without faults does not send."""
        number, command, _, mode = self.kill or (0, "", 0, "")
        sent = [c for c, again in zip(self.requests[:number], self.repeats, strict=False) if not again]
        index = len(sent) - 1
        if _is_read(command):
            mutations = [i for i, c in enumerate(sent) if not _is_read(c)]
            if mutations:
                index, mode = mutations[-1], "after"
        command = sent[index] if sent else command
        nth = sent[:index + 1].count(command)
        return f"{self.method}@{command}{'' if nth == 1 else f'#{nth}'}:{mode}"

    def label(self) -> str:
        return (f"call {self.seq} {self.key} (iteration {self.iteration}, worker {self.worker}, attempt "
                f"{self.attempt})")


@dataclass
class SoakStats:
    calls: Counter = field(default_factory=Counter)       # by method
    failures: Counter = field(default_factory=Counter)    # calls answering an error, by method
    error_types: Counter = field(default_factory=Counter)
    kills: Counter = field(default_factory=Counter)       # by method
    kill_modes: Counter = field(default_factory=Counter)
    kills_missed: int = 0                                  # kill points the call finished before reaching
    retries: int = 0
    time_passes: int = 0
    failed_after_kill: list[str] = field(default_factory=list)  # non-transient failures that followed a kill
    gave_up: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    stemcell_dir_files: list[str] = field(default_factory=list)
    iterations: int = 0
    seconds: float = 0.0


@dataclass
class Leak:
    kind: str
    resource: str
    detail: str
    calls: list[CallRecord]
    documented: str | None = None

    @property
    def killed(self) -> list[CallRecord]:
        return [c for c in self.calls if c.outcome == "killed"]

    def as_dict(self) -> dict:
        return {"kind": self.kind, "resource": self.resource, "detail": self.detail, "documented": self.documented,
                "calls": [dict(label=c.label(), outcome=c.outcome, killed=c.where_killed() or None,
                               error=(c.error or {}).get("message"), log=c.log) for c in self.calls]}


def _is_read(command: str) -> bool:
    return command.startswith(("list", "query")) or (
        command.startswith("get") and command != "getuploadparamsfortemplate")


def write_stemcell_image(path: Path) -> Path:
    """The smallest raw disk the CPI takes (1 MiB, docs/stemcells.md), sparse, with a few bytes of data."""
    with open(path, "wb") as handle:
        handle.truncate(MIB)
        handle.write(b"bosh fault soak " * 32)
        handle.seek(510)
        handle.write(b"\x55\xaa")
    return path


def _earlier(created: str | None, seconds: float) -> str | None:
    try:
        when = datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return created
    return (when - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S%z")


class Soak:
    """One simulator seen through a RequestTap, the director's bookkeeping, and the final leak check.

    Made by ``open_soak``; ``run(iterations)`` drives the workers, ``report()`` checks the cloud (faults off)."""

    def __init__(self, sim, root: Path, *, workers: int = 1, seed: int = 1, kill_rate: float = 0.1,
                 kills: tuple[str, ...] = (), max_attempts: int = 30, cleanup_attempts: int = 40,
                 bin_cpi: Path = BIN_CPI, scripted: tuple[str, ...] = ()) -> None:
        from tests.simulator.helpers import Api

        if not 1 <= workers <= len(Lifecycle.VIPS):
            raise ValueError(f"workers must be 1..{len(Lifecycle.VIPS)}")
        self.sim, self.root, self.workers, self.seed = sim, root, workers, seed
        self.kill_rate, self.max_attempts, self.cleanup_attempts = kill_rate, max_attempts, cleanup_attempts
        self.bin_cpi = bin_cpi
        self.forced: dict[str, list[KillPoint]] = {}
        for text in kills:
            method, point = KillPoint.parse(text)
            self.forced.setdefault(method, []).append(point)
        self.scripted: dict[str, list[tuple[str, str]]] = {}
        for text in scripted:
            method, command, kind = parse_scripted_fault(text)
            if not hasattr(sim, "script_fault"):
                raise ValueError("this simulator cannot script a fault (Simulator.script_fault)")
            self.scripted.setdefault(method, []).append((command, kind))
        self._kill_draws = [random.Random(f"{seed}:kills:{w}") for w in range(workers)]
        self._lock = threading.Lock()
        self.volume_lock = threading.RLock()  # volume-strategy uploads vs time passing (see time_passes)
        self.stats = SoakStats()
        self.records: list[CallRecord] = []
        self.expected: dict[str, int] = {}    # the most requests a call of each key made
        self.known: dict[str, set[str]] = {"vms": set(), "disks": set(), "snapshots": set(), "stemcells": set()}
        self.faults: dict = {}
        self.plan = "full"

        # What is there before the director comes (faults are still off): the VM the CPI runs on (the volume
        # strategy writes onto volumes attached to it), a third public IP for load balancing (the scenario's two are
        # the workers' vips) and an operator's load balancer rule with a firewall rule on it, which VMs join.
        api = Api(sim)
        self.own_vm = api.deploy()["id"]
        self.devices = Path(sim.device_dir) / self.own_vm
        self.devices.mkdir(parents=True, exist_ok=True)
        zone = api.zone("zone-1")["id"]
        network = api.network(zone, "bosh-isolated")["id"]
        address = api.acall("associateIpAddress", networkid=network)["ipaddress"]
        self.lb_ip = address["ipaddress"]
        rule = api.acall("createLoadBalancerRule", "POST", name="ops", publicipid=address["id"], publicport=443,
                         privateport=8443, algorithm="roundrobin", openfirewall="false")["loadbalancer"]["id"]
        api.acall("createTags", "POST", resourceids=rule, resourcetype="LoadBalancer",
                  **{"tags[0].key": "owner", "tags[0].value": "ops-team"})
        api.acall("createFirewallRule", "POST", ipaddressid=address["id"], protocol="tcp", startport=443, endport=443,
                  cidrlist="0.0.0.0/0")
        self.baseline = self.ids()

        self.tap = RequestTap(sim, workers)
        self.configs: list[dict[str, Path]] = []
        self.tmpdirs: list[Path] = []
        for worker in range(workers):
            home = root / f"director-{worker}"
            (home / "tmp").mkdir(parents=True, exist_ok=True)
            self.tmpdirs.append(home / "tmp")
            stemcell = {"post": {"upload_strategy": "post"},
                        "url": {"upload_strategy": "url", "url": {"listen_host": "127.0.0.1"}},
                        "volume": {"upload_strategy": "volume",
                                   "volume": {"vm_id": self.own_vm, "device_dir": str(self.devices)}}}
            self.configs.append({strategy: write_config(home / f"cpi-{strategy}.json", self.tap.endpoint(worker),
                                                        sim.api_key, sim.secret_key, stemcell=settings)
                                 for strategy, settings in stemcell.items()})

    # -- the cloud, read straight from the simulator's state (no request, no fault)

    def ids(self) -> dict[str, set]:
        self.sim.inventory()  # lets due jobs finish and destroyed VMs expunge, as a look through the API would
        with self.sim.state.lock:
            st = self.sim.state
            return {
                "virtualmachines": set(st.vms),
                "volumes": {v["id"] for v in st.volumes.values() if v["type"] == "DATADISK"},
                "snapshots": set(st.snapshots),
                "templates": {t["id"] for t in st.templates.values() if not t.get("_scenario")},
                "staticnat": {(i["id"], i.get("virtualmachineid")) for i in st.publicips.values() if i["isstaticnat"]},
                "publicips": {i["id"] for i in st.publicips.values() if i["state"] != "Free"},
                "loadbalancerrules": set(st.lbrules),
                "lbmembers": {(rid, vm) for rid, rule in st.lbrules.items() for vm in rule["_vms"]},
                "firewallrules": set(st.fwrules),
                "portforwardingrules": set(st.pfrules),
                "affinitygroups": set(st.affinitygroups),
                "tags": {(t["resourcetype"], t["resourceid"], t["key"], t["value"]) for t in st.tags},
            }

    def time_passes(self) -> None:
        """Every resource's ``created`` moves TIME_PASSES back.  Not while a volume-strategy upload runs in another
        worker: its work volume would look as old as one a killed upload left, which no real clock can do."""
        with self.volume_lock, self.sim.state.lock:
            st = self.sim.state
            dated = [*st.vms.values(), *st.volumes.values(), *st.snapshots.values(), *st.templates.values(),
                     *(zone for template in st.templates.values() for zone in template.get("_zones", {}).values())]
            for item in dated:  # (a template's row in a zone answers that zone's created)
                if item.get("created"):
                    item["created"] = _earlier(item["created"], TIME_PASSES)
        with self._lock:
            self.stats.time_passes += 1

    # -- kills

    def script_faults(self, method: str) -> None:
        """The faults ``--fault`` asked for on the next call of ``method``: its next request of the command."""
        with self._lock:
            for command, kind in self.scripted.pop(method, []):
                self.sim.script_fault(command, kind)

    def kill_point(self, worker: int, method: str, key: str) -> KillPoint | None:
        with self._lock:
            if self.forced.get(method):
                return self.forced[method].pop(0)
            draw = self._kill_draws[worker]
            kill, where, how = draw.random(), draw.random(), draw.random()  # always three: one stream per worker
            if kill >= self.kill_rate:
                return None
            return KillPoint(at=1 + int(where * self.expected.get(key, FIRST_GUESS)),
                             mode="before" if how < 0.5 else "after")

    # -- running

    def run(self, iterations: int, start: int = 0, plan: str = "full") -> dict:
        """``iterations`` lifecycles (numbered from ``start``: the number picks the variants), spread over the
        workers, each its own director; ``plan`` "short" calls only the stemcell and VM methods."""
        if plan not in ("full", "short"):
            raise ValueError(f"plan must be full or short, not {plan!r}")
        self.plan = plan
        lifecycles = [SoakLifecycle(self, w) for w in range(self.workers)]
        failures: list[BaseException] = []

        def work(lifecycle: SoakLifecycle) -> None:
            try:
                for number in range(start + lifecycle.worker, start + iterations, self.workers):
                    lifecycle.iteration(number)
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                failures.append(exc)

        started = time.monotonic()
        threads = [threading.Thread(target=work, args=(lc,)) for lc in lifecycles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.stats.seconds += time.monotonic() - started
        if failures:
            raise failures[0]
        return self.figures()

    def figures(self) -> dict:
        st = self.stats
        return {"iterations": st.iterations, "calls": sum(st.calls.values()), "calls_by_method": dict(st.calls),
                "failed_calls": sum(st.failures.values()), "failures_by_method": dict(st.failures),
                "error_types": dict(st.error_types), "director_retries": st.retries,
                "kills": sum(st.kills.values()), "kills_by_method": dict(st.kills), "kill_modes": dict(st.kill_modes),
                "kill_points_not_reached": st.kills_missed, "time_passes": st.time_passes,
                "failed_after_kill": st.failed_after_kill, "gave_up": st.gave_up, "problems": st.problems,
                "mismatches": st.mismatches, "stemcell_dir_files": st.stemcell_dir_files,
                "seconds": round(st.seconds, 1)}

    # -- the end

    def report(self) -> dict:
        """Faults off; what the cloud and the CPI's TMPDIRs hold that the director does not know, each traced to
        the calls during which it appeared."""
        from cloudstack_simulator import FaultConfig

        self.sim.set_faults(FaultConfig())
        faults = self.sim.fault_counts
        leaks = self.leaks()
        by_kind = Counter(leak.kind for leak in leaks)
        return {**self.figures(), "fault_rates": self.faults, "faults_injected": faults,
                "faults_total": sum(faults.values()), "leaked": len(leaks),
                "leaks_by_kind": {kind: by_kind[kind] for kind in SOAK_LEAK_KINDS if by_kind[kind]},
                "leaks": leaks, "findings": findings(leaks)}

    def leaks(self) -> list[Leak]:
        now, base = self.ids(), self.baseline
        known = {"virtualmachines": self.known["vms"], "volumes": self.known["disks"],
                 "snapshots": self.known["snapshots"], "templates": self.known["stemcells"]}
        with self.sim.state.lock:
            st = self.sim.state
            state = {"virtualmachines": {k: dict(v) for k, v in st.vms.items()},
                     "volumes": {k: dict(v) for k, v in st.volumes.items()},
                     "snapshots": {k: dict(v) for k, v in st.snapshots.items()},
                     "templates": {k: dict(v) for k, v in st.templates.items()},
                     "loadbalancerrules": {k: dict(v) for k, v in st.lbrules.items()},
                     "firewallrules": {k: dict(v) for k, v in st.fwrules.items()},
                     "publicips": {k: dict(v) for k, v in st.publicips.items()}}
        leaked: set[str] = set()  # ids of the leaked resources (their tags are listed with them)
        found: list[tuple[str, object]] = []
        for kind in ("virtualmachines", "volumes", "snapshots", "templates", "publicips", "loadbalancerrules",
                     "firewallrules", "portforwardingrules", "affinitygroups"):
            for item in sorted(now[kind] - base[kind] - known.get(kind, set())):
                found.append((kind, item))
                leaked.add(item)
        vms_known = known["virtualmachines"]
        for item in sorted(now["staticnat"] - base["staticnat"], key=str):
            if item[1] not in vms_known:
                found.append(("staticnat", item))
        for item in sorted(now["lbmembers"] - base["lbmembers"], key=str):
            if item[1] not in vms_known:
                found.append(("lbmembers", item))
        tags_of: dict[str, list[str]] = {}
        all_known = {i for ids in known.values() for i in ids}
        for tag in sorted(now["tags"] - base["tags"]):
            rtype, rid, key, value = tag
            if rid in leaked:
                tags_of.setdefault(rid, []).append(f"{key}={value}")
            elif rid not in all_known:
                found.append(("tags", tag))
        with self.sim.state.lock:
            state["gone"] = {tag[1] for kind, tag in found
                             if kind == "tags" and not resource_exists(self.sim.state, tag[0], tag[1])}

        leaks = []
        for kind, item in found:
            leaks.append(self._leak(kind, item, state, tags_of))
        leaks.extend(self._temp_files())
        return leaks

    def _leak(self, kind: str, item, state: dict, tags_of: dict[str, list[str]]) -> Leak:
        rows = state.get(kind, {})
        if kind in ("staticnat", "lbmembers"):
            owner, vm = item
            address = state["publicips"].get(owner, {}).get("ipaddress") if kind == "staticnat" else None
            rule = state["loadbalancerrules"].get(owner, {}).get("name") if kind == "lbmembers" else None
            detail = f"{address or rule or owner} -> VM {vm}"
            calls = self._born(kind, item) + self._born("virtualmachines", vm)
            resource = f"{owner}->{vm}"
        elif kind == "tags":
            rtype, rid, key, value = item
            gone = "gone" if rid in state["gone"] else "exists"
            detail, resource = f"{rtype} {rid} ({gone}): {key}={value}", f"{rtype}:{rid}:{key}"
            calls = self._born(kind, item)
        else:
            row = rows.get(item, {})
            facts = [f"{name} {row[name]}" for name in ("name", "state", "status", "virtualmachineid", "ipaddress",
                                                         "publicip", "publicport", "startport")
                     if row.get(name) not in (None, "")]
            if kind == "loadbalancerrules" and row.get("_vms"):
                facts.append(f"members {', '.join(row['_vms'])}")
            if kind == "templates" and row.get("_zones"):
                facts.append("zones " + ", ".join(z.get("status", "?") for z in row["_zones"].values()))
            facts.append(f"tags {', '.join(tags_of.get(item, [])) or 'none'}")
            detail, resource = "; ".join(facts), item
            calls = self._born(kind, item)
            for vm in row.get("_vms") or []:  # a rule kept by a leaked member goes back to that member's call
                calls += [c for c in self._born("virtualmachines", vm) if c not in calls]
        makers = [c for c in calls if c.method in MAKERS.get(kind, {c.method})]
        calls = makers or calls
        killed = [c for c in calls if c.outcome == "killed"]
        leak = Leak(kind, str(resource), detail, killed or calls)
        if killed:
            name = str(rows.get(item, {}).get("name", "")) if isinstance(item, str) else ""
            tags = tags_of.get(item, []) if isinstance(item, str) else []
            leak.documented = documented_window(kind, killed[0], name, tags, self._last_mutation(killed[0].key))
        return leak

    def _last_mutation(self, key: str) -> tuple[str, int] | None:
        """The last mutation, and how many of its command came before, of a call of ``key`` that answered."""
        for record in self.records:
            if record.key == key and record.outcome == "ok":
                sent = [c for c, again in zip(record.requests, record.repeats, strict=False) if not again]
                mutations = [i for i, c in enumerate(sent) if not _is_read(c)]
                if mutations:
                    command = sent[mutations[-1]]
                    return command, sent[:mutations[-1] + 1].count(command)
        return None

    def _born(self, kind: str, item) -> list[CallRecord]:
        return [record for record in self.records if item in record.born.get(kind, ())]

    def _temp_files(self) -> list[Leak]:
        leaks = []
        for tmpdir in self.tmpdirs:
            for path in sorted(tmpdir.rglob("*")):
                if path.is_dir() or CA_FILE.match(path.name):
                    continue
                mtime = path.stat().st_mtime
                calls = [r for r in self.records if r.started - 1 <= mtime <= r.ended + 1]
                killed = [c for c in calls if c.outcome == "killed"]
                leaks.append(Leak("tempfiles", str(path), f"{path.stat().st_size} bytes", killed or calls))
        return leaks


def findings(leaks: list[Leak]) -> list[dict]:
    """Leaks grouped by what left them: kind, method, where it was killed (or: no kill), documented or not; with
    one command that reproduces each group."""
    groups: dict[tuple, dict] = {}
    for leak in leaks:
        killed = leak.killed
        if killed:
            call = killed[0]
            spec = call.kill_spec()
            key = (leak.kind, call.key, spec, leak.documented)
            where = f"{call.key} {call.where_killed()} (as --kill: {spec})"
            repro = (f".venv/bin/python bench/fault_soak.py --workers 1 --iterations 1 --start {call.iteration} "
                     f"--no-faults --kill-rate 0 --kill {spec}")
        else:
            key = (leak.kind, tuple(c.key for c in leak.calls), "", None)
            where = "no kill: " + (", ".join(f"{c.key} ({c.outcome})" for c in leak.calls) or "no call saw it appear")
            repro = None
        group = groups.setdefault(key, {"kind": leak.kind, "where": where, "documented": leak.documented,
                                        "count": 0, "examples": [], "reproduce": repro,
                                        "log": [] if killed else [line for c in leak.calls for line in c.log][:6]})
        group["count"] += 1
        if len(group["examples"]) < 2:
            group["examples"].append(f"{leak.resource}: {leak.detail}")
    return sorted(groups.values(), key=lambda g: (g["documented"] is not None, g["kind"], -g["count"]))


class SoakLifecycle:
    """One worker: a director running the whole BOSH lifecycle, every mutating method, one iteration at a time."""

    def __init__(self, soak: Soak, worker: int) -> None:
        self.soak, self.worker = soak, worker
        self.sim = soak.sim
        self.tmpdir = soak.tmpdirs[worker]
        self.stemcells = soak.root / f"director-{worker}" / "stemcells"
        self.stemcells.mkdir(parents=True, exist_ok=True)
        self.iteration_number = 0
        self.killed_this_iteration = False
        self.full = soak.plan == "full"

    # -- one call, re-run as the director and an operator would

    def call(self, method: str, *arguments, key: str | None = None, strategy: str = "post", api_version: int = 2,
             prepare: Callable[[], contextlib.AbstractContextManager[tuple]] | None = None):
        """The method's result once a run succeeds.  A failure is re-run: create_vm's VMCreationFailed with
        ok_to_retry by the director, anything else by an operator re-running the task (a dead process too, later:
        TIME_PASSES); a non-transient failure twice in a row, or ``max_attempts`` runs, and the director gives up."""
        soak, stats = self.soak, self.soak.stats
        key = key or method
        limit = soak.cleanup_attempts if method in SOAK_CLEANUP_METHODS else soak.max_attempts
        killed_last = killed_any = False
        stubborn = 0
        error: dict | None = None
        for attempt in range(1, limit + 1):
            if attempt > 1:
                with soak._lock:
                    stats.retries += 1
            if killed_last:
                soak.time_passes()
            with prepare() if prepare else contextlib.nullcontext(arguments) as args:
                record, response, stderr = self.run_once(method, args, key=key, strategy=strategy,
                                                         api_version=api_version, attempt=attempt)
            if record.outcome == "ok":
                return response["result"]
            killed_last = record.outcome == "killed"
            if killed_last:
                killed_any = self.killed_this_iteration = True
                continue
            error = response["error"]
            transient = (error["type"] in RETRIABLE_TYPES and error["ok_to_retry"]) or "looks transient" in stderr
            after_kill = killed_any or self.killed_this_iteration
            problems = error_problems(method, error, breadcrumbs=SOAK_BREADCRUMBS, transient=not after_kill)
            if not transient and not after_kill:
                problems.append(f"{method}: a failure under transient faults only, not said to be transient: "
                                f"{error['message']}")
            with soak._lock:
                stats.problems.extend(problems)
                if after_kill and not transient:
                    stats.failed_after_kill.append(f"{record.label()}: {error['type']}: {error['message'][:300]}")
            stubborn += 0 if transient else 1
            if stubborn >= 2:  # the same kind of refusal twice: re-running does not help
                break
        text = "killed" if killed_last else f"{(error or {}).get('type')}: {(error or {}).get('message', '')[:300]}"
        with soak._lock:
            stats.gave_up.append(f"{key} (iteration {self.iteration_number}, worker {self.worker}) after "
                                 f"{attempt} runs; last: {text}")
        raise GaveUp(f"{method}: {text}")

    def run_once(self, method: str, arguments: tuple, *, key: str, strategy: str, api_version: int,
                 attempt: int) -> tuple[CallRecord, dict | None, str]:
        soak, stats = self.soak, self.soak.stats
        point = soak.kill_point(self.worker, method, key)
        soak.script_faults(method)
        before = soak.ids()
        record = CallRecord(seq=0, worker=self.worker, iteration=self.iteration_number, method=method, key=key,
                            attempt=attempt, started=time.time())
        process = subprocess.Popen([str(soak.bin_cpi), str(soak.configs[self.worker][strategy])], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(self.tmpdir),
                                   start_new_session=True)  # its own process group: a kill takes all of it
        soak.tap.watch(self.worker, process.pid, point)
        try:
            stdout, stderr_bytes = process.communicate(request(method, *arguments, api_version=api_version),
                                                       timeout=CALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr_bytes = process.communicate()
            stats.problems.append(f"{method}: no answer within {CALL_TIMEOUT} s")
        finally:
            watched = soak.tap.release(self.worker)
        record.ended = time.time()
        after = soak.ids()
        record.born = {kind: after[kind] - before[kind] for kind in after}
        record.requests, record.repeats = [c for c in watched.commands if c != POLL], watched.repeats
        stderr = stderr_bytes.decode("utf-8", "replace")
        record.log = [line.strip()[:400] for line in stderr.splitlines()
                      if LOG_WORTH_KEEPING.search(line) and "Retrying " not in line][:8]
        response = None
        if watched.killed and process.returncode != 0:
            record.outcome, record.kill = "killed", watched.killed
        elif process.returncode != 0 or stdout.count(b"\n") != 1:
            raise AssertionError(f"bin/cpi {method} exited {process.returncode} with stdout {stdout[:500]!r}\n"
                                 f"{stderr[-3000:]}")
        else:
            response = json.loads(stdout)
            record.outcome = "ok" if response["error"] is None else "error"
            record.error = response["error"]
            with soak._lock:
                soak.expected[key] = max(soak.expected.get(key, 0), watched.counted)
        with soak._lock:
            record.seq = len(soak.records) + 1
            soak.records.append(record)
            stats.calls[method] += 1
            if record.outcome == "killed":
                stats.kills[method] += 1
                stats.kill_modes[watched.killed[3]] += 1
            elif point is not None:
                stats.kills_missed += 1
            if record.outcome == "error":
                stats.failures[method] += 1
                stats.error_types[response["error"]["type"]] += 1
        return record, response, stderr

    @contextlib.contextmanager
    def unpacked_stemcell(self, properties: dict, env: dict) -> Iterator[tuple]:
        """The director unpacks the stemcell into a new temporary directory for each upload task and removes it
        afterwards, also when the CPI died; what the CPI left beside the image is noted, not counted as a leak."""
        directory = Path(tempfile.mkdtemp(prefix="stemcell-", dir=self.stemcells))
        image = write_stemcell_image(directory / "image")
        try:
            yield str(image), properties, env
        finally:
            left = sorted(p.name for p in directory.iterdir() if p.name != "image")
            if left:
                with self.soak._lock:
                    self.soak.stats.stemcell_dir_files.append(
                        f"iteration {self.iteration_number}: {', '.join(left)}")
            shutil.rmtree(directory, ignore_errors=True)

    # -- the simulator's view, for checking what answers claim

    def _expect(self, condition: bool, text: str) -> None:
        if not condition:
            with self.soak._lock:
                self.soak.stats.mismatches.append(f"iteration {self.iteration_number}: {text}")

    def _state(self, collection: str, item_id: str) -> dict | None:
        with self.sim.state.lock:
            row = getattr(self.sim.state, collection).get(item_id)
            return json.loads(json.dumps(row, default=str)) if row else None

    def _tags(self, resource_type: str, resource_id: str) -> dict[str, str]:
        with self.sim.state.lock:
            return {t["key"]: t["value"] for t in self.sim.state.tags_for(resource_type, resource_id)}

    def _rules_with(self, vm_id: str) -> dict[str, dict]:
        with self.sim.state.lock:
            return {r["name"]: dict(r, _vms=list(r["_vms"])) for r in self.sim.state.lbrules.values()
                    if vm_id in r["_vms"]}

    def lbs(self, variant: str) -> list[dict]:
        ip = self.soak.lb_ip
        return {"web+ops": [{"name": "web", "public_ip": ip, "public_port": 80, "private_port": 8080,
                             "open_firewall": True},
                            {"name": "ops", "public_ip": ip, "public_port": 443, "private_port": 8443}],
                "api": [{"name": "api", "public_ip": ip, "public_port": 8081, "private_port": 8080,
                         "open_firewall": False}],
                "none": []}[variant]

    # -- one iteration

    def iteration(self, number: int) -> None:
        """create_stemcell (strategy by ``number``), create_vm (lbs variant by ``number // 3``), set_vm_metadata,
        reboot_vm, create_disk, attach_disk, set_disk_metadata, snapshot_disk, delete_snapshot, detach_disk,
        resize_disk, update_disk, delete_disk, delete_vm, delete_stemcell.  The short plan: create_stemcell,
        create_vm, delete_vm, delete_stemcell."""
        self.iteration_number, self.killed_this_iteration = number, False
        known = self.soak.known
        strategy, variant = STRATEGIES[number % 3], LB_VARIANTS[(number // 3) % 3]
        manual_ip = f"10.1.0.{50 + 100 * self.worker + number % 100}"
        vip = Lifecycle.VIPS[self.worker]
        networks = {
            "private": {"type": "manual", "ip": manual_ip, "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.1"], "default": ["dns", "gateway"],
                        "cloud_properties": {"name": "bosh-isolated"}},
            "second": {"type": "dynamic", "default": [], "cloud_properties": {"name": "bosh-shared"}},
            "public": {"type": "vip", "ip": vip, "cloud_properties": {}},
        }
        lbs = self.lbs(variant)
        props = {"compute_offering": "small", "disk": 1024, **({"lbs": lbs} if lbs else {})}
        stemcell_props = dict(STEMCELL, version=f"1.{number}")
        agent = f"agent-{self.worker}-{number}"
        stemcell = vm_id = disk_id = snapshot_id = None
        attached = False
        try:
            with self.soak.volume_lock if strategy == "volume" else contextlib.nullcontext():
                stemcell = self.call("create_stemcell", key=f"create_stemcell/{strategy}", strategy=strategy,
                                     api_version=3, prepare=lambda: self.unpacked_stemcell(
                                         stemcell_props, {"tags": {"soak": str(number)}}))
            known["stemcells"].add(stemcell)
            zones = (self._state("templates", stemcell) or {}).get("_zones") or {}
            self._expect(bool(zones) and all(z.get("isready") for z in zones.values()),
                         f"create_stemcell {stemcell}: not ready: {zones}")

            vm_id, answered = self.call("create_vm", agent, stemcell, props, networks, [], {"bosh": {"group": "soak"}},
                                        key=f"create_vm/{variant}")
            known["vms"].add(vm_id)
            vm = self._state("vms", vm_id) or {}
            self._expect(vm.get("state") == "Running", f"create_vm {vm_id}: not Running: {vm.get('state')}")
            ips = {nic["networkname"]: nic["ipaddress"] for nic in vm.get("_nics", [])}
            self._expect(ips.get("bosh-isolated") == manual_ip, f"create_vm {vm_id}: manual IP {ips}")
            self._expect(answered["second"]["ip"] == ips.get("bosh-shared"), f"create_vm {vm_id}: dynamic IP")
            rules = self._rules_with(vm_id)
            self._expect(sorted(rules) == sorted(lb["name"] for lb in lbs), f"create_vm {vm_id}: in rules "
                         f"{sorted(rules)}, not {[lb['name'] for lb in lbs]}")
            if "web" in rules:
                with self.sim.state.lock:
                    opened = [f for f in self.sim.state.fwrules.values() if f["startport"] == 80]
                self._expect(len(opened) == 1, f"create_vm {vm_id}: {len(opened)} firewall rules for port 80")

            if self.full:  # the short plan (make test) has the stemcell and VM calls only
                metadata = {"director": "soak", "deployment": "soak", "job": "db", "index": "0", "id": agent,
                            "name": f"db/{agent}", "created_at": "2026-12-01T00:00:00Z"}
                self.call("set_vm_metadata", vm_id, metadata)
                self._expect(self._tags("UserVm", vm_id).get("deployment") == "soak", f"set_vm_metadata {vm_id}")
                self.call("reboot_vm", vm_id)
                self._expect((self._state("vms", vm_id) or {}).get("state") == "Running", f"reboot_vm {vm_id}")

                disk_id = self.call("create_disk", 2048, {}, vm_id)
                known["disks"].add(disk_id)
                self._expect(self._state("volumes", disk_id) is not None, f"create_disk {disk_id}: no such volume")
                self.call("attach_disk", vm_id, disk_id)
                attached = True
                self._expect((self._state("volumes", disk_id) or {}).get("virtualmachineid") == vm_id,
                             f"attach_disk {disk_id}: not attached to {vm_id}")
                self.call("set_disk_metadata", disk_id, {"director": "soak", "deployment": "soak",
                                                         "instance_group": "db", "instance_index": "0"})
                self._expect(self._tags("Volume", disk_id).get("instance_group") == "db",
                             f"set_disk_metadata {disk_id}")

                snapshot_id = self.call("snapshot_disk", disk_id, {"deployment": "soak", "job": "db", "index": number,
                                                                   "director_uuid": DIRECTOR_UUID})
                known["snapshots"].add(snapshot_id)
                self._expect(self._state("snapshots", snapshot_id) is not None, f"snapshot_disk {snapshot_id}: none")
                self.call("delete_snapshot", snapshot_id)
                known["snapshots"].discard(snapshot_id)
                snapshot_id = None

                self.call("detach_disk", vm_id, disk_id)
                attached = False
                self.call("resize_disk", disk_id, 3072)
                size = (self._state("volumes", disk_id) or {}).get("size")
                self._expect(size == 3 << 30, f"resize_disk {disk_id} to 3 GiB: the volume has {size} bytes")
                self.call("update_disk", disk_id, 4096, {})
                size = (self._state("volumes", disk_id) or {}).get("size")
                self._expect(size == 4 << 30, f"update_disk {disk_id} to 4 GiB: the volume has {size} bytes")
                self.call("delete_disk", disk_id)
                known["disks"].discard(disk_id)
                disk_id = None
            self.call("delete_vm", vm_id)
            known["vms"].discard(vm_id)
            self._expect(not self._rules_with(vm_id), f"delete_vm {vm_id}: still in load balancer rules")
            vm_id = None
            self.call("delete_stemcell", stemcell)
            known["stemcells"].discard(stemcell)
            stemcell = None
            with self.soak._lock:
                self.soak.stats.iterations += 1
        except GaveUp:
            pass  # counted in stats.gave_up; what the director knows is cleaned up below, as an operator would
        finally:
            if snapshot_id:
                self._clean_up(known["snapshots"], snapshot_id, "delete_snapshot", snapshot_id)
            if disk_id and attached and vm_id:
                self._clean_up(set(), disk_id, "detach_disk", vm_id, disk_id)
            if disk_id:
                self._clean_up(known["disks"], disk_id, "delete_disk", disk_id)
            if vm_id:
                self._clean_up(known["vms"], vm_id, "delete_vm", vm_id)
            if stemcell:
                self._clean_up(known["stemcells"], stemcell, "delete_stemcell", stemcell)

    def _clean_up(self, known: set[str], cid: str, method: str, *arguments) -> None:
        """What the director knows after a step gave up: deleted by the operator's clean-up (bosh cck, delete)."""
        with contextlib.suppress(GaveUp):
            self.call(method, *arguments)
            known.discard(cid)


@contextlib.contextmanager
def open_soak(root: Path, *, seed: int = 1, workers: int = 1, faults: dict | None = None, kill_rate: float = 0.1,
              kills: tuple[str, ...] = (), bin_cpi: Path = BIN_CPI, scripted: tuple[str, ...] = ()) -> Iterator[Soak]:
    """A simulator (instant jobs, the advanced scenario) prepared for the soak, faults on once it is set up;
    ``bin_cpi``: the CPI executable to soak (another checkout's, a release's), this checkout's by default."""
    from cloudstack_simulator import FaultConfig, Simulator

    faults = DEFAULT_FAULTS if faults is None else faults
    with Simulator(scenario="advanced", seed=seed, device_dir=root / "devices", faults=FaultConfig()) as sim:
        soak = Soak(sim, root, workers=workers, seed=seed, kill_rate=kill_rate, kills=kills, bin_cpi=bin_cpi,
                    scripted=scripted)
        try:
            soak.faults = dict(faults)
            sim.set_faults(FaultConfig(**faults))
            yield soak
        finally:
            soak.tap.close()
