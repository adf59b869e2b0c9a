"""Public IPs, static NAT, load balancer rules and firewall rules."""
from __future__ import annotations

from ..errors import ApiError, invalid_uuid, param_error
from ..util import public
from . import by_ids, command, list_response, name_matches

ADDR = "org.apache.cloudstack.api.command.user.address."
NAT = "org.apache.cloudstack.api.command.user.nat."
LB = "org.apache.cloudstack.api.command.user.loadbalancer."
FW = "org.apache.cloudstack.api.command.user.firewall."
ALGORITHMS = ("roundrobin", "leastconn", "source")


def render_ip(st, ip) -> dict:
    d = public(ip)
    d["tags"] = st.tags_for("PublicIpAddress", ip["id"])
    return d


def find_ip(ctx, param="id", value=None, allocated=True) -> dict:
    st = ctx.state
    iid = value if value is not None else ctx.s(param)
    ip = st.publicips.get(iid)
    if ip is None or (allocated and ip["state"] == "Free"):
        if iid not in st.known:
            raise invalid_uuid(ctx.lname, param, iid)
        raise param_error(f"Unable to find ip address by id={iid}")
    return ip


def _free_ip(st, ip) -> None:
    for k in ("associatednetworkid", "associatednetworkname", "vpcid", "allocated", "account", "domainid", "domain",
              "virtualmachineid", "virtualmachinename", "virtualmachinedisplayname", "vmipaddress",
              "virtualmachinetype"):
        ip.pop(k, None)
    ip.update(state="Free", isstaticnat=False)
    st.drop_tags("PublicIpAddress", ip["id"])


# ---------------------------------------------------------------------- public IPs
@command("associateIpAddress", ADDR + "AssociateIPAddrCmd")
def associate_ip_address(ctx):
    st = ctx.state
    net = None
    if ctx.has("networkid"):
        net = ctx.find(st.networks, "networkid", "Unable to find network by id {id}")
        if net["type"] == "Shared" or net.get("_basic"):
            raise param_error(f"Can't allocate public ip for the network {net['name']} of type {net['type']}: "
                              f"network is not Isolated")
        zone = st.zones[net["zoneid"]]
    elif ctx.has("vpcid"):
        vpc = ctx.find(st.vpcs, "vpcid", "Unable to find VPC by id {id}")
        zone = st.zones[vpc["zoneid"]]
    elif ctx.has("zoneid"):
        zone = ctx.find(st.zones, "zoneid", "Unable to find zone by id {id}")
    else:
        raise param_error("Unable to figure out zone to assign ip to. Please specify either zoneId, or networkId, "
                          "or vpcId in the call")
    if zone["networktype"] == "Basic":
        raise param_error("Can't associate ip in a Basic zone without Elastic IP service")
    free = next((i for i in st.publicips.values() if i["zoneid"] == zone["id"] and i["state"] == "Free"), None)
    if free is None:
        raise ApiError(533, f"Insufficient address capacity: no free public IP address in zone {zone['name']}", 4320)
    st.allocate_public_ip(free, net)
    if ctx.has("vpcid") and net is None:
        free["vpcid"] = ctx.p["vpcid"]
    free["state"] = "Allocating"

    def complete():
        free["state"] = "Allocated"
        return {"ipaddress": render_ip(st, free)}

    def rollback():
        _free_ip(st, free)
    return ctx.submit(instancetype="IpAddress", instanceid=free["id"], complete=complete, rollback=rollback,
                      create=True)


@command("disassociateIpAddress", ADDR + "DisassociateIPAddrCmd")
def disassociate_ip_address(ctx):
    """IpAddressManagerImpl.releaseIpAddressInternal runs in the job: an address that is not allocated is left
    as it is and the job succeeds; a source NAT address is an IllegalArgumentException (530)."""
    st = ctx.state
    ip = find_ip(ctx, allocated=False)
    return ctx.submit_checked(lambda: _disassociate_job(st, ip), instancetype="IpAddress", instanceid=ip["id"])


