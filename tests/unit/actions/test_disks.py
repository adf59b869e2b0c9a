"""Disk handlers against the fake gateway: sizes and offerings, attach hints per hypervisor, idempotent
detach/delete, get_disks filtering, resize/update choices, metadata.  What the gateway does on the wire (tags beside
the create, recovery after lost answers, cleanup of a half-made volume) is tested in tests/unit/cloudstack/."""

from __future__ import annotations

import pytest

from cloudstack_cpi import tags
from cloudstack_cpi.actions import disks
from cloudstack_cpi.cloudstack.models import GIB, DiskOffering, Volume
from cloudstack_cpi.errors import CloudError, DiskNotFound, NotSupported, VMNotFound
from tests.unit.fake_cloud import api_error, job_failure

# -- create_disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size_mib, gib", [(1, 1), (1024, 1), (1025, 2), (10_240, 10), (25_000, 25)])
def test_customized_offering_gets_the_size_rounded_up(cloud, ctx, size_mib, gib):
    disk = disks.create_disk(ctx, size_mib, {}, None)
    (create,) = cloud.called("volumes.create")
    assert create["size_gib"] == gib and create["offering_id"] == "off-custom"  # default_offer.custom_disk
    assert create["zone_id"] == "z1" and create["name"].startswith("bosh-disk-")
    assert cloud.volumes.items[disk].size_bytes == gib * GIB


def test_new_disks_are_tagged_as_persistent_of_this_director_from_the_start(cloud, ctx):
    disk = disks.create_disk(ctx, 2048, {}, None)
    (create,) = cloud.called("volumes.create")
    assert create["tags"] == {tags.ROLE_KEY: tags.ROLE_PERSISTENT, tags.DIRECTOR_KEY: "director-uuid-1"}
    assert cloud.tags.of("Volume", disk) == create["tags"]


def test_fixed_offering_that_holds_the_size_gets_no_size(cloud, ctx):
    disk = disks.create_disk(ctx, 9000, {"disk_offering": "disk-10"}, None)
    (create,) = cloud.called("volumes.create")
    assert create["offering_id"] == "off-10" and create["size_gib"] is None
    assert cloud.volumes.items[disk].size_gib == 10


def test_fixed_offering_too_small_says_both_sizes_and_creates_nothing(cloud, ctx):
    with pytest.raises(CloudError) as caught:
        disks.create_disk(ctx, 20_480, {"disk_offering": "off-10"}, None)
    message = caught.value.message
    assert "Creating disk of 20480 MiB" in message and "fixed size of 10 GiB" in message and "20 GiB" in message
    assert "disk_offering" in message
    assert "volumes.create" not in cloud.methods()


def test_offering_defaults_from_config(cloud, make_ctx):
    ctx = make_ctx(default_offer={"disk": "disk-50"})
    disks.create_disk(ctx, 4096, {}, None)
    assert cloud.called("volumes.create")[0]["offering_id"] == "off-50"


def test_unknown_offering_lists_what_exists(cloud, ctx):
    with pytest.raises(CloudError, match=r"Disk offering 'gold' not found \(available: .*disk-10"):
        disks.create_disk(ctx, 4096, {"disk_offering": "gold"}, None)


def test_disk_lands_in_the_zone_of_the_vm(cloud, ctx):
    vm = cloud.vms.add(zone="z2")
    disk = disks.create_disk(ctx, 4096, {}, vm)
    assert cloud.volumes.items[disk].zone_id == "z2"
    assert "catalogue.zones" not in cloud.methods()


def test_missing_vm_is_vm_not_found(cloud, ctx):
    with pytest.raises(VMNotFound, match="Creating disk of 4096 MiB: VM 'gone' not found"):
        disks.create_disk(ctx, 4096, {}, "gone")
    assert cloud.volumes.data_volumes() == []


def test_without_vm_and_default_zone_the_operator_is_told(cloud, make_ctx):
    ctx = make_ctx(default_zone=None)
    with pytest.raises(CloudError, match="default_zone is not set"):
        disks.create_disk(ctx, 4096, {}, None)


