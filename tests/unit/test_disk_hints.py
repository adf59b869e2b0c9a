"""Device hints per hypervisor, checked against a model of the guest and of bosh-agent's resolvers (tests/agent_model.py)."""

import pytest

from cloudstack_cpi import disk_hints
from tests import agent_model

VOLUME = "9f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f"
ROOT, EPHEMERAL, OLD, NEW = (f"{n}0000000-0000-4000-8000-00000000000{n}" for n in range(4))


def test_kvm_hint_is_the_by_id_link_of_the_disk_serial_without_id():
    """CloudStack's KVM serial: UUID without dashes, first 20 characters (LibvirtComputingResource.diskUuidToSerial);
    the agent reads ``id`` into a field its virtio resolver never uses, so no ``id``."""
    hint = disk_hints.disk_hint(VOLUME, 4, "KVM")
    assert hint == {"path": "/dev/disk/by-id/virtio-9f1c2d3e4a5b6c7d8e9f", "volume_id": "4"}


def test_kvm_virtio_scsi_link_when_the_root_disk_controller_is_scsi():
    """Hot-plugged disks go on the root disk's bus (KVMStorageProcessor.attachOrDetachDisk); QEMU's SCSI
    disks are linked by udev as scsi-0QEMU_QEMU_HARDDISK_<serial>."""
    hint = disk_hints.disk_hint(VOLUME, 2, "KVM", {"rootDiskController": "scsi"})
    assert hint["path"] == "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_9f1c2d3e4a5b6c7d8e9f"
    assert disk_hints.disk_hint(VOLUME, 2, "KVM", {"rootdiskcontroller": "VirtIO"})["path"].startswith(
        "/dev/disk/by-id/virtio-")


def test_xen_hint_is_the_pv_name_of_the_userdevice():
    assert disk_hints.disk_hint(VOLUME, 4, "XenServer") == {"path": "/dev/xvde", "volume_id": "4"}
    assert disk_hints.disk_hint(VOLUME, 1, "XenServer")["path"] == "/dev/xvdb"


def test_vmware_ids_above_the_cdrom_move_down():
    assert disk_hints.disk_hint(VOLUME, 2, "VMware")["path"] == "/dev/sdc"
    assert disk_hints.disk_hint(VOLUME, 4, "VMware")["path"] == "/dev/sdd"


def test_the_longest_hint_is_at_least_as_long_as_any():
    for hypervisor in ("KVM", "XenServer", "VMware"):
        longest = len(str(disk_hints.longest_hint(hypervisor)))
        for device in (1, 2, 4, 9, 15):
            for details in (None, {"rootDiskController": "scsi"}):
                assert len(str(disk_hints.disk_hint(VOLUME, device, hypervisor, details))) <= longest


def test_system_disk_per_hypervisor():
    assert disk_hints.system_disk("KVM") == "/dev/vda"
    assert disk_hints.system_disk("XenServer") == "/dev/xvda"
    assert disk_hints.system_disk("VMware") == "/dev/sda"
    assert disk_hints.system_disk("Simulator") == "/dev/vda"


@pytest.mark.parametrize("restart_after", ["attach", "detach"])
def test_kvm_migration_hint_finds_the_new_disk_while_running_and_after_a_restart(restart_after):
    """A persistent-disk migration on a VM with an ephemeral disk: old disk at device 2, new at 4 (3 is the
    CD-ROM). Hot-plugged, the new disk is vdd; after the old one is detached and the VM restarted it is vdc.
    The agent must find it in both states from the one hint it saved."""
    guest = agent_model.KvmGuest()
    guest.boot({ROOT: 0, EPHEMERAL: 1})
    guest.hotplug(OLD, 2)
    guest.hotplug(NEW, 4)
    hint = disk_hints.disk_hint(NEW, 4, "KVM")
    assert agent_model.agent_resolve(NEW, hint, guest.files()) == "/dev/vdd"
    old_style = {"path": "/dev/sde", "volume_id": "4", "id": agent_model.kvm_serial(NEW)}
    assert agent_model.agent_resolve(NEW, old_style, guest.files()) is None  # the defect: waits for /dev/vde
    guest.unplug(OLD)
    if restart_after == "detach":
        guest.restart()
        assert guest.names[NEW] == "vdc"
    assert agent_model.agent_resolve(NEW, hint, guest.files()) == f"/dev/{guest.names[NEW]}"
    ephemeral = disk_hints.disk_hint(EPHEMERAL, 1, "KVM")
    assert agent_model.agent_resolve(None, ephemeral, guest.files()) == "/dev/vdb"


def test_the_deployed_data_disk_is_device_1_named_before_it_exists():
    """The ephemeral disk a started deploy makes: device 1 (VolumeOrchestrator.allocateRawVolume), hinted without
    its volume UUID: ``/dev/sdb``, which bosh-agent's mapped resolver tries as /dev/xvdb, /dev/vdb, /dev/sdb
    (mapped_device_path_resolver.go), except on XenServer, whose PV driver names userdevice 1 ``xvdb``."""
    for hypervisor, path in (("KVM", "/dev/sdb"), ("VMware", "/dev/sdb"), ("XenServer", "/dev/xvdb"),
                             ("Simulator", "/dev/sdb")):
        assert disk_hints.deployed_data_disk_hint(hypervisor) == {"path": path, "volume_id": "1"}
        assert len(path) <= len(disk_hints.longest_hint(hypervisor)["path"])


@pytest.mark.parametrize("restart", [False, True])
def test_the_deployed_data_disk_hint_finds_it_after_persistent_disks_come_and_go(restart):
    """Booted with the VM, the ephemeral disk is the guest's second virtio disk; persistent disks are hot-plugged
    after it (devices 2 and 4) and one is unplugged; with or without a restart (disks laid out by device id) the
    agent still resolves /dev/sdb to it (tests/agent_model.py models bosh-agent's virtio resolver)."""
    guest = agent_model.KvmGuest()
    guest.boot({ROOT: 0, EPHEMERAL: 1})
    guest.hotplug(OLD, 2)
    guest.hotplug(NEW, 4)
    guest.unplug(OLD)
    if restart:
        guest.restart()
    hint = disk_hints.deployed_data_disk_hint("KVM")
    assert guest.names[EPHEMERAL] == "vdb"
    assert agent_model.agent_resolve(None, hint, guest.files()) == "/dev/vdb"


@pytest.mark.parametrize("hypervisor, os_type, details, second", [
    ("KVM", "Ubuntu 22.04 LTS", {}, True),
    ("KVM", "Other PV (64-bit)", {"rootDiskController": "virtio"}, True),
    ("KVM", "Other Linux (64-bit)", {}, False),          # IDE root: the data disk is the guest's vda
    ("KVM", "Ubuntu 22.04 LTS", {"rootDiskController": "scsi"}, False),   # 4.11 still made the data disk virtio
    ("KVM", "", {}, False),
    ("XenServer", "Other Linux (64-bit)", {}, True),     # userdevice 1 is xvdb whatever the OS
    ("VMware", "Other Linux (64-bit)", {}, True),
])
def test_the_deployed_data_disk_hint_is_used_only_where_the_guest_finds_it_second(hypervisor, os_type, details,
                                                                                  second):
    """LibvirtComputingResource: getGuestDiskModel gives a virtio root disk only to the OS names isGuestPvEnabled
    knows (else IDE), a rootDiskController detail overrides it, and createVbd makes a qcow2 DATADISK virtio
    (4.11-era code): only with a virtio root is the deploy's data disk the guest's vdb."""
    assert disk_hints.deployed_data_disk_is_second(hypervisor, os_type, details) is second
