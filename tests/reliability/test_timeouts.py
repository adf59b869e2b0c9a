"""Jobs that outlast their configured bound (``cloudstack.timeout.*``) become clear, retryable errors that name
the job and what the CPI was doing, after removing what can be removed.  Simulated jobs take 1.5 s; the
configured timeouts are 0.3 s.  Calls run in-process through ``rpc.handle``.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cloudstack_cpi import rpc
from cloudstack_cpi.log import Logger
from cloudstack_simulator import Simulator
from tests.conftest import bare_env, existing_stemcell, request as conftest_request, run_cpi

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



NETWORKS = {"private": {"type": "manual", "ip": "10.1.0.70", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.1"], "default": ["dns", "gateway"],
                        "cloud_properties": {"name": "bosh-isolated"}}}
JOB_ID = re.compile(r"job [0-9a-f-]{36} timed out")


def test_create_vm_deploy_timeout_is_retryable_and_leaves_no_vm(sim, tmp_path):
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                          timeout={"create_vm": TIMEOUT})
    sim.set_job_seconds(JOB_SECONDS)
    started = time.monotonic()
    response, log = call(config, "create_vm", "agent-t", existing_stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    error = response["error"]
    assert error["type"] == "Bosh::Clouds::VMCreationFailed" and error["ok_to_retry"] is True
    assert error_problems("create_vm", error) == []
    assert "deployVirtualMachine" in error["message"] and JOB_ID.search(error["message"])
    assert f"did not finish within {TIMEOUT:g}s" in error["message"]
    assert "Cleaned up VM" in log  # the deploy's VM is destroyed (that wait is bounded by timeout.delete_vm)
    # The deploy, and the destroy that waits for it: bounded, with room for a loaded machine (the error above
    # already proves the 0.3 s timeout fired: a 1.5 s deploy would otherwise have succeeded).
    assert time.monotonic() - started < 10 * JOB_SECONDS
    settle(sim)
    assert sim.inventory()["virtualmachines"] == [] and sim.inventory()["volumes"] == []
    sim.set_job_seconds(0)
    retry, _ = call(config, "create_vm", "agent-t", existing_stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    assert retry["error"] is None  # the manual IP is free again


def test_create_disk_timeout_leaves_no_volume(sim, tmp_path):
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                          timeout={"create_volume": TIMEOUT})
    sim.set_job_seconds(JOB_SECONDS)
    response, log = call(config, "create_disk", 2048, {}, None)
    error = response["error"]
    # CloudError: the director ignores ok_to_retry (external_cpi.rb), so it is false and the log says transient.
    assert error["type"] == "Bosh::Clouds::CloudError" and error["ok_to_retry"] is False
    assert "looks transient" in log
    assert error_problems("create_disk", error) == []
    assert "createVolume" in error["message"] and JOB_ID.search(error["message"])
    settle(sim)
    assert sim.inventory()["volumes"] == []


def test_delete_vm_timeout_then_the_repeat_succeeds(sim, tmp_path):
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                          timeout={"delete_vm": TIMEOUT})
    created, _ = call(config, "create_vm", "agent-d", existing_stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    vm_id = created["result"][0]
    sim.set_job_seconds(JOB_SECONDS)
    response, log = call(config, "delete_vm", vm_id)
    error = response["error"]
    assert error["type"] == "Bosh::Clouds::CloudError" and error["ok_to_retry"] is False
    assert "looks transient" in log
    assert error_problems("delete_vm", error) == []
    assert "destroyVirtualMachine" in error["message"] and JOB_ID.search(error["message"])
    settle(sim)
    again, _ = call(config, "delete_vm", vm_id)  # the director re-runs the failed delete
    assert again["error"] is None
    assert sim.inventory()["virtualmachines"] == []


def test_every_wait_has_a_configured_bound():
    from cloudstack_cpi.config import Timeouts
    from cloudstack_cpi.schema import parse

    bounds = parse(Timeouts, {}).as_dict()
    assert bounds and all(isinstance(value, float | int) and value > 0 for value in bounds.values())
    assert {"create_vm", "delete_vm", "create_volume", "attach_volume", "detach_volume", "snapshot_volume",
            "delete_snapshot_volume", "delete_volume", "global_", "http_read"} <= set(bounds)


# -- the call's API deadline: an endpoint that accepts connections and never answers ----------------------------
#
# Before the deadline, has_vm against such an endpoint answered after 6 tries x http_read (729 s with the default
# 120 s) and validate printed nothing for the first http_read seconds.  With http_connect 0.5 s and http_read 1 s the
# default deadline is 2 x (0.5 + 1) = 3 s. What is asserted does not depend on the machine's speed (a shared,
# loaded machine stretches wall time unevenly): the number of connections the call makes (6 per call before, at
# most 4 within the deadline), the deadline named in the error, and a generous wall-time bound against hangs.
HANG = 40.0

CONNECT, READ = 0.5, 1.0
DEADLINE = 2 * (CONNECT + READ)
CONSOLE_SCRIPT = Path(sys.executable).parent / "cloudstack-cpi"


class SilentEndpoint:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/client/api"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(connection)  # kept open, never answered

    def __enter__(self) -> SilentEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()

    @property
    def connections(self) -> int:
        return len(self._held)


@pytest.fixture
def silent():
    with SilentEndpoint() as endpoint:
        yield endpoint


def test_has_vm_against_a_silent_endpoint_answers_within_the_deadline(silent, tmp_path):
    config = write_config(tmp_path / "cpi.json", silent.endpoint, "key", "secret-value-0123",
                          timeout={"http_connect": CONNECT, "http_read": READ})
    started = time.monotonic()
    result = run_cpi(conftest_request("has_vm", "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"), config, tmp=tmp_path,
                     timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < HANG, f"has_vm took {elapsed:.1f} s"
    error = result.error
    assert error is not None and error_problems("has_vm", error) == []  # a retryable CloudError, one line
    assert f"API deadline of {DEADLINE:g} s was reached" in error["message"]
    assert "listVirtualMachines" in error["message"] and silent.endpoint in error["message"]
    assert 1 <= silent.connections <= 4  # within the deadline (6 tries before); retry logic: tests/unit/cloudstack/test_client.py


def test_validate_against_a_silent_endpoint_says_what_it_waits_for_and_ends(silent, tmp_path):
    config = write_config(tmp_path / "cpi.json", silent.endpoint, "key", "secret-value-0123",
                          timeout={"http_connect": CONNECT, "http_read": READ})
    started = time.monotonic()
    process = subprocess.Popen([str(CONSOLE_SCRIPT), "validate", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=bare_env(tmp_path))
    first_line = process.stderr.readline()      # arrives before the wait, not after it
    first_seen = time.monotonic() - started
    stdout, _ = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert first_line.strip() == f"Connecting to {silent.endpoint} (up to {DEADLINE:g} s) ..."
    assert first_seen < elapsed - READ / 2, "the progress line came only at the end"
    assert elapsed < HANG, f"validate took {elapsed:.1f} s"
    assert 1 <= silent.connections <= 8  # two attempts, each within the deadline (12 connections before)
    assert process.returncode == 1
    # validate tries twice; whichever ends first, its tries or the deadline, the report names the endpoint.
    assert "FAIL  endpoint: " in stdout and silent.endpoint in stdout
    assert "fix: Check cloudstack.endpoint" in stdout


def test_a_job_longer_than_the_api_deadline_still_completes(sim, tmp_path):
    """The deadline bounds API requests and retries; a job wait is bounded by its own timeout."""
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                          timeout={"http_connect": CONNECT, "http_read": READ, "reboot_vm": 30})
    created, _ = call(config, "create_vm", "agent-r", existing_stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    vm_id = created["result"][0]
    sim.set_job_seconds(DEADLINE + 1)
    started = time.monotonic()
    response, log = call(config, "reboot_vm", vm_id)
    assert response["error"] is None, f"{response['error']}\n{log}"
    assert time.monotonic() - started > DEADLINE  # it did outlast the API deadline
