"""Persistent disks: CloudStack DATADISK volumes that the director creates, attaches, resizes and deletes.

A disk CID is the volume's id.  BOSH counts MiB and CloudStack GiB, so sizes
are rounded up to whole GiB and never down.  A customized disk offering takes
the size; a fixed one must hold at least the size asked for.  Every volume this
CPI creates is tagged ``cpi_role=persistent`` and with the director's uuid;
the ephemeral disk made by create_vm carries ``cpi_role=ephemeral`` and is
never reported as a persistent disk.  See docs/disks.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import disk_hints, leftovers, lookups, tags
from ..cloudstack.errors import CloudStackError
from ..errors import CloudError, DiskNotFound, NotSupported, VMNotFound
from ..lazy import lazy_import

if TYPE_CHECKING:
    import uuid

    from .. import models
    from ..cloudstack.models import DiskOffering, Vm, Volume
    from ..context import CallContext
else:
    # Only create_disk reads cloud_properties (pydantic) or makes a name: attach, detach and delete load neither.
    models = lazy_import("cloudstack_cpi.models")
    uuid = lazy_import("uuid")

NAME_PREFIX = "bosh-disk-"
RESERVED_TAGS = frozenset({tags.DIRECTOR_KEY.lower(), tags.ROLE_KEY.lower()})
# How CloudStack refuses an attach beyond the hypervisor's data disk limit (VolumeApiServiceImpl.attachVolumeToVM).
_TOO_MANY_DISKS = "maximum number of data disks"


# -- the BOSH methods ------------------------------------------------------------------------


def create_disk(ctx: CallContext, size: int, cloud_properties: dict, vm_cid: str | None = None) -> str:
    """Create a persistent disk of at least ``size`` MiB and return its CID.

    BOSH: ``create_disk(size, cloud_properties, vm_cid)``.  The disk is made in
    the zone of ``vm_cid`` (the director always names the VM it will attach to;
    a missing VM is VMNotFound) or, without a VM, in ``cloudstack.default_zone``.
    The offering is ``disk_offering`` from cloud_properties, else
    ``default_offer.disk``, else ``default_offer.custom_disk``.  Nothing is left
    behind when creation or tagging fails.
    """
    props = _disk_properties(ctx, cloud_properties)
    cs, cloud = ctx.config.cloudstack, ctx.cloud
    what = f"Creating disk of {size} MiB"
    # Disks of create_disk calls killed before they answered (the director never learned of them), removed while
    # this call's createVolume job runs.
    sweep = partial(leftovers.sweep, ctx.log, "Volume",
                    lambda: [v for v in cloud.volumes.unconfirmed() if v.name.startswith(NAME_PREFIX) and not v.vm_id],
                    create_disk_bound(cs.timeout), lambda volume: cloud.volumes.discard(volume.id))
    with cloud_step(what):
        zone_id, zone_name = _disk_zone(ctx, vm_cid, what)
        offering = lookups.pick(cloud.catalogue.disk_offerings(), wanted_offering(props, cs), kind="Disk offering")
        size_gib = create_size(offering, lookups.gib(size), what)
        name = NAME_PREFIX + str(uuid.uuid4())
        volume = cloud.volumes.create(name=name, zone_id=zone_id, offering_id=offering.id, size_gib=size_gib,
                                      tags=persistent_tags(ctx), meanwhile=sweep)
    gib = size_gib or offering.size_gib
    ctx.log.info(f"Created disk '{volume.id}' ({name}, {gib} GiB, offering '{offering.name}', zone '{zone_name}')")
    return volume.id


def delete_disk(ctx: CallContext, disk_cid: str) -> None:
    """Delete a detached persistent disk.

    BOSH: ``delete_disk(disk_cid)``.  A disk that is already gone is not an error
    (orphan cleanup repeats deletes); an attached disk is refused with the VM's id.
    """
    what = f"Deleting disk '{disk_cid}'"
    with cloud_step(what):
        volume = ctx.cloud.volumes.get(disk_cid)
        if volume is None:
            ctx.log.info(f"{what}: it does not exist (any more); nothing to do")
            return None
        if volume.vm_id:
            raise CloudError(f"{what}: it is attached to VM '{volume.vm_id}'; detach it first")
        if not ctx.cloud.volumes.delete(disk_cid):
            ctx.log.info(f"{what}: it disappeared meanwhile")
            return None
    ctx.log.info(f"Deleted disk '{disk_cid}'")
    return None


def has_disk(ctx: CallContext, disk_cid: str) -> bool:
    """Tell whether the disk exists.

    BOSH: ``has_disk(disk_cid)`` (cloud check).  True while the volume exists and
    is not destroyed or being expunged.
    """
    with cloud_step(f"Looking for disk '{disk_cid}'"):
        return ctx.cloud.volumes.get(disk_cid) is not None


def attach_disk(ctx: CallContext, vm_cid: str, disk_cid: str) -> dict | None:
    """Attach a persistent disk to a VM and say where the agent finds it.

    BOSH: ``attach_disk(vm_cid, disk_cid)``; API v2 returns the disk hint (v1
    returns null).  Missing VM: VMNotFound; missing disk: DiskNotFound.  A disk
    already attached to this VM answers the same hint again; a disk attached to
    another VM is refused.  CloudStack chooses the device id.
    """
    what = f"Attaching disk '{disk_cid}' to VM '{vm_cid}'"
    cloud = ctx.cloud
    with cloud_step(what):
        vm = cloud.vms.get(vm_cid)
        if vm is None:
            raise VMNotFound(f"{what}: VM not found")
        volume = cloud.volumes.get(disk_cid)
    if volume is None:
        raise DiskNotFound(f"{what}: disk not found")
    if volume.vm_id == vm_cid:
        ctx.log.info(f"{what}: already attached as device {volume.device_id}")
        return _hint(volume, vm)
    if volume.vm_id:
        raise CloudError(f"{what}: it is attached to VM '{volume.vm_id}'; detach it from there first")
    if volume.zone_id and vm.zone_id and volume.zone_id != vm.zone_id:
        raise CloudError(f"{what}: the disk is in zone '{volume.zone_name}' and the VM in zone '{vm.zone_name}'; "
                         "a disk attaches only to VMs of its own zone")
    try:
        attached = cloud.volumes.attach(disk_cid, vm_cid)
    except CloudStackError as err:
        if _TOO_MANY_DISKS in err.errortext.lower():
            raise CloudError(f"{what}: the VM already has the maximum number of data disks its hypervisor allows "
                             f"({err.errortext}); detach a disk first") from None
        raise CloudError(f"{what}: {err}", ok_to_retry=err.is_transient) from None
    ctx.log.info(f"Attached disk '{disk_cid}' to VM '{vm_cid}' as device {attached.device_id}")
    return _hint(attached, vm)


def detach_disk(ctx: CallContext, vm_cid: str, disk_cid: str) -> None:
    """Detach a persistent disk from a VM.

    BOSH: ``detach_disk(vm_cid, disk_cid)``.  A disk that is gone, not attached,
    or attached to another VM is left alone and not an error (the director
    repeats detaches); so is a missing VM when the disk hangs on nothing.
    """
    what = f"Detaching disk '{disk_cid}' from VM '{vm_cid}'"
    with cloud_step(what):
        volume = ctx.cloud.volumes.get(disk_cid)
        if volume is None:
            ctx.log.warning(f"{what}: the disk does not exist (any more); nothing to do")
            return None
        if not volume.vm_id:
            ctx.log.info(f"{what}: it is not attached; nothing to do")
            return None
        if volume.vm_id != vm_cid:
            ctx.log.warning(f"{what}: it is attached to VM '{volume.vm_id}', not to this VM; leaving it there")
            return None
        ctx.cloud.volumes.detach(volume)
    ctx.log.info(f"Detached disk '{disk_cid}' from VM '{vm_cid}'")
    return None


def get_disks(ctx: CallContext, vm_cid: str) -> list[str]:
    """List the persistent disks attached to a VM.

    BOSH: ``get_disks(vm_cid)``.  The VM's data volumes except its ephemeral
    disk (tagged ``cpi_role=ephemeral``); the root volume is never listed.
    Missing VM: VMNotFound.
    """
    what = f"Listing disks of VM '{vm_cid}'"
    with cloud_step(what):
        if ctx.cloud.vms.get(vm_cid) is None:
            raise VMNotFound(f"{what}: VM not found")
        volumes = ctx.cloud.volumes.of_vm(vm_cid, data_only=True)
    return persistent_disk_ids(volumes, vm_cid)


def resize_disk(ctx: CallContext, disk_cid: str, new_size: int) -> None:
    """Grow a detached persistent disk in place.

    BOSH: ``resize_disk(disk_cid, new_size)`` (only with
    ``director.enable_cpi_resize_disk``).  The same size in GiB is a no-op; a
    smaller size is NotSupported, so the director copies onto a new disk.  A disk
    on a customized offering gets the new size; one on a fixed offering moves to
    the smallest fixed offering that holds it, else to the custom offering.
    Missing disk: DiskNotFound.
    """
    what = f"Resizing disk '{disk_cid}' to {new_size} MiB"
    cs = ctx.config.cloudstack
    with cloud_step(what):
        volume = ctx.cloud.volumes.get(disk_cid)
        if volume is None:
            raise DiskNotFound(f"{what}: disk not found")
        current_gib, new_gib = volume.size_gib, lookups.gib(new_size)
        if new_gib == current_gib:
            ctx.log.info(f"{what}: it already has {current_gib} GiB; nothing to do")
            return None
        if new_gib < current_gib:
            raise NotSupported(f"{what}: it has {current_gib} GiB and CloudStack volumes are not shrunk in place; "
                               f"the director copies the data onto a new disk instead")
        offerings = ctx.cloud.catalogue.disk_offerings()
    current = offering_by_id(offerings, volume.disk_offering_id)
    change = grow(current, offerings, new_gib, cs.default_offer.custom_disk, what)
    _resize(ctx, disk_cid, change, what)
    return None


def update_disk(ctx: CallContext, disk_cid: str, new_size: int, cloud_properties: dict) -> None:
    """Change a detached disk's size and offering in place where CloudStack can.

    BOSH: ``update_disk(disk_cid, new_size, cloud_properties)`` returns a new
    disk CID or null; this CPI keeps the disk, so null.  The disk ends up as
    create_disk would make it from these arguments.  Shrinking, or an offering
    change CloudStack refuses in place (other storage type or storage tags),
    is NotSupported: the director then copies onto a new disk.
    """
    props = _disk_properties(ctx, cloud_properties)
    cs = ctx.config.cloudstack
    what = f"Updating disk '{disk_cid}' to {new_size} MiB"
    with cloud_step(what):
        volume = ctx.cloud.volumes.get(disk_cid)
        if volume is None:
            raise DiskNotFound(f"{what}: disk not found")
        offerings = ctx.cloud.catalogue.disk_offerings()
    wanted = lookups.pick(offerings, wanted_offering(props, cs), kind="Disk offering")
    current = offering_by_id(offerings, volume.disk_offering_id)
    change = update(volume, current, wanted, lookups.gib(new_size), f"{what} with offering '{wanted.name}'")
    if change is None:
        ctx.log.info(f"{what}: it already has {volume.size_gib} GiB on offering '{wanted.name}'; nothing to do")
        return None
    _resize(ctx, disk_cid, change, what)
    return None


def set_disk_metadata(ctx: CallContext, disk_cid: str, metadata: dict) -> None:
    """Record the director's metadata as tags of the disk's volume.

    BOSH: ``set_disk_metadata(disk_cid, metadata)`` after each attach.  Only
    tags whose values change are touched.  Missing disk: DiskNotFound.
    """
    what = f"Setting metadata of disk '{disk_cid}'"
    with cloud_step(what):
        volume = ctx.cloud.volumes.get(disk_cid)
        if volume is None:
            raise DiskNotFound(f"{what}: disk not found")
        ctx.cloud.tags.apply("Volume", disk_cid, without_reserved(ctx, metadata), existing=volume.tags)
    return None


# -- pure rules (unit-tested) ------------------------------------------------------------------


@dataclass(frozen=True)
class Resize:
    """What resizeVolume is asked for: a size (customized offerings), another offering, or both."""

    size_gib: int | None = None
    offering_id: str | None = None

    def describe(self) -> str:
        parts = [f"size {self.size_gib} GiB" if self.size_gib else "", f"offering {self.offering_id}"
                 if self.offering_id else ""]
        return ", ".join(part for part in parts if part)


def create_disk_bound(timeout) -> float:
    """The longest a create_disk can take: its create, its tags and taking the unconfirmed mark off."""
    return timeout.create_volume + 2 * timeout.global_ + leftovers.MARGIN


def wanted_offering(props, cs) -> str:
    return props.disk_offering or cs.default_offer.disk or cs.default_offer.custom_disk


def create_size(offering: DiskOffering, size_gib: int, what: str) -> int | None:
    """createVolume's size for a customized offering; None for a fixed one that is large enough."""
    if offering.customized:
        return size_gib
    if offering.size_gib >= size_gib:
        return None
    raise CloudError(
        f"{what}: disk offering '{offering.name}' has a fixed size of {offering.size_gib} GiB, less than the "
        f"{size_gib} GiB asked for; set disk_offering in the disk type's cloud_properties (or "
        f"cloudstack.default_offer.disk) to an offering of at least {size_gib} GiB or to a customized one"
    )