def test_a_failed_create_is_a_cloud_error_with_the_breadcrumb_and_keeps_retryability(cloud, ctx):
    cloud.fail("volumes.create", job_failure("createVolume", "Maximum number of resources of type 'volume' for "
                                                             "account has exceeded", code=535))
    with pytest.raises(CloudError) as caught:
        disks.create_disk(ctx, 4096, {}, None)
    assert type(caught.value) is CloudError and caught.value.ok_to_retry is True  # capacity: may pass later
    assert caught.value.message.startswith("Creating disk of 4096 MiB: createVolume job ") and "exceeded" in \
        caught.value.message


def test_invalid_and_unknown_cloud_properties(cloud, ctx):
    with pytest.raises(CloudError, match="Invalid disk cloud_properties: disk_offering"):
        disks.create_disk(ctx, 4096, {"disk_offering": 5}, None)
    disks.create_disk(ctx, 4096, {"type": "gp2"}, None)
    assert "Ignoring unknown disk cloud_properties: type" in cloud.log_text


@pytest.mark.parametrize("raw", [{}, None, {"disk_offering": "shared.custom"}, {"disk_offering": None},
                                 {"disk_offering": "ssd", "type": "gp2", "encrypted": True}])
def test_the_plain_reading_of_disk_cloud_properties_agrees_with_the_model(raw):
    """create_disk reads the usual cloud_properties without pydantic (disks._disk_properties): the same offering and
    the same unknown keys as models.DiskCloudProperties, whose fields it must have; other values go to the model."""
    import dataclasses

    from cloudstack_cpi import models

    ctx = type("Ctx", (), {"log": type("Log", (), {"warning": staticmethod(lambda message: None)})()})()
    read = disks._disk_properties(ctx, raw)
    model = models.DiskCloudProperties.model_validate(raw or {})
    assert isinstance(read, disks._DiskProps)
    assert [f.name for f in dataclasses.fields(disks._DiskProps) if f.name != "extra"] == list(
        models.DiskCloudProperties.model_fields)
    assert (read.disk_offering, read.unknown_keys()) == (model.disk_offering, model.unknown_keys())


# -- delete_disk / has_disk ---------------------------------------------------------------------------


def test_delete_then_again_and_has_disk(cloud, ctx):
    disk = disks.create_disk(ctx, 1024, {}, None)
    assert disks.has_disk(ctx, disk) is True
    assert disks.delete_disk(ctx, disk) is None
    assert cloud.volumes.data_volumes() == []
    assert disks.has_disk(ctx, disk) is False
    assert disks.delete_disk(ctx, disk) is None
    assert cloud.methods().count("volumes.delete") == 1


def test_delete_refuses_an_attached_disk(cloud, ctx):
    vm = cloud.vms.add()
    disk = cloud.volumes.add(vm=vm)
    with pytest.raises(CloudError) as caught:
        disks.delete_disk(ctx, disk)
    assert caught.value.message == f"Deleting disk '{disk}': it is attached to VM '{vm}'; detach it first"
    assert disk in cloud.volumes.items


@pytest.mark.parametrize("state", ["Destroy", "Expunging"])
def test_destroyed_volumes_do_not_count(cloud, ctx, state):
    disk = cloud.volumes.add(state=state)
    assert disks.has_disk(ctx, disk) is False
    disks.delete_disk(ctx, disk)
    assert "volumes.delete" not in cloud.methods()


def test_delete_that_races_with_another_delete_is_fine(cloud, ctx, monkeypatch):
    disk = cloud.volumes.add()
    monkeypatch.setattr(cloud.volumes, "delete", lambda volume_id: False)  # the gateway's answer: gone meanwhile
    assert disks.delete_disk(ctx, disk) is None
    assert f"Deleting disk '{disk}': it disappeared meanwhile" in cloud.log_text


def test_a_failed_delete_is_a_cloud_error(cloud, ctx):
    disk = cloud.volumes.add()
    cloud.fail("volumes.delete", api_error("deleteVolume", "storage busy", code=530))
    with pytest.raises(CloudError, match=f"Deleting disk '{disk}': deleteVolume failed .*storage busy") as caught:
        disks.delete_disk(ctx, disk)
    assert caught.value.ok_to_retry is True


