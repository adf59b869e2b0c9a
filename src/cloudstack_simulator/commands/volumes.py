"""Volumes (with the device_dir "volume copy" emulation) and snapshots."""
from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime

from ..errors import CS_INVALID_PARAMETER, ApiError, invalid_uuid, param_error
from ..util import GiB, make_sparse, now_str, public, sparse_copy
from . import by_ids, command, list_response, name_equals, name_matches

VOLCMD = "org.apache.cloudstack.api.command.user.volume."
SNAPCMD = "org.apache.cloudstack.api.command.user.snapshot."
CDROM_DEVICE_ID = 3


# ---------------------------------------------------------------------- device files
def device_path(st, vm, deviceid: int):
    return st.device_dir / vm["id"] / ("vd" + chr(ord("a") + int(deviceid)))


def attach_device(st, vol, vm) -> None:
    """With device_dir: expose the volume as a sparse file <device_dir>/<vm_id>/vd<letter>."""
    if st.device_dir is None or vol["type"] == "ROOT" or vol.get("_device_path"):
        return
    p = device_path(st, vm, vol["deviceid"])
    p.parent.mkdir(parents=True, exist_ok=True)
    if vol.get("_content") and os.path.exists(vol["_content"]):
        sparse_copy(vol["_content"], str(p), size=vol["size"])
    else:
        make_sparse(str(p), vol["size"])
    vol["_device_path"] = str(p)


def detach_device(st, vol) -> None:
    """The device file's bytes become the volume's content; the device file is removed."""
    p = vol.pop("_device_path", None)
    if not p:
        return
    dest = str(st.datadir / "volumes" / f"{vol['id']}.img")
    try:
        os.replace(p, dest)
    except OSError:
        sparse_copy(p, dest)
        os.unlink(p)
    vol["_content"] = dest
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(p))


def volume_source(vol) -> str | None:
    if vol.get("_device_path"):
        return vol["_device_path"]
    if vol.get("_content") and os.path.exists(vol["_content"]):
        return vol["_content"]
    return None


def drop_volume_files(vol) -> None:
    for k in ("_device_path", "_content"):
        p = vol.get(k)
        if p:
            with contextlib.suppress(OSError):
                os.unlink(p)


# ---------------------------------------------------------------------- rendering / lookup
def render_volume(st, vol) -> dict:
    d = public(vol)
    vm = st.vms.get(vol.get("virtualmachineid")) if vol.get("virtualmachineid") else None
    if vm is not None:
        d.update(vmname=vm["name"], vmdisplayname=vm["displayname"], vmstate=vm["state"])
    d["tags"] = st.tags_for("Volume", vol["id"])
    return d


def find_volume(ctx, param="id", value=None) -> dict:
    st = ctx.state
    vid = value if value is not None else ctx.s(param)
    vol = st.volumes.get(vid)
    if vol is None or vol.get("_hidden"):
        if vid not in st.known:
            raise invalid_uuid(ctx.lname, param, vid)
        raise param_error(f"Unable to find volume with ID: {vid}")
    return vol


