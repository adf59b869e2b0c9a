"""The ``volume`` strategy: write the disk onto a volume attached to the CPI's own VM, snapshot it, template it.

For a CPI (director or bosh-cli host) that is itself a VM in the cloud and
cannot reach the secondary storage VM, nor be reached by it.  Steps:
createVolume (work volume sized to the raw disk) -> attachVolume to this VM
-> find the new block device -> write the raw disk (streaming, fsync) ->
detachVolume -> createSnapshot -> createTemplate from the snapshot.  The
work volume and snapshot are always removed afterwards, also on failure
(detached first).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import lookups
from ..cloudstack.errors import CloudStackError
from ..errors import CloudError
from .progress import ProgressMeter

if TYPE_CHECKING:
    from ..cloudstack.client import Client

GIB = 1 << 30
DEVICE_TIMEOUT = 120.0
DEVICE_PATTERN = re.compile(r"^(x?vd|sd)[a-z]{1,2}$")


def own_vm_id(configured: str | None, metadata_url: str, *, timeout: float = 5.0) -> str:
    """This VM's id: from the config, else from the metadata service."""
    if configured:
        return configured
    import requests

    try:
        response = requests.get(metadata_url, timeout=timeout)
        value = response.text.strip() if response.status_code == 200 else ""
    except requests.exceptions.RequestException as exc:
        raise CloudError(f"Asking the metadata service {metadata_url} for this VM's id: {exc}; "
                         "set cloudstack.stemcell.volume.vm_id") from None
    if not value or len(value) > 64 or not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise CloudError(f"The metadata service {metadata_url} did not answer a VM id "
                         f"(HTTP {response.status_code}); set cloudstack.stemcell.volume.vm_id")
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
WRITE_ALLOWANCE = 3600.0  # seconds to write an image onto the device: the one step no configured timeout bounds


def stale_after(timeouts, device_timeout: float) -> float:
    """Seconds after which a work volume still attached can belong to no running create_stemcell: the sum of
    every step's bound (create, attach, device, write, detach, snapshot, template)."""
    return (timeouts.create_volume + timeouts.attach_volume + device_timeout + WRITE_ALLOWANCE
            + timeouts.detach_volume + timeouts.snapshot_volume + timeouts.poll_template)


def remove_stale_work_volumes(client: Client, vm: dict, timeouts, log, *, device_timeout: float,
                              now: float) -> list[str]:
    """Work volumes a killed create_stemcell left attached to this VM: detached and deleted; their ids.

    Only volumes attached to the CPI's own VM, named as work volumes are, and older than any create_stemcell can
    run (``stale_after``): the CPI alone attaches such volumes to its VM, and none of them is still in use.
    """
    bound = stale_after(timeouts, device_timeout)
    removed = []
    for volume in client.list_all("listVolumes", virtualmachineid=vm["id"], listall=True):
        if not WORK_VOLUME_NAME.search(str(volume.get("name", ""))) or not lookups.older_than(volume, bound, now):
            continue
        log.warning(f"Work volume {volume['id']} ({volume.get('name')}, created {volume.get('created')}) is still "
                    "attached to this VM: a create_stemcell that did not finish left it; removing it")
        stale = WorkResources(volume_id=volume["id"], attached=True)
        cleanup(client, stale, timeouts, log)
        if stale.volume_id is None:
            removed.append(volume["id"])
    return removed


@dataclass
class WorkResources:
    """What the strategy made and must remove (template ids are handed to the caller)."""

    volume_id: str | None = None
    attached: bool = False
    snapshot_id: str | None = None
    template_id: str | None = None


