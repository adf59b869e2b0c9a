"""Virtual machines: deploy / start / stop / reboot / destroy / expunge / recover / update / list."""
from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
import string
import time
from urllib.parse import unquote

from ..errors import ApiError, invalid_uuid, param_error
from ..util import GiB, now_str, public
from . import by_ids, command, list_response, name_matches

VMCMD = "org.apache.cloudstack.api.command.user.vm."
ADMIN_VMCMD = "org.apache.cloudstack.api.command.admin.vm."
HIDDEN_STATES = ("Destroyed", "Expunging")
# What UserVmManagerImpl (4.11 to 4.18 at least) answers an account that may not expunge or recover: a
# PermissionDeniedException, inside the job for the async commands (ApiAsyncJobDispatcher: errorcode 530),
# as the API error 531 for the synchronous recoverVirtualMachine.
DESTROY_EXPUNGE_REFUSED = ("Parameter expunge can be passed by Admin only. Or when the allow.user.expunge.recover.vm "
                           "key is set.")
EXPUNGE_REFUSED = "Expunging a vm can only be done by an Admin. Or when the allow.user.expunge.recover.vm key is set."
RECOVER_REFUSED = "Recovering a vm can only be done by an Admin. Or when the allow.user.expunge.recover.vm key is set."
_NAME_RE = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_B64_RE = re.compile(r"^[A-Za-z0-9+/=_\-\s]*$")
_MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


# ---------------------------------------------------------------------- helpers
def validate_userdata(ctx, value: str) -> str:
    st = ctx.state
    if "%" in value:
        value = unquote(value)
    maxlen = int(st.settings["vm.userdata.max.length"])  # the global setting's real name
    if ctx.method == "GET":
        if len(value) >= 4096:
            raise param_error("User data is too long for an http GET request")
    elif len(value) >= 1048576:
        raise param_error("User data is too long for POST request")
    if len(value) > maxlen:
        raise param_error(f"User data has exceeded configurable max length : {maxlen}")
    if not _B64_RE.match(value):
        raise param_error("User data is not base64 encoded")
    compact = re.sub(r"\s", "", value).replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(compact + "=" * (-len(compact) % 4))
    except (binascii.Error, ValueError):
        raise param_error("User data is not base64 encoded") from None
    if len(decoded) < 1:
        raise param_error("User data is too short")
    return base64.b64encode(decoded).decode()


def find_vm(ctx, param: str = "id", value: str | None = None, allow_destroyed: bool = False) -> dict:
    st = ctx.state
    vid = value if value is not None else ctx.s(param)
    vm = st.vms.get(vid)
    if vm is None or (not allow_destroyed and vm["state"] in HIDDEN_STATES):
        if vid not in st.known:
            raise invalid_uuid(ctx.lname, param, vid)
        raise param_error(f"Unable to find virtual machine with id {vid}")
    return vm


def render_nic(st, vm, nic) -> dict:
    return dict(nic, virtualmachineid=vm["id"])


def render_vm(st, vm) -> dict:
    d = public(vm)
    d["nic"] = [render_nic(st, vm, n) for n in vm["_nics"]]
    d["securitygroup"] = []
    for gid in vm["_secgroups"]:
        g = st.secgroups.get(gid)
        if g:
            d["securitygroup"].append({"id": g["id"], "name": g["name"], "description": g["description"],
                                       "account": g["account"], "ingressrule": g["ingressrule"],
                                       "egressrule": g["egressrule"], "tags": []})
    d["affinitygroup"] = [{"id": g["id"], "name": g["name"], "type": g["type"], "description": g["description"],
                           "account": g["account"], "domainid": g["domainid"], "domain": g["domain"]}
                          for g in (st.affinitygroups.get(a) for a in vm["_affinity"]) if g]
    d["tags"] = st.tags_for("UserVm", vm["id"])
    if vm["state"] == "Running":
        d["hostid"] = vm["_hostid"]
        d["hostname"] = vm["_hostname"]
        vm["_ran"] = True
    if vm.get("_ran"):
        # UserVmJoinDaoImpl: the last statistics the stats collector gathered (an idle VM here; they stay after the
        # VM stops).  No VM-level "ipaddress": UserVmResponse has had none since 3.0 (it is the default NIC's).
        d.update(cpuused="0%", networkkbsread=0, networkkbswrite=0, diskkbsread=0, diskkbswrite=0, diskioread=0,
                 diskiowrite=0)
    pub = next((i for i in st.publicips.values() if i.get("virtualmachineid") == vm["id"] and i["isstaticnat"]), None)
    if pub:
        d["publicip"] = pub["ipaddress"]
        d["publicipid"] = pub["id"]
    return d


