"""The ``volume`` strategy: write the disk onto a volume attached to the CPI's own VM, snapshot it, template it.

For a CPI (director or bosh-cli host) that is itself a VM in the cloud and
cannot reach the secondary storage VM, nor be reached by it.  Steps:
createVolume (work volume sized to the raw disk) -> attachVolume to this VM
-> find the new block device -> write the raw disk (streaming, fsync) ->
detachVolume -> createSnapshot -> createTemplate from the snapshot.  The
work volume and snapshot are always removed afterwards, also on failure
(detached first).  Each of them carries the template's unique name (the
volume and the snapshot ``<template name>-work``), so that a lost answer or an
interruption finds it by that name and removes it (``Gateway.create_recoverable``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import leftovers, lookups
from ..cloudstack.errors import CloudStackError
from ..cloudstack.models import Volume
from ..errors import CloudError
from .progress import ProgressMeter

if TYPE_CHECKING:
    from ..cloudstack.gateway import Gateway
    from ..cloudstack.models import DiskOffering, Vm
    from ..cloudstack.templates import NewTemplate

GIB = 1 << 30
DEVICE_TIMEOUT = 120.0
DEVICE_PATTERN = re.compile(r"^(x?vd|sd)[a-z]{1,2}$")


def own_vm_id(configured: str | None, metadata_url: str, *, timeout: float = 5.0) -> str:
    """This VM's id: from the config, else from the metadata service."""
    if configured:
        return configured
    from ..cloudstack.transport import HttpTransport, TransportError

    # The metadata service is plain http on the virtual router of the VM's own network: never through a proxy.
    transport = HttpTransport(False, environ={})
    try:
        response = transport.request("GET", metadata_url, timeout=(timeout, timeout))
        value = response.text.strip() if response.status == 200 else ""
    except TransportError as exc:
        raise CloudError(f"Asking the metadata service {metadata_url} for this VM's id: {exc.text}; "
                         "set cloudstack.stemcell.volume.vm_id") from None
    finally:
        transport.close()
    if not value or len(value) > 64 or not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise CloudError(f"The metadata service {metadata_url} did not answer a VM id "
                         f"(HTTP {response.status}); set cloudstack.stemcell.volume.vm_id")
    return value


def device_names(device_id: int) -> list[str]:
    """Block device names a data disk with CloudStack ``deviceid`` usually gets (virtio, Xen, SCSI)."""
    if device_id < 0 or device_id > 25:
        return []
    letter = chr(ord("a") + device_id)
    return [f"vd{letter}", f"xvd{letter}", f"sd{letter}"]


def list_devices(directory: str) -> set[str]:
    try:
        return {name for name in os.listdir(directory) if DEVICE_PATTERN.match(name)}
    except FileNotFoundError:
        return set()