def offering_by_id(offerings: list[DiskOffering], offering_id: str | None) -> DiskOffering | None:
    return lookups.first(offerings, id=offering_id) if offering_id else None


def compatible(current: DiskOffering | None, other: DiskOffering) -> bool:
    """Whether CloudStack moves a volume from ``current`` to ``other`` in place (unknown ``current``: let it
    judge)."""
    return current is None or current.moves_in_place_to(other)


def grow(current: DiskOffering | None, offerings: list[DiskOffering], new_gib: int, custom_name: str,
         what: str) -> Resize:
    """The resize that grows a volume to ``new_gib`` (known to be larger than it is)."""
    if current is not None and current.customized:
        return Resize(size_gib=new_gib)
    fixed = [o for o in offerings if not o.customized and o.size_gib >= new_gib and compatible(current, o)]
    if fixed:
        best = min(fixed, key=lambda o: (o.size_gib, o.name))
        return Resize(offering_id=best.id)
    custom = lookups.first(offerings, id=custom_name) or lookups.only_named(offerings, custom_name,
                                                                            kind="Disk offering")
    if custom is not None and custom.customized and compatible(current, custom):
        return Resize(size_gib=new_gib, offering_id=custom.id)
    name = current.name if current else "unknown"
    raise NotSupported(
        f"{what}: the disk's offering '{name}' has a fixed size and no fixed offering of at least {new_gib} GiB "
        f"nor the customized offering '{custom_name}' (cloudstack.default_offer.custom_disk) can take it over in "
        f"place; the director copies the data onto a new disk instead"
    )


