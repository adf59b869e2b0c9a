"""Persistent disks: CloudStack DATADISK volumes that the director creates, attaches, resizes and deletes.

A disk CID is the volume's id.  BOSH counts MiB and CloudStack GiB, so sizes
are rounded up to whole GiB and never down.  A customized disk offering takes
the size; a fixed one must hold at least the size asked for.  Every volume this
CPI creates is tagged ``cpi_role=persistent`` and with the director's uuid;
the ephemeral disk made by create_vm carries ``cpi_role=ephemeral`` and is
never reported as a persistent disk.  See docs/disks.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import cleanup, disk_hints, lookups, tags
from ..cloudstack.errors import CloudStackError
from ..errors import CloudError, DiskNotFound, NotSupported, VMNotFound
from ..lazy import lazy_import

if TYPE_CHECKING:
    import uuid

    from .. import models
    from ..context import CallContext
else:
    # Only create_disk reads cloud_properties (pydantic) or makes a name: attach, detach and delete load neither.
    models = lazy_import("cloudstack_cpi.models")
    uuid = lazy_import("uuid")

NAME_PREFIX = "bosh-disk-"
GIB = 1024 ** 3
RESERVED_TAGS = frozenset({tags.DIRECTOR_KEY.lower(), tags.ROLE_KEY.lower()})


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
    cs = ctx.config.cloudstack
    what = f"Creating disk of {size} MiB"
    with cloud_step(what):
        zone_id, zone_name = _disk_zone(ctx, vm_cid, what)
        offering = lookups.disk_offering(ctx.client, wanted_offering(props, cs))
    size_gib = lookups.gib(size)
    sizing = create_sizing(offering, size_gib, what)
    name = NAME_PREFIX + str(uuid.uuid4())
    volume_id = _create_volume(ctx, name, zone_id, offering["id"], sizing, what)
    gib = sizing.get("size", offering_gib(offering))
    ctx.log.info(f"Created disk '{volume_id}' ({name}, {gib} GiB, offering '{offering.get('name')}', "
                 f"zone '{zone_name}')")
    return volume_id


def delete_disk(ctx: CallContext, disk_cid: str) -> None:
    """Delete a detached persistent disk.

    BOSH: ``delete_disk(disk_cid)``.  A disk that is already gone is not an error
    (orphan cleanup repeats deletes); an attached disk is refused with the VM's id.
    """
    what = f"Deleting disk '{disk_cid}'"
    with cloud_step(what):
        volume = lookups.volume(ctx.client, disk_cid)
    if volume is None:
        ctx.log.info(f"{what}: it does not exist (any more); nothing to do")
        return None
    holder = volume.get("virtualmachineid")
    if holder:
        raise CloudError(f"{what}: it is attached to VM '{holder}'; detach it first")
    try:
        ctx.client.run_job("deleteVolume", timeout=ctx.config.cloudstack.timeout.delete_volume,
                           what=f"deleting volume {disk_cid}", id=disk_cid)
    except CloudStackError as err:
        if _volume_gone(ctx, disk_cid, what):
            ctx.log.info(f"{what}: it disappeared meanwhile ({err.errortext})")
            return None
        raise CloudError(f"{what}: {err}", ok_to_retry=err.is_transient) from None
    ctx.log.info(f"Deleted disk '{disk_cid}'")
    return None


def has_disk(ctx: CallContext, disk_cid: str) -> bool:
    """Tell whether the disk exists.

    BOSH: ``has_disk(disk_cid)`` (cloud check).  True while the volume exists and
    is not destroyed or being expunged.
    """
    with cloud_step(f"Looking for disk '{disk_cid}'"):
        return lookups.volume(ctx.client, disk_cid) is not None


def attach_disk(ctx: CallContext, vm_cid: str, disk_cid: str) -> dict | None:
    """Attach a persistent disk to a VM and say where the agent finds it.

    BOSH: ``attach_disk(vm_cid, disk_cid)``; API v2 returns the disk hint (v1
    returns null).  Missing VM: VMNotFound; missing disk: DiskNotFound.  A disk
    already attached to this VM answers the same hint again; a disk attached to
    another VM is refused.  CloudStack chooses the device id.
    """
    what = f"Attaching disk '{disk_cid}' to VM '{vm_cid}'"
    client = ctx.client
    with cloud_step(what):
        vm = lookups.vm(client, vm_cid)
        if vm is None:
            raise VMNotFound(f"{what}: VM not found")
        volume = lookups.volume(client, disk_cid)
    if volume is None:
        raise DiskNotFound(f"{what}: disk not found")
    holder = volume.get("virtualmachineid")
    if holder == vm_cid:
        ctx.log.info(f"{what}: already attached as device {volume.get('deviceid')}")
        return _hint(ctx, disk_cid, volume, vm)
    if holder:
        raise CloudError(f"{what}: it is attached to VM '{holder}'; detach it from there first")
    if volume.get("zoneid") and vm.get("zoneid") and volume["zoneid"] != vm["zoneid"]:
        raise CloudError(f"{what}: the disk is in zone '{volume.get('zonename') or volume['zoneid']}' and the VM in "
                         f"zone '{vm.get('zonename') or vm['zoneid']}'; a disk attaches only to VMs of its own zone")
    attached = _attach(ctx, vm_cid, disk_cid, what)
    ctx.log.info(f"Attached disk '{disk_cid}' to VM '{vm_cid}' as device {attached.get('deviceid')}")
    return _hint(ctx, disk_cid, attached, vm)


def detach_disk(ctx: CallContext, vm_cid: str, disk_cid: str) -> None:
    """Detach a persistent disk from a VM.

    BOSH: ``detach_disk(vm_cid, disk_cid)``.  A disk that is gone, not attached,
    or attached to another VM is left alone and not an error (the director
    repeats detaches); so is a missing VM when the disk hangs on nothing.
    """
    what = f"Detaching disk '{disk_cid}' from VM '{vm_cid}'"
    with cloud_step(what):
        volume = lookups.volume(ctx.client, disk_cid)
    if volume is None:
        ctx.log.warning(f"{what}: the disk does not exist (any more); nothing to do")
        return None
    holder = volume.get("virtualmachineid")
    if not holder:
        ctx.log.info(f"{what}: it is not attached; nothing to do")
        return None
    if holder != vm_cid:
        ctx.log.warning(f"{what}: it is attached to VM '{holder}', not to this VM; leaving it there")
        return None
    try:
        ctx.client.run_job("detachVolume", timeout=ctx.config.cloudstack.timeout.detach_volume,
                           what=f"detaching volume {disk_cid}", id=disk_cid)
    except CloudStackError as err:
        with cloud_step(what):
            now = lookups.volume(ctx.client, disk_cid)
        if now is None or now.get("virtualmachineid") != vm_cid:
            ctx.log.info(f"{what}: it is detached now ({err.errortext})")
            return None
        raise CloudError(f"{what}: {err}", ok_to_retry=err.is_transient) from None
    ctx.log.info(f"Detached disk '{disk_cid}' from VM '{vm_cid}'")
    return None


def get_disks(ctx: CallContext, vm_cid: str) -> list[str]:
    """List the persistent disks attached to a VM.

    BOSH: ``get_disks(vm_cid)``.  The VM's data volumes except its ephemeral
    disk (tagged ``cpi_role=ephemeral``); the root volume is never listed.
    Missing VM: VMNotFound.
    """
    what = f"Listing disks of VM '{vm_cid}'"
    client = ctx.client
    with cloud_step(what):
        if lookups.vm(client, vm_cid) is None:
            raise VMNotFound(f"{what}: VM not found")
        volumes = client.list_all("listVolumes", virtualmachineid=vm_cid, type="DATADISK", listall=True)
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
        volume = lookups.volume(ctx.client, disk_cid)
        if volume is None:
            raise DiskNotFound(f"{what}: disk not found")
        current_gib, new_gib = volume_gib(volume), lookups.gib(new_size)
        if new_gib == current_gib:
            ctx.log.info(f"{what}: it already has {current_gib} GiB; nothing to do")
            return None
        if new_gib < current_gib:
            raise NotSupported(f"{what}: it has {current_gib} GiB and CloudStack volumes are not shrunk in place; "
                               f"the director copies the data onto a new disk instead")
        offerings = ctx.client.list_all("listDiskOfferings")
    current = offering_by_id(offerings, volume.get("diskofferingid"))
    params = grow_params(current, offerings, new_gib, cs.default_offer.custom_disk, what)
    _resize(ctx, disk_cid, params, what)
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
        volume = lookups.volume(ctx.client, disk_cid)
        if volume is None:
            raise DiskNotFound(f"{what}: disk not found")
        offerings = ctx.client.list_all("listDiskOfferings")
    wanted = lookups.pick(offerings, wanted_offering(props, cs), kind="Disk offering")
    current = offering_by_id(offerings, volume.get("diskofferingid"))
    params = update_params(volume, current, wanted, lookups.gib(new_size), f"{what} with offering "
                                                                          f"'{wanted.get('name')}'")
    if not params:
        ctx.log.info(f"{what}: it already has {volume_gib(volume)} GiB on offering '{wanted.get('name')}'; "
                     f"nothing to do")
        return None
    _resize(ctx, disk_cid, params, what)
    return None


def set_disk_metadata(ctx: CallContext, disk_cid: str, metadata: dict) -> None:
    """Record the director's metadata as tags of the disk's volume.

    BOSH: ``set_disk_metadata(disk_cid, metadata)`` after each attach.  Only
    tags whose values change are touched.  Missing disk: DiskNotFound.
    """
    what = f"Setting metadata of disk '{disk_cid}'"
    with cloud_step(what):
        volume = lookups.volume(ctx.client, disk_cid)
        if volume is None:
            raise DiskNotFound(f"{what}: disk not found")
        tags.apply(ctx.client, "Volume", disk_cid, without_reserved(ctx, metadata),
                   timeout=ctx.config.cloudstack.timeout.global_, existing=volume.get("tags"))
    return None


# -- pure rules (unit-tested) ------------------------------------------------------------------


def is_customized(offering: Mapping[str, Any] | None) -> bool:
    value = (offering or {}).get("iscustomized")
    return value is True or str(value).lower() == "true"


def offering_gib(offering: Mapping[str, Any]) -> int:
    """A fixed offering's size (``disksize`` is in GB, 0 for customized offerings)."""
    return int(offering.get("disksize") or 0)


