"""Snapshots of persistent disks (``director.enable_snapshots``): CloudStack volume snapshots.

A snapshot CID is the CloudStack snapshot's id.  The director's metadata
becomes the snapshot's tags (``index`` arrives as an integer and is kept as
text), plus the director's uuid.  See docs/disks.md.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .. import leftovers, tags
from ..errors import DiskNotFound
from .disks import cloud_step, without_reserved

if TYPE_CHECKING:
    from ..context import CallContext

NAME_PREFIX = "bosh-snapshot-"


def snapshot_disk(ctx: CallContext, disk_cid: str, metadata: dict | None = None) -> str:
    """Snapshot a persistent disk and return the snapshot's CID.

    BOSH: ``snapshot_disk(disk_cid, metadata)``.  Metadata (``deployment, job,
    index, director_name, director_uuid, agent_id, instance_id`` and tags) is
    kept as the snapshot's tags.  Missing disk: DiskNotFound.  A snapshot whose
    tagging fails is deleted again.
    """
    what = f"Snapshotting disk '{disk_cid}'"
    timeout = ctx.config.cloudstack.timeout
    # Snapshots of snapshot_disk calls killed before they answered (the director never learned of them), removed
    # while this call's createSnapshot job runs.
    def sweep() -> None:
        leftovers.sweep(ctx.log, "Snapshot", lambda: [s for s in ctx.cloud.snapshots.unconfirmed()
                                                  if s.name.startswith(NAME_PREFIX)],
                        timeout.snapshot_volume + 2 * timeout.global_ + leftovers.MARGIN,
                        lambda snapshot: ctx.cloud.snapshots.discard(snapshot.id))

    with cloud_step(what):
        if ctx.cloud.volumes.get(disk_cid) is None:
            raise DiskNotFound(f"{what}: disk not found")
        snapshot = ctx.cloud.snapshots.create(disk_cid, name=NAME_PREFIX + str(uuid.uuid4()),
                                              tags=snapshot_tags(ctx, metadata), meanwhile=sweep)
    ctx.log.info(f"Created snapshot '{snapshot.id}' of disk '{disk_cid}'")
    return snapshot.id


def delete_snapshot(ctx: CallContext, snapshot_cid: str) -> None:
    """Delete a snapshot.

    BOSH: ``delete_snapshot(snapshot_cid)``.  A snapshot that is already gone is
    not an error.
    """
    what = f"Deleting snapshot '{snapshot_cid}'"
    with cloud_step(what):
        if ctx.cloud.snapshots.get(snapshot_cid) is None:
            ctx.log.info(f"{what}: it does not exist (any more); nothing to do")
            return None
        if not ctx.cloud.snapshots.delete(snapshot_cid):
            ctx.log.info(f"{what}: it disappeared meanwhile")
            return None
    ctx.log.info(f"Deleted snapshot '{snapshot_cid}'")
    return None


def snapshot_tags(ctx: CallContext, metadata: dict[str, Any] | None) -> dict[str, str]:
    """The snapshot's tags: the director's metadata as CloudStack accepts it, plus this director's uuid."""
    wanted = tags.sanitise(without_reserved(ctx, metadata))
    if ctx.director_uuid:
        wanted[tags.DIRECTOR_KEY] = ctx.director_uuid
    return wanted