def update(volume: Volume, current: DiskOffering | None, wanted: DiskOffering, new_gib: int,
           what: str) -> Resize | None:
    """The resize that makes the volume what create_disk would make on ``wanted``; None when it is.

    A fixed offering too small for ``new_gib`` is the operator's mistake (CloudError, as in create_disk);
    a result smaller than the volume, or an offering CloudStack cannot switch to, is NotSupported.
    """
    current_gib = volume.size_gib
    size_gib = create_size(wanted, new_gib, what)
    target_gib = size_gib if size_gib is not None else wanted.size_gib
    if target_gib < current_gib:
        raise NotSupported(f"{what}: the disk has {current_gib} GiB and would get {target_gib} GiB; CloudStack "
                           f"volumes are not shrunk in place, the director copies the data onto a new disk instead")
    if volume.disk_offering_id == wanted.id:
        return Resize(size_gib=size_gib) if size_gib is not None and target_gib > current_gib else None
    if current is not None and not compatible(current, wanted):
        raise NotSupported(
            f"{what}: CloudStack cannot move a volume from offering '{current.name}' "
            f"({current.describe_storage()}) to '{wanted.name}' ({wanted.describe_storage()}) in place; "
            f"the director copies the data onto a new disk instead")
    return Resize(size_gib=size_gib, offering_id=wanted.id)


