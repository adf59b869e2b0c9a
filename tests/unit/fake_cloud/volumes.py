"""Volumes of the fake cloud (``cloud.volumes``).

Device ids as CloudStack chooses them for data disks: the lowest free from 1, skipping 3 (the CD-ROM's), up to the
hypervisor's limit, beyond which the attach is refused with "maximum number of data disks" (the facts of
shared/reference/cloudstack-api.md §5; the real gateway is tested on them against the simulator).

With ``device_dir`` set, a volume attached through the gateway appears there as a block device named for its device
id (``vdb`` for 1), a sparse file of the volume's size, and goes when it is detached: the hot-plug the stemcell
volume strategy relies on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE
from cloudstack_cpi.cloudstack.models import GIB, Volume

from . import FakeService, api_error, job_failure, recorded

CDROM = 3


class _Created:
    """What ``start_create`` answers: the new id at once, the volume when waited for."""

    def __init__(self, volume: Volume) -> None:
        self.resource_id = volume.id
        self._volume = volume

    def wait(self, recover=None) -> Volume:
        return self._volume


class FakeVolumes(FakeService):
    service_name = "volumes"

    def __init__(self, cloud, max_data_volumes: int = 6) -> None:
        super().__init__(cloud)
        self.items: dict[str, Volume] = {}
        self.max_data_volumes = max_data_volumes
        self._after_create: list[CloudStackError] = []
        self.device_dir: str | None = None

    # -- arranging and reading the fake's state

    def add(self, *, zone: str = "z1", offering: str | None = "off-custom", gib: int = 10, vm: str | None = None,
            device_id: int | None = None, role: str | None = None, state: str = "Ready",
            volume_type: str = "DATADISK", name: str = "") -> str:
        volume_id = self.cloud.new_id("vol")
        self.items[volume_id] = Volume(volume_id, name=name or f"volume-{volume_id[:8]}", type=volume_type,
                                       state=state, zone_id=zone, zone_name=self.cloud.catalogue.zone(zone).name,
                                       size_bytes=gib * GIB, disk_offering_id=offering)
        if vm:
            self._attach(volume_id, vm, device_id)
        if role:
            self.cloud.tags.put("Volume", volume_id, {"cpi_role": role})
        return volume_id

    def fail_after_create(self, error: CloudStackError) -> None:
        """The next ``start_create`` makes its volume and reports it (``made``: after a lost answer the gateway finds
        it by its name), then raises ``error``."""
        self._after_create.append(error)

    def data_volumes(self) -> list[str]:
        return sorted(v.id for v in self.items.values() if v.type == "DATADISK")

    def _out(self, volume: Volume) -> Volume:
        return dataclasses.replace(volume, tags=self.cloud.tags.of("Volume", volume.id))

    def _attach(self, volume_id: str, vm_id: str, device_id: int | None) -> Volume:
        used = {v.device_id for v in self.items.values() if v.vm_id == vm_id}
        if device_id is None:
            free = [d for d in range(1, self.max_data_volumes + 2) if d != CDROM and d not in used]
            if not free:
                raise job_failure("attachVolume", f"The specified VM already has the maximum number of data disks "
                                                  f"({self.max_data_volumes}). Please specify another VM.", 431)
            device_id = free[0]
        volume = dataclasses.replace(self.items[volume_id], vm_id=vm_id, device_id=device_id, state="Ready")
        self.items[volume_id] = volume
        return volume

    def _device(self, volume: Volume) -> str | None:
        if not self.device_dir or volume.device_id is None:
            return None
        return os.path.join(self.device_dir, "vd" + chr(ord("a") + volume.device_id))

    def _plug(self, volume: Volume) -> None:
        device = self._device(volume)
        if device:
            os.makedirs(os.path.dirname(device), exist_ok=True)
            with open(device, "wb") as handle:
                handle.truncate(volume.size_bytes)

    def _unplug(self, volume: Volume) -> None:
        device = self._device(volume)
        if device and os.path.exists(device):
            os.unlink(device)

    def _known(self, volume_id: str, command: str) -> Volume:
        if volume_id not in self.items:
            raise api_error(command, f"Unable to execute API command {command.lower()} due to invalid value. "
                                     f"Object (uuid: {volume_id}) does not exist.")
        return self.items[volume_id]

    # -- the gateway's methods

    @recorded
    def get(self, volume_id: str) -> Volume | None:
        volume = self.items.get(volume_id)
        return None if volume is None or volume.gone else self._out(volume)

    @recorded
    def of_vm(self, vm_id: str, *, data_only: bool = False) -> list[Volume]:
        return [self._out(v) for v in self.items.values()
                if v.vm_id == vm_id and (not data_only or v.type == "DATADISK")]

    @recorded
    def tagged(self, tags: Mapping[str, str]) -> list[Volume]:
        found = [self._out(v) for v in self.items.values() if not v.gone]
        return [v for v in found if all(v.tags.get(k) == val for k, val in tags.items())]

    @recorded
    def named(self, name: str) -> list[Volume]:
        return [self._out(v) for v in self.items.values() if v.name == name]

    @recorded
    def create(self, *, name: str, zone_id: str, offering_id: str, size_gib: int | None,
               tags: Mapping[str, str], confirm: bool = True, meanwhile: Callable[[], object] | None = None) -> Volume:
        offering = self.cloud.catalogue.disk_offering(offering_id)
        gib = size_gib if offering.customized else offering.size_gib
        volume_id = self.cloud.new_id("vol")
        self.items[volume_id] = Volume(volume_id, name=name, state="Allocated", zone_id=zone_id,
                                       zone_name=self.cloud.catalogue.zone(zone_id).name, size_bytes=(gib or 0) * GIB,
                                       disk_offering_id=offering_id)
        self.cloud.tags.put("Volume", volume_id, {**tags, **({} if confirm else {UNCONFIRMED_TAG: UNCONFIRMED_VALUE})})
        if meanwhile is not None:
            meanwhile()
        return self._out(self.items[volume_id])

    @recorded
    def start_create(self, *, name: str, zone_id: str, offering_id: str, size_gib: int | None,
                     made: Callable[[str], object]) -> _Created:
        created = self.create.__wrapped__(self, name=name, zone_id=zone_id,  # type: ignore[attr-defined]
                                          offering_id=offering_id, size_gib=size_gib, tags={})
        made(created.id)
        if self._after_create:
            raise self._after_create.pop(0)
        return _Created(created)

    @recorded
    def attach(self, volume_id: str, vm_id: str) -> Volume:
        self._known(volume_id, "attachVolume")
        attached = self._attach(volume_id, vm_id, None)
        self._plug(attached)
        return self._out(attached)

    @recorded
    def detach(self, volume: Volume) -> None:
        current = self.items.get(volume.id)
        vm = self.cloud.vms.items.get(current.vm_id) if current is not None and current.vm_id else None
        if vm is not None and vm.state not in ("Running", "Stopped", "Destroyed"):
            # VolumeApiServiceImpl.detachVolumeFromVM: a VM in any other state (Error after a failed deploy) keeps it
            raise api_error("detachVolume", "Please specify a VM that is either running or stopped.")
        if current is not None:
            self._unplug(current)
            self.items[volume.id] = dataclasses.replace(current, vm_id=None, device_id=None)

    @recorded
    def delete(self, volume_id: str) -> bool:
        volume = self.items.get(volume_id)
        if volume is None or volume.gone:
            return False
        if volume.vm_id:
            raise api_error("deleteVolume", "Please specify a volume that is not attached to any VM.")
        del self.items[volume_id]
        self.cloud.tags.forget("Volume", volume_id)
        return True

    @recorded
    def delete_detaching(self, volume: Volume) -> bool:
        if volume.vm_id:
            self.detach.__wrapped__(self, volume)  # type: ignore[attr-defined]
        return self.delete.__wrapped__(self, volume.id)  # type: ignore[attr-defined]

    @recorded
    def resize(self, volume_id: str, *, size_gib: int | None = None,
               offering_id: str | None = None) -> Volume | None:
        volume = self._known(volume_id, "resizeVolume")
        offering = self.cloud.catalogue.disk_offering(offering_id or volume.disk_offering_id or "")
        gib = size_gib if size_gib is not None else offering.size_gib
        self.items[volume_id] = dataclasses.replace(volume, size_bytes=gib * GIB, disk_offering_id=offering.id)
        return self._out(self.items[volume_id])

    @recorded
    def discard(self, volume_id: str) -> bool:
        volume = self.items.pop(volume_id, None)
        self.cloud.tags.forget("Volume", volume_id)
        return volume is not None

    @recorded
    def unconfirmed(self) -> list[Volume]:
        return [self._out(v) for v in self.items.values()
                if not v.gone and self.cloud.tags.of("Volume", v.id).get(UNCONFIRMED_TAG) == UNCONFIRMED_VALUE]