def volume_gib(volume: Mapping[str, Any]) -> int:
    """A volume's size in whole GiB (``size`` is in bytes)."""
    return math.ceil(int(volume.get("size") or 0) / GIB)


def wanted_offering(props, cs) -> str:
    return props.disk_offering or cs.default_offer.disk or cs.default_offer.custom_disk


def create_sizing(offering: Mapping[str, Any], size_gib: int, what: str) -> dict:
    """createVolume's ``size`` for a customized offering; none for a fixed one that is large enough."""
    if is_customized(offering):
        return {"size": size_gib}
    fixed = offering_gib(offering)
    if fixed >= size_gib:
        return {}
    raise CloudError(
        f"{what}: disk offering '{offering.get('name')}' has a fixed size of {fixed} GiB, less than the "
        f"{size_gib} GiB asked for; set disk_offering in the disk type's cloud_properties (or "
        f"cloudstack.default_offer.disk) to an offering of at least {size_gib} GiB or to a customized one"
    )


def offering_by_id(offerings: list[dict], offering_id: str | None) -> dict | None:
    return lookups.first(offerings, id=offering_id) if offering_id else None


def compatible(current: Mapping[str, Any] | None, other: Mapping[str, Any]) -> bool:
    """Whether CloudStack moves a volume from ``current`` to ``other`` in place: same storage type and tags."""
    if current is None:
        return True  # the volume's offering is gone from the catalogue: let CloudStack judge
    return (_storage_type(current) == _storage_type(other)
            and _tag_set(current.get("tags")) == _tag_set(other.get("tags")))