def _disassociate_job(st, ip):
    if ip["state"] == "Free":
        return (lambda: {"success": True}), None, None
    if ip.get("issourcenat"):
        raise ApiError(530, "ip address is used for source nat purposes and can not be disassociated.")

    def complete():
        for rid in [r["id"] for r in st.lbrules.values() if r["publicipid"] == ip["id"]]:
            st.lbrules.pop(rid, None)
            st.drop_tags("LoadBalancer", rid)
        for rid in [r["id"] for r in st.fwrules.values() if r["ipaddressid"] == ip["id"]]:
            st.fwrules.pop(rid, None)
            st.drop_tags("FirewallRule", rid)
        from .forwarding import drop_rules_for
        drop_rules_for(st, ip_id=ip["id"])
        _free_ip(st, ip)
        ip.pop("_scenario", None)
        return {"success": True}
    return complete, None, None


@command("listPublicIpAddresses")
def list_public_ip_addresses(ctx):
    st = ctx.state
    allocated_only = ctx.b("allocatedonly", True)
    items = [i for i in st.publicips.values() if not (allocated_only and i["state"] == "Free")]
    items = by_ids(ctx, items)
    if ctx.has("ipaddress"):
        items = [i for i in items if i["ipaddress"] == ctx.p["ipaddress"]]
    for f in ("associatednetworkid", "zoneid", "vpcid", "vlanid"):
        if ctx.has(f):
            items = [i for i in items if i.get(f) == ctx.p[f]]
    if ctx.has("networkid"):
        items = [i for i in items if i.get("associatednetworkid") == ctx.p["networkid"]]
    if ctx.has("isstaticnat"):
        items = [i for i in items if i["isstaticnat"] == ctx.b("isstaticnat")]
    if ctx.has("issourcenat"):
        items = [i for i in items if i["issourcenat"] == ctx.b("issourcenat")]
    if ctx.has("state"):
        items = [i for i in items if i["state"].lower() == ctx.p["state"].lower()]
    tf = ctx.tag_filter()
    if tf:
        items = [i for i in items if st.match_tags("PublicIpAddress", i["id"], tf)]
    return list_response(ctx, "publicipaddress", [render_ip(st, i) for i in items], keyword_fields=("ipaddress",))


# ---------------------------------------------------------------------- static NAT
@command("enableStaticNat", NAT + "EnableStaticNatCmd")
def enable_static_nat(ctx):
    from .vms import find_vm
    st = ctx.state
    ip = find_ip(ctx, "ipaddressid")
    vm = find_vm(ctx, "virtualmachineid")
    if vm["state"] not in ("Running", "Stopped", "Starting", "Stopping"):
        raise param_error(f"Can't enable static nat for the vm {vm['id']} as it is in {vm['state']} state")
    if ip["isstaticnat"]:
        if ip.get("virtualmachineid") == vm["id"]:
            raise ApiError(537, f"Static nat is already enabled for the ip address {ip['ipaddress']} and vm "
                                f"{vm['id']}")
        raise ApiError(537, f"Failed to enable static nat for the ip address id={ip['id']} as it is already "
                            f"assigned to vm id={ip.get('virtualmachineid')}")
    if any(r["publicipid"] == ip["id"] for r in st.lbrules.values()):
        raise ApiError(537, f"Failed to enable static nat for the ip address id={ip['id']} as it has load balancing "
                            f"rules assigned")
    if ctx.has("networkid"):
        net = ctx.find(st.networks, "networkid", "Unable to find network by id {id}")
        nic = next((n for n in vm["_nics"] if n["networkid"] == net["id"]), None)
    elif ip.get("associatednetworkid"):
        nic = next((n for n in vm["_nics"] if n["networkid"] == ip["associatednetworkid"]), None)
    else:
        nic = next((n for n in vm["_nics"] if n["isdefault"]), None)
    if nic is None:
        raise param_error(f"VM {vm['id']} is not in the network {ip.get('associatednetworkid')} the ip address "
                          f"{ip['ipaddress']} is associated with")
    net = st.networks[nic["networkid"]]
    if net["type"] != "Isolated":
        raise param_error(f"Static nat service is not supported in network {net['name']} of type {net['type']}")
    if any(i.get("virtualmachineid") == vm["id"] and i["isstaticnat"] and i.get("vmipaddress") == nic["ipaddress"]
           for i in st.publicips.values()):
        raise ApiError(537, f"Failed to enable static nat for the ip address id={ip['id']} as vm id={vm['id']} is "
                            f"already associated with another public ip")
    if ctx.has("vmguestip") and ctx.p["vmguestip"] != nic["ipaddress"]:
        raise param_error(f"VM guest ip {ctx.p['vmguestip']} does not belong to the vm nic")
    if not ip.get("associatednetworkid"):
        ip["associatednetworkid"] = net["id"]
        ip["associatednetworkname"] = net["name"]
    ip.update(isstaticnat=True, virtualmachineid=vm["id"], virtualmachinename=vm["name"],
              virtualmachinedisplayname=vm["displayname"], vmipaddress=nic["ipaddress"],
              virtualmachinetype="User")
    return {"success": True}


