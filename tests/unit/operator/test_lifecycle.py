"""The lifecycle check's own logic: order, verdict, and cleanup after a failure, Ctrl-C or SIGTERM."""

import io
import json
import os
import signal
import threading

import pytest

from cloudstack_cpi.operator.lifecycle import Lifecycle, Target
from cloudstack_cpi.operator.runner import CallOutcome

RESULTS = {
    "info": {"api_version": 2, "stemcell_formats": []}, "create_stemcell": "stemcell-1",
    "create_vm": ["vm-1", {}], "has_vm": True, "create_disk": "disk-1", "has_disk": True,
    "attach_disk": {"path": "/dev/sdb"}, "get_disks": ["disk-1"], "snapshot_disk": "snap-1",
}


class FakeRunner:
    on_log_line = None
    config_path = "/nonexistent/cpi.json"
    grace = 300.0
    stop_deadline = None

    def __init__(self, fail_at=None, interrupt_at=None, signal_at=None):
        self.calls = []
        self.contexts = {}
        self.fail_at, self.interrupt_at, self.signal_at = fail_at, interrupt_at, signal_at
        self.deleted = set()
        self.interrupts = []

    def interrupt(self, *, now=False):
        self.interrupts.append(now)

    def call(self, method, *arguments, context=None):
        self.calls.append((method, arguments))
        self.contexts[method] = context
        if method == self.interrupt_at:
            raise KeyboardInterrupt
        if method == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)  # as a supervisor would, while the call runs
        if method == self.fail_at:
            return CallOutcome(method, list(arguments), {"result": None, "log": "", "error": {
                "type": "Bosh::Clouds::CloudError", "message": "boom", "ok_to_retry": False}}, "", 0.01)
        if method.startswith(("delete_", "detach_")):
            self.deleted.add(arguments[-1])
        result = RESULTS.get(method)
        if method in ("has_vm", "has_disk") and arguments[0] in self.deleted:
            result = False
        return CallOutcome(method, list(arguments), {"result": result, "error": None, "log": ""}, "", 0.01)


def _target():
    return Target(compute_offering="small", network="net", stemcell_image="/tmp/image",
                  stemcell_properties={"hypervisor": "kvm"})


def test_a_clean_run_calls_every_method_in_lifecycle_order():
    runner, out = FakeRunner(), io.StringIO()
    lifecycle = Lifecycle(runner, _target(), out=out, tty=False)
    assert lifecycle.run() is True and lifecycle.passed
    methods = [m for m, _ in runner.calls]
    assert methods[:3] == ["info", "create_stemcell", "create_vm"]
    assert methods[-3:] == ["delete_vm", "has_vm", "delete_stemcell"]
    assert {"attach_disk", "detach_disk", "snapshot_disk", "delete_snapshot", "resize_disk", "reboot_vm",
            "set_vm_metadata", "set_disk_metadata", "get_disks"} <= set(methods)
    assert "lifecycle PASSED" in out.getvalue()


def test_a_failed_step_stops_the_run_and_removes_what_it_created():
    runner, out = FakeRunner(fail_at="snapshot_disk"), io.StringIO()
    assert Lifecycle(runner, _target(), out=out, tty=False).run() is False
    cleanup = [m for m, _ in runner.calls[-4:]]
    assert cleanup == ["detach_disk", "delete_disk", "delete_vm", "delete_stemcell"]
    text = out.getvalue()
    assert "snapshot_disk" in text and "FAIL" in text and "lifecycle FAILED" in text
    assert "left behind" not in text


def test_ctrl_c_still_cleans_up():
    runner, out = FakeRunner(interrupt_at="resize_disk"), io.StringIO()
    lifecycle = Lifecycle(runner, _target(), out=out, err=io.StringIO(), tty=False)
    assert lifecycle.run() is False
    assert [m for m, _ in runner.calls][-3:] == ["delete_disk", "delete_vm", "delete_stemcell"]
    text = out.getvalue()
    assert "interrupted by SIGINT: cleaning up" in text
    assert "lifecycle INTERRUPTED by SIGINT" in text and "cleaned up" in text and "PASSED" not in text
    assert lifecycle.exit_status == 130


def test_sigterm_during_a_step_lets_it_finish_then_removes_what_it_made():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    runner, out, err = FakeRunner(signal_at="create_vm"), io.StringIO(), io.StringIO()
    before = signal.getsignal(signal.SIGTERM)
    lifecycle = Lifecycle(runner, _target(), out=out, err=err, tty=False)
    assert lifecycle.run() is False
    # create_vm's answer was used (its VM deleted), and no step ran after it
    assert [m for m, _ in runner.calls] == ["info", "create_stemcell", "create_vm", "delete_vm", "delete_stemcell"]
    assert runner.calls[3][1] == ("vm-1",)
    assert runner.interrupts == [False]  # the running call may finish, within the runner's grace
    assert "SIGTERM: letting create_vm finish" in err.getvalue()
    assert "lifecycle INTERRUPTED by SIGTERM" in out.getvalue() and lifecycle.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back


