"""leftovers.sweep, and the sweeps of create_disk and snapshot_disk on the fake gateway: only what still carries
the unconfirmed mark and is older than any call of its kind can take goes."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

from cloudstack_cpi import leftovers
from cloudstack_cpi.actions import disks, snapshots
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE

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