def release_nics(st, vm) -> None:
    for nic in vm["_nics"]:
        st.release_ip(nic["networkid"], nic.get("ipaddress"))


def capacity_error(vm) -> ApiError:
    return ApiError(533, f'Unable to create a deployment for VM instance {{"id": {vm["_number"]}, '
                         f'"instanceName": "{vm["instancename"]}", "type": "User", "uuid": "{vm["id"]}"}}')


def has_capacity(st, zone, cpu, mem) -> bool:
    used_cpu, used_mem = st.used_capacity(zone["id"])
    return used_cpu + cpu <= zone["_cpu"] and used_mem + mem <= zone["_memory"]


def detach_all_and_cleanup_volumes(st, vm, expunge: bool) -> None:
    from .volumes import detach_device
    for vol in list(st.volumes.values()):
        if vol.get("virtualmachineid") != vm["id"]:
            continue
        if vol["type"] == "ROOT":
            detach_device(st, vol)
            if expunge:
                st.volumes.pop(vol["id"], None)
                st.drop_tags("Volume", vol["id"])
            else:
                vol["state"] = "Destroy"
                vol["_hidden"] = True
        else:
            detach_device(st, vol)
            for k in ("virtualmachineid", "vmname", "vmdisplayname", "vmstate", "deviceid", "attached"):
                vol.pop(k, None)


def remove_network_rules_for_vm(st, vm) -> None:
    from .forwarding import drop_rules_for
    drop_rules_for(st, vm_id=vm["id"])
    for ip in st.publicips.values():
        if ip.get("virtualmachineid") == vm["id"] and ip["isstaticnat"]:
            ip["isstaticnat"] = False
            for k in ("virtualmachineid", "virtualmachinename", "virtualmachinedisplayname", "vmipaddress",
                      "virtualmachinetype"):
                ip.pop(k, None)
    for rule in st.lbrules.values():
        if vm["id"] in rule["_vms"]:
            rule["_vms"].remove(vm["id"])