# ---------------------------------------------------------------------- createVolume
@command("createVolume", VOLCMD + "CreateVolumeCmd")
def create_volume(ctx):
    st = ctx.state
    snap = None
    if ctx.has("snapshotid"):
        snap = ctx.find(st.snapshots, "snapshotid", "Unable to find snapshot with id {id}")
    offering = None
    if ctx.has("diskofferingid"):
        offering = ctx.find(st.disk_offerings, "diskofferingid", "Unable to find disk offering by id {id}")
    if offering is None and snap is None:
        raise param_error("At least one of disk Offering ID or snapshot ID must be passed whilst creating volume")
    if snap is not None:
        zone = st.zones[snap["zoneid"]]
        size = snap["virtualsize"]
    else:
        assert offering is not None  # without a snapshot (checked above)
        if not ctx.has("zoneid"):
            raise param_error("Missing parameter zoneid")
        zone = ctx.find(st.zones, "zoneid", "Unable to find zone by id {id}")
        if ctx.has("size") and ctx.i("size") <= 0:  # allocVolume, before it looks at the offering
            raise param_error("Disk size must be larger than 0")
        if offering["iscustomized"]:
            gb = ctx.i("size")
            if gb is None:
                raise param_error("This disk offering requires a custom size specified")
            # VolumeApiServiceImpl.allocVolume: the range comes from custom.diskoffering.size.min/max
            low = int(st.settings["custom.diskoffering.size.min"])
            high = int(st.settings["custom.diskoffering.size.max"])
            if gb < low or gb > high:
                raise param_error(f"Volume size: {gb}GB is out of allowed range. Max: {high} Min:{low}")
            size = gb * GiB
        else:
            if ctx.has("size"):  # allocVolume: ``!diskOffering.isCustomized() && size != null``
                raise param_error("This disk offering does not allow custom size")
            size = offering["disksize"] * GiB
    vm = None
    if snap is not None and ctx.has("virtualmachineid"):
        # allocVolume (create(), before the job) checks the VM only for a volume made from a snapshot, the one
        # case createVolume's execute() attaches it; without a snapshot virtualmachineid is not used at all.
        vm = st.vms.get(ctx.p["virtualmachineid"])
        if vm is None:
            raise param_error("Please specify a valid User VM.")
        if vm["state"] not in ("Running", "Stopped"):
            raise param_error("Please specify a VM that is either running or stopped.")
    vid = st.new_id("volume")
    n = st.next_vol_number()
    vol = {"id": vid, "name": ctx.s("name", f"DATA-{n}"), "zoneid": zone["id"], "zonename": zone["name"],
           "type": "DATADISK", "provisioningtype": "thin", "size": size, "state": "Allocated",
           "storagetype": "shared", "hypervisor": "None", "destroyed": False, "isextractable": True,
           "displayvolume": ctx.b("displayvolume", True), "created": now_str(), "quiescevm": False,
           **st.owner_fields(), "_number": n, "_content": None}
    if offering is not None:
        vol.update(diskofferingid=offering["id"], diskofferingname=offering["name"],
                   diskofferingdisplaytext=offering["displaytext"])
    if snap is not None:
        vol["snapshotid"] = snap["id"]
        if snap.get("_file"):
            dest = str(st.datadir / "volumes" / f"{vid}.img")
            sparse_copy(snap["_file"], dest, size=size)
            vol["_content"] = dest
        vol["state"] = "Ready"
    st.volumes[vid] = vol

    def complete():
        if vm is not None:
            # VolumeApiServiceImpl.createVolume: the attach's refusal (attachVolumeToVM's checks, in the job)
            # becomes a CloudRuntimeException; the volume is destroyed.
            try:
                _attach(st, vol, vm, attach_checks(st, vol, vm["id"], None))
            except ApiError as e:
                raise ApiError(530, f"Failed to create volume: {vid}") from e
        st.record_event("VOLUME.CREATE", f"Successfully completed creating volume. Volume Id: {vid}")
        return {"volume": render_volume(st, vol)}

    def rollback():
        st.volumes.pop(vid, None)
        drop_volume_files(vol)
    return ctx.submit(instancetype="Volume", instanceid=vid, complete=complete, rollback=rollback, create=True,
                      variant="snapshot" if snap is not None else None)


