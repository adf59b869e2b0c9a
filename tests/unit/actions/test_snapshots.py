"""Snapshot handlers through a faked CloudStack: tags from the director's metadata, cleanup, idempotent delete."""

from __future__ import annotations

import pytest

from cloudstack_cpi import tags
from cloudstack_cpi.actions import snapshots
from cloudstack_cpi.errors import CloudError, DiskNotFound
from tests.unit.actions import test_disks_fake as fake

cloud, ctx, make_ctx = fake.cloud, fake.ctx, fake.make_ctx  # the fake CloudStack's fixtures

# What the director sends (api/snapshot_manager.rb): index is an integer.
METADATA = {"deployment": "cf", "job": "database", "index": 0, "director_name": "bosh-1",
            "director_uuid": "director-uuid-1", "agent_id": "agent-7", "instance_id": "a1b2"}


def test_snapshot_is_tagged_with_the_metadata_and_the_director(cloud, ctx):
    disk = cloud.add_volume()
    snapshot = snapshots.snapshot_disk(ctx, disk, METADATA)
    assert cloud.snapshots[snapshot]["volumeid"] == disk
    assert cloud.snapshots[snapshot]["name"].startswith("bosh-snapshot-")
    assert cloud.tags_of("Snapshot", snapshot) == {
        "deployment": "cf", "job": "database", "index": "0", "director_name": "bosh-1",
        "agent_id": "agent-7", "instance_id": "a1b2", tags.DIRECTOR_KEY: "director-uuid-1",
    }
    assert cloud.commands() == ["listVolumes", "createSnapshot", "createTags"]
    assert "Ignoring metadata key" not in ctx.stderr.getvalue()


def test_snapshot_without_metadata_still_records_the_director(cloud, ctx):
    snapshot = snapshots.snapshot_disk(ctx, cloud.add_volume())
    assert cloud.tags_of("Snapshot", snapshot) == {tags.DIRECTOR_KEY: "director-uuid-1"}


def test_snapshot_without_director_or_metadata_makes_no_tag_call(cloud, make_ctx):
    ctx = make_ctx(director_uuid=None)
    snapshots.snapshot_disk(ctx, cloud.add_volume(), None)
    assert "createTags" not in cloud.commands()


def test_snapshot_of_a_missing_disk(cloud, ctx):
    with pytest.raises(DiskNotFound, match="Snapshotting disk 'nope': disk not found"):
        snapshots.snapshot_disk(ctx, "nope", METADATA)
    assert cloud.snapshots == {}


def test_failed_tagging_removes_the_snapshot(cloud, ctx):
    cloud.fail("createTags", 530, "tags unavailable")
    with pytest.raises(CloudError, match="Snapshotting disk '.*': tagging snapshot '.*': .*tags unavailable"):
        snapshots.snapshot_disk(ctx, cloud.add_volume(), METADATA)
    assert cloud.snapshots == {}
    assert cloud.commands()[-1] == "deleteSnapshot"


def test_removing_a_half_created_snapshot_survives_a_transient_failure(cloud, ctx):
    cloud.fail("createTags", 530, "tags unavailable")
    cloud.fail("deleteSnapshot", 530, "Internal error executing command", times=1)
    with pytest.raises(CloudError, match="tags unavailable"):
        snapshots.snapshot_disk(ctx, cloud.add_volume(), METADATA)
    assert cloud.snapshots == {}
    assert cloud.commands().count("deleteSnapshot") == 2


def test_cloudstack_refusal_is_a_cloud_error_with_its_text(cloud, ctx):
    disk = cloud.add_volume(state="Allocated")
    with pytest.raises(CloudError, match=f"Snapshotting disk '{disk}': .*not in Ready state but Allocated"):
        snapshots.snapshot_disk(ctx, disk, METADATA)
    assert cloud.snapshots == {}


def test_delete_snapshot_and_again(cloud, ctx):
    snapshot = snapshots.snapshot_disk(ctx, cloud.add_volume(), METADATA)
    assert snapshots.delete_snapshot(ctx, snapshot) is None
    assert cloud.snapshots == {}
    assert snapshots.delete_snapshot(ctx, snapshot) is None
    assert snapshots.delete_snapshot(ctx, "never-existed") is None
    assert cloud.commands().count("deleteSnapshot") == 1


def test_delete_snapshot_failure_is_reported(cloud, ctx):
    snapshot = snapshots.snapshot_disk(ctx, cloud.add_volume(), METADATA)
    cloud.fail("deleteSnapshot", 530, "secondary storage unreachable")
    with pytest.raises(CloudError, match=f"Deleting snapshot '{snapshot}': .*secondary storage unreachable"):
        snapshots.delete_snapshot(ctx, snapshot)


def test_snapshot_tags_keep_reserved_keys_for_the_cpi(ctx):
    wanted = snapshots.snapshot_tags(ctx, {"cpi_role": "ephemeral", "index": 3, "empty": ""})
    assert wanted == {"index": "3", "empty": tags.EMPTY_VALUE, tags.DIRECTOR_KEY: "director-uuid-1"}
    assert "Ignoring metadata key 'cpi_role'" in ctx.stderr.getvalue()
