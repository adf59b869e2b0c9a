import io

from cloudstack_cpi import cleanup
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.errors import CloudError
from cloudstack_cpi.log import Logger


class Ctx:
    def __init__(self):
        self.stream = io.StringIO()
        self.log = Logger(stream=self.stream)
        self.sleeps = []
        self.client = self

    def sleep(self, seconds):
        self.sleeps.append(seconds)


def _failing(times, err):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= times:
            raise err
    return action, calls


def test_transient_failures_are_retried_with_growing_pauses():
    ctx = Ctx()
    action, calls = _failing(2, CloudStackError("deleteVolume", "busy", http_status=503, errorcode=503))
    assert cleanup.remove(ctx, "volume v", action) is True
    assert len(calls) == 3 and ctx.sleeps == [0.5, 1.0]
    assert "Cleaned up volume v" in ctx.stream.getvalue()


def test_a_lost_answer_counts_once_the_resource_is_gone():
    ctx = Ctx()
    action, calls = _failing(9, CloudStackError("deleteVolume", "no answer", kind="transport", outcome_unknown=True))
    assert cleanup.remove(ctx, "volume v", action, gone=lambda: True) is True
    assert len(calls) == 1 and ctx.sleeps == []


def test_definite_failures_are_reported_not_raised():
    ctx = Ctx()
    action, calls = _failing(9, CloudError("refused"))
    assert cleanup.remove(ctx, "VM x", action) is False
    assert len(calls) == 1
    assert "Could not clean up VM x" in ctx.stream.getvalue()


def test_gives_up_after_the_attempts():
    ctx = Ctx()
    action, calls = _failing(99, CloudStackError("deleteSnapshot", "busy", http_status=500))
    assert cleanup.remove(ctx, "snapshot s", action, gone=lambda: False, attempts=3) is False
    assert len(calls) == 3