def persistent_disk_ids(volumes: list[Volume], vm_cid: str) -> list[str]:
    """The VM's data volumes in device order, without its ephemeral disk and without volumes being removed."""
    disks = [
        v for v in volumes
        if v.vm_id in (None, vm_cid) and v.type == "DATADISK" and not v.gone
        and v.tags.get(tags.ROLE_KEY) != tags.ROLE_EPHEMERAL
    ]
    disks.sort(key=lambda v: (v.device_id or 0, v.id))
    return [v.id for v in disks]


def persistent_tags(ctx: CallContext) -> dict[str, str]:
    """A new persistent disk's tags: its role, and the director that owns it."""
    wanted = {tags.ROLE_KEY: tags.ROLE_PERSISTENT}
    if ctx.director_uuid:
        wanted[tags.DIRECTOR_KEY] = ctx.director_uuid
    return tags.sanitise(wanted)


def without_reserved(ctx: CallContext, metadata: Mapping[str, Any] | None) -> dict:
    """The director's metadata minus the tag keys this CPI relies on (``director_uuid``, ``cpi_role``)."""
    kept = {}
    for key, value in (metadata or {}).items():
        name = str(key).strip().lower()
        if name not in RESERVED_TAGS:
            kept[key] = value
        elif not (name == tags.DIRECTOR_KEY and value == ctx.director_uuid):  # snapshot metadata repeats it
            ctx.log.warning(f"Ignoring metadata key '{key}': the CPI manages that tag itself")
    return kept