# ---------------------------------------------------------------------- deploy
@command("deployVirtualMachine", VMCMD + "DeployVMCmd")
def deploy_virtual_machine(ctx):
    st = ctx.state
    st.expunge_due()  # addresses of VMs destroyed long enough ago are free again
    zone = ctx.find(st.zones, "zoneid", "Unable to find zone by id={id}")
    so = ctx.find(st.service_offerings, "serviceofferingid", "Unable to find service offering: {id}")
    tpl = ctx.find(st.templates, "templateid", "Unable to use template {id}")
    zr = tpl["_zones"].get(zone["id"])
    if zr is None or not zr["isready"]:
        raise param_error(f"Template {tpl['name']} has not been completely downloaded to zone {zone['id']}")
    if ctx.has("hypervisor") and ctx.p["hypervisor"].lower() not in [h.lower() for h in zone["_hypervisors"]]:
        raise param_error(f"Hypervisor {ctx.p['hypervisor']} is not supported in zone {zone['name']}")
    details = ctx.merged_map("details")
    if so["iscustomized"]:
        try:
            cpu, speed, mem = int(details["cpuNumber"]), int(details["cpuSpeed"]), int(details["memory"])
        except (KeyError, ValueError):
            raise param_error("Need to specify custom parameter values cpu, cpu speed and memory when using custom "
                              "offering") from None
        if cpu < 1 or mem < 32 or speed < 1:
            raise param_error("Invalid cpu cores value, specify a value between 1 and 16") if cpu < 1 else \
                param_error("Invalid cpu speed or memory value")
    else:
        cpu, speed, mem = so["cpunumber"], so["cpuspeed"], so["memory"]

    name = ctx.s("name")
    if name is not None:
        if not _NAME_RE.match(name):
            raise param_error("Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' through "
                              "'9', and the hyphen ('-'), must be between 1 and 63 characters long, and can't start or "
                              "end with \"-\" and can't start with digit")
        if any(v["name"] == name for v in st.vms.values()):
            raise param_error(f"The vm with hostName {name} already exists in the network domain: "
                              f"cs1cloud.internal; network=default")

    basic = zone["networktype"] == "Basic"
    ipmap = ctx.map_entries("iptonetworklist")
    sg_ids, sg_names = ctx.lst("securitygroupids"), ctx.lst("securitygroupnames")
    # DeployVMCmd.getNetworkIds() answers the iptonetworklist's networks when that list is given (refusing it
    # alongside networkids/ipaddress first), so create() refuses both in a Basic zone, before any job exists.
    if ipmap and (ctx.has("networkids") or ctx.has("ipaddress")):
        raise param_error("ipToNetworkMap can't be specified along with networkIds or ipAddress")
    if basic and ("networkids" in ctx.p or ipmap):
        raise param_error("Can't specify network Ids in Basic zone")
    if sg_ids and sg_names:
        raise param_error("securitygroupids parameter is mutually exclusive with securitygroupnames parameter")
    if (sg_ids or sg_names) and not zone["securitygroupsenabled"]:
        raise param_error("Can't create vm with security groups; security group feature is not enabled per zone")

    # networks and requested addresses
    nets: list[tuple[dict, str | None, str | None]] = []
    if basic:
        guest = next((n for n in st.networks.values() if n["zoneid"] == zone["id"]), None)
        if guest is None:
            raise param_error(f"Unable to find default network for zone {zone['id']}")
        nets.append((guest, ctx.s("ipaddress"), ctx.s("macaddress")))
    elif ipmap:
        for e in ipmap:
            nid = e.get("networkid")
            if not nid:
                raise param_error("Unable to execute API command deployvirtualmachine due to invalid value. "
                                  "networkid is missing in iptonetworklist")
            net = ctx.find(st.networks, "iptonetworklist", "Unable to find network by id " + nid, value=nid)
            nets.append((net, e.get("ip"), e.get("mac")))
    else:
        ids = ctx.lst("networkids")
        if ids:
            for i, nid in enumerate(ids):
                net = ctx.find(st.networks, "networkids", "Unable to find network by id {id}", value=nid)
                nets.append((net, ctx.s("ipaddress") if i == 0 else None, ctx.s("macaddress") if i == 0 else None))
        else:
            cand = [n for n in st.networks.values() if n["zoneid"] == zone["id"]]
            default = next((n for n in cand if n["type"] == "Isolated" and not n.get("vpcid")), None) or \
                (cand[0] if cand else None)
            if default is None:
                raise param_error("Unable to find a default network for the account in the zone; please specify "
                                  "networkids")
            nets.append((default, ctx.s("ipaddress"), ctx.s("macaddress")))
    seen = set()
    for net, _ip, mac in nets:
        if net["zoneid"] != zone["id"]:
            raise param_error(f"Network id={net['id']} doesn't belong to zone {zone['id']}")
        if net["id"] in seen:
            raise param_error(f"Network id={net['id']} is specified more than once")
        seen.add(net["id"])
        # DeployVMCmd.getMacAddress / getIpAddressesFromIpMap, then NetworkModelImpl.checkRequestedIpAddresses: a MAC
        # another NIC of the same network has is refused (other networks are not looked at), all in create().
        if mac and not _MAC_RE.match(mac):
            raise param_error(f"Mac address is not valid: {mac}")
        if mac and int(mac[:2], 16) & 1:
            raise param_error(f"Mac address is not unicast: {mac}")
        if mac and any(n["macaddress"] == mac.lower() and n["networkid"] == net["id"]
                       for v in st.vms.values() for n in v["_nics"]):
            raise param_error(f"The requested Mac address is already taken! {mac}")

    # security groups
    secgroups = []
    if zone["securitygroupsenabled"]:
        if sg_ids:
            for gid in sg_ids:
                secgroups.append(ctx.find(st.secgroups, "securitygroupids", "Unable to find security group by id {id}",
                                          value=gid)["id"])
        elif sg_names:
            for gname in sg_names:
                g = next((x for x in st.secgroups.values() if x["name"] == gname), None)
                if g is None:
                    raise param_error(f"Unable to find group by name {gname}")
                secgroups.append(g["id"])
        else:
            g = next((x for x in st.secgroups.values() if x["name"] == "default"), None)
            if g:
                secgroups.append(g["id"])

    keypair = ctx.s("keypair")
    if keypair and (keypair not in st.sshkeys or not st.visible(st.sshkeys[keypair], by_id=False)):
        # looked up under the VM's owner: in a project, the project's key pairs (UserVmManagerImpl.createVirtualMachine)
        raise param_error(f"A key pair with name '{keypair}' was not found.")
    affinity = []
    for gid in ctx.lst("affinitygroupids"):
        affinity.append(ctx.find(st.affinitygroups, "affinitygroupids", "Unable to find affinity group by id {id}",
                                 value=gid)["id"])
    for gname in ctx.lst("affinitygroupnames"):
        g = next((x for x in st.affinitygroups.values() if x["name"] == gname), None)
        if g is None:
            raise param_error(f"Unable to find affinity group by name {gname}")
        affinity.append(g["id"])
    if ctx.has("affinitygroupids") and ctx.has("affinitygroupnames"):
        raise param_error("affinitygroupids parameter is mutually exclusive with affinitygroupnames parameter")
    userdata = validate_userdata(ctx, ctx.p["userdata"]) if ctx.has("userdata") else None

    tpl_gb = math.ceil(tpl["size"] / GiB) if tpl["size"] else 1
    root_gb = ctx.i("rootdisksize")
    if details.get("rootdisksize"):
        try:
            root_gb = int(details["rootdisksize"])
        except ValueError:
            raise param_error("Invalid rootdisksize value") from None
    if root_gb is not None:
        if root_gb < 1:
            raise param_error("Root disk size should be a positive number.")
        if root_gb * GiB < tpl["size"]:
            raise param_error(f"Root disk size {root_gb}GB is smaller than the template size {tpl_gb}GB")
    root_size = root_gb * GiB if root_gb is not None else max(tpl["size"], GiB)

    data_offering = None
    data_size = None
    if ctx.has("diskofferingid"):
        data_offering = ctx.find(st.disk_offerings, "diskofferingid", "Unable to find disk offering by id {id}")
        if data_offering["iscustomized"]:
            size = ctx.i("size")
            if not size:
                raise param_error("This disk offering requires a custom size specified")
            data_size = size * GiB
        else:
            data_size = data_offering["disksize"] * GiB
    startvm = ctx.b("startvm", True)

    # ------------------------------------------------------------ allocation (synchronous, under the lock)
    vmid = st.new_id("vm")
    number = st.next_vm_number()
    failure: ApiError | None = None
    nics = []
    for idx, (net, req_ip, mac) in enumerate(nets):
        ip = st.allocate_ip(net, vmid, req_ip)        # raises 431 for a bad / used requested IP
        if ip is None:
            failure = ApiError(533, f"Insufficient address capacity: no free IP address in network {net['name']} "
                                    f"({net['cidr']})", 4320)
        nics.append({"id": st.new_id("nic"), "networkid": net["id"], "networkname": net["name"],
                     "netmask": net["netmask"], "gateway": net["gateway"], "ipaddress": ip,
                     "isdefault": idx == 0, "macaddress": (mac.lower() if mac else st.new_mac()),
                     "traffictype": "Guest", "type": net["type"], "deviceid": str(idx),
                     "broadcasturi": net.get("broadcasturi", "vlan://untagged"),
                     "isolationuri": net.get("broadcasturi", "vlan://untagged"),
                     "extradhcpoption": [], "secondaryip": []})
    no_capacity = failure is None and startvm and not has_capacity(st, zone, cpu, mem)  # reported once vm exists
    host_n = (number % 4) + 1
    vm = {
        "id": vmid, "name": name or f"VM-{vmid}", "displayname": ctx.s("displayname", name or f"VM-{vmid}"),
        "instancename": f"i-2-{number}-VM", "state": "Starting" if startvm else "Stopped",
        "zoneid": zone["id"], "zonename": zone["name"],
        "templateid": tpl["id"], "templatename": tpl["name"], "templatedisplaytext": tpl["displaytext"],
        "passwordenabled": tpl["passwordenabled"], "serviceofferingid": so["id"], "serviceofferingname": so["name"],
        "cpunumber": cpu, "cpuspeed": speed, "memory": mem, "guestosid": tpl["ostypeid"], "ostypeid": tpl["ostypeid"],
        "osdisplayname": tpl["ostypename"], "rootdeviceid": 0, "rootdevicetype": "ROOT",
        "hypervisor": zone["_hypervisors"][0], "created": now_str(), "haenable": False,
        "isdynamicallyscalable": False, "displayvm": True, "details": dict(details),
        **st.owner_fields(),
        "_number": number, "_nics": nics, "_secgroups": secgroups, "_affinity": affinity, "_userdata": userdata,
        "_consumes": bool(startvm), "_hostid": st.fixed_id("host", f"{zone['name']}:{host_n}"),
        "_hostname": f"{zone['name']}-host-{host_n}",
    }
    if keypair:
        vm["keypair"] = keypair
        vm["keypairs"] = keypair
    if no_capacity:
        vm["_consumes"] = False
        failure = capacity_error(vm)
    if failure is not None:
        vm["_consumes"] = False
    st.vms[vmid] = vm
    root = _new_volume(st, zone, name=f"ROOT-{number}", vtype="ROOT", size=root_size, offering=None, vm=vm,
                       deviceid=0, template=tpl)
    data = None
    if data_offering is not None:
        data = _new_volume(st, zone, name=f"DATA-{number}", vtype="DATADISK", size=data_size, offering=data_offering,
                           vm=vm, deviceid=1)

    def rollback():
        vm["state"] = "Error"
        vm["_consumes"] = False
        release_nics(st, vm)
        for n in vm["_nics"]:
            n["ipaddress"] = None

    def complete():
        from .volumes import attach_device
        if failure is not None:
            raise failure
        vm["state"] = "Running" if startvm else "Stopped"
        for vol in (root, data):
            if vol is not None:
                # A stopped deploy creates no volume on primary storage: they stay Allocated until the first start
                # (DeployVMCmd.execute starts nothing with startvm=false; VolumeOrchestrator.prepare creates them).
                vol["state"] = "Ready" if startvm else "Allocated"
                vol["vmstate"] = vm["state"]
        if data is not None:
            attach_device(st, data, vm)
        st.record_event("VM.CREATE", f"Successfully completed deploying Vm. Vm Id: {vm['id']}")
        out = render_vm(st, vm)
        if tpl["passwordenabled"]:  # UserVmManagerImpl: a new random password, answered in the deploy result only
            out["password"] = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(6))
        return {"virtualmachine": out}

    return ctx.submit(instancetype="VirtualMachine", instanceid=vmid, complete=complete, rollback=rollback,
                      create=True, variant=None if startvm else "stopped")


