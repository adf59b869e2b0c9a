"""bin/cpi stopped by SIGTERM or SIGINT in the middle of a call: what the call created is removed, and the call
still answers one JSON document (before, SIGTERM ended the process with no answer and left the VM it was
deploying; SIGINT answered but left the VM and its volume).

The director and bosh-cli run the CPI as a child process; both may end it with a signal (a cancelled task, a
Ctrl-C in create-env). Jobs take 1 s in the simulator, so the signal lands while the CPI waits for one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import BIN_CPI, bare_env, existing_stemcell, request, write_config

NETWORKS = {"default": {"type": "dynamic", "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}}


@pytest.fixture
def slow_simulator():
    from cloudstack_simulator import Simulator

    with Simulator(scenario="advanced", job_seconds=1.0) as sim:
        yield sim



def _signal_during(sim, tmp_path, payload: dict, command: str, signum: int) -> tuple[dict, str]:
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key)
    process = subprocess.Popen([str(BIN_CPI), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=bare_env(tmp_path))
    process.stdin.write(json.dumps(payload).encode())
    process.stdin.close()
    process.stdin = None  # communicate() below must not touch it again
    deadline = time.monotonic() + 60
    while not any(name == command.lower() for name, _ in sim.request_log):
        assert process.poll() is None and time.monotonic() < deadline, "the call ended before the moment came"
        time.sleep(0.01)
    time.sleep(0.2)  # inside the wait for the job
    os.kill(process.pid, signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0
    return json.loads(stdout), stderr.decode()


def _settled_inventory(sim) -> dict:
    deadline = time.monotonic() + 10
    while sim.state.jobs.has_pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sim.inventory()


# SIGINT once the deploy made its VM and data disk (create_vm lists the disk to tag it), during the deploy's job.
@pytest.mark.parametrize("signum, command", [(signal.SIGTERM, "deployVirtualMachine"),
                                             (signal.SIGINT, "createTags")], ids=["SIGTERM-deploy", "SIGINT-tags"])
def test_create_vm_stopped_by_a_signal_answers_and_leaves_nothing(slow_simulator, tmp_path, signum, command):
    payload = request("create_vm", "agent-sig", existing_stemcell(slow_simulator),
                      {"compute_offering": "small", "disk": 1024}, NETWORKS, [], {})
    response, stderr = _signal_during(slow_simulator, tmp_path, payload, command, signum)
    name = signal.Signals(signum).name
    assert response["result"] is None and f"create_vm interrupted by {name}" in response["error"]["message"]
    assert f"{name}: stopping this call" in stderr and "Traceback" not in stderr
    inventory = _settled_inventory(slow_simulator)
    assert (inventory["virtualmachines"], inventory["volumes"]) == ([], [])


@pytest.mark.parametrize("method, arguments, command, kind", [
    ("create_disk", (1024, {}, None), "createVolume", "volumes"),
])
def test_create_disk_stopped_by_sigterm_leaves_no_volume(slow_simulator, tmp_path, method, arguments, command, kind):
    response, _ = _signal_during(slow_simulator, tmp_path, request(method, *arguments), command, signal.SIGTERM)
    assert response["error"] is not None and "interrupted by SIGTERM" in response["error"]["message"]
    assert _settled_inventory(slow_simulator)[kind] == []