# -- attach_disk -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hypervisor, expected", [
    ("KVM", {"path": "/dev/disk/by-id/virtio-{serial}", "volume_id": "1"}),
    ("XenServer", {"path": "/dev/xvdb", "volume_id": "1"}),
    ("VMware", {"path": "/dev/sdb", "volume_id": "1"}),
])
def test_v2_attach_returns_the_hint_for_the_hypervisor(cloud, ctx, hypervisor, expected):
    vm = cloud.vms.add(hypervisor=hypervisor)
    disk = cloud.volumes.add(state="Allocated")
    hint = disks.attach_disk(ctx, vm, disk)
    expected = {**expected, "path": expected["path"].format(serial=disk.replace("-", "")[:20])}
    assert hint == expected
    assert cloud.volumes.items[disk].vm_id == vm


def test_device_ids_past_the_cdrom_per_hypervisor(cloud, ctx):
    paths = {}
    for hypervisor in ("KVM", "XenServer", "VMware"):
        vm = cloud.vms.add(hypervisor=hypervisor)
        hints = [disks.attach_disk(ctx, vm, cloud.volumes.add()) for _ in range(3)]
        assert [h["volume_id"] for h in hints] == ["1", "2", "4"]
        paths[hypervisor] = [h["path"] for h in hints]
    assert all(path.startswith("/dev/disk/by-id/virtio-") for path in paths["KVM"])  # by serial, not by id
    assert paths["XenServer"] == ["/dev/xvdb", "/dev/xvdc", "/dev/xvde"]  # the userdevice names the disk
    assert paths["VMware"] == ["/dev/sdb", "/dev/sdc", "/dev/sdd"]  # the IDE CD-ROM takes no SCSI slot


def test_kvm_hint_follows_the_vms_disk_controller(cloud, ctx):
    vm = cloud.vms.add(hypervisor="KVM", details={"rootDiskController": "scsi"})
    assert disks.attach_disk(ctx, vm, cloud.volumes.add())["path"].startswith("/dev/disk/by-id/scsi-")


def test_ephemeral_disk_keeps_device_1(cloud, ctx):
    vm = cloud.vms.add()
    cloud.volumes.add(vm=vm, role=tags.ROLE_EPHEMERAL)
    assert disks.attach_disk(ctx, vm, cloud.volumes.add())["volume_id"] == "2"


def test_v1_attach_returns_null(cloud, make_ctx):
    """The action answers the v2 hint; rpc answers a v1 caller null (API-version shapes live in rpc only)."""
    from cloudstack_cpi import rpc

    ctx = make_ctx(api_version=1)
    vm = cloud.vms.add()
    disk = cloud.volumes.add()
    assert rpc.answer_for_version("attach_disk", disks.attach_disk(ctx, vm, disk), 1) is None
    assert cloud.volumes.items[disk].device_id == 1


def test_attach_again_to_the_same_vm_answers_the_same_hint(cloud, ctx):
    vm = cloud.vms.add(hypervisor="XenServer")
    disk = cloud.volumes.add()
    first = disks.attach_disk(ctx, vm, disk)
    assert disks.attach_disk(ctx, vm, disk) == first
    assert cloud.methods().count("volumes.attach") == 1


def test_attach_to_a_second_vm_names_both(cloud, ctx):
    vm1, vm2 = cloud.vms.add(), cloud.vms.add()
    disk = cloud.volumes.add(vm=vm1)
    with pytest.raises(CloudError) as caught:
        disks.attach_disk(ctx, vm2, disk)
    assert caught.value.message == (f"Attaching disk '{disk}' to VM '{vm2}': it is attached to VM '{vm1}'; "
                                    f"detach it from there first")


def test_attach_missing_vm_or_disk(cloud, ctx):
    vm = cloud.vms.add()
    disk = cloud.volumes.add()
    with pytest.raises(VMNotFound, match=f"Attaching disk '{disk}' to VM 'nope': VM not found"):
        disks.attach_disk(ctx, "nope", disk)
    with pytest.raises(DiskNotFound, match=f"Attaching disk 'nope' to VM '{vm}': disk not found") as caught:
        disks.attach_disk(ctx, vm, "nope")
    assert caught.value.ok_to_retry is False


def test_attach_across_zones_is_refused_up_front(cloud, ctx):
    vm = cloud.vms.add(zone="z2")
    disk = cloud.volumes.add(zone="z1")
    with pytest.raises(CloudError, match="the disk is in zone 'zone-1' and the VM in zone 'zone-2'"):
        disks.attach_disk(ctx, vm, disk)
    assert "volumes.attach" not in cloud.methods()


