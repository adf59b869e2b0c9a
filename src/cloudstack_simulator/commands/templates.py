"""Templates: list / register (real HTTP download) / upload params / create from snapshot or volume /
copy / delete / extract."""
from __future__ import annotations

import contextlib
import os
import secrets
from datetime import UTC, datetime, timedelta

from ..errors import invalid_uuid, param_error
from ..util import now_str, sparse_copy
from . import command, list_response, name_equals
from .volumes import volume_source

TPLCMD = "org.apache.cloudstack.api.command.user.template."
FILTERS = ("featured", "self", "selfexecutable", "sharedexecutable", "executable", "community", "all")
FORMATS = ("QCOW2", "RAW", "VHD", "VHDX", "OVA", "TAR", "ISO", "VMDK", "BAREMETAL", "DIR")
UPLOAD_FORMATS = ("QCOW2", "OVA", "VHD", "RAW", "VHDX")


def find_template(ctx, param="id", value=None) -> dict:
    st = ctx.state
    tid = value if value is not None else ctx.s(param)
    tpl = st.templates.get(tid)
    if tpl is None:
        if tid not in st.known:
            raise invalid_uuid(ctx.lname, param, tid)
        raise param_error(f"Unable to find template with id {tid}")
    return tpl


def _visible(tpl, flt: str) -> bool:
    owned = tpl.get("_owned", True)
    if flt in ("self", "selfexecutable"):
        return owned
    if flt == "featured":
        return tpl["isfeatured"]
    if flt == "community":
        return tpl["ispublic"] and not tpl["isfeatured"] and not owned
    if flt == "sharedexecutable":
        return False
    return owned or tpl["ispublic"] or tpl["isfeatured"]


@command("listTemplates")
def list_templates(ctx):
    st = ctx.state
    flt = ctx.p["templatefilter"].lower()
    if flt not in FILTERS:
        raise param_error(f"Unable to execute API command listtemplates due to invalid value {ctx.p['templatefilter']}"
                          f" for parameter templatefilter")
    rows = []
    for tpl in st.templates.values():
        if not _visible(tpl, flt):
            continue
        if ctx.has("id") and tpl["id"] != ctx.p["id"]:
            continue
        if ctx.lst("ids") and tpl["id"] not in ctx.lst("ids"):
            continue
        # QueryManagerImpl.templateChecks: ``if (keyword != null) name LIKE '%keyword%' else if (name != null) name EQ``
        if ctx.has("name") and not ctx.has("keyword") and not name_equals(tpl["name"], ctx.p["name"]):
            continue
        if ctx.has("hypervisor") and tpl["hypervisor"].lower() != ctx.p["hypervisor"].lower():
            continue
        tf = ctx.tag_filter()
        if tf and not st.match_tags("Template", tpl["id"], tf):
            continue
        for row in st.template_rows(tpl):
            if ctx.has("zoneid") and row["zoneid"] != ctx.p["zoneid"]:
                continue
            if ctx.has("isready") and row["isready"] != ctx.b("isready"):
                continue
            rows.append(row)
    return list_response(ctx, "template", rows, keyword_fields=("name",))


# Hypervisor.HypervisorType in 4.11-4.18 (declaration order, as EnumUtils.listValues prints it), without None.
HYPERVISOR_TYPES = ("XenServer", "KVM", "VMware", "Hyperv", "VirtualBox", "Parralels", "BareMetal", "Simulator",
                    "Ovm", "Ovm3", "LXC", "Any")


def _common_template_args(ctx, upload: bool = False):
    st = ctx.state
    hyp = ctx.p["hypervisor"]
    known = {h.lower(): h for h in HYPERVISOR_TYPES}
    # TemplateAdapterBase refuses only what HypervisorType.getType does not know (None); a real hypervisor the
    # zone lacks is accepted. The upload path prints the parsed type (always "None"), registerTemplate the name.
    if hyp.lower() not in known:
        raise param_error(f"Hypervisor Type: {'None' if upload else hyp} is invalid. Supported Hypervisor types are "
                          f"{', '.join(HYPERVISOR_TYPES)}")
    fmt = ctx.p["format"].upper()
    if fmt not in FORMATS:
        raise param_error(f"Image format: {ctx.p['format']} is incorrect. Supported formats are "
                          f"{', '.join(FORMATS)}")
    ostype = None
    if ctx.has("ostypeid"):
        ostype = ctx.find(st.ostypes, "ostypeid", "Please specify a valid guest OS type {id}")
    else:
        ostype = next(o for o in st.ostypes.values() if o["description"] == "Other Linux (64-bit)") \
            if any(o["description"] == "Other Linux (64-bit)" for o in st.ostypes.values()) \
            else next(iter(st.ostypes.values()))
    return fmt, known[hyp.lower()], ostype


