"""Volumes (with the device_dir "volume copy" emulation) and snapshots."""
from __future__ import annotations

import os
from datetime import datetime, timezone

from ..errors import invalid_uuid, param_error
from ..util import GiB, make_sparse, now_str, public, sparse_copy
from . import by_ids, command, list_response, name_like

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
    try:
        os.rmdir(os.path.dirname(p))
    except OSError:
        pass


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
            try:
                os.unlink(p)
            except OSError:
                pass


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
        if not ctx.has("zoneid"):
            raise param_error("Missing parameter zoneid")
        zone = ctx.find(st.zones, "zoneid", "Unable to find zone by id {id}")
        if offering["iscustomized"]:
            gb = ctx.i("size")
            if gb is None:
                raise param_error("This disk offering requires a custom size specified")
            # VolumeApiServiceImpl.allocVolume: the range comes from custom.diskoffering.size.min/max
            low, high = int(st.settings["custom.diskoffering.size.min"]), int(st.settings["custom.diskoffering.size.max"])
            if gb < low or gb > high:
                raise param_error(f"Volume size: {gb}GB is out of allowed range. Max: {high} Min:{low}")
            size = gb * GiB
        else:
            if ctx.has("size") and ctx.i("size") != offering["disksize"]:
                raise param_error("This disk offering does not allow custom size")
            size = offering["disksize"] * GiB
    vm = None
    if ctx.has("virtualmachineid"):
        from .vms import find_vm
        vm = find_vm(ctx, "virtualmachineid")
        if vm["zoneid"] != zone["id"]:
            raise param_error("The VM must be in the same zone as the volume")
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
            if vm["id"] not in st.vms or vm["state"] not in ("Running", "Stopped"):
                raise param_error("Please specify a VM that is either running or stopped.")
            _attach(st, vol, vm, pick_device_id(ctx, st, vm, None))
        st.record_event("VOLUME.CREATE", f"Successfully completed creating volume. Volume Id: {vid}")
        return {"volume": render_volume(st, vol)}

    def rollback():
        st.volumes.pop(vid, None)
        drop_volume_files(vol)
    return ctx.submit(instancetype="Volume", instanceid=vid, complete=complete, rollback=rollback, create=True)


# ---------------------------------------------------------------------- attach / detach
def pick_device_id(ctx, st, vm, requested: int | None) -> int:
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
            raise param_error(f"deviceId should be 0,1,2,4-{max_dev}")
        if requested in used:
            holder = next(v for v in attached if v.get("deviceid") is not None and int(v["deviceid"]) == requested)
            raise param_error(f"deviceId {requested} is used by vol {holder['id']} on vm {vm['id']}")
        return requested
    for d in range(1, max_dev + 1):
        if d != CDROM_DEVICE_ID and d not in used:
            return d
    raise param_error(f"The specified VM already has the maximum number of data disks ({max_data}) attached. "
                      f"Please specify another VM.")


def _attach(st, vol, vm, deviceid: int) -> None:
    vol.update(virtualmachineid=vm["id"], deviceid=deviceid, state="Ready", attached=now_str(),
               hypervisor=vm["hypervisor"], storage=f"{vm['zonename']}-primary",
               storageid=st.fixed_id("storage", vm["zonename"]), path=vol.get("path", vol["id"]))
    attach_device(st, vol, vm)


@command("attachVolume", VOLCMD + "AttachVolumeCmd")
def attach_volume(ctx):
    from .vms import find_vm
    st = ctx.state
    vol = find_volume(ctx)
    vm = find_vm(ctx, "virtualmachineid")
    if vol.get("virtualmachineid"):
        raise param_error("Please specify a volume that is not attached to any VM.")
    if vol["type"] == "ROOT":
        raise param_error("Please specify a volume with the valid type: DATADISK")
    if vm["state"] not in ("Running", "Stopped"):
        raise param_error("Please specify a VM that is either running or stopped.")
    if vol["zoneid"] != vm["zoneid"]:
        raise param_error("Please specify a VM that is in the same zone as the volume.")
    if vol["state"] not in ("Allocated", "Ready", "Uploaded"):
        raise param_error(f"Volume state must be in Allocated, Ready or in Uploaded state, current state: "
                          f"{vol['state']}")
    deviceid = pick_device_id(ctx, st, vm, ctx.i("deviceid"))
    # reserve the device id immediately so concurrent attaches do not collide
    vol["virtualmachineid"] = vm["id"]
    vol["deviceid"] = deviceid

    def complete():
        _attach(st, vol, vm, deviceid)
        return {"volume": render_volume(st, vol)}

    def rollback():
        vol.pop("virtualmachineid", None)
        vol.pop("deviceid", None)
    return ctx.submit(instancetype="Volume", instanceid=vol["id"], complete=complete, rollback=rollback)


