"""Snapshot handlers against the fake gateway: tags from the director's metadata, breadcrumbs, idempotent delete.
Cleanup of a half-made snapshot is the gateway's (tests/unit/cloudstack/test_recoverable_creates.py)."""

from __future__ import annotations

import pytest

from cloudstack_cpi import tags
from cloudstack_cpi.actions import snapshots
from cloudstack_cpi.errors import CloudError, DiskNotFound
from tests.unit.fake_cloud import job_failure

# What the director sends (api/snapshot_manager.rb): index is an integer.
METADATA = {"deployment": "cf", "job": "database", "index": 0, "director_name": "bosh-1",
            "director_uuid": "director-uuid-1", "agent_id": "agent-7", "instance_id": "a1b2"}


def test_snapshot_is_tagged_with_the_metadata_and_the_director(cloud, ctx):
    disk = cloud.volumes.add()
    snapshot = snapshots.snapshot_disk(ctx, disk, METADATA)
    assert cloud.snapshots.items[snapshot].volume_id == disk
    assert cloud.snapshots.items[snapshot].name.startswith("bosh-snapshot-")
    assert cloud.tags.of("Snapshot", snapshot) == {
        "deployment": "cf", "job": "database", "index": "0", "director_name": "bosh-1",
        "agent_id": "agent-7", "instance_id": "a1b2", tags.DIRECTOR_KEY: "director-uuid-1",
    }
    # the sweep of killed calls' snapshots runs while createSnapshot's job does (the fake calls it from create)
    assert cloud.methods() == ["volumes.get", "snapshots.create", "snapshots.unconfirmed"]
    assert "Ignoring metadata key" not in cloud.log_text


def test_snapshot_without_metadata_still_records_the_director(cloud, ctx):
    snapshot = snapshots.snapshot_disk(ctx, cloud.volumes.add())
    assert cloud.tags.of("Snapshot", snapshot) == {tags.DIRECTOR_KEY: "director-uuid-1"}


def test_snapshot_without_director_or_metadata_asks_for_no_tags(cloud, make_ctx):
    ctx = make_ctx(director_uuid=None)
    snapshots.snapshot_disk(ctx, cloud.volumes.add(), None)
    assert cloud.called("snapshots.create")[0]["tags"] == {}


def test_snapshot_of_a_missing_disk(cloud, ctx):
    with pytest.raises(DiskNotFound, match="Snapshotting disk 'nope': disk not found"):
        snapshots.snapshot_disk(ctx, "nope", METADATA)
    assert cloud.snapshots.items == {}


def test_cloudstack_refusal_is_a_cloud_error_with_its_text(cloud, ctx):
    disk = cloud.volumes.add(state="Allocated")
    cloud.fail("snapshots.create", job_failure("createSnapshot", f"VolumeId: {disk} is not in Ready state but "
                                                                 "Allocated. Cannot take snapshot.", code=431))
    with pytest.raises(CloudError, match=f"Snapshotting disk '{disk}': .*not in Ready state but Allocated") as caught:
        snapshots.snapshot_disk(ctx, disk, METADATA)
    assert caught.value.ok_to_retry is False


def test_delete_snapshot_and_again(cloud, ctx):
    snapshot = snapshots.snapshot_disk(ctx, cloud.volumes.add(), METADATA)
    assert snapshots.delete_snapshot(ctx, snapshot) is None
    assert cloud.snapshots.items == {}
    assert snapshots.delete_snapshot(ctx, snapshot) is None
    assert snapshots.delete_snapshot(ctx, "never-existed") is None
    assert cloud.methods().count("snapshots.delete") == 1


def test_delete_of_a_snapshot_being_destroyed_is_done(cloud, ctx):
    snapshot = cloud.snapshots.add(cloud.volumes.add(), state="Destroying")
    snapshots.delete_snapshot(ctx, snapshot)
    assert "snapshots.delete" not in cloud.methods()


def test_delete_snapshot_failure_is_reported(cloud, ctx):
    snapshot = snapshots.snapshot_disk(ctx, cloud.volumes.add(), METADATA)
    cloud.fail("snapshots.delete", job_failure("deleteSnapshot", "secondary storage unreachable"))
    with pytest.raises(CloudError, match=f"Deleting snapshot '{snapshot}': .*secondary storage unreachable") as caught:
        snapshots.delete_snapshot(ctx, snapshot)
    assert caught.value.ok_to_retry is True


def test_snapshot_tags_keep_reserved_keys_for_the_cpi(cloud, ctx):
    wanted = snapshots.snapshot_tags(ctx, {"cpi_role": "ephemeral", "index": 3, "empty": ""})
    assert wanted == {"index": "3", "empty": tags.EMPTY_VALUE, tags.DIRECTOR_KEY: "director-uuid-1"}
    assert "Ignoring metadata key 'cpi_role'" in cloud.log_text