@command("registerTemplate", TPLCMD + "RegisterTemplateCmd")
def register_template(ctx):
    st = ctx.state
    url = ctx.p["url"]
    if len(url) > 2048:
        raise param_error("URL length should be less than or equal to 2048")
    if not (url.lower().startswith("http://") or url.lower().startswith("https://")):
        raise param_error(f"Unsupported scheme for url: {url}")
    zone_ids = []
    if ctx.has("zoneid") and ctx.has("zoneids"):
        raise param_error("Parameter zoneid and zoneids cannot be specified together")
    if ctx.has("zoneid"):
        if ctx.p["zoneid"] == "-1":
            zone_ids = list(st.zones)
        else:
            zone_ids = [ctx.find(st.zones, "zoneid", "Unable to find zone by id {id}")["id"]]
    elif ctx.has("zoneids"):
        for z in ctx.lst("zoneids"):
            if z == "-1":
                zone_ids = list(st.zones)
                break
            zone_ids.append(ctx.find(st.zones, "zoneids", "Unable to find zone by id {id}", value=z)["id"])
    else:
        raise param_error("Either zoneid or zoneids parameter has to be specified")
    fmt, hyp, ostype = _common_template_args(ctx)
    tid = st.new_id("template")
    tpl = st.new_template_record(tid, name=ctx.p["name"], displaytext=ctx.s("displaytext", ctx.p["name"]), fmt=fmt,
                                 hypervisor=hyp, ostype=ostype, size=0, ispublic=ctx.b("ispublic"),
                                 isfeatured=ctx.b("isfeatured"), isextractable=ctx.b("isextractable"),
                                 passwordenabled=ctx.b("passwordenabled"), sshkeyenabled=ctx.b("sshkeyenabled"),
                                 details=ctx.merged_map("details"), bits=ctx.i("bits", 64))
    tpl["url"] = url
    tpl["crossZones"] = ctx.p.get("zoneid") == "-1"
    if ctx.has("checksum"):
        tpl["checksum"] = ctx.p["checksum"]
    for z in zone_ids:
        tpl["_zones"][z] = {"status": "Processing", "isready": False, "created": now_str()}
    st.templates[tid] = tpl
    ctx.sim._uploads.start_download(tid, zone_ids, url, fmt)
    rows = st.template_rows(tpl)
    return {"count": len(rows), "template": rows}


@command("getUploadParamsForTemplate", TPLCMD + "GetUploadParamsForTemplateCmd")
def get_upload_params_for_template(ctx):
    st = ctx.state
    zone = ctx.find(st.zones, "zoneid", "Unable to find zone by id {id}")
    if ctx.p["format"].upper() not in UPLOAD_FORMATS:
        raise param_error(f"Image format: {ctx.p['format']} is incorrect. Supported formats are "
                          f"{', '.join(UPLOAD_FORMATS)}")
    fmt, hyp, ostype = _common_template_args(ctx, upload=True)
    tid = st.new_id("template")
    tpl = st.new_template_record(tid, name=ctx.p["name"], displaytext=ctx.s("displaytext", ctx.p["name"]), fmt=fmt,
                                 hypervisor=hyp, ostype=ostype, size=0, ispublic=ctx.b("ispublic"),
                                 isfeatured=ctx.b("isfeatured"), isextractable=ctx.b("isextractable"),
                                 passwordenabled=ctx.b("passwordenabled"), sshkeyenabled=ctx.b("sshkeyenabled"),
                                 details=ctx.merged_map("details"), bits=ctx.i("bits", 64))
    tpl["_zones"][zone["id"]] = {"status": "NotUploaded", "isready": False, "created": now_str()}
    post_url = f"{st.base_url}/upload/{tid}"
    tpl["_post_url"] = post_url
    st.templates[tid] = tpl
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    up = ctx.sim._uploads
    metadata = up.make_metadata({"id": tid, "zoneid": zone["id"], "format": fmt, "nonce": secrets.token_hex(8)})
    return {"getuploadparams": {"id": tid, "postURL": post_url, "metadata": metadata, "expires": expires,
                                "signature": up.sign(metadata, post_url, expires)}}


