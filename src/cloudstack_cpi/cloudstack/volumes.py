"""Volumes: create, find, attach, detach, resize and delete CloudStack volumes.

Rules owned here:
- gone: a volume that does not exist (431 for its id) or is being destroyed (``GONE_VOLUME_STATES``) is None;
- a create carries a unique name and its tags from the start, is found by that name after a lost answer, and
  leaves nothing when it fails (``Gateway.create_recoverable``);
- delete and detach are idempotent: a volume already gone, or no longer attached, is done;
- attach after a lost answer or a timeout looks at the volume: attached to the VM with a device is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import CloudStackError
from .gateway import Creation, Service
from .models import Volume

if TYPE_CHECKING:
    from .gateway import Pending


def _job_volume(result: dict) -> Volume | None:
    row = result.get("volume") or {}
    return Volume.from_api(row) if row.get("id") else None


class Volumes(Service):
    # -- reading

    def get(self, volume_id: str) -> Volume | None:
        """The volume unless it is gone (unknown id, destroyed, being expunged)."""
        return self._one("listVolumes", Volume.from_api, volume_id)

    def of_vm(self, vm_id: str, *, data_only: bool = False) -> list[Volume]:
        """The volumes attached to the VM (its root volume too unless ``data_only``)."""
        rows = self.client.list_all("listVolumes", virtualmachineid=vm_id, listall=True,
                                    type="DATADISK" if data_only else None)
        return [Volume.from_api(row) for row in rows]

    def tagged(self, tags: Mapping[str, str]) -> list[Volume]:
        """Volumes carrying all of ``tags`` and not gone, checked here again: a server that ignored the tag filter
        must not make a caller act on other volumes."""
        return self._tagged("listVolumes", Volume.from_api, tags)

    def unconfirmed(self) -> list[Volume]:
        """Volumes still marked as never handed over (``gateway.UNCONFIRMED_TAG``): made by a call that did not
        answer, or that is still running."""
        return self._unconfirmed("listVolumes", Volume.from_api)

    def named(self, name: str) -> list[Volume]:
        """Every volume named exactly ``name`` (a ``name=`` filter may match more: lookups.only_named)."""
        return [v for v in map(Volume.from_api, self.client.list("listVolumes", name=name, listall=True))
                if v.name == name]

    # -- changing

    def _creation(self, *, name: str, zone_id: str, offering_id: str, size_gib: int | None, tags: Mapping[str, str],
                 kind: str = "volume", confirm: bool = True) -> Creation[Volume]:
        return Creation(
            kind=kind, name=name, command="createVolume",
            params={"name": name, "zoneid": zone_id, "diskofferingid": offering_id, "size": size_gib},
            timeout=self.timeouts.create_volume, what=f"creating volume {name}", parse=_job_volume,
            find_named=lambda: self.named(name), remove=self.delete, gone=lambda i: self.get(i) is None,
            resource_type="Volume", tags=dict(tags), confirm=confirm)

    def create(self, *, name: str, zone_id: str, offering_id: str, size_gib: int | None,
               tags: Mapping[str, str], confirm: bool = True, meanwhile: Callable[[], object] | None = None) -> Volume:
        """A new volume named ``name`` (unique), tagged with ``tags``; nothing is left when it fails.  Without
        ``confirm`` it keeps the unconfirmed mark: a work volume, deleted before its call answers, so that a killed
        call's is found (``unconfirmed``).  ``meanwhile`` runs while the create's job does."""
        return self.gateway.create_recoverable(self._creation(name=name, zone_id=zone_id, offering_id=offering_id,
                                                             size_gib=size_gib, tags=tags, confirm=confirm),
                                               meanwhile=meanwhile)

    def attach(self, volume_id: str, vm_id: str) -> Volume:
        """Attach and answer the volume with its device id.  After a lost answer or a timeout the volume is looked
        at: attached to this VM with a device, the attach happened."""
        try:
            result = self.gateway.run("attachVolume", timeout=self.timeouts.attach_volume,
                                      what=f"attaching volume {volume_id}", id=volume_id, virtualmachineid=vm_id,
                                      ours=lambda done: (_job_volume(done) or Volume("")).vm_id == vm_id)
        except CloudStackError as err:
            if err.kind in ("timeout", "transport"):
                now = self.get(volume_id)
                if now is not None and now.vm_id == vm_id and now.device_id is not None:
                    self.gateway.log.warning(f"Attaching volume {volume_id}: {err}; but it is attached now")
                    return now
            raise
        attached = _job_volume(result)
        if attached is None or attached.device_id is None:
            attached = self.get(volume_id)
        if attached is None or attached.device_id is None:
            raise CloudStackError("attachVolume", f"no device id reported for volume {volume_id}", kind="job")
        return attached

    def detach(self, volume: Volume) -> None:
        """Detach a volume as just listed from the VM it hangs on.  A failure after which it no longer hangs there
        is done (a lost answer, or another detach meanwhile)."""
        try:
            self.gateway.run("detachVolume", timeout=self.timeouts.detach_volume,
                             what=f"detaching volume {volume.id}", id=volume.id)
        except CloudStackError:
            now = self.get(volume.id)
            if now is None or now.vm_id != volume.vm_id:
                return
            raise

    def delete(self, volume_id: str) -> bool:
        """Delete a detached volume; False when it was gone already (or went meanwhile)."""
        return self.gateway.delete("deleteVolume", timeout=self.timeouts.delete_volume,
                                   what=f"deleting volume {volume_id}", gone=lambda: self.get(volume_id) is None,
                                   label=f"Volume {volume_id}", id=volume_id)

    def delete_detaching(self, volume: Volume) -> bool:
        """Delete a volume as just listed, detaching it first when it is attached."""
        if volume.vm_id:
            self.detach(volume)
        return self.delete(volume.id)

    def resize(self, volume_id: str, *, size_gib: int | None = None, offering_id: str | None = None) -> Volume | None:
        """resizeVolume to a size (customized offerings) and/or another offering; the resized volume."""
        def ours(result: dict) -> bool:  # after a lost answer: the resize found must be to this size and offering
            done = _job_volume(result)
            return done is not None and (size_gib is None or done.size_gib == size_gib) and (
                offering_id is None or done.disk_offering_id == offering_id)

        result = self.gateway.run("resizeVolume", timeout=self.timeouts.resize_volume,
                                  what=f"resizing volume {volume_id}", ours=ours, id=volume_id, size=size_gib,
                                  diskofferingid=offering_id)
        return _job_volume(result)

    def discard(self, volume_id: str) -> bool:
        """Best-effort removal of a volume a failed call made (detached first); never raises."""
        return self.gateway.discard(f"half-created volume '{volume_id}'", lambda: self._remove_any(volume_id),
                                    lambda: self.get(volume_id) is None)

    def _remove_any(self, volume_id: str) -> Any:
        volume = self.get(volume_id)
        return self.delete_detaching(volume) if volume is not None else False

    def start_create(self, *, name: str, zone_id: str, offering_id: str, size_gib: int | None,
                     made: Callable[[str], object]) -> Pending[Volume]:
        """createVolume not waited for and untagged (create_vm runs it beside the deploy, and tags the volume once
        the VM's id is known).  ``made`` learns the id of every volume it may have made as soon as it is known,
        after a lost answer or an interruption too (found by the unique ``name``); a job result naming no volume
        is recovered by the name (``Gateway.start_named``)."""

        return self.gateway.start_named(self._creation(name=name, zone_id=zone_id, offering_id=offering_id,
                                                        size_gib=size_gib, tags={}), made=made)