def _new_volume(st, zone, *, name, vtype, size, offering, vm, deviceid, template=None) -> dict:
    vid = st.new_id("volume")
    vol = {"id": vid, "name": name, "zoneid": zone["id"], "zonename": zone["name"], "type": vtype,
           "deviceid": deviceid, "virtualmachineid": vm["id"], "vmname": vm["name"], "vmdisplayname": vm["displayname"],
           "vmstate": vm["state"], "provisioningtype": "thin", "size": size, "state": "Allocated",
           "storagetype": "shared", "hypervisor": vm["hypervisor"], "storage": f"{zone['name']}-primary",
           "storageid": st.fixed_id("storage", zone["name"]), "destroyed": False, "isextractable": True,
           "displayvolume": True, "created": now_str(), "attached": now_str(), "path": vid,
           "quiescevm": False, "chaininfo": "", **st.owner_fields(),
           "_number": st.next_vol_number(), "_content": None}
    if offering is not None:
        vol.update(diskofferingid=offering["id"], diskofferingname=offering["name"],
                   diskofferingdisplaytext=offering["displaytext"])
    else:
        so = st.service_offerings.get(vm["serviceofferingid"])
        vol.update(serviceofferingid=so["id"], serviceofferingname=so["name"],
                   serviceofferingdisplaytext=so["displaytext"])
    if template is not None:
        vol["templateid"] = template["id"]
        vol["templatename"] = template["name"]
        vol["templatedisplaytext"] = template["displaytext"]
    st.volumes[vid] = vol
    return vol


