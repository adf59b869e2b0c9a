from cloudstack_cpi import disk_hints

VOLUME = "9f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f"


def test_kvm_hint_carries_the_virtio_serial():
    hint = disk_hints.disk_hint(VOLUME, 1, "KVM")
    assert hint == {"path": "/dev/sdb", "volume_id": "1", "id": "9f1c2d3e4a5b6c7d8e9f"}


def test_xen_hint_maps_userdevice_to_letter_without_id():
    assert disk_hints.disk_hint(VOLUME, 4, "XenServer") == {"path": "/dev/sde", "volume_id": "4"}


def test_vmware_ids_above_the_cdrom_move_down():
    assert disk_hints.disk_hint(VOLUME, 2, "VMware")["path"] == "/dev/sdc"
    assert disk_hints.disk_hint(VOLUME, 4, "VMware")["path"] == "/dev/sdd"


def test_system_disk_per_hypervisor():
    assert disk_hints.system_disk("KVM") == "/dev/vda"
    assert disk_hints.system_disk("XenServer") == "/dev/xvda"
    assert disk_hints.system_disk("VMware") == "/dev/sda"
    assert disk_hints.system_disk("Simulator") == "/dev/vda"
