"""CIDs are strings, also against a CloudStack that answers numeric ids.

CloudStack before 4.0 answered ids as JSON numbers (``"id": 1``), as the
recordings in apache-libcloud's CloudStack fixtures show
(libcloud/test/compute/fixtures/cloudstack/listZones_default.json:
``{"id": 1, "name": "Sydney", ...}``).  The simulator's ``numeric_ids`` option
answers that way.  Before the fix, ``default_zone: "1"`` was "not found" (an int
compared with a string) and create_vm answered an int CID.
"""

from __future__ import annotations

import pytest

from tests.conftest import Cpi, _start_simulator, write_config
from tests.simulator.helpers import Api


@pytest.fixture
def numeric_simulator():
    sim = _start_simulator("advanced", numeric_ids=True)
    yield sim
    sim.stop()


def test_the_simulator_shows_ids_as_numbers_and_takes_them_back(numeric_simulator):
    api = Api(numeric_simulator)
    zone = api.list("listZones", "zone", name="zone-1")[0]
    assert isinstance(zone["id"], int)
    assert api.list("listZones", "zone", id=str(zone["id"]))[0]["name"] == "zone-1"


def test_every_cid_is_a_string_and_ids_compare_as_strings(numeric_simulator, tmp_path):
    api = Api(numeric_simulator)
    zone_id = api.list("listZones", "zone", name="zone-1")[0]["id"]
    config = write_config(tmp_path / "cpi.json", numeric_simulator.endpoint, numeric_simulator.api_key,
                          numeric_simulator.secret_key, default_zone=str(zone_id))
    cpi = Cpi(config, tmp_path)
    stemcell = str(api.template("bosh-stemcell-existing")["id"])
    networks = {"default": {"type": "dynamic", "default": ["dns", "gateway"],
                            "cloud_properties": {"name": "bosh-isolated"}}}

    vm_cid, answered = cpi.ok("create_vm", "agent-numeric", stemcell, {"compute_offering": "small", "disk": 1024},
                              networks, [], {})
    assert isinstance(vm_cid, str) and vm_cid.isdigit()
    assert isinstance(answered["default"]["ip"], str)
    assert cpi.ok("has_vm", vm_cid) is True

    disk_cid = cpi.ok("create_disk", 1024, {}, vm_cid)
    assert isinstance(disk_cid, str) and disk_cid.isdigit()
    hint = cpi.ok("attach_disk", vm_cid, disk_cid)
    assert hint["volume_id"] == "2"
    assert cpi.ok("get_disks", vm_cid) == [disk_cid]
    assert cpi.ok("attach_disk", vm_cid, disk_cid) == hint  # already attached: found by comparing ids
    snapshot_cid = cpi.ok("snapshot_disk", disk_cid, {})
    assert isinstance(snapshot_cid, str)
    cpi.ok("delete_snapshot", snapshot_cid)
    cpi.ok("detach_disk", vm_cid, disk_cid)
    cpi.ok("delete_vm", vm_cid)
    assert cpi.ok("has_vm", vm_cid) is False
    cpi.ok("delete_disk", disk_cid)
    assert cpi.ok("has_disk", disk_cid) is False
    inventory = numeric_simulator.inventory()
    assert (inventory["virtualmachines"], inventory["volumes"]) == ([], [])