@command("createTemplate", TPLCMD + "CreateTemplateCmd")
def create_template(ctx):
    st = ctx.state
    snap = vol = None
    if ctx.has("snapshotid") and ctx.has("volumeid"):
        raise param_error("Specify the volume id or the snapshot id, but not both")
    if ctx.has("snapshotid"):
        snap = ctx.find(st.snapshots, "snapshotid", "Unable to find snapshot by id {id}")
        if snap["state"] != "BackedUp":
            raise param_error(f"Snapshot id={snap['id']} is not in BackedUp state yet and can't be used for template "
                              f"creation")
        zone = st.zones[snap["zoneid"]]
        size = snap["virtualsize"]
    elif ctx.has("volumeid"):
        from .volumes import find_volume
        vol = find_volume(ctx, "volumeid")
        vm = st.vms.get(vol.get("virtualmachineid")) if vol.get("virtualmachineid") else None
        if vm is not None and vm["state"] != "Stopped":
            raise param_error(f"VolumeId: {vol['id']} is attached to a running VM; please stop the VM "
                              f"{vm['id']} before creating a template from its volume")
        if vol["state"] != "Ready":
            raise param_error(f"Volume {vol['id']} is not in Ready state, current state: {vol['state']}")
        zone = st.zones[vol["zoneid"]]
        size = vol["size"]
    else:
        raise param_error("Failed to create private template record, need to specify snapshotId or volumeId")
    ostype = ctx.find(st.ostypes, "ostypeid", "Please specify a valid guest OS type {id}")
    tid = st.new_id("template")
    hyp = zone["_hypervisors"][0]
    fmt = {"kvm": "QCOW2", "xenserver": "VHD", "vmware": "OVA"}.get(hyp.lower(), "RAW")
    tpl = st.new_template_record(tid, name=ctx.p["name"], displaytext=ctx.p["displaytext"], fmt=fmt,
                                 hypervisor=hyp, ostype=ostype, size=size, ispublic=ctx.b("ispublic"),
                                 isfeatured=ctx.b("isfeatured"), isextractable=True,
                                 passwordenabled=ctx.b("passwordenabled"), details=ctx.merged_map("details"),
                                 bits=ctx.i("bits", 64))
    tpl["_zones"][zone["id"]] = {"status": "Creating", "isready": False, "created": now_str()}
    # TemplateManagerImpl.createPrivateTemplateRecord: sourcetemplateid is the template of the source volume (of
    # the snapshot's volume), when it has one (a ROOT volume); TemplateResponse has no snapshot field.
    if vol is not None:
        src_vol = vol
    else:
        assert snap is not None  # createTemplate names a snapshot or a volume (checked above)
        src_vol = st.volumes.get(snap.get("volumeid"), {})
    if src_vol.get("templateid"):
        tpl["sourcetemplateid"] = src_vol["templateid"]
    st.templates[tid] = tpl

    def complete():
        if snap is not None:
            src = snap.get("_file")
        else:
            assert vol is not None  # createTemplate names a snapshot or a volume (checked above)
            src = volume_source(vol) if vol["id"] in st.volumes else None
        if src and os.path.exists(src):
            dest = str(st.datadir / "templates" / f"{tid}.img")
            sparse_copy(src, dest)
            tpl["_file"] = dest
            tpl["_physicalsize"] = os.stat(dest).st_blocks * 512
        tpl["_zones"][zone["id"]].update(status="Download Complete", isready=True)
        rows = st.template_rows(tpl)
        return {"template": rows[0]}

    def rollback():
        st.templates.pop(tid, None)
    return ctx.submit(instancetype="Template", instanceid=tid, complete=complete, rollback=rollback, create=True,
                      variant="volume" if snap is None else None)


@command("copyTemplate", TPLCMD + "CopyTemplateCmd")
def copy_template(ctx):
    """TemplateManagerImpl.copyTemplate (CopyTemplateCmd.execute) checks everything inside the job."""
    return ctx.submit_checked(lambda: _copy_template_job(ctx), instancetype="Template", instanceid=ctx.p["id"])