# ---------------------------------------------------------------------- attach / detach
def pick_device_id(ctx, st, vm, requested: int | None) -> int:
    """VolumeApiServiceImpl.attachVolumeToVM's data-disk count (an InvalidParameterValueException: 431), then
    getDeviceId's checks, RuntimeExceptions (530 in the job)."""
    max_data = int(st.settings.get("max_data_volumes", 6))
    max_dev = max_data + 1
    attached = [v for v in st.volumes.values() if v.get("virtualmachineid") == vm["id"] and not v.get("_hidden")]
    data = [v for v in attached if v["type"] != "ROOT"]
    if len(data) >= max_data:
        raise param_error(f"The specified VM already has the maximum number of data disks ({max_data}) attached. "
                          f"Please specify another VM.")
    used = {int(v["deviceid"]) for v in attached if v.get("deviceid") is not None}
    if requested is not None:
        if requested < 0 or requested > max_dev or requested == CDROM_DEVICE_ID:
            raise ApiError(530, f"deviceId should be 0,1,2,4-{max_dev}")
        if requested in used:
            holder = next(v for v in attached if v.get("deviceid") is not None and int(v["deviceid"]) == requested)
            raise ApiError(530, f"deviceId {requested} is used by vol {holder['id']} on vm {vm['id']}")
        return requested
    for d in range(1, max_dev + 1):
        if d != CDROM_DEVICE_ID and d not in used:
            return d
    raise param_error(f"The specified VM already has the maximum number of data disks ({max_data}) attached. "
                      f"Please specify another VM.")


def attach_checks(st, vol, vm_id: str, requested: int | None) -> int:
    """VolumeApiServiceImpl.attachVolumeToVM's checks, in its order; they run inside the job.  Returns the
    device id."""
    if vol is None or vol.get("_hidden") or vol["type"] not in ("DATADISK", "ROOT"):
        raise param_error("Please specify a volume with the valid type: ROOT or DATADISK")
    if vol.get("virtualmachineid"):
        raise param_error("Please specify a volume that is not attached to any VM.")
    vm = st.vms.get(vm_id)
    if vm is None:  # expunged: ParamProcessWorker still resolved its uuid (findByUuidIncludingRemoved)
        raise param_error("Please specify a valid User VM.")
    if vm["state"] not in ("Running", "Stopped"):
        raise param_error("Please specify a VM that is either running or stopped.")
    if vol["zoneid"] != vm["zoneid"]:
        raise param_error("Please specify a VM that is in the same zone as the volume.")
    if vol["type"] == "ROOT":  # a ROOT volume attaches only as device 0, which the simulator does not model
        raise param_error("Please specify a volume with the valid type: DATADISK")
    max_data = int(st.settings.get("max_data_volumes", 6))
    if sum(1 for v in st.volumes.values() if v.get("virtualmachineid") == vm["id"] and v["type"] == "DATADISK"
           and not v.get("_hidden")) >= max_data:
        raise param_error(f"The specified VM already has the maximum number of data disks ({max_data}) attached. "
                          f"Please specify another VM.")
    if vol["state"] not in ("Allocated", "Ready", "Uploaded"):
        raise param_error("Volume state must be in Allocated, Ready or in Uploaded state")
    return pick_device_id(None, st, vm, requested)


def _attach(st, vol, vm, deviceid: int) -> None:
    vol.update(virtualmachineid=vm["id"], deviceid=deviceid, state="Ready", attached=now_str(),
               hypervisor=vm["hypervisor"], storage=f"{vm['zonename']}-primary",
               storageid=st.fixed_id("storage", vm["zonename"]), path=vol.get("path", vol["id"]))
    attach_device(st, vol, vm)


@command("attachVolume", VOLCMD + "AttachVolumeCmd")
def attach_volume(ctx):
    """Before the job only ParamProcessWorker's checks (missing id/virtualmachineid, uuids never issued); every
    other check is attachVolumeToVM's, inside the job."""
    st = ctx.state
    vid, vm_id, requested = ctx.p["id"], ctx.p["virtualmachineid"], ctx.i("deviceid")

    def checks():
        vol = st.volumes.get(vid)
        deviceid = attach_checks(st, vol, vm_id, requested)
        vm = st.vms[vm_id]
        # the device id is taken now, so that concurrent attaches to one VM do not collide
        vol["virtualmachineid"] = vm["id"]
        vol["deviceid"] = deviceid

        def complete():
            _attach(st, vol, vm, deviceid)
            return {"volume": render_volume(st, vol)}

        def rollback():
            vol.pop("virtualmachineid", None)
            vol.pop("deviceid", None)
        return complete, rollback, "running" if vm["state"] == "Running" else "stopped"
    return ctx.submit_checked(checks, instancetype="Volume", instanceid=vid)