# ---------------------------------------------------------------------- power operations
def _set_vmstate_on_volumes(st, vm):
    for vol in st.volumes.values():
        if vol.get("virtualmachineid") == vm["id"]:
            vol["vmstate"] = vm["state"]


def vm_not_found(vm_id: str) -> ApiError:
    """UserVmManagerImpl's refusal of a VM whose uuid ParamProcessWorker still resolved (it was expunged)."""
    return param_error(f"unable to find a virtual machine with id {vm_id}")


@command("stopVirtualMachine", VMCMD + "StopVMCmd")
def stop_virtual_machine(ctx):
    """UserVmManagerImpl.stopVirtualMachine checks inside the job; stopping a VM that is Stopped, Destroyed or in
    Error does nothing and succeeds (the stop returns early for those states)."""
    st = ctx.state
    vm_id = ctx.p["id"]

    def checks():
        vm = st.vms.get(vm_id)
        if vm is None:
            raise vm_not_found(vm_id)
        prev = vm["state"]
        if prev in ("Error", "Destroyed", "Expunging"):
            return (lambda: {"virtualmachine": render_vm(st, vm)}), None, None
        if prev in ("Running", "Starting"):
            vm["state"] = "Stopping"

        def complete():
            vm["state"] = "Stopped"
            vm["_consumes"] = False
            _set_vmstate_on_volumes(st, vm)
            return {"virtualmachine": render_vm(st, vm)}

        def rollback():
            vm["state"] = prev
        return complete, rollback, None
    return ctx.submit_checked(checks, instancetype="VirtualMachine", instanceid=vm_id)


