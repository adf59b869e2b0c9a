"""Port forwarding rules and IP forwarding (static NAT) rules on public IPs.

Both live in ``State.pfrules`` (``_kind`` "pf" or "static"). Port forwarding rules are answered with the fields of
4.11's FirewallRuleResponse (ports as strings, ``fordisplay`` boolean, ``tags`` list), IP forwarding rules with
those of IpForwardingRuleResponse (render_ip_forwarding_rule). Checks modelled on
RulesManagerImpl.createPortForwardingRule / createStaticNatRule (see docs/simulator.md)."""
from __future__ import annotations

from ..errors import ApiError, param_error
from ..util import public
from . import by_ids, command, list_response
from .netrules import find_ip

NAT = "org.apache.cloudstack.api.command.user.nat."
FW = "org.apache.cloudstack.api.command.user.firewall."
PROTOCOLS = ("tcp", "udp")


def render_ip_forwarding_rule(st, r) -> dict:
    """An IP forwarding (static NAT) rule as 4.11 really answers it: createIpForwardingRule's jobresult and
    listIpForwardingRules items come from ApiResponseHelper.createIpForwardingRuleResponse (CreateIpForwardingRuleCmd
    and ListIpForwardingRulesCmd.execute), an IpForwardingRuleResponse. Their @APICommand names FirewallRuleResponse,
    so listApis documents publicport/tags/fordisplay/... that never go on the wire. Gson order; ``startport`` /
    ``endport`` JSON numbers; ``ipaddressid`` is IPAddressVO.getId(), the row's number, not its UUID (the field is a
    Long); the VM fields only while the IP is static-NATed to a VM; state Revoke shown as "Deleting". A real
    answer of this shape: apache-libcloud's fixture listIpForwardingRules_default.json ("ipaddressid":34000)."""
    d = {"id": r["id"], "protocol": r["protocol"]}
    ip = st.publicips.get(r["ipaddressid"])
    if ip is not None:
        vm = st.vms.get(ip.get("virtualmachineid") or "")
        if vm is not None:
            d.update(virtualmachineid=vm["id"], virtualmachinename=vm["name"],
                     virtualmachinedisplayname=vm.get("displayname") or vm["name"])
        d.update(ipaddressid=list(st.publicips).index(ip["id"]) + 1, ipaddress=ip["ipaddress"])
    d.update(startport=int(r["publicport"]), endport=int(r["publicendport"]),
             state="Deleting" if r["state"] == "Revoke" else r["state"])
    return d


def render_rule(st, r) -> dict:
    if r["_kind"] == "static":
        return render_ip_forwarding_rule(st, r)
    d = public(r)
    d["tags"] = st.tags_for("PortForwardingRule", r["id"])
    return d


def _port(ctx, name, default=None) -> int:
    v = ctx.i(name, default)
    if v is None or not 1 <= v <= 65535:
        raise param_error(f"Invalid port range {ctx.p.get(name)}")
    return v


def _range(ctx, start_name, end_name) -> tuple[int, int]:
    start = _port(ctx, start_name)
    end = _port(ctx, end_name, start)
    if start > end:
        raise param_error("Start port can't be bigger than end port")
    return start, end


def _protocol(ctx) -> str:
    proto = ctx.p["protocol"].lower()
    if proto not in PROTOCOLS:
        raise param_error(f"Invalid protocol type: {ctx.p['protocol']}")
    return proto


def _conflicts(st, ip, proto, start, end) -> None:
    """FirewallManagerImpl.detectRulesConflict: overlapping port ranges of one protocol on one IP (port
    forwarding, static NAT and load balancer rules) → NetworkRuleConflictException (537)."""
    for r in st.pfrules.values():
        if r["ipaddressid"] == ip["id"] and r["protocol"] == proto and r["state"] != "Revoke" \
                and not (end < int(r["publicport"]) or start > int(r["publicendport"])):
            raise ApiError(537, f"The range specified, {start}-{end}, conflicts with rule {r['id']} which has "
                                f"{r['publicport']}-{r['publicendport']}")
    for r in st.lbrules.values():
        p = int(r["publicport"])
        if r["publicipid"] == ip["id"] and r["protocol"] == proto and start <= p <= end:
            raise ApiError(537, f"The range specified, {start}-{end}, conflicts with rule {r['id']} which has {p}-{p}")