@command("detachVolume", VOLCMD + "DetachVolumeCmd")
def detach_volume(ctx):
    """DetachVolumeCmd requires no parameter: VolumeApiServiceImpl.detachVolumeFromVM checks them, in the job."""
    st = ctx.state

    def checks():
        has_id, has_dev, has_vm = ctx.has("id"), ctx.has("deviceid"), ctx.has("virtualmachineid")
        if (not has_id and not has_dev and not has_vm) or (has_id and (has_dev or has_vm)) \
                or (not has_id and (not has_dev or not has_vm)):
            raise param_error("Please provide either a volume id, or a tuple(device id, instance id)")
        if has_id:
            vol = st.volumes.get(ctx.p["id"])
            if vol is None:
                raise param_error(f"Unable to find volume with ID: {ctx.p['id']}")
        else:
            dev = ctx.i("deviceid")
            vol = next((v for v in st.volumes.values() if v.get("virtualmachineid") == ctx.p["virtualmachineid"]
                        and v.get("deviceid") is not None and int(v["deviceid"]) == dev), None)
            if vol is None:  # findByInstanceAndDeviceId(...).get(0) on an empty list
                raise ApiError(530, "Index 0 out of bounds for length 0")
        vm = st.vms.get(vol.get("virtualmachineid")) if vol.get("virtualmachineid") else None
        if vm is None:
            raise param_error("The specified volume is not attached to a VM.")
        if vm["state"] not in ("Running", "Stopped", "Destroyed"):
            raise param_error("Please specify a VM that is either running or stopped.")
        if vol["type"] == "ROOT":  # detaching a ROOT volume is not modelled
            raise param_error("Please specify a data volume.")

        def complete():
            detach_device(st, vol)
            for k in ("virtualmachineid", "vmname", "vmdisplayname", "vmstate", "deviceid", "attached"):
                vol.pop(k, None)
            return {"volume": render_volume(st, vol)}
        return complete, None, "running" if vm["state"] == "Running" else "stopped"
    return ctx.submit_checked(checks, instancetype="Volume", instanceid=ctx.s("id"))


@command("deleteVolume", VOLCMD + "DeleteVolumeCmd")
def delete_volume(ctx):
    st = ctx.state
    vol = find_volume(ctx)
    if vol.get("virtualmachineid"):
        raise param_error("Please specify a volume that is not attached to any VM.")
    st.volumes.pop(vol["id"], None)
    st.drop_tags("Volume", vol["id"])
    drop_volume_files(vol)
    st.record_event("VOLUME.DELETE", f"Successfully completed deleting volume. Volume Id: {vol['id']}")
    return {"success": True}


def unsupported(text: str) -> ApiError:
    """ResizeVolumeCmd.execute turns the manager's InvalidParameterValueException into UNSUPPORTED_ACTION_ERROR."""
    return ApiError(432, text, CS_INVALID_PARAMETER)