@command("startVirtualMachine", VMCMD + "StartVMCmd")
def start_virtual_machine(ctx):
    """UserVmManagerImpl.startVirtualMachine's checks (the VM exists, is not Running) and the capacity (533) are
    the job's."""
    st = ctx.state
    vm_id = ctx.p["id"]

    def checks():
        vm = st.vms.get(vm_id)
        if vm is None:
            raise vm_not_found(vm_id)
        if vm["state"] == "Running":
            raise param_error(f"The virtual machine {vm['id']} ({vm['displayname']}) is already running")
        if vm["state"] != "Stopped":
            raise ApiError(530, f"Unable to start VM {vm['id']} as it is in {vm['state']} state")
        zone = st.zones[vm["zoneid"]]
        ok = has_capacity(st, zone, vm["cpunumber"], vm["memory"])
        prev = vm["state"]
        vm["state"] = "Starting"
        if ok:
            vm["_consumes"] = True
        # The first start of a VM deployed stopped creates its Allocated volumes on primary storage (the ROOT
        # volume from the template): the deploy's own work, timed as such ("first").
        allocated = [v for v in st.volumes.values() if v.get("virtualmachineid") == vm_id and v["state"] == "Allocated"]

        def complete():
            if not ok:
                raise capacity_error(vm)
            vm["state"] = "Running"
            for vol in allocated:
                vol["state"] = "Ready"
            _set_vmstate_on_volumes(st, vm)
            return {"virtualmachine": render_vm(st, vm)}

        def rollback():
            vm["state"] = prev
            vm["_consumes"] = False
        return complete, rollback, "first" if allocated else None
    return ctx.submit_checked(checks, instancetype="VirtualMachine", instanceid=vm_id)


@command("rebootVirtualMachine", VMCMD + "RebootVMCmd")
def reboot_virtual_machine(ctx):
    """UserVmManagerImpl.rebootVirtualMachine(RebootVMCmd): found and Running, checked inside the job."""
    st = ctx.state
    vm_id = ctx.p["id"]

    def checks():
        vm = st.vms.get(vm_id)
        if vm is None:
            raise param_error(f"Unable to find a virtual machine with id {vm_id}")
        if vm["state"] != "Running":
            raise param_error(f"The VM {vm['id']} ({vm['displayname']}) is not running, unable to reboot it")
        return (lambda: {"virtualmachine": render_vm(st, vm)}), None, None
    return ctx.submit_checked(checks, instancetype="VirtualMachine", instanceid=vm_id)


