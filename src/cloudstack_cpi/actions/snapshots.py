"""Snapshots of persistent disks (``director.enable_snapshots``): CloudStack volume snapshots.

A snapshot CID is the CloudStack snapshot's id.  The director's metadata
becomes the snapshot's tags (``index`` arrives as an integer and is kept as
text), plus the director's uuid.  See docs/disks.md.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .. import cleanup, lookups, tags
from ..cloudstack.errors import CloudStackError
from ..errors import CloudError, DiskNotFound
from .disks import cloud_step, without_reserved

if TYPE_CHECKING:
    from ..context import CallContext

NAME_PREFIX = "bosh-snapshot-"
GONE_SNAPSHOT_STATES = frozenset({"Destroying", "Destroyed"})


def snapshot_disk(ctx: CallContext, disk_cid: str, metadata: dict | None = None) -> str:
    """Snapshot a persistent disk and return the snapshot's CID.

    BOSH: ``snapshot_disk(disk_cid, metadata)``.  Metadata (``deployment, job,
    index, director_name, director_uuid, agent_id, instance_id`` and tags) is
    kept as the snapshot's tags.  Missing disk: DiskNotFound.  A snapshot whose
    tagging fails is deleted again.
    """
    what = f"Snapshotting disk '{disk_cid}'"
    cs = ctx.config.cloudstack
    with cloud_step(what):
        if lookups.volume(ctx.client, disk_cid) is None:
            raise DiskNotFound(f"{what}: disk not found")
    name = NAME_PREFIX + str(uuid.uuid4())
    wanted = snapshot_tags(ctx, metadata)
    client = ctx.client
    created: set[str] = set()
    step = ""  # the breadcrumb of a failure once the snapshot exists: its tags
    try:
        # createSnapshot answers the new id with its job id: the tags go on while the snapshot is taken (issue 17).
        started = client.call("createSnapshot", volumeid=disk_cid, name=name)
        snapshot_id = started.get("id")
        tagging = _start_tags(ctx, snapshot_id, wanted) if snapshot_id else None
        if snapshot_id:
            created.add(snapshot_id)
        job = client.finish_job(started, command="createSnapshot", timeout=cs.timeout.snapshot_volume,
                                what=f"snapshotting volume {disk_cid}")
        snapshot_id = snapshot_id or (job.get("snapshot") or {}).get("id") or _only_named(ctx, disk_cid, name, what)
        created.add(snapshot_id)
        step = f"tagging snapshot '{snapshot_id}': "
        if tagging is None:
            tagging = _start_tags(ctx, snapshot_id, wanted)
        client.finish_job(tagging, command="createTags", timeout=cs.timeout.global_,
                          what=f"tagging snapshot {snapshot_id}")
    except CloudStackError as err:
        leftovers = created | ({err.resource_id} if err.resource_id else set())
        if err.outcome_unknown or err.kind == "timeout" or not leftovers:
            leftovers |= _snapshots_named(ctx, disk_cid, name)
        for leftover in sorted(leftovers):
            _discard(ctx, leftover)
        raise CloudError(f"{what}: {step}{err}", ok_to_retry=err.is_transient) from None
    except BaseException:  # interrupted (SIGTERM/SIGINT): the snapshot may exist, the director never learns it
        for leftover in sorted(created | _snapshots_named(ctx, disk_cid, name)):
            _discard(ctx, leftover)
        raise
    ctx.log.info(f"Created snapshot '{snapshot_id}' of disk '{disk_cid}'")
    return snapshot_id


def delete_snapshot(ctx: CallContext, snapshot_cid: str) -> None:
    """Delete a snapshot.

    BOSH: ``delete_snapshot(snapshot_cid)``.  A snapshot that is already gone is
    not an error.
    """
    what = f"Deleting snapshot '{snapshot_cid}'"
    with cloud_step(what):
        snapshot = _find(ctx, snapshot_cid)
    if snapshot is None:
        ctx.log.info(f"{what}: it does not exist (any more); nothing to do")
        return None
    try:
        ctx.client.run_job("deleteSnapshot", timeout=ctx.config.cloudstack.timeout.delete_snapshot_volume,
                           what=f"deleting snapshot {snapshot_cid}", id=snapshot_cid)
    except CloudStackError as err:
        with cloud_step(what):
            if _find(ctx, snapshot_cid) is None:
                ctx.log.info(f"{what}: it disappeared meanwhile ({err.errortext})")
                return None
        raise CloudError(f"{what}: {err}", ok_to_retry=err.is_transient) from None
    ctx.log.info(f"Deleted snapshot '{snapshot_cid}'")
    return None


def snapshot_tags(ctx: CallContext, metadata: dict[str, Any] | None) -> dict[str, str]:
    """The snapshot's tags: the director's metadata as CloudStack accepts it, plus this director's uuid."""
    wanted = tags.sanitise(without_reserved(ctx, metadata))
    if ctx.director_uuid:
        wanted[tags.DIRECTOR_KEY] = ctx.director_uuid
    return wanted


def _find(ctx: CallContext, snapshot_cid: str) -> dict | None:
    found = ctx.client.find("listSnapshots", id=snapshot_cid)
    if found is None or found.get("state") in GONE_SNAPSHOT_STATES:
        return None
    return found


def _start_tags(ctx: CallContext, snapshot_id: str, wanted: dict[str, str]) -> dict:
    """createTags for the snapshot, not waited for ({} when there is nothing to tag)."""
    if not wanted:
        return {}
    return ctx.client.call("createTags", resourceids=snapshot_id, resourcetype="Snapshot", tags=wanted)


def _only_named(ctx: CallContext, disk_cid: str, name: str, what: str) -> str:
    found = _snapshots_named(ctx, disk_cid, name)
    if len(found) != 1:
        raise CloudError(f"{what}: createSnapshot answered without a snapshot and {len(found)} are named {name}")
    return found.pop()


def _snapshots_named(ctx: CallContext, disk_cid: str, name: str) -> set[str]:
    try:
        return {s["id"] for s in ctx.client.list("listSnapshots", volumeid=disk_cid, name=name)
                if s.get("name") == name}
    except CloudStackError as err:
        ctx.log.warning(f"Looking for snapshot {name} after a failed create: {err}")
        return set()


def _discard(ctx: CallContext, snapshot_id: str) -> None:
    """Best-effort removal of a snapshot this call created; failures are logged, never raised."""
    cleanup.remove(
        ctx, f"half-created snapshot '{snapshot_id}'",
        lambda: ctx.client.run_job("deleteSnapshot", timeout=ctx.config.cloudstack.timeout.delete_snapshot_volume,
                                   what=f"deleting snapshot {snapshot_id}", id=snapshot_id),
        gone=lambda: _find(ctx, snapshot_id) is None,
    )

