"""The lifecycle check: every CPI method through bin/cpi, in the order the official CPIs' lifecycle specs use.

It certifies a CloudStack cloud for BOSH (or shows the CPI working against the
embedded simulator), prints each step with its timing, and removes everything
it created, also when a step fails or the operator presses Ctrl-C.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .runner import CallOutcome, CpiRunner


@dataclass
class Target:
    """What the lifecycle deploys: names in the target cloud."""

    compute_offering: str
    network: str | None              # CloudStack network for the manual/dynamic network (advanced zones)
    network_type: str = "dynamic"    # "manual" needs ip, netmask, gateway
    ip: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    dns: list[str] = field(default_factory=list)
    availability_zone: str | None = None
    disk_offering: str | None = None
    ephemeral_disk_offering: str | None = None
    ephemeral_disk_mib: int | None = None
    stemcell_image: str | None = None
    stemcell_properties: dict = field(default_factory=dict)
    light_template: str | None = None
    disk_mib: int = 2048
    resized_disk_mib: int = 4096


class LifecycleFailed(Exception):
    pass


@dataclass
class Step:
    name: str
    outcome: CallOutcome | None
    ok: bool
    detail: str


class Lifecycle:
    def __init__(self, runner: CpiRunner, target: Target, *, out: TextIO = sys.stdout,
                 show_calls: bool = False, tty: bool | None = None) -> None:
        self.runner = runner
        self.target = target
        self.out = out
        self.show_calls = show_calls
        self.tty = out.isatty() if tty is None else tty
        self.steps: list[Step] = []
        self.created: dict[str, str] = {}  # kind -> cid, removed in reverse order on the way out
        self._running = ""
        if self.tty:
            runner.on_log_line = self._progress

    # -- the scenario -------------------------------------------------------

    def run(self) -> bool:
        self._header()
        try:
            self._scenario()
            return True
        except LifecycleFailed:
            return False
        except KeyboardInterrupt:
            self._line("interrupted: cleaning up")
            return False
        finally:
            self._cleanup()
            self._summary()

    def _scenario(self) -> None:
        t = self.target
        self.expect("info", check=lambda r: isinstance(r, dict) and r.get("api_version", 0) >= 2)
        if t.light_template:
            stemcell = self.expect("create_stemcell", "/dev/null", {
                "name": "light-stemcell", "version": "0", "template_name": t.light_template})
        else:
            stemcell = self.expect("create_stemcell", t.stemcell_image, t.stemcell_properties)
        self.created["stemcell"] = stemcell

        vm_properties: dict[str, Any] = {"compute_offering": t.compute_offering}
        if t.availability_zone:
            vm_properties["availability_zone"] = t.availability_zone
        if t.ephemeral_disk_mib:
            vm_properties["disk"] = t.ephemeral_disk_mib
            if t.ephemeral_disk_offering:
                vm_properties["ephemeral_disk_offering"] = t.ephemeral_disk_offering
        agent_id = f"agent-{uuid.uuid4()}"
        created = self.expect("create_vm", agent_id, stemcell, vm_properties, self._networks(), [],
                              {"bosh": {"group": "lifecycle", "groups": ["lifecycle"]}},
                              check=lambda r: isinstance(r, list) and isinstance(r[0], str))
        vm = created[0]
        self.created["vm"] = vm
        self.expect("has_vm", vm, check=lambda r: r is True)
        self.expect("set_vm_metadata", vm, {"director": "lifecycle", "deployment": "cpi-lifecycle",
                                             "job": "lifecycle", "index": "0", "name": "lifecycle/0"})
        disk_properties = {"disk_offering": t.disk_offering} if t.disk_offering else {}
        disk = self.expect("create_disk", t.disk_mib, disk_properties, vm, check=lambda r: isinstance(r, str))
        self.created["disk"] = disk
        self.expect("has_disk", disk, check=lambda r: r is True)
        self.expect("attach_disk", vm, disk, check=lambda r: bool(r))
        self.created["attachment"] = f"{vm}:{disk}"
        self.expect("set_disk_metadata", disk, {"director": "lifecycle", "deployment": "cpi-lifecycle",
                                                 "instance_group": "lifecycle", "instance_index": "0"})
        self.expect("get_disks", vm, check=lambda r: r == [disk])
        snapshot = self.expect("snapshot_disk", disk, {"deployment": "cpi-lifecycle", "job": "lifecycle",
                                                        "index": 0, "director_name": "lifecycle"},
                               check=lambda r: isinstance(r, str))
        self.created["snapshot"] = snapshot
        self.expect("delete_snapshot", snapshot)
        del self.created["snapshot"]
        self.expect("detach_disk", vm, disk)
        del self.created["attachment"]
        self.expect("resize_disk", disk, t.resized_disk_mib)
        self.expect("reboot_vm", vm)
        self.expect("delete_disk", disk)
        del self.created["disk"]
        self.expect("has_disk", disk, check=lambda r: r is False)
        self.expect("delete_vm", vm)
        del self.created["vm"]
        self.expect("has_vm", vm, check=lambda r: r is False)
        self.expect("delete_stemcell", stemcell)
        del self.created["stemcell"]

    def _networks(self) -> dict:
        t = self.target
        network: dict[str, Any] = {"type": t.network_type, "default": ["dns", "gateway"],
                                   "cloud_properties": {"name": t.network} if t.network else {}}
        if t.network_type == "manual":
            network.update(ip=t.ip, netmask=t.netmask, gateway=t.gateway)
        if t.dns:
            network["dns"] = t.dns
        return {"default": network}

    # -- calls and output -----------------------------------------------------

    def expect(self, method: str, *arguments: Any, check: Callable[[Any], bool] | None = None) -> Any:
        self._running = method
        if self.tty:
            self.out.write(f"  … {method:<24} running\r")
            self.out.flush()
        outcome = self.runner.call(method, *arguments)
        if self.tty:
            self.out.write("\r\033[K")
        ok = outcome.error is None and (check is None or check(outcome.result))
        if outcome.error:
            detail = f"{outcome.error['type']}: {outcome.error['message']}"
        elif not ok:
            detail = f"unexpected result {outcome.result!r}"
        else:
            detail = _describe(outcome.result)
        self.steps.append(Step(method, outcome, ok, detail))
        self._step_line(method, ok, outcome.seconds, detail)
        if self.show_calls:
            self._show(outcome)
        if not ok:
            raise LifecycleFailed(f"{method}: {detail}")
        return outcome.result

    def _cleanup(self) -> None:
        cleanups = [
            ("snapshot", lambda cid: ("delete_snapshot", cid)),
            ("attachment", lambda pair: ("detach_disk", *pair.split(":"))),
            ("disk", lambda cid: ("delete_disk", cid)),
            ("vm", lambda cid: ("delete_vm", cid)),
            ("stemcell", lambda cid: ("delete_stemcell", cid)),
        ]
        pending = [(kind, make) for kind, make in cleanups if kind in self.created]
        if not pending:
            return
        self._line("cleaning up what the run created:")
        for kind, make in pending:
            method, *arguments = make(self.created[kind])
            outcome = self.runner.call(method, *arguments)
            ok = outcome.error is None
            self._step_line(f"{method} (cleanup)", ok, outcome.seconds,
                            "removed" if ok else f"{outcome.error['type']}: {outcome.error['message']}")
            if ok:
                del self.created[kind]

    def _progress(self, line: str) -> None:
        """On a terminal, a long step's progress lines (uploads, copies) become a bar on the step's line."""
        bar = progress_bar(line)
        if bar:
            self.out.write(f"\r\033[K  … {self._running:<24} {bar}")
            self.out.flush()

    def _header(self) -> None:
        self._line(f"{'step':<28} {'':<4} {'time':>7}  result")

    def _step_line(self, name: str, ok: bool, seconds: float, detail: str) -> None:
        mark = "ok" if ok else "FAIL"
        self._line(f"{name:<28} {mark:<4} {seconds:>6.2f}s  {detail}")

    def _show(self, outcome: CallOutcome) -> None:
        import json

        request = json.dumps({"method": outcome.method, "arguments": outcome.arguments})
        answer = json.dumps(outcome.response)
        self._line(f"    -> {_clip(request)}")
        self._line(f"    <- {_clip(answer)}")

    def _summary(self) -> None:
        failed = [s for s in self.steps if not s.ok]
        total = sum(s.outcome.seconds for s in self.steps if s.outcome)
        leftover = ", ".join(f"{kind} {cid}" for kind, cid in self.created.items())
        verdict = "PASSED" if not failed and not self.created and self.steps else "FAILED"
        self._line(f"lifecycle {verdict}: {len(self.steps)} calls, {len(failed)} failed, {total:.2f}s in the CPI")
        if leftover:
            self._line(f"left behind (remove by hand): {leftover}")

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps) and not self.created


_PERCENT = re.compile(r"\((\d{1,3})%\)")


def progress_bar(log_line: str, width: int = 24) -> str | None:
    """``[######......] 50% Uploading image: 512.0 MiB of 1.0 GiB`` from a CPI progress line, else None."""
    match = _PERCENT.search(log_line)
    if not match:
        return None
    percent = min(100, int(match.group(1)))
    filled = width * percent // 100
    message = log_line.split(": ", 1)[-1] if ": " in log_line else log_line
    message = message.split(" INFO ", 1)[-1]
    label = message.split(" (", 1)[0][-48:]
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent:>3}% {label}"


def _describe(result: Any) -> str:
    if result is None:
        return "done"
    if isinstance(result, list) and result and isinstance(result[0], str):
        return result[0]
    if isinstance(result, dict):
        return ", ".join(f"{k}={v}" for k, v in list(result.items())[:3])
    return str(result)


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