def _destroy(st, vm, expunge: bool) -> None:
    """A destroyed VM keeps its NICs and their addresses until it is expunged; it consumes no capacity."""
    vm["_consumes"] = False
    remove_network_rules_for_vm(st, vm)
    detach_all_and_cleanup_volumes(st, vm, expunge)
    if expunge:
        release_nics(st, vm)
        st.vms.pop(vm["id"], None)
        st.drop_tags("UserVm", vm["id"])
        vm["state"] = "Expunging"
    else:
        vm["state"] = "Destroyed"
        vm["_destroyed_at"] = time.monotonic()


@command("destroyVirtualMachine", VMCMD + "DestroyVMCmd")
def destroy_virtual_machine(ctx):
    """UserVmManagerImpl.destroyVm(DestroyVMCmd) runs every check inside the job, the permission first."""
    st = ctx.state
    st.expunge_due()
    vm_id = ctx.p["id"]
    expunge = ctx.b("expunge", False)
    volume_ids = ctx.lst("volumeids")

    def checks():
        if expunge and not st.may_expunge():  # a PermissionDeniedException: errorcode 530, the VM untouched
            raise ApiError(530, DESTROY_EXPUNGE_REFUSED)
        vm = st.vms.get(vm_id)
        if vm is None:
            raise vm_not_found(vm_id)
        if vm["state"] == "Destroyed" and not expunge:  # "already destroyed": answered as it is
            return (lambda: {"virtualmachine": render_vm(st, vm)}), None, None
        for vid in volume_ids:
            vol = st.volumes.get(vid)
            if vol is None:
                raise param_error(f"Unable to find volume with ID: {vid}")
            if vol.get("virtualmachineid") != vm["id"] or vol["type"] != "DATADISK":
                raise param_error(f"Please specify volumes that belong to the VM {vm['id']} and are data disks")

        def complete():
            if vm["id"] not in st.vms:
                raise vm_not_found(vm["id"])
            if vm["state"] == "Destroyed":
                st.expunge_destroyed(vm)
                return {"virtualmachine": render_vm(st, vm)}
            _destroy(st, vm, expunge)
            st.record_event("VM.DESTROY", f"Successfully completed destroying Vm. Vm Id: {vm['id']}")
            for vid in volume_ids:
                st.volumes.pop(vid, None)
                st.record_event("VOLUME.DELETE", f"Successfully completed deleting volume. Volume Id: {vid}")
            return {"virtualmachine": render_vm(st, vm)}
        return complete, None, "expunge" if expunge else None
    return ctx.submit_checked(checks, instancetype="VirtualMachine", instanceid=vm_id)


@command("expungeVirtualMachine", ADMIN_VMCMD + "ExpungeVMCmd")
def expunge_virtual_machine(ctx):
    """UserVmManagerImpl.expungeVm: found, the state, then the permission, all inside the job."""
    st = ctx.state
    st.expunge_due()
    vm_id = ctx.p["id"]

    def checks():
        vm = st.vms.get(vm_id)
        if vm is None:
            raise vm_not_found(vm_id)
        if vm["state"] not in ("Destroyed", "Error"):
            raise ApiError(530, "Please destroy vm with specified vmId before expunge")
        if not st.may_expunge():
            raise ApiError(530, EXPUNGE_REFUSED)

        def complete():
            if vm["id"] not in st.vms:
                raise vm_not_found(vm["id"])
            if vm["state"] == "Error":
                _destroy(st, vm, True)
            else:
                st.expunge_destroyed(vm)
            st.record_event("VM.EXPUNGE", f"Successfully completed expunging Vm. Vm Id: {vm['id']}")
            return {"success": True}
        return complete, None, None
    return ctx.submit_checked(checks, instancetype="VirtualMachine", instanceid=vm_id)