@command("resizeVolume", VOLCMD + "ResizeVolumeCmd")
def resize_volume(ctx):
    """ResizeVolumeCmd.getEntityOwnerId (called by ParamProcessWorker, before the job) refuses a volume that is
    gone; VolumeApiServiceImpl.resizeVolume's checks run in the job and come back as errorcode 432."""
    st = ctx.state
    vid = ctx.p["id"]
    if vid not in st.volumes:
        raise param_error(f"Unable to find volume by id={vid}")

    def checks():
        vol = st.volumes[vid]
        if vol["state"] not in ("Ready", "Allocated"):
            raise unsupported(f"Volume should be in ready or allocated state before attempting a resize. Volume "
                              f"{vid} is in state {vol['state']}.")
        current = st.disk_offerings.get(vol.get("diskofferingid"))
        offering = st.disk_offerings.get(ctx.p["diskofferingid"]) if ctx.has("diskofferingid") else None
        if offering is not None and current is not None and offering["id"] == current["id"]:
            offering = None  # "make sure it is different from the current disk offering"
        new_size = vol["size"]
        if offering is None:
            if ctx.has("size"):
                if current is not None and not current["iscustomized"] and vol["type"] != "ROOT":
                    raise unsupported("To change a volume's size without providing a new disk offering, its current "
                                      "disk offering must be customizable or it must be a root volume (if providing "
                                      "a disk offering, make sure it is different from the current disk offering).")
                new_size = _custom_size(st, ctx.i("size"))
        else:
            if offering["iscustomized"]:
                if not ctx.has("size"):
                    raise unsupported("The new disk offering requires that a size be specified.")
                new_size = _custom_size(st, ctx.i("size"))
            else:
                if ctx.has("size"):
                    raise unsupported("You cannot pass in a custom disk size to a non-custom disk offering.")
                new_size = offering["disksize"] * GiB
            if new_size != vol["size"] and vol["type"] != "DATADISK":
                raise unsupported("Only data volumes can be resized via a new disk offering.")
        if new_size < vol["size"] and not ctx.b("shrinkok", False):
            raise unsupported(f"Going from existing size of {vol['size']} to size of {new_size} would shrink the "
                              f"volume.Need to sign off by supplying the shrinkok parameter with value of true.")
        if vol.get("virtualmachineid") and vol["type"] == "ROOT" and new_size < vol["size"]:
            raise ApiError(530, "Shrink operation on ROOT volume not supported")
        variant = "allocated" if vol["state"] == "Allocated" else None

        def complete():
            vol["size"] = new_size
            if offering is not None:
                vol.update(diskofferingid=offering["id"], diskofferingname=offering["name"],
                           diskofferingdisplaytext=offering["displaytext"])
            src = volume_source(vol)
            if src:
                with open(src, "r+b") as f:
                    f.truncate(new_size)
            return {"volume": render_volume(st, vol)}
        return complete, None, variant
    return ctx.submit_checked(checks, instancetype="Volume", instanceid=vid)


def _custom_size(st, gb: int) -> int:
    low, high = int(st.settings["custom.diskoffering.size.min"]), int(st.settings["custom.diskoffering.size.max"])
    if gb < low or gb > high:
        raise unsupported(f"Volume size: {gb}GB is out of allowed range. Max: {high} Min:{low}")
    return gb * GiB


@command("listVolumes")
def list_volumes(ctx):
    st = ctx.state
    items = [v for v in st.volumes.values() if not v.get("_hidden")]
    items = by_ids(ctx, items)
    if ctx.has("name"):  # QueryManagerImpl.searchForVolumesInternal: name EQ
        items = [v for v in items if name_equals(v["name"], ctx.p["name"])]
    if ctx.has("type"):
        items = [v for v in items if v["type"].lower() == ctx.p["type"].lower()]
    for f in ("virtualmachineid", "zoneid", "diskofferingid"):
        if ctx.has(f):
            items = [v for v in items if v.get(f) == ctx.p[f]]
    if ctx.has("state"):
        items = [v for v in items if v["state"].lower() == ctx.p["state"].lower()]
    tf = ctx.tag_filter()
    if tf:
        items = [v for v in items if st.match_tags("Volume", v["id"], tf)]
    return list_response(ctx, "volume", [render_volume(st, v) for v in items], keyword_fields=("name", "type", "state"))


# ---------------------------------------------------------------------- snapshots
def render_snapshot(st, s) -> dict:
    d = public(s)
    d["tags"] = st.tags_for("Snapshot", s["id"])
    return d


