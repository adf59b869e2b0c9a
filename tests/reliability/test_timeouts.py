"""Jobs that outlast their configured bound (``cloudstack.timeout.*``) become clear, retryable errors that name
the job and what the CPI was doing, after removing what can be removed.  Simulated jobs take 1.5 s; the
configured timeouts are 0.3 s.  Calls run in-process through ``rpc.handle``.
"""

from __future__ import annotations

import io
import re
import time

import pytest

from cloudstack_cpi import rpc
from cloudstack_cpi.log import Logger
from cloudstack_simulator import Simulator

from .harness import error_problems, request, write_config

JOB_SECONDS = 1.5
TIMEOUT = 0.3


@pytest.fixture
def sim():
    with Simulator(scenario="advanced") as simulator:
        yield simulator


def call(config, method, *arguments) -> tuple[dict, str]:
    stream = io.StringIO()
    response = rpc.handle(request(method, *arguments), str(config), Logger(stream=stream))
    return response, stream.getvalue()


def settle(sim) -> None:
    """Wait until every job the simulator accepted has finished."""
    deadline = time.monotonic() + 10
    while sim.state.jobs.has_pending() and time.monotonic() < deadline:
        time.sleep(0.05)


def stemcell(sim) -> str:
    with sim.state.lock:
        return next(t["id"] for t in sim.state.templates.values() if t["name"] == "bosh-stemcell-existing")


NETWORKS = {"private": {"type": "manual", "ip": "10.1.0.70", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.1"], "default": ["dns", "gateway"],
                        "cloud_properties": {"name": "bosh-isolated"}}}
JOB_ID = re.compile(r"job [0-9a-f-]{36} timed out")


def test_create_vm_deploy_timeout_is_retryable_and_leaves_no_vm(sim, tmp_path):
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                          timeout={"create_vm": TIMEOUT})
    sim.set_job_seconds(JOB_SECONDS)
    started = time.monotonic()
    response, log = call(config, "create_vm", "agent-t", stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    error = response["error"]
    assert error["type"] == "Bosh::Clouds::VMCreationFailed" and error["ok_to_retry"] is True
    assert error_problems("create_vm", error) == []
    assert "deployVirtualMachine" in error["message"] and JOB_ID.search(error["message"])
    assert f"did not finish within {TIMEOUT:g}s" in error["message"]
    assert "Cleaned up VM" in log  # the deploy's VM is destroyed (that wait is bounded by timeout.delete_vm)
    assert time.monotonic() - started < 4 * JOB_SECONDS
    settle(sim)
    assert sim.inventory()["virtualmachines"] == [] and sim.inventory()["volumes"] == []
    sim.set_job_seconds(0)
    retry, _ = call(config, "create_vm", "agent-t", stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    assert retry["error"] is None  # the manual IP is free again


def test_create_disk_timeout_leaves_no_volume(sim, tmp_path):
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                          timeout={"create_volume": TIMEOUT})
    sim.set_job_seconds(JOB_SECONDS)
    response, log = call(config, "create_disk", 2048, {}, None)
    error = response["error"]
    assert error["type"] == "Bosh::Clouds::CloudError" and error["ok_to_retry"] is True
    assert error_problems("create_disk", error) == []
    assert "createVolume" in error["message"] and JOB_ID.search(error["message"])
    settle(sim)
    assert sim.inventory()["volumes"] == []


def test_delete_vm_timeout_then_the_repeat_succeeds(sim, tmp_path):
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                          timeout={"delete_vm": TIMEOUT})
    created, _ = call(config, "create_vm", "agent-d", stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    vm_id = created["result"][0]
    sim.set_job_seconds(JOB_SECONDS)
    response, _ = call(config, "delete_vm", vm_id)
    error = response["error"]
    assert error["type"] == "Bosh::Clouds::CloudError" and error["ok_to_retry"] is True
    assert error_problems("delete_vm", error) == []
    assert "destroyVirtualMachine" in error["message"] and JOB_ID.search(error["message"])
    settle(sim)
    again, _ = call(config, "delete_vm", vm_id)  # the director re-runs the failed delete
    assert again["error"] is None
    assert sim.inventory()["virtualmachines"] == []


def test_every_wait_has_a_configured_bound():
    from cloudstack_cpi.config import Timeouts

    bounds = Timeouts().model_dump()
    assert bounds and all(isinstance(value, float | int) and value > 0 for value in bounds.values())
    assert {"create_vm", "delete_vm", "create_volume", "attach_volume", "detach_volume", "snapshot_volume",
            "delete_snapshot_volume", "delete_volume", "global_", "http_read"} <= set(bounds)