@command("recoverVirtualMachine", ADMIN_VMCMD + "RecoverVMCmd")
def recover_virtual_machine(ctx):
    st = ctx.state
    st.expunge_due()
    vm = find_vm(ctx, allow_destroyed=True)
    if not st.may_expunge():
        raise ApiError(531, RECOVER_REFUSED)
    if vm["state"] != "Destroyed":
        raise param_error(f"Vm with id {vm['id']} is not in the right state")
    for nic in vm["_nics"]:
        if nic.get("ipaddress"):
            continue  # kept while Destroyed
        ip = st.allocate_ip(st.networks[nic["networkid"]], vm["id"])
        if ip is None:
            raise ApiError(533, f"Insufficient address capacity in network {nic['networkname']}", 4320)
        nic["ipaddress"] = ip
    vm.pop("_destroyed_at", None)
    for vol in st.volumes.values():
        if vol.get("virtualmachineid") == vm["id"] and vol.get("_hidden"):
            vol["state"] = "Ready"
            vol.pop("_hidden", None)
    vm["state"] = "Stopped"
    _set_vmstate_on_volumes(st, vm)
    return {"virtualmachine": render_vm(st, vm)}


@command("updateVirtualMachine", VMCMD + "UpdateVMCmd")
def update_virtual_machine(ctx):
    st = ctx.state
    vm = find_vm(ctx)
    if ctx.has("userdata"):
        vm["_userdata"] = validate_userdata(ctx, ctx.p["userdata"])
    if ctx.has("displayname"):
        vm["displayname"] = ctx.p["displayname"]
    if ctx.has("name") and ctx.p["name"] != vm["name"]:
        new = ctx.p["name"]
        if not _NAME_RE.match(new):
            raise param_error("Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' "
                              "through '9', and the hyphen ('-')")
        if any(v["name"] == new for v in st.vms.values()):
            raise param_error(f"The vm with hostName {new} already exists")
        vm["name"] = new
    if ctx.merged_map("details"):
        vm["details"].update(ctx.merged_map("details"))
    return {"virtualmachine": render_vm(st, vm)}


@command("getVirtualMachineUserData", VMCMD + "GetVMUserDataCmd")
def get_virtual_machine_user_data(ctx):
    vm = find_vm(ctx, "virtualmachineid")
    out = {"virtualmachineid": vm["id"]}
    if vm["_userdata"] is not None:
        out["userdata"] = vm["_userdata"]
    return {"virtualmachineuserdata": out}


@command("listVirtualMachines")
def list_virtual_machines(ctx):
    st = ctx.state
    st.expunge_due()
    hidden = ("Expunging",) if st.sees_destroyed() else HIDDEN_STATES
    items = [v for v in st.vms.values() if v["state"] not in hidden]
    items = by_ids(ctx, items)
    # QueryManagerImpl.searchForUserVMsInternal (4.18): ``sb.and("name", ..., Op.EQ)``; through 4.16 it was
    # ``LIKE '%name%'`` (the 4.11 listApis text still says "a substring match")
    if ctx.has("name"):
        items = [v for v in items if name_matches(ctx, v["name"], ctx.p["name"])]
    for f in ("zoneid", "templateid", "serviceofferingid", "keypair"):
        if ctx.has(f):
            items = [v for v in items if v.get(f) == ctx.p[f]]
    if ctx.has("state"):
        want = ctx.p["state"].lower()
        if want == "present":
            items = [v for v in items if v["state"] not in HIDDEN_STATES]
        else:
            items = [v for v in items if v["state"].lower() == want]
    if ctx.has("networkid"):
        items = [v for v in items if any(n["networkid"] == ctx.p["networkid"] for n in v["_nics"])]
    if ctx.has("affinitygroupid"):
        items = [v for v in items if ctx.p["affinitygroupid"] in v["_affinity"]]
    if ctx.has("vpcid"):
        items = [v for v in items
                 if any(st.networks[n["networkid"]].get("vpcid") == ctx.p["vpcid"] for n in v["_nics"])]
    tf = ctx.tag_filter()
    if tf:
        items = [v for v in items if st.match_tags("UserVm", v["id"], tf)]
    return list_response(ctx, "virtualmachine", [render_vm(st, v) for v in items],
                         keyword_fields=("name", "displayname", "instancename"))


@command("listNics")
def list_nics(ctx):
    st = ctx.state
    vm = find_vm(ctx, "virtualmachineid")
    nics = [render_nic(st, vm, n) for n in vm["_nics"]]
    if ctx.has("nicid"):
        nics = [n for n in nics if n["id"] == ctx.p["nicid"]]
    if ctx.has("networkid"):
        nics = [n for n in nics if n["networkid"] == ctx.p["networkid"]]
    return list_response(ctx, "nic", nics, keyword_fields=())