def _open_firewall(ctx, st, ip, proto, start, end, net_id, rule) -> None:
    if not ctx.b("openfirewall", True):
        return
    fw_id = st.new_id("firewallrule")
    st.fwrules[fw_id] = {"id": fw_id, "protocol": proto, "startport": start, "endport": end,
                         "ipaddressid": ip["id"], "ipaddress": ip["ipaddress"], "networkid": net_id,
                         "state": "Active", "cidrlist": ctx.s("cidrlist", "0.0.0.0/0"), "fordisplay": True,
                         "_related": rule["id"]}
    rule["_fw"] = fw_id


def _submit_create(ctx, st, rule) -> dict:
    st.pfrules[rule["id"]] = rule

    def complete():
        rule["state"] = "Active"
        return {"portforwardingrule" if rule["_kind"] == "pf" else "ipforwardingrule": render_rule(st, rule)}

    def rollback():
        st.pfrules.pop(rule["id"], None)
        if rule.get("_fw"):
            st.fwrules.pop(rule["_fw"], None)
    return ctx.submit(instancetype="FirewallRule", instanceid=rule["id"], complete=complete, rollback=rollback,
                      create=True)


def drop_rule(st, rule) -> None:
    st.pfrules.pop(rule["id"], None)
    st.drop_tags("PortForwardingRule", rule["id"])
    if rule.get("_fw"):
        st.fwrules.pop(rule["_fw"], None)


def drop_rules_for(st, *, ip_id: str | None = None, vm_id: str | None = None, kind: str | None = None) -> None:
    for r in list(st.pfrules.values()):
        if (ip_id is None or r["ipaddressid"] == ip_id) and (vm_id is None or r["virtualmachineid"] == vm_id) \
                and (kind is None or r["_kind"] == kind):
            drop_rule(st, r)


# ---------------------------------------------------------------------- port forwarding
@command("createPortForwardingRule", FW + "CreatePortForwardingRuleCmd")
def create_port_forwarding_rule(ctx):
    from .vms import find_vm
    st = ctx.state
    ip = find_ip(ctx, "ipaddressid")
    proto = _protocol(ctx)
    pub_start, pub_end = _range(ctx, "publicport", "publicendport")
    priv_start, priv_end = _range(ctx, "privateport", "privateendport")
    if (pub_end - pub_start) != (priv_end - priv_start):
        raise param_error("Private port range and public port range must be of the same size")
    if ip["isstaticnat"]:
        raise param_error(f"Unable to create port forwarding rule; ip id={ip['id']} has static nat enabled")
    vm = find_vm(ctx, "virtualmachineid")
    if vm["state"] in ("Destroyed", "Expunging", "Error"):
        raise param_error(f"Invalid user vm: {vm['id']}")
    net_id = ip.get("associatednetworkid") or ctx.s("networkid")
    if net_id is None:
        nic = next((n for n in vm["_nics"] if n["isdefault"]), None)
        net_id = nic["networkid"] if nic else None
    net = ctx.find(st.networks, "networkid", "Unable to find network by id {id}", value=net_id)
    if net["type"] != "Isolated":
        raise param_error(f"Unable to create port forwarding rule; service PortForwarding is not supported in "
                          f"network id={net['id']}")
    nic = next((n for n in vm["_nics"] if n["networkid"] == net["id"]), None)
    if nic is None:
        raise param_error("Vm doesn't belong to network associated with ipAddress")
    guest_ip = ctx.s("vmguestip", nic["ipaddress"])
    if guest_ip != nic["ipaddress"]:
        raise param_error(f"Vm ip {guest_ip} is not the ip of the nic in network {net['id']}")
    _conflicts(st, ip, proto, pub_start, pub_end)
    if not ip.get("associatednetworkid"):
        ip["associatednetworkid"], ip["associatednetworkname"] = net["id"], net["name"]
    rid = st.new_id("portforwardingrule")
    rule = {"id": rid, "protocol": proto, "publicport": str(pub_start), "publicendport": str(pub_end),
            "privateport": str(priv_start), "privateendport": str(priv_end), "ipaddressid": ip["id"],
            "ipaddress": ip["ipaddress"], "virtualmachineid": vm["id"], "virtualmachinename": vm["name"],
            "virtualmachinedisplayname": vm["displayname"], "vmguestip": guest_ip, "networkid": net["id"],
            "cidrlist": ctx.s("cidrlist", ""), "state": "Add", "fordisplay": ctx.b("fordisplay", True),
            "_kind": "pf"}
    _open_firewall(ctx, st, ip, proto, pub_start, pub_end, net["id"], rule)
    return _submit_create(ctx, st, rule)


