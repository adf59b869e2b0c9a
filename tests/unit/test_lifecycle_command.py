"""The lifecycle check's own logic: order, verdict, and cleanup after a failure or Ctrl-C."""

import io

from cloudstack_cpi.operator.lifecycle import Lifecycle, Target
from cloudstack_cpi.operator.runner import CallOutcome

RESULTS = {
    "info": {"api_version": 2, "stemcell_formats": []}, "create_stemcell": "stemcell-1",
    "create_vm": ["vm-1", {}], "has_vm": True, "create_disk": "disk-1", "has_disk": True,
    "attach_disk": {"path": "/dev/sdb"}, "get_disks": ["disk-1"], "snapshot_disk": "snap-1",
}


class FakeRunner:
    on_log_line = None

    def __init__(self, fail_at=None, interrupt_at=None):
        self.calls = []
        self.fail_at, self.interrupt_at = fail_at, interrupt_at
        self.deleted = set()

    def call(self, method, *arguments):
        self.calls.append((method, arguments))
        if method == self.interrupt_at:
            raise KeyboardInterrupt
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
    assert Lifecycle(runner, _target(), out=out, tty=False).run() is False
    assert [m for m, _ in runner.calls][-3:] == ["delete_disk", "delete_vm", "delete_stemcell"]
    assert "interrupted: cleaning up" in out.getvalue()


def test_progress_lines_become_a_bar_on_a_terminal():
    from cloudstack_cpi.operator.lifecycle import progress_bar

    line = "[cpi-1] 2026-11-23T23:40:00Z INFO create_stemcell: Uploading image: 512.0 MiB of 1.0 GiB (50%), 9 MiB/s"
    assert progress_bar(line) == "[############............]  50% Uploading image: 512.0 MiB of 1.0 GiB"
    assert progress_bar("Created VM 'x'") is None

    class Streaming(FakeRunner):
        def call(self, method, *arguments):
            if method == "create_stemcell" and self.on_log_line:
                self.on_log_line(line)
            return super().call(method, *arguments)

    out = io.StringIO()
    Lifecycle(Streaming(), _target(), out=out, tty=True).run()
    assert "[############............]  50%" in out.getvalue()

    plain = io.StringIO()
    Lifecycle(Streaming(), _target(), out=plain, tty=False).run()
    assert "50%" not in plain.getvalue() and "\r" not in plain.getvalue()


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