@command("disableStaticNat", NAT + "DisableStaticNatCmd")
def disable_static_nat(ctx):
    ip = find_ip(ctx, "ipaddressid")

    def checks():  # RulesManagerImpl.disableStaticNat, inside the job
        if not ip["isstaticnat"]:
            raise param_error("Specified IP address id is not associated with any vm Id")

        def complete():
            from .forwarding import drop_rules_for
            drop_rules_for(ctx.state, ip_id=ip["id"], kind="static")
            ip["isstaticnat"] = False
            for k in ("virtualmachineid", "virtualmachinename", "virtualmachinedisplayname", "vmipaddress",
                      "virtualmachinetype"):
                ip.pop(k, None)
            return {"success": True}
        return complete, None, None
    return ctx.submit_checked(checks, instancetype="IpAddress", instanceid=ip["id"])


# ---------------------------------------------------------------------- load balancer
def render_lb(st, r) -> dict:
    d = public(r)
    d["tags"] = st.tags_for("LoadBalancer", r["id"])
    return d


def _port(ctx, name):
    v = ctx.i(name)
    if v is None or not (1 <= v <= 65535):
        raise param_error(f"Invalid {name.replace('port', ' port')}: {ctx.p.get(name)}")
    return v


@command("createLoadBalancerRule", LB + "CreateLoadBalancerRuleCmd")
def create_load_balancer_rule(ctx):
    st = ctx.state
    algorithm = ctx.p["algorithm"].lower()
    if algorithm not in ALGORITHMS:
        raise param_error(f"Invalid algorithm: {ctx.p['algorithm']}")
    pub, priv = _port(ctx, "publicport"), _port(ctx, "privateport")
    if not ctx.has("publicipid"):
        raise param_error("Unable to create load balancer rule: publicipid is required for this kind of network")
    ip = find_ip(ctx, "publicipid")
    if ip["isstaticnat"]:
        raise ApiError(537, f"Can't create load balancer rule: ip address {ip['ipaddress']} has static nat enabled")
    net_id = ctx.s("networkid") or ip.get("associatednetworkid")
    if not net_id:
        raise param_error(f"Unable to create load balancer rule; ip id={ip['id']} is not associated with any network "
                          f"and networkid is not specified")
    net = ctx.find(st.networks, "networkid", "Unable to find network by id {id}", value=net_id)
    for r in st.lbrules.values():
        if r["publicipid"] == ip["id"] and int(r["publicport"]) == pub:
            raise ApiError(537, f"The range specified, {pub}-{pub}, conflicts with rule {r['id']} which has "
                                f"{r['publicport']}-{r['publicport']}")
    rid = st.new_id("loadbalancer")
    rule = {"id": rid, "name": ctx.p["name"], "description": ctx.s("description", ""), "algorithm": algorithm,
            "publicport": str(pub), "privateport": str(priv), "publicip": ip["ipaddress"], "publicipid": ip["id"],
            "networkid": net["id"], "zoneid": ip["zoneid"], "zonename": ip["zonename"], "state": "Add",
            "cidrlist": ctx.s("cidrlist", ""), "protocol": ctx.s("protocol", "tcp").lower(), "fordisplay": True,
            **st.owner_of(ip["id"]), "_vms": []}
    if not ip.get("associatednetworkid"):
        ip["associatednetworkid"] = net["id"]
        ip["associatednetworkname"] = net["name"]
    st.lbrules[rid] = rule
    fw_id = None
    if ctx.b("openfirewall", False):
        fw_id = st.new_id("firewallrule")
        st.fwrules[fw_id] = {"id": fw_id, "protocol": rule["protocol"], "startport": pub, "endport": pub,
                             "ipaddressid": ip["id"], "ipaddress": ip["ipaddress"], "networkid": net["id"],
                             "state": "Active", "cidrlist": ctx.s("cidrlist", "0.0.0.0/0"), "fordisplay": True,
                             "_related": rid}
        rule["_fw"] = fw_id

    def complete():
        rule["state"] = "Active"
        return {"loadbalancer": render_lb(st, rule)}

    def rollback():
        st.lbrules.pop(rid, None)
        if fw_id:
            st.fwrules.pop(fw_id, None)
    return ctx.submit(instancetype="FirewallRule", instanceid=rid, complete=complete, rollback=rollback,
                      create=True)


