"""Volume snapshots: create (named, tagged, recoverable), find and delete.

Gone: an unknown id (431) or a snapshot being destroyed.  Delete is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .gateway import Creation, Service
from .models import Snapshot


def _job_snapshot(result: dict) -> Snapshot | None:
    row = result.get("snapshot") or {}
    return Snapshot.from_api(row) if row.get("id") else None


class Snapshots(Service):
    def get(self, snapshot_id: str) -> Snapshot | None:
        return self._one("listSnapshots", Snapshot.from_api, snapshot_id)

    def unconfirmed(self) -> list[Snapshot]:
        """Snapshots still marked as never handed over (``gateway.UNCONFIRMED_TAG``), checked here again: a server
        that ignored the tag filter must not make a caller act on other snapshots."""
        return self._unconfirmed("listSnapshots", Snapshot.from_api)

    def named(self, volume_id: str, name: str) -> list[Snapshot]:
        rows = self.client.list("listSnapshots", volumeid=volume_id, name=name)
        return [s for s in map(Snapshot.from_api, rows) if s.name == name]

    def create(self, volume_id: str, *, name: str, tags: Mapping[str, str], confirm: bool = True,
               meanwhile: Callable[[], object] | None = None) -> Snapshot:
        """A snapshot of the volume named ``name`` (unique) and tagged with ``tags``; nothing left when it fails.
        ``meanwhile`` runs while the create's job does."""
        return self.gateway.create_recoverable(Creation(
            kind="snapshot", name=name, command="createSnapshot", params={"volumeid": volume_id, "name": name},
            timeout=self.timeouts.snapshot_volume, what=f"snapshotting volume {volume_id}", parse=_job_snapshot,
            find_named=lambda: self.named(volume_id, name), remove=self.delete,
            gone=lambda i: self.get(i) is None, resource_type="Snapshot", tags=dict(tags), confirm=confirm),
            meanwhile=meanwhile)

    def delete(self, snapshot_id: str) -> bool:
        """Delete the snapshot; False when it was gone already (or went meanwhile)."""
        return self.gateway.delete("deleteSnapshot", timeout=self.timeouts.delete_snapshot_volume,
                                   what=f"deleting snapshot {snapshot_id}", gone=lambda: self.get(snapshot_id) is None,
                                   label=f"Snapshot {snapshot_id}", id=snapshot_id)

    def discard(self, snapshot_id: str) -> bool:
        """Best-effort removal of a snapshot a failed or killed call made; never raises, True when it is gone."""
        return self.gateway.discard(f"half-made snapshot '{snapshot_id}'", lambda: self.delete(snapshot_id),
                                    lambda: self.get(snapshot_id) is None)