def test_too_many_data_disks_says_so(cloud, ctx):
    vm = cloud.vms.add()
    for _ in range(cloud.volumes.max_data_volumes):
        cloud.volumes.add(vm=vm)
    with pytest.raises(CloudError) as caught:
        disks.attach_disk(ctx, vm, cloud.volumes.add())
    assert "already has the maximum number of data disks its hypervisor allows" in caught.value.message
    assert "(6)" in caught.value.message


def test_attach_job_failure_is_a_cloud_error_with_breadcrumb(cloud, ctx):
    vm = cloud.vms.add()
    disk = cloud.volumes.add()
    cloud.fail("volumes.attach", job_failure("attachVolume", "Failed to attach volume: host unreachable"))
    with pytest.raises(CloudError, match=f"Attaching disk '{disk}' to VM '{vm}': attachVolume job .* host unreach"):
        disks.attach_disk(ctx, vm, disk)


# -- detach_disk -------------------------------------------------------------------------------------


def test_detach_and_detach_again(cloud, ctx):
    vm = cloud.vms.add()
    disk = cloud.volumes.add(vm=vm)
    assert disks.detach_disk(ctx, vm, disk) is None
    assert cloud.volumes.items[disk].vm_id is None
    assert disks.detach_disk(ctx, vm, disk) is None
    assert cloud.methods().count("volumes.detach") == 1
    assert "it is not attached; nothing to do" in cloud.log_text


def test_detach_leaves_a_disk_attached_elsewhere(cloud, ctx):
    vm1, vm2 = cloud.vms.add(), cloud.vms.add()
    disk = cloud.volumes.add(vm=vm1)
    disks.detach_disk(ctx, vm2, disk)
    assert cloud.volumes.items[disk].vm_id == vm1
    assert f"it is attached to VM '{vm1}', not to this VM" in cloud.log_text


def test_detach_of_a_missing_disk_or_from_a_missing_vm(cloud, ctx):
    vm = cloud.vms.add()
    assert disks.detach_disk(ctx, vm, "gone-disk") is None
    assert disks.detach_disk(ctx, "gone-vm", cloud.volumes.add()) is None
    assert "volumes.detach" not in cloud.methods()


def test_detach_failure_while_still_attached_is_an_error(cloud, ctx):
    vm = cloud.vms.add()
    disk = cloud.volumes.add(vm=vm)
    cloud.fail("volumes.detach", job_failure("detachVolume", "VM is migrating"))
    with pytest.raises(CloudError, match=f"Detaching disk '{disk}' from VM '{vm}': .*VM is migrating"):
        disks.detach_disk(ctx, vm, disk)


# -- get_disks -----------------------------------------------------------------------------------------


def test_get_disks_lists_persistent_data_volumes_only(cloud, ctx):
    vm, other = cloud.vms.add(), cloud.vms.add()
    cloud.volumes.add(vm=vm, role=tags.ROLE_EPHEMERAL)
    first = cloud.volumes.add(vm=vm)
    second = cloud.volumes.add(vm=vm, role=tags.ROLE_PERSISTENT)
    cloud.volumes.add(vm=other)
    cloud.volumes.add()
    assert disks.get_disks(ctx, vm) == [first, second]
    assert disks.get_disks(ctx, other) != []
    assert disks.get_disks(ctx, cloud.vms.add()) == []


def test_get_disks_of_a_missing_vm(cloud, ctx):
    with pytest.raises(VMNotFound, match="Listing disks of VM 'nope': VM not found"):
        disks.get_disks(ctx, "nope")


# -- resize_disk -----------------------------------------------------------------------------------------


def test_resize_to_the_same_gib_is_a_no_op(cloud, ctx):
    disk = cloud.volumes.add(gib=10)
    disks.resize_disk(ctx, disk, 10_240)
    disks.resize_disk(ctx, disk, 9_500)  # rounds up to the same 10 GiB
    assert "volumes.resize" not in cloud.methods()


def test_shrinking_is_not_supported(cloud, ctx):
    disk = cloud.volumes.add(gib=10)
    with pytest.raises(NotSupported, match="it has 10 GiB"):
        disks.resize_disk(ctx, disk, 5_120)