@command("createSnapshot", SNAPCMD + "CreateSnapshotCmd")
def create_snapshot(ctx):
    st = ctx.state
    vol = find_volume(ctx, "volumeid")
    if vol["state"] != "Ready":
        # VolumeApiServiceImpl.allocSnapshot prints the volume's internal (database) id
        raise param_error(f"VolumeId: {vol['_number']} is not in Ready state but {vol['state']}. Cannot take "
                          f"snapshot.")
    sid = st.new_id("snapshot")
    vm = st.vms.get(vol.get("virtualmachineid")) if vol.get("virtualmachineid") else None
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    snap = {"id": sid, "name": ctx.s("name", f"{vm['name'] if vm else 'detached'}_{vol['name']}_{stamp}"),
            "volumeid": vol["id"], "volumename": vol["name"], "volumetype": vol["type"],
            "snapshottype": "MANUAL", "intervaltype": "MANUAL", "state": "Allocated", "created": now_str(),
            "zoneid": vol["zoneid"], "zonename": vol["zonename"], "virtualsize": vol["size"], "physicalsize": 0,
            "revertable": False, "locationtype": "Secondary", "hasannotations": False, **st.owner_of(vol["id"]),
            "_file": None}
    if vm is not None:
        snap["ostypeid"] = vm["ostypeid"]
        snap["osdisplayname"] = vm.get("osdisplayname")
    st.snapshots[sid] = snap
    tags = ctx.map_entries("tags")

    def complete():
        src = volume_source(vol) if vol["id"] in st.volumes else None
        if src:
            dest = str(st.datadir / "snapshots" / f"{sid}.img")
            sparse_copy(src, dest, size=vol["size"])
            snap["_file"] = dest
            snap["physicalsize"] = os.stat(dest).st_blocks * 512
        snap["state"] = "BackedUp"
        for t in tags:
            if t.get("key") and t.get("value"):
                st.tags.append({"key": t["key"], "value": t["value"], "resourcetype": "Snapshot", "resourceid": sid,
                                **st.owner_of(sid)})
        return {"snapshot": render_snapshot(st, snap)}

    def rollback():
        st.snapshots.pop(sid, None)
    return ctx.submit(instancetype="Snapshot", instanceid=sid, complete=complete, rollback=rollback, create=True)


@command("deleteSnapshot", SNAPCMD + "DeleteSnapshotCmd")
def delete_snapshot(ctx):
    """SnapshotManagerImpl.deleteSnapshot looks the snapshot up inside the job (DeleteSnapshotCmd.getEntityOwnerId
    answers SYSTEM for one that is gone)."""
    st = ctx.state
    sid = ctx.p["id"]

    def checks():
        snap = st.snapshots.get(sid)
        if snap is None:
            raise param_error(f"unable to find a snapshot with id {sid}")

        def complete():
            st.snapshots.pop(snap["id"], None)
            st.drop_tags("Snapshot", snap["id"])
            if snap.get("_file"):
                with contextlib.suppress(OSError):
                    os.unlink(snap["_file"])
            return {"success": True}
        return complete, None, None
    return ctx.submit_checked(checks, instancetype="Snapshot", instanceid=sid)


@command("listSnapshots")
def list_snapshots(ctx):
    st = ctx.state
    items = by_ids(ctx, list(st.snapshots.values()))
    for f in ("volumeid", "zoneid", "snapshottype", "intervaltype"):
        if ctx.has(f):
            items = [s for s in items if str(s.get(f, "")).lower() == ctx.p[f].lower()]
    # SnapshotManagerImpl.listSnapshots (4.18-4.19 text): name EQ; older servers used LIKE '%name%'
    if ctx.has("name"):
        items = [s for s in items if name_matches(ctx, s.get("name"), ctx.p["name"])]
    tf = ctx.tag_filter()
    if tf:
        items = [s for s in items if st.match_tags("Snapshot", s["id"], tf)]
    return list_response(ctx, "snapshot", [render_snapshot(st, s) for s in items])
