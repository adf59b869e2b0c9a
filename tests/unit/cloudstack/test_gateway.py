"""The gateway's own rules: discarding what a failed call half-made (retries, lost answers, refusals)."""

from __future__ import annotations

import io
from types import SimpleNamespace

from cloudstack_cpi import cleanup
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import Gateway
from cloudstack_cpi.errors import CloudError
from cloudstack_cpi.log import Logger


def gateway() -> tuple[Gateway, io.StringIO, list[float]]:
    stream, sleeps = io.StringIO(), []
    client = SimpleNamespace(log=Logger(stream=stream), sleep=sleeps.append)
    return Gateway(client, timeouts=SimpleNamespace()), stream, sleeps  # type: ignore[arg-type]


def _failing(times, err):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= times:
            raise err
    return action, calls


def test_transient_failures_are_retried_with_growing_pauses():
    cloud, stream, sleeps = gateway()
    action, calls = _failing(2, CloudStackError("deleteVolume", "busy", http_status=503, errorcode=503))
    assert cloud.discard("volume v", action) is True
    assert len(calls) == 3 and sleeps == [0.5, 1.0]
    assert "Cleaned up volume v" in stream.getvalue()


def test_a_lost_answer_counts_once_the_resource_is_gone():
    cloud, _, sleeps = gateway()
    action, calls = _failing(9, CloudStackError("deleteVolume", "no answer", kind="transport", outcome_unknown=True))
    assert cloud.discard("volume v", action, gone=lambda: True) is True
    assert len(calls) == 1 and sleeps == []


def test_definite_failures_are_reported_not_raised():
    cloud, stream, _ = gateway()
    action, calls = _failing(9, CloudStackError("deleteVolume", "refused", errorcode=431))
    assert cloud.discard("volume v", action) is False
    assert len(calls) == 1
    assert "Could not clean up volume v" in stream.getvalue()


def test_gives_up_after_the_attempts():
    cloud, _, sleeps = gateway()
    action, calls = _failing(99, CloudStackError("deleteSnapshot", "busy", http_status=500))
    assert cloud.discard("snapshot s", action, gone=lambda: False) is False
    assert len(calls) == 4 and len(sleeps) == 3


def test_an_actions_bosh_error_ends_the_tries_of_its_cleanup_step():
    cloud, stream, _ = gateway()
    action, calls = _failing(9, CloudError("refused"))
    assert cleanup.remove(SimpleNamespace(cloud=cloud), "VM x", action) is False  # type: ignore[arg-type]
    assert len(calls) == 1
    assert "Could not clean up VM x (refused)" in stream.getvalue()