def resizes(cloud) -> list[tuple]:
    return [(c["args"][0], c["size_gib"], c["offering_id"]) for c in cloud.called("volumes.resize")]


def test_customized_disk_grows_by_size(cloud, ctx):
    disk = cloud.volumes.add(gib=10, offering="off-custom")
    disks.resize_disk(ctx, disk, 20_000)
    assert resizes(cloud) == [(disk, 20, None)]
    assert cloud.volumes.items[disk].size_gib == 20


def test_fixed_disk_moves_to_the_smallest_fixed_offering_that_holds_it(cloud, ctx):
    disk = cloud.volumes.add(gib=10, offering="off-10")
    disks.resize_disk(ctx, disk, 30 * 1024)
    assert resizes(cloud) == [(disk, None, "off-50")]
    assert cloud.volumes.items[disk].size_gib == 50


def test_fixed_disk_beyond_every_fixed_offering_moves_to_the_custom_one(cloud, ctx):
    disk = cloud.volumes.add(gib=50, offering="off-50")
    disks.resize_disk(ctx, disk, 80 * 1024)
    assert resizes(cloud) == [(disk, 80, "off-custom")]
    assert cloud.volumes.items[disk].size_gib == 80


def test_fixed_local_disk_with_nowhere_to_go_is_not_supported(cloud, ctx):
    disk = cloud.volumes.add(gib=100, offering="off-local")
    with pytest.raises(NotSupported, match="offering 'local-100' has a fixed size"):
        disks.resize_disk(ctx, disk, 200 * 1024)
    assert "volumes.resize" not in cloud.methods()


def test_resize_missing_disk(cloud, ctx):
    with pytest.raises(DiskNotFound, match="Resizing disk 'nope' to 2048 MiB: disk not found"):
        disks.resize_disk(ctx, "nope", 2048)


def test_resize_failure_is_a_cloud_error(cloud, ctx):
    disk = cloud.volumes.add(gib=10)
    cloud.fail("volumes.resize", job_failure("resizeVolume", "primary storage full"))
    with pytest.raises(CloudError, match=f"Resizing disk '{disk}' to 20480 MiB: .*primary storage full"):
        disks.resize_disk(ctx, disk, 20_480)


# -- update_disk -----------------------------------------------------------------------------------------


def test_update_with_nothing_to_change(cloud, ctx):
    disk = cloud.volumes.add(gib=10, offering="off-custom")
    assert disks.update_disk(ctx, disk, 10_240, {}) is None
    disk10 = cloud.volumes.add(gib=10, offering="off-10")
    assert disks.update_disk(ctx, disk10, 8_000, {"disk_offering": "disk-10"}) is None
    assert "volumes.resize" not in cloud.methods()


def test_update_grows_a_customized_disk(cloud, ctx):
    disk = cloud.volumes.add(gib=10, offering="off-custom")
    assert disks.update_disk(ctx, disk, 15_360, {"disk_offering": "shared.custom"}) is None
    assert resizes(cloud) == [(disk, 15, None)]


def test_update_moves_to_another_offering_in_place(cloud, ctx):
    disk = cloud.volumes.add(gib=10, offering="off-custom")
    disks.update_disk(ctx, disk, 40_000, {"disk_offering": "disk-50"})
    assert resizes(cloud) == [(disk, None, "off-50")]
    fixed = cloud.volumes.add(gib=10, offering="off-10")
    disks.update_disk(ctx, fixed, 12_288, {"disk_offering": "custom"})
    assert resizes(cloud)[-1] == (fixed, 12, "off-custom2")
    assert cloud.volumes.items[fixed].disk_offering_id == "off-custom2"


def test_update_that_would_shrink_is_not_supported(cloud, ctx):
    disk = cloud.volumes.add(gib=50, offering="off-50")
    with pytest.raises(NotSupported, match="the disk has 50 GiB and would get 10 GiB; .*not shrunk in place"):
        disks.update_disk(ctx, disk, 10_240, {"disk_offering": "disk-10"})
    custom = cloud.volumes.add(gib=20, offering="off-custom")
    with pytest.raises(NotSupported, match="the disk has 20 GiB and would get 12 GiB"):
        disks.update_disk(ctx, custom, 12_288, {})
    assert "volumes.resize" not in cloud.methods()