def _delete(ctx, kind: str, what: str) -> dict:
    st = ctx.state
    rule = st.pfrules.get(ctx.p["id"])
    if rule is None or rule["_kind"] != kind:
        raise param_error(f"Unable to find {what} rule {ctx.p['id']}")
    rule["state"] = "Revoke"

    def complete():
        drop_rule(st, rule)
        return {"success": True}
    return ctx.submit(instancetype="FirewallRule", instanceid=rule["id"], complete=complete)


@command("deletePortForwardingRule", FW + "DeletePortForwardingRuleCmd")
def delete_port_forwarding_rule(ctx):
    return _delete(ctx, "pf", "port forwarding")


def _list(ctx, kind: str, key: str) -> dict:
    st = ctx.state
    items = by_ids(ctx, [r for r in st.pfrules.values() if r["_kind"] == kind])
    for f in ("ipaddressid", "networkid", "virtualmachineid"):
        if ctx.has(f):
            items = [r for r in items if r.get(f) == ctx.p[f]]
    if ctx.has("fordisplay"):
        items = [r for r in items if r["fordisplay"] == ctx.b("fordisplay")]
    tf = ctx.tag_filter()
    if tf:
        items = [r for r in items if st.match_tags("PortForwardingRule", r["id"], tf)]
    return list_response(ctx, key, [render_rule(st, r) for r in items], keyword_fields=())


@command("listPortForwardingRules")
def list_port_forwarding_rules(ctx):
    return _list(ctx, "pf", "portforwardingrule")


# ---------------------------------------------------------------------- IP forwarding (static NAT rules)
@command("createIpForwardingRule", NAT + "CreateIpForwardingRuleCmd")
def create_ip_forwarding_rule(ctx):
    st = ctx.state
    ip = find_ip(ctx, "ipaddressid")
    proto = _protocol(ctx)
    start, end = _range(ctx, "startport", "endport")
    if not ip["isstaticnat"] or not ip.get("virtualmachineid"):
        raise ApiError(537, f"Can't do static nat on ip address: {ip['ipaddress']}")
    vm = st.vms.get(ip["virtualmachineid"])
    _conflicts(st, ip, proto, start, end)
    rid = st.new_id("ipforwardingrule")
    rule = {"id": rid, "protocol": proto, "publicport": str(start), "publicendport": str(end),
            "privateport": str(start), "privateendport": str(end), "ipaddressid": ip["id"],
            "ipaddress": ip["ipaddress"], "virtualmachineid": ip["virtualmachineid"],
            "virtualmachinename": ip.get("virtualmachinename"),
            "virtualmachinedisplayname": vm["displayname"] if vm else ip.get("virtualmachinedisplayname"),
            "vmguestip": ip.get("vmipaddress"), "networkid": ip.get("associatednetworkid"),
            "cidrlist": ctx.s("cidrlist", ""), "state": "Add", "fordisplay": True, "_kind": "static"}
    _open_firewall(ctx, st, ip, proto, start, end, ip.get("associatednetworkid"), rule)
    return _submit_create(ctx, st, rule)


@command("deleteIpForwardingRule", NAT + "DeleteIpForwardingRuleCmd")
def delete_ip_forwarding_rule(ctx):
    return _delete(ctx, "static", "ip forwarding")


@command("listIpForwardingRules")
def list_ip_forwarding_rules(ctx):
    return _list(ctx, "static", "ipforwardingrule")