@command("detachVolume", VOLCMD + "DetachVolumeCmd")
def detach_volume(ctx):
    from .vms import find_vm
    st = ctx.state
    if ctx.has("id"):
        vol = find_volume(ctx)
    elif ctx.has("deviceid") and ctx.has("virtualmachineid"):
        vm = find_vm(ctx, "virtualmachineid")
        dev = ctx.i("deviceid")
        vol = next((v for v in st.volumes.values() if v.get("virtualmachineid") == vm["id"]
                    and v.get("deviceid") is not None and int(v["deviceid"]) == dev and not v.get("_hidden")), None)
        if vol is None:
            raise param_error(f"Unable to find volume with device id {dev} on vm {vm['id']}")
    else:
        raise param_error("Please provide either a volume id, or a tuple(device id, instance id)")
    if vol["type"] == "ROOT":
        raise param_error("Please specify a data volume.")
    if not vol.get("virtualmachineid"):
        raise param_error("Please specify a volume that is attached to a VM.")
    vm = st.vms.get(vol["virtualmachineid"])
    if vm is not None and vm["state"] not in ("Running", "Stopped", "Destroyed"):
        raise param_error("Please specify a VM that is either running or stopped.")

    def complete():
        detach_device(st, vol)
        for k in ("virtualmachineid", "vmname", "vmdisplayname", "vmstate", "deviceid", "attached"):
            vol.pop(k, None)
        return {"volume": render_volume(st, vol)}
    return ctx.submit(instancetype="Volume", instanceid=vol["id"], complete=complete)


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


@command("resizeVolume", VOLCMD + "ResizeVolumeCmd")
def resize_volume(ctx):
    st = ctx.state
    vol = find_volume(ctx)
    new_size = vol["size"]
    offering = None
    if ctx.has("diskofferingid"):
        offering = ctx.find(st.disk_offerings, "diskofferingid", "Unable to find disk offering by id {id}")
        if vol["type"] == "ROOT":
            raise param_error("Cannot change the disk offering of a ROOT volume")
        if offering["iscustomized"]:
            if not ctx.has("size"):
                raise param_error("new offering is of custom size, need to specify a size")
            new_size = ctx.i("size") * GiB
        else:
            new_size = offering["disksize"] * GiB
    elif ctx.has("size"):
        cur = st.disk_offerings.get(vol.get("diskofferingid"))
        if cur is not None and not cur["iscustomized"]:
            raise param_error("To change a volume's size without providing a new disk offering, its current disk "
                              "offering must be customizable or it must be a root volume (if providing a disk "
                              "offering, make sure it is different from the current disk offering).")
        new_size = ctx.i("size") * GiB
    else:
        raise param_error("Please specify the new size or a new disk offering for the volume")
    if new_size <= 0:
        raise param_error("Volume size must be a positive number")
    if new_size < vol["size"] and not ctx.b("shrinkok", False):
        raise param_error(f"Going from existing size of {vol['size']} to size of {new_size} would shrink the "
                          f"volume.Need to sign off by supplying the shrinkok parameter with value of true.")
    if vol.get("virtualmachineid") and vol["type"] == "ROOT" and new_size < vol["size"]:
        raise param_error("Shrink operation on ROOT volume not supported")

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
    return ctx.submit(instancetype="Volume", instanceid=vol["id"], complete=complete)


@command("listVolumes")
def list_volumes(ctx):
    st = ctx.state
    items = [v for v in st.volumes.values() if not v.get("_hidden")]
    items = by_ids(ctx, items)
    if ctx.has("name"):
        items = [v for v in items if v["name"] == ctx.p["name"]]
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
    return list_response(ctx, "volume", [render_volume(st, v) for v in items])


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
        raise param_error(f"VolumeId: {vol['id']} is not in Ready state but {vol['state']}. Cannot take snapshot.")
    sid = st.new_id("snapshot")
    vm = st.vms.get(vol.get("virtualmachineid")) if vol.get("virtualmachineid") else None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    snap = {"id": sid, "name": ctx.s("name", f"{vm['name'] if vm else 'detached'}_{vol['name']}_{stamp}"),
            "volumeid": vol["id"], "volumename": vol["name"], "volumetype": vol["type"],
            "snapshottype": "MANUAL", "intervaltype": "MANUAL", "state": "Allocated", "created": now_str(),
            "zoneid": vol["zoneid"], "zonename": vol["zonename"], "virtualsize": vol["size"], "physicalsize": 0,
            "revertable": False, "locationtype": "Secondary", "hasannotations": False, **st.owner_fields(),
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
                                **st.owner_fields()})
        return {"snapshot": render_snapshot(st, snap)}

    def rollback():
        st.snapshots.pop(sid, None)
    return ctx.submit(instancetype="Snapshot", instanceid=sid, complete=complete, rollback=rollback, create=True)


@command("deleteSnapshot", SNAPCMD + "DeleteSnapshotCmd")
def delete_snapshot(ctx):
    st = ctx.state
    snap = ctx.find(st.snapshots, "id", "Unable to find snapshot by id {id}")

    def complete():
        st.snapshots.pop(snap["id"], None)
        st.drop_tags("Snapshot", snap["id"])
        if snap.get("_file"):
            try:
                os.unlink(snap["_file"])
            except OSError:
                pass
        return {"success": True}
    return ctx.submit(instancetype="Snapshot", instanceid=snap["id"], complete=complete)


@command("listSnapshots")
def list_snapshots(ctx):
    st = ctx.state
    items = by_ids(ctx, list(st.snapshots.values()))
    for f in ("volumeid", "zoneid", "snapshottype", "intervaltype"):
        if ctx.has(f):
            items = [s for s in items if str(s.get(f, "")).lower() == ctx.p[f].lower()]
    if ctx.has("name"):  # SnapshotManagerImpl.listSnapshots: name LIKE %name%
        items = [s for s in items if name_like(s.get("name"), ctx.p["name"])]
    tf = ctx.tag_filter()
    if tf:
        items = [s for s in items if st.match_tags("Snapshot", s["id"], tf)]
    return list_response(ctx, "snapshot", [render_snapshot(st, s) for s in items])