def grow_params(current: dict | None, offerings: list[dict], new_gib: int, custom_name: str, what: str) -> dict:
    """resizeVolume parameters that grow a volume to ``new_gib`` (known to be larger than it is)."""
    if current is not None and is_customized(current):
        return {"size": new_gib}
    fixed = [o for o in offerings if not is_customized(o) and offering_gib(o) >= new_gib and compatible(current, o)]
    if fixed:
        best = min(fixed, key=lambda o: (offering_gib(o), str(o.get("name"))))
        return {"diskofferingid": best["id"]}
    custom = next((o for o in offerings if o.get("id") == custom_name), None) or lookups.only_named(
        offerings, custom_name, kind="Disk offering")
    if custom is not None and is_customized(custom) and compatible(current, custom):
        return {"diskofferingid": custom["id"], "size": new_gib}
    name = current.get("name") if current else "unknown"
    raise NotSupported(
        f"{what}: the disk's offering '{name}' has a fixed size and no fixed offering of at least {new_gib} GiB "
        f"nor the customized offering '{custom_name}' (cloudstack.default_offer.custom_disk) can take it over in "
        f"place; the director copies the data onto a new disk instead"
    )


def update_params(volume: Mapping[str, Any], current: dict | None, wanted: dict, new_gib: int, what: str) -> dict:
    """resizeVolume parameters that make the volume what create_disk would make on ``wanted``; {} when it is.

    A fixed offering too small for ``new_gib`` is the operator's mistake (CloudError, as in create_disk);
    a result smaller than the volume, or an offering CloudStack cannot switch to, is NotSupported.
    """
    current_gib = volume_gib(volume)
    sizing = create_sizing(wanted, new_gib, what)
    target_gib = new_gib if sizing else offering_gib(wanted)
    if target_gib < current_gib:
        raise NotSupported(f"{what}: the disk has {current_gib} GiB and would get {target_gib} GiB; CloudStack "
                           f"volumes are not shrunk in place, the director copies the data onto a new disk instead")
    if volume.get("diskofferingid") == wanted.get("id"):
        return sizing if target_gib > current_gib else {}
    if current is not None and not compatible(current, wanted):  # (compatible: True without ``current``)
        raise NotSupported(
            f"{what}: CloudStack cannot move a volume from offering '{current.get('name')}' "
            f"({_describe_storage(current)}) to '{wanted.get('name')}' ({_describe_storage(wanted)}) in place; "
            f"the director copies the data onto a new disk instead")
    return {"diskofferingid": wanted["id"], **sizing}


