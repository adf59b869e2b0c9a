"""Creates killed with SIGKILL (issue 16: "kill -9 ... 0 leaked resources"): what such a call made still carries
the unconfirmed mark, and the next call of the same kind removes it once it is older than any call of that kind can
take.  Before this fix a killed create_disk, snapshot_disk, create_vm on a dynamic network or create_stemcell left
its volume, snapshot, VM or template for good: the director never learned its id.

The director runs the CPI as a child process; a director restart, an OOM kill or a node failure ends it without a
signal it can catch (bosh-director's external_cpi.rb: Open3.popen3, no handler survives SIGKILL).  Waiting hours
for a leftover to age is done by backdating its ``created`` in the simulator's state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import BIN_CPI, Cpi, bare_env, existing_stemcell, request, write_config
from tests.lifecycle.test_stemcells import KVM_PROPS, declaring, raw_image
from tests.simulator.helpers import Api

MARK = "cpi_unconfirmed"
LONG_AGO = "2020-01-01T00:00:00+0000"
DYNAMIC = {"default": {"type": "dynamic", "dns": ["10.1.0.1"], "default": ["dns", "gateway"],
                       "cloud_properties": {"name": "bosh-isolated"}}}


@pytest.fixture
def sim():
    from cloudstack_simulator import Simulator

    with Simulator(scenario="advanced", job_seconds=0.05) as simulator:
        yield simulator


@pytest.fixture
def cpi(sim, tmp_path) -> Cpi:
    return Cpi(write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key,
                            stemcell={"upload_strategy": "post"}), tmp_path)


def marked(sim, table: str, resource_type: str) -> list[str]:
    """Ids in ``table`` of the simulator's state that carry the unconfirmed mark."""
    with sim.state.lock:
        ids = set(getattr(sim.state, table))
        return sorted({t["resourceid"] for t in sim.state.tags
                       if t["resourcetype"] == resource_type and t["key"] == MARK and t["resourceid"] in ids})


def killed_once_marked(sim, cpi: Cpi, table: str, resource_type: str, method: str, *arguments) -> str:
    """Run ``method`` and SIGKILL it as soon as what it creates carries the mark; that resource's id.

    The call's deleteTags of the mark is throttled (429, retried after ~0.25 s, then ~0.5 and ~1 s): with 50 ms
    jobs the mark was on for ~60 ms only once a job waited for late was polled at once, and on a loaded machine
    the kill came after the call had taken it off (and answered), so nothing was left to sweep."""
    sim.script_fault("deleteTags", "throttle", times=3)
    process = subprocess.Popen([str(BIN_CPI), str(cpi.config_path)], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bare_env(cpi.tmp))
    process.stdin.write(json.dumps(request(method, *arguments)).encode())
    process.stdin.close()
    deadline = time.monotonic() + 60
    while not (found := marked(sim, table, resource_type)):
        assert process.poll() is None and time.monotonic() < deadline, f"{method} ended before it marked anything"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    [left] = found
    return left


def backdate(sim, table: str, resource_id: str) -> None:
    with sim.state.lock:
        row = getattr(sim.state, table)[resource_id]
        row["created"] = LONG_AGO
        for zone_row in (row.get("_zones") or {}).values():  # templates: a row per zone
            zone_row["created"] = LONG_AGO


def test_a_killed_create_disk_is_cleaned_by_the_next_one(sim, cpi):
    """(A leftover too young for the sweep stays: tests/unit/test_leftovers.py.)"""
    left = killed_once_marked(sim, cpi, "volumes", "Volume", "create_disk", 1024, {}, None)
    backdate(sim, "volumes", left)
    new = cpi.ok("create_disk", 1024, {}, None)
    assert sim.inventory()["volumes"] == [new]
    assert marked(sim, "volumes", "Volume") == []  # what was handed over carries no mark


def test_a_killed_snapshot_disk_is_cleaned_by_the_next_one(sim, cpi):
    api = Api(sim)  # a VM with a disk, arranged directly (the calls under test are the snapshots)
    vm = api.deploy()
    disk = api.acall("createVolume", zoneid=vm["zoneid"], name="disk-1",
                     diskofferingid=api.disk_offering("shared.custom")["id"], size=1)["volume"]["id"]
    api.acall("attachVolume", id=disk, virtualmachineid=vm["id"])
    left = killed_once_marked(sim, cpi, "snapshots", "Snapshot", "snapshot_disk", disk, {})
    backdate(sim, "snapshots", left)
    new = cpi.ok("snapshot_disk", disk, {})
    assert sim.inventory()["snapshots"] == [new]


def test_a_killed_create_vm_on_a_dynamic_network_is_cleaned_by_the_next_one(sim, cpi):
    """No manual IP conflicts here, so only the mark tells that the director never learned of the VM."""
    arguments = (existing_stemcell(sim), {"compute_offering": "small", "disk": 1024}, DYNAMIC, [], {})
    left = killed_once_marked(sim, cpi, "vms", "UserVm", "create_vm", "agent-killed", *arguments)
    backdate(sim, "vms", left)
    vm_id, _ = cpi.ok("create_vm", "agent-again", *arguments)
    assert sim.inventory()["virtualmachines"] == [vm_id]
    with sim.state.lock:  # the killed call's ephemeral disk went with its VM: only the new VM's is there
        holders = {t["value"] for t in sim.state.tags if t["key"] == "cpi_vm_id"
                   and t["resourceid"] in sim.inventory()["volumes"]}
    assert holders == {vm_id}
    assert marked(sim, "vms", "UserVm") == []


def test_a_killed_create_stemcell_is_cleaned_by_the_next_one(sim, cpi, tmp_path):
    image = str(raw_image(tmp_path))
    props = declaring(KVM_PROPS, "raw")
    left = killed_once_marked(sim, cpi, "templates", "Template", "create_stemcell", image, props)
    backdate(sim, "templates", left)
    new = cpi.ok("create_stemcell", image, props)
    assert sim.inventory()["templates"] == [new]
    assert marked(sim, "templates", "Template") == []
