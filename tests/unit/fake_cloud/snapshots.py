"""Snapshots of the fake cloud (``cloud.snapshots``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from cloudstack_cpi.cloudstack.gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE
from cloudstack_cpi.cloudstack.models import Snapshot

from . import FakeService, recorded


class FakeSnapshots(FakeService):
    service_name = "snapshots"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.items: dict[str, Snapshot] = {}

    def _out(self, snapshot: Snapshot) -> Snapshot:
        return dataclasses.replace(snapshot, tags=self.cloud.tags.of("Snapshot", snapshot.id))

    def add(self, volume_id: str, state: str = "BackedUp") -> str:
        snapshot_id = self.cloud.new_id("snap")
        self.items[snapshot_id] = Snapshot(snapshot_id, name=f"snapshot-{snapshot_id[:9]}", state=state,
                                           volume_id=volume_id)
        return snapshot_id

    @recorded
    def get(self, snapshot_id: str) -> Snapshot | None:
        snapshot = self.items.get(snapshot_id)
        return None if snapshot is None or snapshot.gone else self._out(snapshot)

    @recorded
    def named(self, volume_id: str, name: str) -> list[Snapshot]:
        return [self._out(s) for s in self.items.values() if s.volume_id == volume_id and s.name == name]

    @recorded
    def create(self, volume_id: str, *, name: str, tags: Mapping[str, str], confirm: bool = True,
               meanwhile: Callable[[], object] | None = None) -> Snapshot:
        snapshot_id = self.cloud.new_id("snap")
        self.items[snapshot_id] = Snapshot(snapshot_id, name=name, state="BackedUp", volume_id=volume_id)
        self.cloud.tags.put("Snapshot", snapshot_id, {**tags, **({} if confirm else {UNCONFIRMED_TAG: UNCONFIRMED_VALUE})})
        if meanwhile is not None:
            meanwhile()
        return self._out(self.items[snapshot_id])

    @recorded
    def delete(self, snapshot_id: str) -> bool:
        snapshot = self.items.pop(snapshot_id, None)
        self.cloud.tags.forget("Snapshot", snapshot_id)
        return snapshot is not None and not snapshot.gone

    @recorded
    def unconfirmed(self) -> list[Snapshot]:
        return [self._out(s) for s in self.items.values()
                if not s.gone and self.cloud.tags.of("Snapshot", s.id).get(UNCONFIRMED_TAG) == UNCONFIRMED_VALUE]

    @recorded
    def discard(self, snapshot_id: str) -> bool:
        self.items.pop(snapshot_id, None)
        self.cloud.tags.forget("Snapshot", snapshot_id)
        return True