def persistent_disk_ids(volumes: list[dict], vm_cid: str) -> list[str]:
    """The VM's data volumes in device order, without its ephemeral disk and without volumes being removed."""
    disks = [
        v for v in volumes
        if v.get("virtualmachineid") in (None, vm_cid)
        and v.get("type", "DATADISK") == "DATADISK"
        and v.get("state") not in lookups.GONE_VOLUME_STATES
        and tags.as_dict(v).get(tags.ROLE_KEY) != tags.ROLE_EPHEMERAL
    ]
    disks.sort(key=lambda v: (int(v.get("deviceid") or 0), str(v.get("id"))))
    return [v["id"] for v in disks]


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


def _disk_properties(ctx: CallContext, cloud_properties: dict):
    props = models.parse(models.DiskCloudProperties, cloud_properties, "disk cloud_properties")
    unknown = props.unknown_keys()
    if unknown:
        ctx.log.warning(f"Ignoring unknown disk cloud_properties: {', '.join(unknown)}")
    return props


def _disk_zone(ctx: CallContext, vm_cid: str | None, what: str) -> tuple[str, str]:
    if vm_cid:
        vm = lookups.vm(ctx.client, vm_cid)
        if vm is None:
            raise VMNotFound(f"{what}: VM '{vm_cid}' not found")
        return vm["zoneid"], vm.get("zonename") or vm["zoneid"]
    default_zone = ctx.config.cloudstack.default_zone
    if not default_zone:
        raise CloudError(f"{what}: no VM given and cloudstack.default_zone is not set")
    zone = lookups.zone(ctx.client, default_zone)
    return zone["id"], zone.get("name") or zone["id"]


def _create_volume(ctx: CallContext, name: str, zone_id: str, offering_id: str, sizing: dict, what: str) -> str:
    """createVolume, and its tags as soon as its id is known: the two jobs run side by side (issue 17: the tags
    were a second job waited for after the first).  The name is unique, so a lost answer is found by name."""
    client, cs = ctx.client, ctx.config.cloudstack
    created: set[str] = set()
    step = ""  # the breadcrumb of a failure once the volume exists: its tags
    try:
        started = client.call("createVolume", name=name, zoneid=zone_id, diskofferingid=offering_id, **sizing)
        volume_id = started.get("id")
        if volume_id:
            created.add(volume_id)
        tagging = _start_tags(ctx, volume_id) if volume_id else None
        job = client.finish_job(started, command="createVolume", timeout=cs.timeout.create_volume,
                                what=f"creating volume {name}")
        volume_id = volume_id or (job.get("volume") or {}).get("id") or _only_volume_named(ctx, name, what)
        created.add(volume_id)
        step = f"tagging volume '{volume_id}': "
        if tagging is None:
            tagging = _start_tags(ctx, volume_id)
        client.finish_job(tagging, command="createTags", timeout=cs.timeout.global_,
                          what=f"tagging volume {volume_id}")
        return volume_id
    except CloudStackError as err:
        leftovers = created | ({err.resource_id} if err.resource_id else set())
        if err.outcome_unknown or err.kind == "timeout" or not leftovers:
            leftovers |= _volumes_named(ctx, name)
        for volume_id in sorted(leftovers):
            discard_volume(ctx, volume_id)
        raise CloudError(f"{what}: {step}{err}", ok_to_retry=err.is_transient) from None
    except BaseException:  # interrupted (SIGTERM/SIGINT) or failed: the volume may exist, the director never learns it
        for volume_id in sorted(created | _volumes_named(ctx, name)):
            discard_volume(ctx, volume_id)
        raise


