"""Which CloudStack failures make a BOSH error retryable (``ok_to_retry``): server-side ones, not 4xx."""

from __future__ import annotations

import pytest

from cloudstack_cpi.cloudstack.errors import CloudStackError


@pytest.mark.parametrize("status, code", [(500, 530), (500, 500), (503, 503), (502, None), (504, None), (429, 429),
                                          (530, 530)])
def test_server_side_failures_are_transient(status, code):
    err = CloudStackError("deleteVolume", "Service unavailable, please retry later", http_status=status, errorcode=code)
    assert err.is_transient


@pytest.mark.parametrize("status, code", [(431, 431), (401, 401), (432, 432), (437, 437)])
def test_answers_about_the_request_are_not(status, code):
    assert not CloudStackError("deployVirtualMachine", "bad parameter", http_status=status, errorcode=code).is_transient


def test_job_failures_lost_answers_and_timeouts():
    assert CloudStackError("attachVolume", "Internal error", kind="job", errorcode=530).is_transient
    assert not CloudStackError("attachVolume", "volume is attached", kind="job", errorcode=431).is_transient
    assert CloudStackError("createVolume", "no answer", kind="transport", outcome_unknown=True).is_transient
    assert CloudStackError("createVolume", "slow", kind="timeout", jobid="j").is_transient
    assert not CloudStackError("listZones", "certificate verify failed", kind="tls").is_transient
