"""create_vm killed with SIGKILL (issue 16 item 3): the VM it deployed holds its manual IP, and before this fix
every retry of the director failed with the IP "already in use" until someone removed the VM by hand.  The next
create_vm that meets the IP held by such a VM removes it and goes on; a VM that is not provably abandoned stays.

The director runs the CPI as a child process and a director restart, an OOM kill or a node failure ends it
without a signal it can catch (bosh-director's external_cpi.rb: Open3.popen3, no handler survives SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from cloudstack_cpi.actions.vms import abandoned_by_create_vm
from tests.conftest import BIN_CPI, Cpi, bare_env, existing_stemcell, request, write_config

IP = "10.1.0.77"
NETWORKS = {"default": {"type": "manual", "ip": IP, "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.1"], "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}}
CREATE_TIMEOUT = 60  # seconds: the age after which a VM left by create_vm may be removed


def untag(sim, vm_id: str, *, only_the_mark: bool = False) -> None:
    """Take the VM's tags (or only the unconfirmed mark) off in the simulator's state, once the jobs the killed call
    had started (its createTags among them) have ended: one ending later would put them back."""
    deadline = time.monotonic() + 30
    while sim.state.jobs.has_pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    with sim.state.lock:
        sim.state.tags = [t for t in sim.state.tags if not (
            t["resourceid"] == vm_id and (t["key"] == "cpi_unconfirmed" or not only_the_mark))]


def age(sim, vm_id: str) -> None:
    """Make the VM older than the create timeout: what waiting that long would do, without the wait (and without
    the flakiness of a loaded machine making a young VM look old)."""
    with sim.state.lock:
        sim.state.vms[vm_id]["created"] = "2020-01-01T00:00:00+0000"


@pytest.fixture
def sim():
    from cloudstack_simulator import Simulator

    with Simulator(scenario="advanced", job_seconds=0.3) as simulator:
        yield simulator



def _config(sim, tmp_path):
    return write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                        timeout={"create_vm": CREATE_TIMEOUT})


def _kill_after_deploy(sim, tmp_path) -> str:
    """Run create_vm and SIGKILL it once its VM exists: what the director's dead child leaves."""
    payload = request("create_vm", "agent-killed", existing_stemcell(sim), {"compute_offering": "small", "disk": 1024},
                      NETWORKS, [], {})
    process = subprocess.Popen([str(BIN_CPI), str(_config(sim, tmp_path))], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bare_env(tmp_path))
    process.stdin.write(json.dumps(payload).encode())
    process.stdin.close()
    deadline = time.monotonic() + 60
    while not sim.inventory()["virtualmachines"]:
        assert process.poll() is None and time.monotonic() < deadline, "create_vm ended before its VM existed"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    [vm_id] = sim.inventory()["virtualmachines"]
    return vm_id


def test_the_next_create_vm_removes_what_a_killed_one_left_and_takes_the_ip(sim, tmp_path):
    """The rule for a VM killed before its first tags (the unconfirmed mark among them) went on: the kill may land
    just after them, and then the next create_vm's sweep of marked VMs removes it first
    (tests/lifecycle/test_killed_creates.py); the tags are taken off here so that this test always sees the holder
    rule.  The VM runs (deployed started, in one job) and has no tags at all, which no VM create_vm answered has."""
    left = _kill_after_deploy(sim, tmp_path)
    untag(sim, left)
    age(sim, left)  # older than the create timeout: no create_vm can still be working on it
    cpi = Cpi(_config(sim, tmp_path), tmp_path)
    vm_id, networks = cpi.ok("create_vm", "agent-again", existing_stemcell(sim), {"compute_offering": "small", "disk": 1024},
                             NETWORKS, [], {})
    assert networks["default"]["ip"] == IP
    assert sim.inventory()["virtualmachines"] == [vm_id] and left != vm_id
    assert "left by a create_vm that did not finish: removing it" in cpi.transcript[-1].stderr


def test_a_vm_too_young_or_known_to_the_director_is_left_alone(sim, tmp_path):
    left = _kill_after_deploy(sim, tmp_path)
    cpi = Cpi(_config(sim, tmp_path), tmp_path)
    arguments = ("agent-again", existing_stemcell(sim), {"compute_offering": "small"}, NETWORKS, [], {})
    young = cpi.call("create_vm", *arguments)  # another create_vm could still be working on it
    assert young.error is not None and left in sim.inventory()["virtualmachines"]
    untag(sim, left, only_the_mark=True)  # the director knows it: its create_vm answered (so the mark went), and
    # it got its metadata
    cpi.ok("set_vm_metadata", left, {"deployment": "d", "job": "j", "index": "0"})
    age(sim, left)
    known = cpi.call("create_vm", *arguments)
    assert known.error is not None and sim.inventory()["virtualmachines"] == [left]
    assert "which is not one a killed create_vm left: it stays" in known.stderr


NOW = 1_800_000_000.0


def _vm(**overrides) -> dict:
    vm = {"name": f"vm-{uuid.uuid4()}", "state": "Stopped", "created": "2027-01-15T07:50:00+0000",
          "tags": [{"key": "director_uuid", "value": "d1"}, {"key": "agent_id", "value": "a"}]}
    return {**vm, **overrides}


@pytest.mark.parametrize("vm, abandoned", [
    (_vm(), True),
    (_vm(state="Error"), True),
    (_vm(tags=[]), True),                                               # killed before its tags
    (_vm(state="Running"), False),                                      # create_vm answered, or nearly
    (_vm(state="Running", tags=[]), True),                              # deployed started, killed before its tags
    (_vm(state="Running", tags=[{"key": "cpi_unconfirmed", "value": "true"}]), True),   # never handed over
    (_vm(state="Destroyed"), False),
    (_vm(created="2027-01-15T07:58:00+0000"), False),                   # younger than the timeout
    (_vm(name="web-1"), False),                                         # not named by this CPI
    (_vm(name="vm-0f5a1a44-9c1b-1b7e-9d6a-3f0c2b1e8d77"), False),        # not a uuid4
    (_vm(tags=[{"key": "director_uuid", "value": "other"}]), False),   # another director's
    (_vm(tags=[{"key": "deployment", "value": "cf"}]), False),         # set_vm_metadata ran
    (_vm(created="yesterday"), False),
])
def test_what_counts_as_abandoned(vm, abandoned):
    # NOW is 2027-01-15T08:00:00Z; the create timeout is 4 minutes
    assert abandoned_by_create_vm(vm, "d1", 240, NOW) is abandoned