def _start_tags(ctx: CallContext, volume_id: str) -> dict:
    wanted = {tags.ROLE_KEY: tags.ROLE_PERSISTENT}
    if ctx.director_uuid:
        wanted[tags.DIRECTOR_KEY] = ctx.director_uuid
    return ctx.client.call("createTags", resourceids=volume_id, resourcetype="Volume", tags=tags.sanitise(wanted))


def _only_volume_named(ctx: CallContext, name: str, what: str) -> str:
    found = _volumes_named(ctx, name)
    if len(found) != 1:
        raise CloudError(f"{what}: createVolume answered without a volume and {len(found)} volumes are named {name}")
    return found.pop()


def _volumes_named(ctx: CallContext, name: str) -> set[str]:
    try:
        return {v["id"] for v in ctx.client.list("listVolumes", name=name) if v.get("name") == name}
    except CloudStackError as err:
        ctx.log.warning(f"Looking for volume {name} after a failed create: {err}")
        return set()


def discard_volume(ctx: CallContext, volume_id: str) -> None:
    """Best-effort removal of a volume this call created; failures are logged, never raised."""
    cleanup.remove(
        ctx, f"half-created volume '{volume_id}'",
        lambda: ctx.client.run_job("deleteVolume", timeout=ctx.config.cloudstack.timeout.delete_volume,
                                   what=f"deleting volume {volume_id}", id=volume_id),
        gone=lambda: lookups.volume(ctx.client, volume_id) is None,
    )


def _volume_gone(ctx: CallContext, disk_cid: str, what: str) -> bool:
    with cloud_step(what):
        return lookups.volume(ctx.client, disk_cid) is None


def _attach(ctx: CallContext, vm_cid: str, disk_cid: str, what: str) -> dict:
    client = ctx.client
    try:
        job = client.run_job("attachVolume", timeout=ctx.config.cloudstack.timeout.attach_volume,
                             what=f"attaching volume {disk_cid}", id=disk_cid, virtualmachineid=vm_cid)
    except CloudStackError as err:
        if "maximum number of data disks" in err.errortext.lower():
            raise CloudError(f"{what}: the VM already has the maximum number of data disks its hypervisor allows "
                             f"({err.errortext}); detach a disk first") from None
        if err.kind in ("timeout", "transport"):
            # The answer was lost or slow: the attach may have happened anyway.
            with cloud_step(what):
                now = lookups.volume(client, disk_cid)
            if now and now.get("virtualmachineid") == vm_cid and now.get("deviceid") is not None:
                ctx.log.warning(f"{what}: {err}; but the disk is attached now")
                return now
        raise CloudError(f"{what}: {err}", ok_to_retry=err.is_transient) from None
    attached = job.get("volume") or {}
    if attached.get("deviceid") is None:
        with cloud_step(what):
            attached = lookups.volume(client, disk_cid) or {}
        if attached.get("deviceid") is None:
            raise CloudError(f"{what}: CloudStack reports no device id for the attached disk")
    return attached


def _hint(ctx: CallContext, disk_cid: str, volume: Mapping[str, Any], vm: Mapping[str, Any]) -> dict | None:
    # v1 callers get no hint: rpc.answer_for_version
    return disk_hints.disk_hint(disk_cid, int(volume["deviceid"]), vm.get("hypervisor"), vm.get("details"))


def _resize(ctx: CallContext, disk_cid: str, params: dict, what: str) -> None:
    with cloud_step(what):
        job = ctx.client.run_job("resizeVolume", timeout=ctx.config.cloudstack.timeout.resize_volume,
                                 what=f"resizing volume {disk_cid}", id=disk_cid, **params)
    volume = job.get("volume") or {}
    size = f"{volume_gib(volume)} GiB" if volume.get("size") else "the new size"
    ctx.log.info(f"Resized disk '{disk_cid}' to {size} ({', '.join(f'{k}={v}' for k, v in params.items())})")


def _storage_type(offering: Mapping[str, Any]) -> str:
    return str(offering.get("storagetype") or "shared").strip().lower()


def _tag_set(value: Any) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in str(value or "").split(",") if part.strip())


def _describe_storage(offering: Mapping[str, Any] | None) -> str:
    if offering is None:
        return "unknown"
    storage_tags = ",".join(sorted(_tag_set(offering.get("tags")))) or "no tags"
    return f"{offering.get('storagetype') or 'shared'} storage, {storage_tags}"