def run(client: Client, *, log, timeouts, vm: dict, offering: dict, raw_size: int,
        raw_chunks: Callable[[], Iterable[bytes]], device_dir: str, naming, ostype_id: str, requires_hvm: bool,
        public: bool, work: WorkResources, device_timeout: float = DEVICE_TIMEOUT) -> str:
    """Make the template in ``vm``'s zone and return its id; ``work`` records what exists at every step."""
    remove_stale_work_volumes(client, vm, timeouts, log, device_timeout=device_timeout, now=time.time())
    size_gib = max(1, -(-raw_size // GIB))
    params: dict[str, Any] = {"name": f"{naming.name}-work", "zoneid": vm["zoneid"], "diskofferingid": offering["id"]}
    if offering.get("iscustomized"):
        params["size"] = size_gib
    elif int(offering.get("disksize") or 0) < size_gib:
        raise CloudError(f"Disk offering '{offering.get('name')}' ({offering.get('disksize')} GiB) is smaller than "
                         f"the stemcell's raw disk ({size_gib} GiB); use a customized offering "
                         "(cloudstack.stemcell.volume.disk_offering)")
    log.info(f"Creating work volume {params['name']} ({size_gib} GiB) in zone '{vm.get('zonename') or vm['zoneid']}'")
    try:
        result = client.run_job("createVolume", timeout=timeouts.create_volume, what="creating the work volume",
                                **params)
        work.volume_id = (result.get("volume") or {}).get("id")
    except CloudStackError as err:
        work.volume_id = err.resource_id
        raise CloudError(f"Creating the stemcell work volume: {err}", err.is_transient) from None
    before = list_devices(device_dir)
    try:
        result = client.run_job("attachVolume", timeout=timeouts.attach_volume, what="attaching the work volume",
                                id=work.volume_id, virtualmachineid=vm["id"])
    except CloudStackError as err:
        work.attached = True  # maybe: detaching an unattached volume is tolerated in cleanup
        raise CloudError(f"Attaching the work volume {work.volume_id} to VM {vm['id']}: {err}",
                         err.is_transient) from None
    work.attached = True
    device_id = (result.get("volume") or {}).get("deviceid")
    device_id = int(device_id) if device_id is not None else None
    device = find_device(device_dir, device_id, before, timeout=device_timeout)
    capacity = device_size(device)
    if capacity < raw_size:
        raise CloudError(f"The new device {device} holds {capacity} bytes, less than the disk's {raw_size}; "
                         "it is probably not the work volume")
    log.info(f"Work volume {work.volume_id} is {device} (device id {device_id})")
    write_device(device, raw_chunks(), raw_size, log)
    detach(client, work, timeouts)
    try:
        result = client.run_job("createSnapshot", timeout=timeouts.snapshot_volume,
                                what="snapshotting the work volume", volumeid=work.volume_id)
        work.snapshot_id = (result.get("snapshot") or {}).get("id")
    except CloudStackError as err:
        work.snapshot_id = err.resource_id
        raise CloudError(f"Snapshotting the work volume {work.volume_id}: {err}", err.is_transient) from None
    log.info(f"Creating template {naming.name} from snapshot {work.snapshot_id}")
    try:
        result = client.run_job("createTemplate", timeout=timeouts.poll_template, what="creating the template",
                                snapshotid=work.snapshot_id, name=naming.name, displaytext=naming.displaytext,
                                ostypeid=ostype_id, requireshvm=requires_hvm, ispublic=public,
                                passwordenabled=False, bits=64)
        work.template_id = (result.get("template") or {}).get("id")
    except CloudStackError as err:
        work.template_id = err.resource_id
        raise CloudError(f"Creating a template from snapshot {work.snapshot_id}: {err}", err.is_transient) from None
    if not work.template_id:
        raise CloudError("createTemplate answered without a template id")
    return work.template_id


def detach(client: Client, work: WorkResources, timeouts) -> None:
    if not work.attached or not work.volume_id:
        return
    try:
        client.run_job("detachVolume", timeout=timeouts.detach_volume, what="detaching the work volume",
                       id=work.volume_id)
    except CloudStackError as err:
        volume = lookups.volume(client, work.volume_id)
        if volume is not None and volume.get("virtualmachineid"):
            raise CloudError(f"Detaching the work volume {work.volume_id}: {err}", err.is_transient) from None
    work.attached = False


def cleanup(client: Client, work: WorkResources, timeouts, log) -> None:
    """Remove the snapshot and the work volume (detached first); log, never raise."""
    if work.snapshot_id:
        try:
            client.run_job("deleteSnapshot", timeout=timeouts.delete_snapshot_volume,
                           what="deleting the work snapshot", id=work.snapshot_id)
            work.snapshot_id = None
        except CloudStackError as err:
            log.warning(f"Could not delete work snapshot {work.snapshot_id}: {err}")
    volume_id = work.volume_id
    if volume_id:
        try:
            detach(client, work, timeouts)
            client.call("deleteVolume", id=volume_id)
            work.volume_id = None
        except (CloudStackError, CloudError) as err:
            if isinstance(err, CloudStackError) and err.errorcode == 431 and lookups.volume(client, volume_id) is None:
                work.volume_id = None
            else:
                log.warning(f"Could not delete work volume {volume_id}: {err}")
