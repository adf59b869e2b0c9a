"""The lifecycle check: every CPI method through bin/cpi, in the order the official CPIs' lifecycle specs use.

It certifies a CloudStack cloud for BOSH (or shows the CPI working against the
embedded simulator), prints each step with its timing, and removes everything
it created, also when a step fails or the operator presses Ctrl-C or sends SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
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


class Interrupted(Exception):
    """The operator stopped the run (SIGINT or SIGTERM); what it created is still removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Step:
    name: str
    outcome: CallOutcome | None
    ok: bool
    detail: str


class Lifecycle:
    def __init__(self, runner: CpiRunner, target: Target, *, out: TextIO = sys.stdout, err: TextIO | None = None,
                 show_calls: bool = False, show_log: bool = True, tty: bool | None = None) -> None:
        self.runner = runner
        self.target = target
        self.out = out
        self.err = sys.stderr if err is None else err  # CPI log lines and notes; the step table stays alone on `out`
        self.show_calls = show_calls
        self.show_log = show_log
        self.tty = out.isatty() if tty is None else tty
        self.steps: list[Step] = []
        self.created: dict[str, str] = {}  # kind -> cid, removed in reverse order on the way out
        self.interrupted: int | None = None  # the signal that stopped the run
        self.stopped_mid_call: str | None = None  # a call stopped before it answered: its CIDs are unknown
        self._signal: int | None = None      # the first signal received, acted on before the next step
        self._cleaning = False
        self._running = ""
        if self.tty or show_log:
            runner.on_log_line = self._on_log_line

    # -- the scenario -------------------------------------------------------

    def run(self) -> bool:
        self._header()
        with self._deferred_signals():
            try:
                self._scenario()
            except LifecycleFailed:
                pass
            except (Interrupted, KeyboardInterrupt) as exc:
                self.interrupted = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
                self._line(f"interrupted by {signal.Signals(self.interrupted).name}: cleaning up")
            finally:
                self._cleanup()
                self._summary()
        return self.passed

    @property
    def exit_status(self) -> int:
        """0 passed, 1 failed, 128 + the signal's number when interrupted (130 SIGINT, 143 SIGTERM)."""
        if self.interrupted is not None:
            return 128 + self.interrupted
        return 0 if self.passed else 1

    @contextlib.contextmanager
    def _deferred_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the run between steps, never inside one or inside the cleanup.

        Without a handler, SIGTERM ends the process on the spot and SIGINT raises wherever the code is,
        e.g. after a create call made its resource but before its CID was recorded.
        """
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may set handlers; a KeyboardInterrupt is still handled
            return
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only a flag and a deadline: the run stops before its next step (_stop_if_signalled).
        name, step = signal.Signals(signum).name, self._running or "the current step"
        if self._cleaning:
            note = f"{name}: still removing what the run created (SIGKILL stops at once and leaves it)"
        elif self._signal is None:
            self._signal = signum
            self.runner.interrupt()
            note = (f"{name}: letting {step} finish (at most {self.runner.grace:.0f}s) so what it makes can be "
                    f"removed, then cleaning up; send {name} again to stop {step} at once "
                    "(what it half-made may remain)")
        else:
            self.runner.interrupt(now=True)
            note = f"{name}: stopping {step} now"
        self._note_from_handler(note)

    def _note_from_handler(self, note: str) -> None:
        # Straight to the descriptor: the handler may have interrupted the main thread inside a write to
        # `err`, and a buffered write from here would re-enter it (RuntimeError).
        try:
            os.write(self.err.fileno(), (note + "\n").encode())
        except (AttributeError, OSError, ValueError):  # no descriptor (a StringIO)
            self._note(note)

    def _stop_if_signalled(self) -> None:
        if self._signal is not None:
            raise Interrupted(self._signal)

    def _scenario(self) -> None:
        t = self.target
        self.expect("info", check=lambda r: isinstance(r, dict) and r.get("api_version", 0) >= 2)
        # The CPI makes templates in cloudstack.stemcell.zones (else default_zone): --zone must be among them.
        zone_context = self._stemcell_zone_context() if t.availability_zone else None
        if t.light_template:
            stemcell = self.expect("create_stemcell", "/dev/null", {
                "name": "light-stemcell", "version": "0", "template_name": t.light_template},
                context=zone_context)
        else:
            stemcell = self.expect("create_stemcell", t.stemcell_image, t.stemcell_properties, context=zone_context)
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

    def _stemcell_zone_context(self) -> dict[str, Any]:
        """Context overrides putting the stemcell in the VM's zone only.

        A context key replaces the config file's key whole, so the file's other stemcell settings
        (upload strategy, OS type, ...) are carried over.
        """
        try:
            with open(self.runner.config_path, encoding="utf-8") as handle:
                stemcell = json.load(handle)["cloudstack"].get("stemcell") or {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            stemcell = {}  # the CPI itself reports an unreadable config, with a better message
        return {"stemcell": {**stemcell, "zones": [self.target.availability_zone]}}

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

    def expect(self, method: str, *arguments: Any, check: Callable[[Any], bool] | None = None,
               context: dict[str, Any] | None = None) -> Any:
        self._stop_if_signalled()
        self._running = method
        if self.tty:
            self.out.write(f"  … {method:<24} running\r")
            self.out.flush()
        elif self.show_log:
            self._note(f"… {method}")
        outcome = self.runner.call(method, *arguments, context=context)
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
        if outcome.stopped:
            self.stopped_mid_call = method
        if not ok:
            self._stop_if_signalled()  # a call the operator stopped is an interruption, not a cloud failure
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
        self._cleaning = True
        self.runner.stop_deadline = None  # a signal that came between two calls must not cut the cleanup short
        pending = [(kind, make) for kind, make in cleanups if kind in self.created]
        if not pending:
            return
        self._line("cleaning up what the run created:")
        for kind, make in pending:
            method, *arguments = make(self.created[kind])
            outcome = self.runner.call(method, *arguments)
            error = outcome.error
            ok = error is None
            self._step_line(f"{method} (cleanup)", ok, outcome.seconds,
                            "removed" if error is None else f"{error['type']}: {error['message']}")
            if ok:
                del self.created[kind]

    def _on_log_line(self, line: str) -> None:
        """Each CPI log line as it comes (on `err`); on a terminal, progress lines become a bar on the step's line."""
        bar = progress_bar(line) if self.tty else None
        if bar:
            self.out.write(f"\r\033[K  … {self._running:<24} {bar}")
            self.out.flush()
        elif self.show_log:
            if self.tty:
                self.out.write("\r\033[K")  # the line goes above the step's status line, which is redrawn
                self.out.flush()
            self._note(f"    {line}")
            if self.tty:
                self.out.write(f"  … {self._running:<24} running\r")
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
        if self.interrupted is not None:
            verdict = f"INTERRUPTED by {signal.Signals(self.interrupted).name}"
        else:
            verdict = "PASSED" if self.passed else "FAILED"
        line = f"lifecycle {verdict}: {len(self.steps)} calls, {len(failed)} failed, {total:.2f}s in the CPI"
        if self.interrupted is not None and not leftover and not self.stopped_mid_call:
            line += "; everything it created was cleaned up"
        self._line(line)
        if leftover:
            self._line(f"left behind (remove by hand): {leftover}")
        if self.stopped_mid_call:
            self._line(f"{self.stopped_mid_call} was stopped before it answered: what it had made may remain "
                       "(look for it in the cloud)")

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps) and not self.created and self.interrupted is None


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