def test_a_call_stopped_mid_way_is_reported_as_possibly_left_behind():
    class Stopping(FakeRunner):
        def call(self, method, *arguments, context=None):
            outcome = super().call(method, *arguments, context=context)
            if method == "create_vm":
                outcome = CallOutcome(method, list(arguments), {"result": None, "log": "", "error": {
                    "type": "Bosh::Clouds::CloudError", "message": "Interrupted: KeyboardInterrupt",
                    "ok_to_retry": False}}, "", 0.01, stopped=True)
                lifecycle._signal = signal.SIGINT
            return outcome

    out = io.StringIO()
    lifecycle = Lifecycle(Stopping(), _target(), out=out, err=io.StringIO(), tty=False)
    lifecycle.run()
    text = out.getvalue()
    assert "lifecycle INTERRUPTED by SIGINT" in text and lifecycle.exit_status == 130
    assert "create_vm was stopped before it answered" in text and "cleaned up" not in text


def test_zone_puts_the_stemcell_where_the_vm_goes(tmp_path):
    config = tmp_path / "cpi.json"
    config.write_text(json.dumps({"cloudstack": {"endpoint": "x", "default_zone": "zone-1",
                                                 "stemcell": {"upload_strategy": "url", "zones": ["zone-1"]}}}))
    runner = FakeRunner()
    runner.config_path = str(config)
    target = _target()
    target.availability_zone = "zone-2"
    assert Lifecycle(runner, target, out=io.StringIO(), err=io.StringIO(), tty=False).run() is True
    # a context key replaces the file's whole key: the file's other stemcell settings come along
    assert runner.contexts["create_stemcell"] == {"stemcell": {"upload_strategy": "url", "zones": ["zone-2"]}}
    create_vm = next(arguments for method, arguments in runner.calls if method == "create_vm")
    assert create_vm[2]["availability_zone"] == "zone-2"
    assert runner.contexts["create_vm"] is None


def test_without_zone_the_config_decides():
    runner = FakeRunner()
    Lifecycle(runner, _target(), out=io.StringIO(), err=io.StringIO(), tty=False).run()
    assert runner.contexts["create_stemcell"] is None


def test_progress_lines_become_a_bar_on_a_terminal():
    from cloudstack_cpi.operator.lifecycle import progress_bar

    line = "[cpi-1] 2026-11-23T23:40:00Z INFO create_stemcell: Uploading image: 512.0 MiB of 1.0 GiB (50%), 9 MiB/s"
    assert progress_bar(line) == "[############............]  50% Uploading image: 512.0 MiB of 1.0 GiB"
    assert progress_bar("Created VM 'x'") is None

    class Streaming(FakeRunner):
        def call(self, method, *arguments, context=None):
            if method == "create_stemcell" and self.on_log_line:
                self.on_log_line(line)
            return super().call(method, *arguments, context=context)

    out = io.StringIO()
    Lifecycle(Streaming(), _target(), out=out, err=io.StringIO(), tty=True).run()
    assert "[############............]  50%" in out.getvalue()

    plain, log = io.StringIO(), io.StringIO()
    Lifecycle(Streaming(), _target(), out=plain, err=log, tty=False).run()
    assert "50%" not in plain.getvalue() and "\r" not in plain.getvalue()
    # off a terminal, the log lines go to err as they come, under the step that is running
    assert f"… create_stemcell\n    {line}\n… create_vm" in log.getvalue()


def test_log_lines_can_be_left_out():
    class Streaming(FakeRunner):
        def call(self, method, *arguments, context=None):
            if self.on_log_line:
                self.on_log_line(f"[cpi-1] INFO {method}: working")
            return super().call(method, *arguments, context=context)

    log = io.StringIO()
    Lifecycle(Streaming(), _target(), out=io.StringIO(), err=log, tty=False, show_log=False).run()
    assert log.getvalue() == ""


def test_the_runner_streams_stderr_lines_as_they_come(tmp_path):
    from cloudstack_cpi.operator.runner import CpiRunner

    config = tmp_path / "cpi.json"
    config.write_text('{"cloudstack": {"endpoint": "http://127.0.0.1:9/client/api", "api_key": "k", '
                      '"secret_access_key": "secret-value"}}')
    seen = []
    runner = CpiRunner(str(config), on_log_line=seen.append)
    outcome = runner.call("has_vm", 5)
    assert outcome.error["type"] == "Bosh::Clouds::CpiError"
    assert any("argument 1 (vm_cid)" in line for line in seen)
    assert outcome.stderr.strip().splitlines() == seen
