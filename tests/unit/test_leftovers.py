"""leftovers.sweep, and the sweeps of create_disk and snapshot_disk on the fake gateway: only what still carries
the unconfirmed mark and is older than any call of its kind can take goes."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

from cloudstack_cpi import leftovers, tags
from cloudstack_cpi.actions import disks, snapshots, vms
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE
from cloudstack_cpi.cloudstack.models import Vm

MARK = {UNCONFIRMED_TAG: UNCONFIRMED_VALUE}


def created_ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def aged(cloud, volume_id: str, seconds: float) -> None:
    cloud.volumes.items[volume_id] = dataclasses.replace(cloud.volumes.items[volume_id], created=created_ago(seconds))


def test_only_the_old_enough_go_and_a_failed_listing_is_not_an_error(cloud, ctx):
    removed = []
    items = [type("Row", (), {"id": i, "created": created_ago(age)})() for i, age in (("old", 7200), ("young", 60))]
    leftovers.sweep(ctx.log, "Thing", lambda: items, 3600, lambda item: removed.append(item.id))
    assert removed == ["old"]
    assert "Thing 'old' (created " in cloud.log_text and "was made by a call that never answered" in cloud.log_text

    def failing():
        raise CloudStackError("listThings", "busy", http_status=503)

    leftovers.sweep(ctx.log, "Thing", failing, 3600, lambda item: removed.append(item.id))
    assert "Looking for Things left by killed calls" in cloud.log_text


def test_create_disk_removes_the_unconfirmed_volumes_of_killed_calls(cloud, ctx):
    bound = disks.create_disk_bound(ctx.config.cloudstack.timeout)
    killed, running, attached, handed_over = (cloud.volumes.add(name=f"bosh-disk-{i}") for i in range(4))
    work = cloud.volumes.add(name="bosh-stemcell-1-0a1b2c3d-work")   # a create_stemcell's: not create_disk's to judge
    for volume_id in (killed, running, attached, work):
        cloud.tags.put("Volume", volume_id, MARK)
    aged(cloud, killed, bound + 60)
    aged(cloud, running, bound - 60)                 # a create_disk may still be working on it
    aged(cloud, attached, bound + 60)
    cloud.volumes.items[attached] = dataclasses.replace(cloud.volumes.items[attached], vm_id=cloud.vms.add())
    # (attached: in use, whatever its tags say)
    aged(cloud, handed_over, bound + 60)             # no mark: the director knows it
    aged(cloud, work, bound + 60)
    new = disks.create_disk(ctx, 1024, {}, None)
    assert killed not in cloud.volumes.items
    assert {running, attached, handed_over, work, new} <= set(cloud.volumes.items)


def test_snapshot_disk_removes_the_unconfirmed_snapshots_of_killed_calls(cloud, ctx):
    timeout = ctx.config.cloudstack.timeout
    bound = timeout.snapshot_volume + 2 * timeout.global_ + leftovers.MARGIN
    disk = cloud.volumes.add()
    killed, young, work = (cloud.snapshots.add(disk) for _ in range(3))
    for snapshot_id, age, name in ((killed, bound + 60, "bosh-snapshot-1"), (young, bound - 60, "bosh-snapshot-2"),
                                   (work, bound + 60, "bosh-stemcell-1-0a1b2c3d-work")):
        cloud.tags.put("Snapshot", snapshot_id, MARK)
        cloud.snapshots.items[snapshot_id] = dataclasses.replace(cloud.snapshots.items[snapshot_id], name=name,
                                                                 created=created_ago(age))
    new = snapshots.snapshot_disk(ctx, disk, {})
    assert killed not in cloud.snapshots.items and {young, work, new} <= set(cloud.snapshots.items)


def test_create_vm_removes_a_killed_calls_vm_with_the_data_disk_its_deploy_made(cloud, ctx):
    """A create_vm killed after its VM's first tags but before the data disk its started deploy made got any (the
    disk has only CloudStack's name, DATA-<n>): the next create_vm removes the marked VM and every data volume
    attached to it, which are all create_vm's own (it attaches no persistent disk).  Destroying the VM alone would
    leave that disk detached with nothing to find it by (VolumeOrchestrator.cleanupVolumes detaches data volumes
    when a VM is expunged)."""
    bound = vms.create_vm_bound(ctx.config.cloudstack.timeout)
    killed, handed_over = (cloud.vms.add(created=created_ago(bound + 60)) for _ in range(2))
    cloud.tags.put("UserVm", killed, MARK)
    disk = cloud.volumes.add(vm=killed, device_id=1, name="DATA-7")
    persistent = cloud.volumes.add(vm=handed_over, device_id=1, name="bosh-disk-1")
    stemcell = cloud.templates.add("bosh-stemcell", zones=("z1",))
    vm_id, _ = vms.create_vm(ctx, "agent-1", stemcell, {"compute_offering": "small"},
                             {"default": {"type": "manual", "ip": "10.1.0.10", "netmask": "255.255.255.0",
                                          "gateway": "10.1.0.1", "cloud_properties": {"name": "bosh-isolated"}}},
                             [], {})
    assert killed not in cloud.vms.items and disk not in cloud.volumes.items
    assert {handed_over, vm_id} <= set(cloud.vms.items) and persistent in cloud.volumes.items


def test_a_running_vm_holding_an_ip_is_abandoned_only_while_it_carries_the_mark():
    """A VM deployed started runs before its create_vm answers, and the mark comes off before the answer: a
    Running VM with the mark was never handed over (removable once older than the create_vm timeout); one
    without it may be the director's, whatever its other tags."""
    base = Vm("vm-1", name="vm-0f8fad5b-d9cb-469f-a165-70867728950e", state="Running", created=created_ago(7200))
    marked = dataclasses.replace(base, tags={**MARK, tags.DIRECTOR_KEY: "d-1"})
    assert vms.abandoned_by_create_vm(marked, "d-1", 3600, time.time())
    assert not vms.abandoned_by_create_vm(dataclasses.replace(base, tags={tags.DIRECTOR_KEY: "d-1"}), "d-1", 3600,
                                          time.time())
    assert not vms.abandoned_by_create_vm(dataclasses.replace(marked, created=created_ago(60)), "d-1", 3600,
                                          time.time())