def find_device(directory: str, device_id: int | None, before: set[str], *, timeout: float = DEVICE_TIMEOUT,
                sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> str:
    """The new block device: the name the device id maps to, else the single new entry in ``directory``."""
    started = clock()
    while True:
        now_present = list_devices(directory)
        new = now_present - before
        for name in device_names(device_id) if device_id is not None else []:
            if name in new:
                return os.path.join(directory, name)
        if len(new) == 1:
            return os.path.join(directory, next(iter(new)))
        if len(new) > 1:
            raise CloudError(f"Several new block devices appeared in {directory} ({', '.join(sorted(new))}) "
                             f"and none matches device id {device_id}; refusing to guess which to overwrite")
        if clock() - started >= timeout:
            raise CloudError(f"The work volume (device id {device_id}) did not appear in {directory} within "
                             f"{timeout:g} s (cloudstack.stemcell.volume.device_dir; is hot-plug working?)")
        sleep(0.2)


def device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def write_device(path: str, chunks: Iterable[bytes], size: int, log) -> int:
    """Write ``size`` raw bytes from the start of the device, then fsync; returns bytes written."""
    meter = ProgressMeter(size, f"Writing the disk to {path}", log.info)
    written = 0
    fd = os.open(path, os.O_WRONLY)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                count = os.write(fd, view)
                view = view[count:]
                written += count
            meter.update(written)
        os.fsync(fd)
    finally:
        os.close(fd)
    meter.finish()
    if written != size:
        raise CloudError(f"Writing the disk to {path}: wrote {written} of {size} bytes")
    return written


# A work volume is named after its template (templates.naming: "<stemcell>-<version>-<8 hex>") plus "-work".
WORK_VOLUME_NAME = re.compile(r"-[0-9a-f]{8}-work$")
WORK_SUFFIX = "-work"
WRITE_ALLOWANCE = 3600.0  # seconds to write an image onto the device: the one step no configured timeout bounds


def stale_after(timeouts, device_timeout: float) -> float:
    """Seconds after which a work volume still attached can belong to no running create_stemcell: the sum of
    every step's bound (create, attach, device, write, detach, snapshot, template)."""
    return (timeouts.create_volume + timeouts.attach_volume + device_timeout + WRITE_ALLOWANCE
            + timeouts.detach_volume + timeouts.snapshot_volume + timeouts.poll_template)


def remove_stale_work_volumes(cloud: Gateway, vm: Vm, log, *, device_timeout: float, now: float) -> list[str]:
    """Work volumes a killed create_stemcell left attached to this VM: detached and deleted; their ids.

    Only volumes attached to the CPI's own VM, named as work volumes are, and older than any create_stemcell can
    run (``stale_after``): the CPI alone attaches such volumes to its VM, and none of them is still in use.
    """
    bound = stale_after(cloud.timeouts, device_timeout)
    removed = []
    for volume in cloud.volumes.of_vm(vm.id):
        if not WORK_VOLUME_NAME.search(volume.name) or not lookups.older_than(volume.created, bound, now):
            continue
        log.warning(f"Work volume {volume.id} ({volume.name}, created {volume.created}) is still "
                    "attached to this VM: a create_stemcell that did not finish left it; removing it")
        stale = WorkResources(volume_id=volume.id, attached_to=vm.id)
        cleanup(cloud, stale)
        if stale.volume_id is None:
            removed.append(volume.id)
    return removed


@dataclass
class WorkResources:
    """What the strategy made and must remove (template ids are handed to the caller)."""

    volume_id: str | None = None
    attached_to: str | None = None         # the VM the work volume is (or may be) attached to
    snapshot_id: str | None = None
    template_id: str | None = None


def remove_unconfirmed_work(cloud: Gateway, log, *, device_timeout: float) -> None:
    """Work volumes (not attached: those are ``remove_stale_work_volumes``') and work snapshots that a create_stemcell
    killed with SIGKILL left: they keep the unconfirmed mark until deleted, so one older than any create_stemcell can
    run belongs to none that is still running."""
    bound = stale_after(cloud.timeouts, device_timeout)
    leftovers.sweep(log, "Work volume", lambda: [v for v in cloud.volumes.unconfirmed() if not v.vm_id
                                                 and WORK_VOLUME_NAME.search(v.name)], bound,
                    lambda volume: cloud.volumes.discard(volume.id))
    leftovers.sweep(log, "Work snapshot", lambda: [s for s in cloud.snapshots.unconfirmed()
                                                   if WORK_VOLUME_NAME.search(s.name)], bound,
                    lambda snapshot: cloud.snapshots.discard(snapshot.id))


def run(cloud: Gateway, *, log, vm: Vm, offering: DiskOffering, raw_size: int,
        raw_chunks: Callable[[], Iterable[bytes]], device_dir: str, new: NewTemplate, work: WorkResources,
        device_timeout: float = DEVICE_TIMEOUT) -> str:
    """Make the template ``new`` in ``vm``'s zone and return its id; ``work`` records what exists at every step."""
    remove_stale_work_volumes(cloud, vm, log, device_timeout=device_timeout, now=time.time())
    remove_unconfirmed_work(cloud, log, device_timeout=device_timeout)
    size_gib = max(1, -(-raw_size // GIB))
    if not offering.customized and offering.size_gib < size_gib:
        raise CloudError(f"Disk offering '{offering.name}' ({offering.size_gib} GiB) is smaller than "
                         f"the stemcell's raw disk ({size_gib} GiB); use a customized offering "
                         "(cloudstack.stemcell.volume.disk_offering)")
    name = new.name + WORK_SUFFIX
    log.info(f"Creating work volume {name} ({size_gib} GiB) in zone '{vm.zone_name or vm.zone_id}'")
    try:
        # Never handed over: it keeps the unconfirmed mark until deleted, so a killed call's is found (sweep_work)
        volume = cloud.volumes.create(name=name, zone_id=vm.zone_id, offering_id=offering.id,
                                      size_gib=size_gib if offering.customized else None, tags={}, confirm=False)
    except CloudStackError as err:
        raise CloudError(f"Creating the stemcell work volume: {err}", err.is_transient) from None
    work.volume_id = volume.id
    before = list_devices(device_dir)
    try:
        work.attached_to = vm.id  # maybe, from now on: a detach of a volume not attached is done
        attached = cloud.volumes.attach(volume.id, vm.id)
    except CloudStackError as err:
        raise CloudError(f"Attaching the work volume {volume.id} to VM {vm.id}: {err}", err.is_transient) from None
    device_id = attached.device_id
    device = find_device(device_dir, device_id, before, timeout=device_timeout)
    capacity = device_size(device)
    if capacity < raw_size:
        raise CloudError(f"The new device {device} holds {capacity} bytes, less than the disk's {raw_size}; "
                         "it is probably not the work volume")
    log.info(f"Work volume {volume.id} is {device} (device id {device_id})")
    write_device(device, raw_chunks(), raw_size, log)
    detach(cloud, work)
    try:
        snapshot = cloud.snapshots.create(volume.id, name=name, tags={}, confirm=False)
    except CloudStackError as err:
        raise CloudError(f"Snapshotting the work volume {volume.id}: {err}", err.is_transient) from None
    work.snapshot_id = snapshot.id
    log.info(f"Creating template {new.name} from snapshot {snapshot.id}")
    try:
        template = cloud.templates.create_from_snapshot(snapshot.id, new)
    except CloudStackError as err:
        raise CloudError(f"Creating a template from snapshot {snapshot.id}: {err}", err.is_transient) from None
    work.template_id = template.id
    return template.id


def detach(cloud: Gateway, work: WorkResources) -> None:
    """Detach the work volume from the VM it is (or may be) attached to; a volume no longer there is done."""
    if not work.attached_to or not work.volume_id:
        return
    try:
        cloud.volumes.detach(Volume(id=work.volume_id, vm_id=work.attached_to))
    except CloudStackError as err:
        raise CloudError(f"Detaching the work volume {work.volume_id}: {err}", err.is_transient) from None
    work.attached_to = None


def cleanup(cloud: Gateway, work: WorkResources) -> None:
    """Remove the snapshot and the work volume (detached first): each tried again on transient failures, and
    counted once it is seen gone; what stays is logged, never raised."""
    snapshot_id = work.snapshot_id
    if snapshot_id and cloud.discard(f"work snapshot '{snapshot_id}'", lambda: cloud.snapshots.delete(snapshot_id),
                                     lambda: cloud.snapshots.get(snapshot_id) is None):
        work.snapshot_id = None
    volume_id = work.volume_id
    if volume_id and cloud.discard(f"work volume '{volume_id}'", lambda: _remove_volume(cloud, work, volume_id),
                                   lambda: cloud.volumes.get(volume_id) is None):
        work.volume_id = None


def _remove_volume(cloud: Gateway, work: WorkResources, volume_id: str) -> None:
    if work.attached_to:
        cloud.volumes.detach(Volume(id=volume_id, vm_id=work.attached_to))
        work.attached_to = None
    cloud.volumes.delete(volume_id)