def find_lb(ctx, param="id") -> dict:
    return ctx.find(ctx.state.lbrules, param, "Unable to find load balancer rule {id}")


@command("deleteLoadBalancerRule", LB + "DeleteLoadBalancerRuleCmd")
def delete_load_balancer_rule(ctx):
    st = ctx.state
    rule = find_lb(ctx)
    rule["state"] = "Revoke"

    def complete():
        st.lbrules.pop(rule["id"], None)
        st.drop_tags("LoadBalancer", rule["id"])
        if rule.get("_fw"):
            st.fwrules.pop(rule["_fw"], None)
        return {"success": True}
    return ctx.submit(instancetype="FirewallRule", instanceid=rule["id"], complete=complete)


@command("listLoadBalancerRules")
def list_load_balancer_rules(ctx):
    st = ctx.state
    items = by_ids(ctx, list(st.lbrules.values()))
    if ctx.has("name"):  # LoadBalancingRulesManagerImpl.searchForLoadBalancers: name EQ (LIKE '%name%' in 4.2)
        items = [r for r in items if name_matches(ctx, r.get("name"), ctx.p["name"])]
    for f in ("publicipid", "zoneid", "networkid"):
        if ctx.has(f):
            items = [r for r in items if r.get(f) == ctx.p[f]]
    if ctx.has("virtualmachineid"):
        items = [r for r in items if ctx.p["virtualmachineid"] in r["_vms"]]
    tf = ctx.tag_filter()
    if tf:
        items = [r for r in items if st.match_tags("LoadBalancer", r["id"], tf)]
    return list_response(ctx, "loadbalancerrule", [render_lb(st, r) for r in items],
                         keyword_fields=("name", "description"))


def _known_vm_ids(ctx) -> None:
    """ParamProcessWorker's part, before the job: every uuid of virtualmachineids must have been issued."""
    for v in ctx.lst("virtualmachineids"):
        if v not in ctx.state.known:
            raise invalid_uuid(ctx.lname, "virtualmachineids", v)


def _vm_list(ctx):
    from .vms import find_vm
    ids = ctx.lst("virtualmachineids")
    for e in ctx.map_entries("vmidipmap"):
        if e.get("vmid"):
            ids.append(e["vmid"])
    if not ids:
        raise param_error("Unable to execute API command due to missing parameter virtualmachineids")
    return [find_vm(ctx, "virtualmachineids", value=v) for v in ids]


@command("assignToLoadBalancerRule", LB + "AssignToLoadBalancerRuleCmd")
def assign_to_load_balancer_rule(ctx):
    """LoadBalancingRulesManagerImpl.assignToLoadBalancer finds the rule and checks the VMs inside the job
    (AssignToLoadBalancerRuleCmd.getEntityOwnerId answers SYSTEM for a rule that is gone)."""
    st = ctx.state
    _known_vm_ids(ctx)

    def checks():
        rule = find_lb(ctx)
        vms = _vm_list(ctx)
        for vm in vms:
            if not any(n["networkid"] == rule["networkid"] for n in vm["_nics"]):
                raise param_error(f"VM {vm['id']} is not in the network {rule['networkid']} of the load balancer "
                                  f"rule")
            if vm["id"] in rule["_vms"]:
                raise param_error(f"VM {vm['id']} is already assigned to load balancer rule {rule['id']}")

        def complete():
            for vm in vms:
                if vm["id"] in st.vms and vm["id"] not in rule["_vms"]:
                    rule["_vms"].append(vm["id"])
            return {"success": True}
        return complete, None, None
    return ctx.submit_checked(checks, instancetype="FirewallRule", instanceid=ctx.p["id"])


@command("removeFromLoadBalancerRule", LB + "RemoveFromLoadBalancerRuleCmd")
def remove_from_load_balancer_rule(ctx):
    """LoadBalancingRulesManagerImpl.removeFromLoadBalancer: inside the job, like assignToLoadBalancerRule."""
    _known_vm_ids(ctx)

    def checks():
        rule = find_lb(ctx)
        vms = _vm_list(ctx)
        for vm in vms:
            if vm["id"] not in rule["_vms"]:
                raise param_error(f"VM {vm['id']} is not assigned to load balancer rule {rule['id']}")

        def complete():
            for vm in vms:
                if vm["id"] in rule["_vms"]:
                    rule["_vms"].remove(vm["id"])
            return {"success": True}
        return complete, None, None
    return ctx.submit_checked(checks, instancetype="FirewallRule", instanceid=ctx.p["id"])


