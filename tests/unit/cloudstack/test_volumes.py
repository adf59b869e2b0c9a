"""The volume service against the simulator: gone rules, device ids, idempotent detach/delete, recovery of attach
and detach after a lost answer.

CloudStack facts (apache/cloudstack): an unknown id in a list is a 431 (BaseListCmd's UUID lookup), which ``get``
answers as None; VolumeApiServiceImpl.getDeviceId gives data disks the lowest free device id from 1, never 3 (the
CD-ROM's); deleteVolume is synchronous in 4.11 (DeleteVolumeCmd is a BaseCmd) and asynchronous later (both are
handled); detachVolume's job names the volume (jobinstanceid), which finds it after a lost answer.
"""

from __future__ import annotations

import pytest

from cloudstack_cpi.cloudstack.errors import CloudStackError


def new_volume(gateway, arranged, name: str, **tags):
    return gateway.volumes.create(name=name, zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                  size_gib=1, tags=tags)


def test_an_unknown_or_removed_volume_is_none(gateway, arranged):
    assert gateway.volumes.get("4a1b7a2e-0000-4000-8000-000000000000") is None
    assert gateway.volumes.get("not-a-uuid") is None
    volume = new_volume(gateway, arranged, "vol-gone")
    assert gateway.volumes.delete(volume.id) is True
    assert gateway.volumes.get(volume.id) is None
    assert gateway.volumes.delete(volume.id) is False  # already gone: done


def test_device_ids_skip_the_cdrom(gateway, arranged):
    vm = arranged.vm()
    devices = [gateway.volumes.attach(new_volume(gateway, arranged, f"vol-dev-{i}").id, vm).device_id
               for i in range(3)]
    assert devices == [1, 2, 4]
    assert [v.device_id for v in gateway.volumes.of_vm(vm, data_only=True)] == [1, 2, 4]
    assert {v.type for v in gateway.volumes.of_vm(vm)} == {"ROOT", "DATADISK"}


def test_a_lost_attach_answer_is_recovered_from_its_job(sim, gateway, arranged, log_stream):
    vm = arranged.vm()
    volume = new_volume(gateway, arranged, "vol-lost-attach")
    sim.script_fault("attachVolume", "drop_after_action")
    attached = gateway.volumes.attach(volume.id, vm)
    assert attached.vm_id == vm and attached.device_id == 1
    assert "The answer to attachVolume was lost; its job" in log_stream.getvalue()


def test_detach_is_recovered_from_its_job_after_a_lost_answer(sim, gateway, arranged):
    vm = arranged.vm()
    volume = gateway.volumes.attach(new_volume(gateway, arranged, "vol-lost-detach").id, vm)
    sim.script_fault("detachVolume", "drop_after_action")
    gateway.volumes.detach(volume)
    assert gateway.volumes.get(volume.id).vm_id is None


def test_a_detach_that_fails_while_still_attached_raises(sim, gateway, arranged):
    vm = arranged.vm()
    volume = gateway.volumes.attach(new_volume(gateway, arranged, "vol-detach-fails").id, vm)
    sim.script_fault("detachVolume", "job_failure")
    with pytest.raises(CloudStackError, match="detachVolume job"):
        gateway.volumes.detach(volume)
    assert gateway.volumes.get(volume.id).vm_id == vm


def test_delete_detaching_and_discard(gateway, arranged):
    vm = arranged.vm()
    attached = gateway.volumes.attach(new_volume(gateway, arranged, "vol-delete-attached").id, vm)
    assert gateway.volumes.delete_detaching(attached) is True
    assert gateway.volumes.get(attached.id) is None
    other = gateway.volumes.attach(new_volume(gateway, arranged, "vol-discard").id, vm)
    assert gateway.volumes.discard(other.id) is True and gateway.volumes.get(other.id) is None
    assert gateway.volumes.discard(other.id) is True  # gone already


def test_tagged_and_named_are_exact(gateway, arranged):
    mine = new_volume(gateway, arranged, "vol-named", cpi_vm_id="vm-a", cpi_role="ephemeral")
    new_volume(gateway, arranged, "vol-named-too", cpi_vm_id="vm-ab", cpi_role="ephemeral")
    assert [v.id for v in gateway.volumes.tagged({"cpi_vm_id": "vm-a"})] == [mine.id]
    assert [v.id for v in gateway.volumes.named("vol-named")] == [mine.id]


def test_resize_answers_the_resized_volume(gateway, arranged):
    volume = new_volume(gateway, arranged, "vol-resize")
    resized = gateway.volumes.resize(volume.id, size_gib=3)
    assert resized is not None and resized.size_gib == 3


def test_a_lost_start_create_answer_reports_the_volume_found_by_its_name(sim, gateway, arranged):
    """create_vm's ephemeral volume (``start_create``): after a lost answer the volume the request made is reported by
    its unique name, and the request is not sent again."""
    made: list[str] = []
    sim.script_fault("createVolume", "drop_after_action")
    sim.clear_request_log()
    with pytest.raises(CloudStackError) as caught:
        gateway.volumes.start_create(name="vol-lost-start", zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                     size_gib=1, made=made.append)
    assert caught.value.outcome_unknown and caught.value.is_transient
    assert made == [v.id for v in gateway.volumes.named("vol-lost-start")] and len(made) == 1
    assert [command for command, _ in sim.request_log].count("createvolume") == 1