def test_update_to_an_offering_cloudstack_cannot_switch_to_is_not_supported(cloud, ctx):
    disk = cloud.volumes.add(gib=10, offering="off-custom")
    with pytest.raises(NotSupported, match=r"cannot move a volume from offering 'shared.custom' \(shared storage, "
                                           r"no tags\) to 'ssd.custom' \(shared storage, ssd\)"):
        disks.update_disk(ctx, disk, 10_240, {"disk_offering": "ssd.custom"})
    with pytest.raises(NotSupported, match="local storage"):
        disks.update_disk(ctx, disk, 10_240, {"disk_offering": "local-100"})


def test_update_to_a_fixed_offering_too_small_for_the_size(cloud, ctx):
    disk = cloud.volumes.add(gib=10, offering="off-10")
    with pytest.raises(CloudError, match="fixed size of 10 GiB, less than the 20 GiB asked for") as caught:
        disks.update_disk(ctx, disk, 20_480, {"disk_offering": "disk-10"})
    assert not isinstance(caught.value, NotSupported)


def test_update_missing_disk(cloud, ctx):
    with pytest.raises(DiskNotFound):
        disks.update_disk(ctx, "nope", 2048, {})


# -- set_disk_metadata --------------------------------------------------------------------------------


def test_metadata_becomes_tags_from_what_the_volume_already_has(cloud, ctx):
    disk = disks.create_disk(ctx, 1024, {}, None)
    disks.set_disk_metadata(ctx, disk, {"deployment": "cf", "instance_index": 0, "attached_at": "t1"})
    disks.set_disk_metadata(ctx, disk, {"deployment": "cf", "instance_index": 0, "attached_at": "t2"})
    assert cloud.tags.of("Volume", disk) == {"deployment": "cf", "instance_index": "0", "attached_at": "t2",
                                             tags.ROLE_KEY: tags.ROLE_PERSISTENT,
                                             tags.DIRECTOR_KEY: "director-uuid-1"}
    # the tags the listed volume carries are handed over, so the gateway needs no listTags
    assert all(call["existing"] is not None for call in cloud.called("tags.apply"))


def test_metadata_cannot_overwrite_the_cpis_own_tags(cloud, ctx):
    disk = disks.create_disk(ctx, 1024, {}, None)
    disks.set_disk_metadata(ctx, disk, {tags.ROLE_KEY: tags.ROLE_EPHEMERAL, "job": "db"})
    assert cloud.tags.of("Volume", disk)[tags.ROLE_KEY] == tags.ROLE_PERSISTENT
    assert cloud.tags.of("Volume", disk)["job"] == "db"
    assert "Ignoring metadata key 'cpi_role'" in cloud.log_text


def test_metadata_of_a_missing_disk(cloud, ctx):
    with pytest.raises(DiskNotFound, match="Setting metadata of disk 'nope': disk not found"):
        disks.set_disk_metadata(ctx, "nope", {"a": "b"})


# -- pure rules ------------------------------------------------------------------------------------


def offering(**row) -> DiskOffering:
    return DiskOffering.from_api({"id": "o", "name": "o", **row})


def test_volume_sizes_in_whole_gib():
    assert Volume.from_api({"id": "v", "size": 10 * GIB}).size_gib == 10
    assert Volume.from_api({"id": "v", "size": 10 * GIB + 1}).size_gib == 11
    assert Volume.from_api({"id": "v"}).size_gib == 0


def test_offerings_compatible_on_storage_type_and_tags():
    shared = offering(storagetype="shared")
    assert disks.compatible(shared, offering())  # CloudStack's default storage type is shared
    assert disks.compatible(offering(tags="ssd,fast"), offering(tags="fast, ssd"))
    assert not disks.compatible(shared, offering(storagetype="local"))
    assert not disks.compatible(offering(tags="ssd"), offering())
    assert disks.compatible(None, offering(storagetype="local"))  # unknown current offering: CloudStack decides


def test_iscustomized_as_text_from_old_servers():
    assert offering(iscustomized="true").customized and not offering(iscustomized="false").customized
    assert disks.create_size(offering(iscustomized="true"), 3, "x") == 3
