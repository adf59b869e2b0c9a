"""Persistent disks through bin/cpi against the simulator, in the advanced (KVM) and basic (XenServer) scenarios.

Each test ends by deleting what it made and checking that the simulator holds no VM, volume or snapshot.
"""

from __future__ import annotations

import io
import uuid

import pytest

from cloudstack_cpi.cloudstack.client import Client
from cloudstack_cpi.log import Logger
from tests.simulator.helpers import Api

GIB = 1024 ** 3
NOT_SUPPORTED = "Bosh::Clouds::NotSupported"
CLOUD_ERROR = "Bosh::Clouds::CloudError"


class Cloud:
    """One scenario: the CPI to drive and an in-process client to look at what it did."""

    def __init__(self, scenario: str, cpi, sim) -> None:
        self.scenario, self.cpi, self.sim = scenario, cpi, sim
        self.client = Client(sim.endpoint, sim.api_key, sim.secret_key, log=Logger(stream=io.StringIO()))
        self.hypervisor = "KVM" if scenario == "advanced" else "XenServer"
        self.zone = "zone-1" if scenario == "advanced" else "basic-zone"
        template = self.client.list("listTemplates", templatefilter="executable", name="bosh-stemcell-existing")
        self.stemcell = template[0]["id"]
        network = {"name": "bosh-isolated"} if scenario == "advanced" else {}
        self.networks = {"default": {"type": "dynamic", "default": ["dns", "gateway"], "cloud_properties": network}}

    def create_vm(self, **cloud_properties) -> str:
        """A VM as the director makes it: with an ephemeral disk, so persistent disks start at device 2."""
        props = {"compute_offering": "small", "disk": 1024, **cloud_properties}
        result = self.cpi.ok("create_vm", f"agent-{uuid.uuid4()}", self.stemcell, props, self.networks, [], {})
        return result[0]

    def volume(self, volume_id: str) -> dict:
        (volume,) = self.client.list("listVolumes", id=volume_id)
        return volume

    def error(self, method: str, *arguments, **kwargs) -> dict:
        response = self.cpi.call(method, *arguments, **kwargs)
        assert response.error is not None, f"{method} succeeded with {response.result!r}"
        return response.error

    def commands(self) -> list[str]:
        return [command.lower() for command, _ in self.sim.request_log]

    def expected_hint(self, disk: str, device: int) -> dict:
        """KVM: the udev link of the disk serial CloudStack sets (LibvirtComputingResource.diskUuidToSerial);
        XenServer: the PV name of the VBD's userdevice, which is the device id."""
        if self.hypervisor == "KVM":
            path = "/dev/disk/by-id/virtio-" + disk.replace("-", "")[:20]
        else:
            path = "/dev/xvd" + "abcdefghijklmnop"[device]
        return {"path": path, "volume_id": str(device)}

    def assert_nothing_left(self) -> None:
        inventory = self.sim.inventory()
        assert (inventory["virtualmachines"], inventory["volumes"], inventory["snapshots"]) == ([], [], [])


@pytest.fixture(params=["advanced", "basic"])
def cloud(request) -> Cloud:
    if request.param == "advanced":
        return Cloud("advanced", request.getfixturevalue("cpi"), request.getfixturevalue("simulator"))
    return Cloud("basic", request.getfixturevalue("basic_cpi"), request.getfixturevalue("basic_simulator"))


@pytest.fixture
def advanced(cpi, simulator) -> Cloud:
    return Cloud("advanced", cpi, simulator)


def test_bosh_lifecycle_order(cloud):
    """bosh-cpi-contract §6.1, with the director's set_disk_metadata after attach: create_vm → create_disk(vm) →
    has_disk → attach → detach → snapshot → delete_snapshot → delete_disk → delete_vm → has_vm false.
    Repeating delete_snapshot is fine and has_disk is false after delete_disk."""
    cpi = cloud.cpi
    vm = cloud.create_vm()
    disk = cpi.ok("create_disk", 2048, {}, vm)
    volume = cloud.volume(disk)
    assert volume["type"] == "DATADISK" and volume["size"] == 2 * GIB and volume["name"].startswith("bosh-disk-")
    assert volume["zonename"] == cloud.zone
    assert {t["key"]: t["value"] for t in volume["tags"]} == {"cpi_role": "persistent",
                                                               "director_uuid": "director-uuid-1"}
    assert cpi.ok("has_disk", disk) is True

    hint = cpi.ok("attach_disk", vm, disk)
    assert hint == cloud.expected_hint(disk, 2)  # device 1 is the ephemeral disk, 3 the CD-ROM
    assert cpi.ok("set_disk_metadata", disk, {"deployment": "dep", "instance_index": "0",
                                               "attached_at": "2026-01-01T00:00:00Z"}) is None
    assert {"deployment": "dep", "instance_index": "0"}.items() <= {
        t["key"]: t["value"] for t in cloud.volume(disk)["tags"]}.items()
    assert cpi.ok("get_disks", vm) == [disk]  # neither the root nor the ephemeral disk

    assert cpi.ok("detach_disk", vm, disk) is None
    assert "virtualmachineid" not in cloud.volume(disk)
    snapshot = cpi.ok("snapshot_disk", disk, {"deployment": "dep", "job": "db", "index": 0,
                                              "director_uuid": "director-uuid-1", "agent_id": "agent-1"})
    (listed,) = cloud.client.list("listSnapshots", id=snapshot)
    assert listed["volumeid"] == disk
    assert {t["key"]: t["value"] for t in listed["tags"]} == {
        "deployment": "dep", "job": "db", "index": "0", "director_uuid": "director-uuid-1", "agent_id": "agent-1"}
    assert cpi.ok("delete_snapshot", snapshot) is None
    assert cpi.ok("delete_snapshot", snapshot) is None
    assert cpi.ok("delete_disk", disk) is None
    assert cpi.ok("has_disk", disk) is False
    assert cpi.ok("delete_vm", vm) is None
    assert cpi.ok("has_vm", vm) is False
    cloud.assert_nothing_left()