@command("listLoadBalancerRuleInstances")
def list_load_balancer_rule_instances(ctx):
    from .vms import render_vm
    st = ctx.state
    rule = find_lb(ctx)
    applied = ctx.b("applied", True)
    if applied:
        vms = [st.vms[v] for v in rule["_vms"] if v in st.vms]
    else:
        vms = [v for v in st.vms.values()
               if v["id"] not in rule["_vms"] and v["state"] not in ("Destroyed", "Expunging")
               and any(n["networkid"] == rule["networkid"] for n in v["_nics"])]
    return list_response(ctx, "loadbalancerruleinstance", [render_vm(st, v) for v in vms])


# ---------------------------------------------------------------------- firewall
def render_fw(st, r) -> dict:
    d = public(r)
    d["tags"] = st.tags_for("FirewallRule", r["id"])
    return d


@command("createFirewallRule", FW + "CreateFirewallRuleCmd")
def create_firewall_rule(ctx):
    st = ctx.state
    ip = find_ip(ctx, "ipaddressid")
    proto = ctx.p["protocol"].lower()
    if proto not in ("tcp", "udp", "icmp", "all") and not proto.isdigit():
        raise param_error(f"Invalid protocol type: {ctx.p['protocol']}")
    start, end = ctx.i("startport"), ctx.i("endport")
    if proto in ("tcp", "udp"):
        if start is None:
            raise param_error("Unable to create firewall rule: startport is required for protocol " + proto)
        end = end if end is not None else start
        for p in (start, end):
            if not 1 <= p <= 65535:
                raise param_error(f"Invalid port range {start}-{end}")
        if start > end:
            raise param_error("Start port can't be bigger than end port")
        for r in st.fwrules.values():
            if r["ipaddressid"] == ip["id"] and r["protocol"] == proto and r.get("startport") is not None \
                    and not (end < int(r["startport"]) or start > int(r["endport"])):
                raise ApiError(537, f"The range specified, {start}-{end}, conflicts with rule {r['id']} which has "
                                    f"{r['startport']}-{r['endport']}")
    net_id = ip.get("associatednetworkid")
    rid = st.new_id("firewallrule")
    rule = {"id": rid, "protocol": proto, "ipaddressid": ip["id"], "ipaddress": ip["ipaddress"],
            "networkid": net_id, "state": "Add", "cidrlist": ctx.s("cidrlist", "0.0.0.0/0"), "fordisplay": True}
    if start is not None:
        rule.update(startport=start, endport=end)
    if proto == "icmp":
        rule.update(icmptype=ctx.i("icmptype", -1), icmpcode=ctx.i("icmpcode", -1))
    st.fwrules[rid] = rule

    def complete():
        rule["state"] = "Active"
        return {"firewallrule": render_fw(st, rule)}

    def rollback():
        st.fwrules.pop(rid, None)
    return ctx.submit(instancetype="FirewallRule", instanceid=rid, complete=complete, rollback=rollback, create=True)


@command("deleteFirewallRule", FW + "DeleteFirewallRuleCmd")
def delete_firewall_rule(ctx):
    st = ctx.state
    rule = ctx.find(st.fwrules, "id", "Unable to find firewall rule {id}")

    def complete():
        st.fwrules.pop(rule["id"], None)
        st.drop_tags("FirewallRule", rule["id"])
        return {"success": True}
    return ctx.submit(instancetype="FirewallRule", instanceid=rule["id"], complete=complete)


@command("listFirewallRules")
def list_firewall_rules(ctx):
    st = ctx.state
    items = by_ids(ctx, list(st.fwrules.values()))
    for f in ("ipaddressid", "networkid"):
        if ctx.has(f):
            items = [r for r in items if r.get(f) == ctx.p[f]]
    tf = ctx.tag_filter()
    if tf:
        items = [r for r in items if st.match_tags("FirewallRule", r["id"], tf)]
    return list_response(ctx, "firewallrule", [render_fw(st, r) for r in items], keyword_fields=())