# -- steps ---------------------------------------------------------------------------------------


@contextmanager
def cloud_step(what: str) -> Iterator[None]:
    """CloudStack failures inside become CloudErrors that say what was being done."""
    try:
        yield
    except CloudStackError as err:
        raise CloudError(f"{what}: {err}", ok_to_retry=err.is_transient) from None


@dataclass(frozen=True)
class _DiskProps:
    """models.DiskCloudProperties as it reads a disk type's usual cloud_properties (see ``_disk_properties``)."""

    disk_offering: str | None = None
    extra: tuple[str, ...] = ()

    def unknown_keys(self) -> list[str]:
        return sorted(self.extra)


def _disk_properties(ctx: CallContext, cloud_properties: dict):
    """The disk's cloud_properties, as models.DiskCloudProperties reads them.

    A string (or no) ``disk_offering`` and any other keys, which the model keeps aside as unknown, pydantic takes as
    they are: read here without importing it (~70 ms of every create_disk, a call whose chain is 1.5 s on a real
    cloud: bench/critical_path.py).  Anything else goes through the model, with its conversions and messages.
    """
    raw = cloud_properties if cloud_properties is not None else {}
    offering = raw.get("disk_offering") if type(raw) is dict else None
    if type(raw) is dict and (offering is None or type(offering) is str):
        props: Any = _DiskProps(offering, tuple(key for key in raw if key != "disk_offering"))
    else:
        props = models.parse(models.DiskCloudProperties, cloud_properties, "disk cloud_properties")
    unknown = props.unknown_keys()
    if unknown:
        ctx.log.warning(f"Ignoring unknown disk cloud_properties: {', '.join(unknown)}")
    return props


def _disk_zone(ctx: CallContext, vm_cid: str | None, what: str) -> tuple[str, str]:
    if vm_cid:
        vm = ctx.cloud.vms.get(vm_cid)
        if vm is None:
            raise VMNotFound(f"{what}: VM '{vm_cid}' not found")
        return vm.zone_id, vm.zone_name
    default_zone = ctx.config.cloudstack.default_zone
    if not default_zone:
        raise CloudError(f"{what}: no VM given and cloudstack.default_zone is not set")
    zone = lookups.pick(ctx.cloud.catalogue.zones(), default_zone, kind="Zone")
    return zone.id, zone.name


def _hint(volume: Volume, vm: Vm) -> dict | None:
    # v1 callers get no hint: rpc.answer_for_version
    return disk_hints.disk_hint(volume.id, int(volume.device_id or 0), vm.hypervisor, vm.details)


def _resize(ctx: CallContext, disk_cid: str, change: Resize, what: str) -> None:
    with cloud_step(what):
        resized = ctx.cloud.volumes.resize(disk_cid, size_gib=change.size_gib, offering_id=change.offering_id)
    size = f"{resized.size_gib} GiB" if resized is not None and resized.size_bytes else "the new size"
    ctx.log.info(f"Resized disk '{disk_cid}' to {size} ({change.describe()})")