def test_reattach_resize_update_and_repeated_calls(cloud):
    cpi = cloud.cpi
    vm1, vm2 = cloud.create_vm(), cloud.create_vm()
    disk = cpi.ok("create_disk", 1024, {"disk_offering": "disk-10"}, vm1)
    assert cloud.volume(disk)["size"] == 10 * GIB  # a fixed offering holding the size

    cloud.sim.clear_request_log()
    assert cpi.ok("attach_disk", vm1, disk, api_version=1) is None
    assert cpi.ok("attach_disk", vm1, disk) == cloud.expected_hint(disk, 2)  # already there: same hint
    assert cloud.commands().count("attachvolume") == 1
    error = cloud.error("attach_disk", vm2, disk)
    assert error["type"] == CLOUD_ERROR and vm1 in error["message"] and vm2 in error["message"]
    error = cloud.error("delete_disk", disk)
    assert error["message"] == f"Deleting disk '{disk}': it is attached to VM '{vm1}'; detach it first"
    assert cpi.ok("detach_disk", vm1, disk) is None
    assert cpi.ok("detach_disk", vm1, disk) is None
    assert cpi.ok("attach_disk", vm2, disk) == cloud.expected_hint(disk, 2)
    assert cpi.ok("delete_vm", vm2) is None  # detaches the persistent disk, which survives
    assert cpi.ok("detach_disk", vm2, disk) is None  # VM gone, disk attached to nothing

    assert cpi.ok("resize_disk", disk, 20_480) is None  # fixed: the smallest fixed offering that holds it
    volume = cloud.volume(disk)
    assert volume["diskofferingname"] == "disk-50" and volume["size"] == 50 * GIB
    cloud.sim.clear_request_log()
    assert cpi.ok("resize_disk", disk, 50 * 1024 - 100) is None  # the same 50 GiB
    assert "resizevolume" not in cloud.commands()
    assert cloud.error("resize_disk", disk, 10_240)["type"] == NOT_SUPPORTED

    assert cpi.ok("update_disk", disk, 61_440, {"disk_offering": "shared.custom"}) is None
    volume = cloud.volume(disk)
    assert volume["diskofferingname"] == "shared.custom" and volume["size"] == 60 * GIB
    assert cloud.error("update_disk", disk, 20_480, {"disk_offering": "custom"})["type"] == NOT_SUPPORTED

    assert cpi.ok("delete_disk", disk) is None
    assert cpi.ok("delete_disk", disk) is None
    assert cpi.ok("delete_vm", vm1) is None
    cloud.assert_nothing_left()


def test_zone_locality_and_missing_resources(advanced):
    cpi = advanced.cpi
    vm = advanced.create_vm(availability_zone="zone-2")
    disk = cpi.ok("create_disk", 3000, {"disk_offering": "custom"}, vm)
    volume = advanced.volume(disk)
    assert volume["zonename"] == "zone-2" and volume["size"] == 3 * GIB  # 3000 MiB rounds up
    assert cpi.ok("delete_vm", vm) is None

    error = advanced.error("attach_disk", vm, disk)
    assert error["type"] == "Bosh::Clouds::VMNotFound" and "VM not found" in error["message"]
    assert advanced.error("create_disk", 1024, {}, vm)["type"] == "Bosh::Clouds::VMNotFound"
    assert advanced.error("get_disks", vm)["type"] == "Bosh::Clouds::VMNotFound"
    assert cpi.ok("delete_disk", disk) is None
    error = advanced.error("snapshot_disk", disk, {})
    assert error["type"] == "Bosh::Clouds::DiskNotFound" and error["ok_to_retry"] is False
    error = advanced.error("create_disk", 20_480, {"disk_offering": "disk-10"}, None)
    assert error["type"] == CLOUD_ERROR and "fixed size of 10 GiB" in error["message"]
    advanced.assert_nothing_left()


def test_a_lost_resize_is_not_taken_for_an_earlier_one(advanced):
    """Found by the fault soak (bench/fault_soak.py --fault update_disk@resizevolume:drop): when update_disk's
    resizeVolume lost its answer, the job recovered for it (the newest resize job on the volume, listAsyncJobs) was
    resize_disk's earlier one, and update_disk answered success with the disk at its old size.  A job found after a
    lost answer must have done what this call asked; else the outcome is unknown and the call fails (an operator's
    re-run, or the director's next deploy, does it again)."""
    api = Api(advanced.sim)  # the disk and the earlier resize (resize_disk's, say) made directly: a job to mistake
    zone = api.zone("zone-1")["id"]
    disk = api.acall("createVolume", zoneid=zone, name="bosh-disk-lost-resize",
                     diskofferingid=api.disk_offering("shared.custom")["id"], size=1)["volume"]["id"]
    api.acall("resizeVolume", id=disk, size=2)
    advanced.sim.script_fault("resizeVolume", "drop")  # the connection drops: did the server get it?
    error = advanced.error("update_disk", disk, 3072, {})
    assert error["type"] == CLOUD_ERROR and "did not do what this call asked" in error["message"]
    assert advanced.volume(disk)["size"] == 2 * GIB
    assert advanced.cpi.ok("update_disk", disk, 3072, {}) is None  # the director's retry
    assert advanced.volume(disk)["size"] == 3 * GIB