def _copy_template_job(ctx):
    st = ctx.state
    tpl = find_template(ctx)
    dest_ids = []
    if ctx.has("destzoneid"):
        dest_ids.append(ctx.find(st.zones, "destzoneid", "Unable to find zone by id {id}")["id"])
    for z in ctx.lst("destzoneids"):
        dest_ids.append(ctx.find(st.zones, "destzoneids", "Unable to find zone by id {id}", value=z)["id"])
    if not dest_ids:
        raise param_error("Please specify valid destination zone(s).")
    if ctx.has("sourcezoneid"):
        src_zone = ctx.find(st.zones, "sourcezoneid", "Unable to find zone by id {id}")["id"]
    else:
        src_zone = next((z for z, r in tpl["_zones"].items() if r["isready"]), None)
    src = tpl["_zones"].get(src_zone) if src_zone else None
    if src is None or not src["isready"]:
        raise param_error(f"Template {tpl['id']} is not ready in the source zone, can't copy it")
    for z in dest_ids:
        if z == src_zone:
            raise param_error("Please specify different source and destination zones.")
        if z in tpl["_zones"]:
            raise param_error(f"Template {tpl['id']} already exists in zone {z}")
        hyps = [h.lower() for h in st.zones[z]["_hypervisors"]]
        if tpl["hypervisor"].lower() not in hyps:
            raise param_error(f"Destination zone {z} has no {tpl['hypervisor']} hypervisor")
    for z in dest_ids:
        tpl["_zones"][z] = {"status": "Processing", "isready": False, "created": now_str()}

    def complete():
        if tpl["id"] not in st.templates:
            raise param_error(f"Unable to find template with id {tpl['id']}")
        for z in dest_ids:
            if z in tpl["_zones"]:
                tpl["_zones"][z].update(status="Download Complete", isready=True)
        rows = [r for r in st.template_rows(tpl) if r["zoneid"] == dest_ids[0]]
        return {"template": rows[0] if rows else st.template_rows(tpl)[0]}

    def rollback():
        for z in dest_ids:
            tpl["_zones"].pop(z, None)
    return complete, rollback, None


@command("deleteTemplate", TPLCMD + "DeleteTemplateCmd")
def delete_template(ctx):
    """TemplateManagerImpl.deleteTemplate finds the template and checks the zone inside the job (DeleteTemplateCmd.
    getEntityOwnerId answers SYSTEM for a template that is gone)."""
    st = ctx.state
    tpl = st.templates.get(ctx.p["id"])
    if tpl is not None and not tpl.get("_owned", True):
        raise param_error(f"Account {st.account['name']} does not have permission to delete template {tpl['id']}")
    return ctx.submit_checked(lambda: _delete_template_job(ctx), instancetype="Template", instanceid=ctx.p["id"])


def _delete_template_job(ctx):
    st = ctx.state
    tpl = find_template(ctx)
    zone = None
    if ctx.has("zoneid"):
        zone = ctx.find(st.zones, "zoneid", "Unable to find zone by id {id}")
        if zone["id"] not in tpl["_zones"]:
            raise param_error(f"Template {tpl['id']} is not available in zone {zone['id']}")

    def complete():
        if zone is not None:
            tpl["_zones"].pop(zone["id"], None)
        if zone is None or not tpl["_zones"]:
            st.templates.pop(tpl["id"], None)
            st.drop_tags("Template", tpl["id"])
            if tpl.get("_file"):
                with contextlib.suppress(OSError):
                    os.unlink(tpl["_file"])
        return {"success": True}
    return complete, None, None


@command("extractTemplate", TPLCMD + "ExtractTemplateCmd")
def extract_template(ctx):
    """ExtractTemplateCmd.execute -> TemplateManagerImpl.extract: the template, mode and zone checks run inside
    the job."""
    return ctx.submit_checked(lambda: _extract_template_job(ctx), instancetype="Template", instanceid=ctx.p["id"])


def _extract_template_job(ctx):
    st = ctx.state
    tpl = find_template(ctx)
    mode = ctx.p["mode"].upper()
    if mode not in ("HTTP_DOWNLOAD", "FTP_UPLOAD"):
        raise param_error("Please specify a valid extract Mode. Supported modes: HTTP_DOWNLOAD, FTP_UPLOAD")
    if mode == "FTP_UPLOAD":
        raise param_error("FTP_UPLOAD is not supported by the simulator; use HTTP_DOWNLOAD")
    zid = ctx.s("zoneid") or next((z for z, r in tpl["_zones"].items() if r["isready"]), None)
    if zid is None or zid not in tpl["_zones"] or not tpl["_zones"][zid]["isready"]:
        raise param_error(f"The template {tpl['id']} is not ready in the specified zone, can't extract it")
    token = secrets.token_urlsafe(24)
    ext = {"QCOW2": "qcow2", "VHD": "vhd", "OVA": "ova", "RAW": "img"}.get(tpl["format"], "img")
    url = f"{st.base_url}/extract/{token}/{tid_safe(tpl['id'])}.{ext}"
    zone = st.zones[zid]

    def complete():
        st.extracts[token] = {"path": tpl.get("_file"), "template": tpl["id"]}
        return {"template": {"id": tpl["id"], "name": tpl["name"], "extractId": st.new_id("extract"),
                             "accountid": st.account["id"], "state": "DOWNLOAD_URL_CREATED",
                             "status": "DOWNLOAD_URL_CREATED", "uploadpercentage": 100,
                             "extractMode": "HTTP_DOWNLOAD", "url": url, "zoneid": zid, "zonename": zone["name"],
                             "created": now_str()}}
    return complete, None, None


def tid_safe(tid: str) -> str:
    return tid.replace("/", "_")
