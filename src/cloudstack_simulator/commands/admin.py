"""VPCs, network offerings, projects, domains, resource limits, events and capacity (read-only lists)."""
from __future__ import annotations

import ipaddress

from ..errors import param_error
from ..util import now_str, public
from . import by_ids, command, list_response, name_equals, name_like, name_matches

# Resource.ResourceType: (ordinal as resourcetype, resourcetypename); limits -1 = unlimited, as a fresh account.
RESOURCE_TYPES = [(0, "user_vm"), (1, "public_ip"), (2, "volume"), (3, "snapshot"), (4, "template"),
                  (5, "project"), (6, "network"), (7, "vpc"), (8, "cpu"), (9, "memory"),
                  (10, "primary_storage"), (11, "secondary_storage")]
# Capacity.CAPACITY_TYPE_*: memory 0, cpu 1, public ip 4, private ip 5
CAPACITY_MEMORY, CAPACITY_CPU, CAPACITY_PUBLIC_IP, CAPACITY_PRIVATE_IP = 0, 1, 4, 5


def _bool_filter(ctx, items, name, field=None):
    if ctx.has(name):
        items = [x for x in items if bool(x.get(field or name)) == ctx.b(name)]
    return items


# ---------------------------------------------------------------------- VPCs
def render_vpc(st, vpc) -> dict:
    from .catalog import render_network
    zone = st.zones[vpc["zoneid"]]
    tiers = [n for n in st.networks.values() if n.get("vpcid") == vpc["id"]]
    cidr = vpc.get("cidr")
    if not cidr:
        cidr = str(ipaddress.IPv4Network(tiers[0]["cidr"]).supernet(new_prefix=16)) if tiers else "10.0.0.0/16"
    return {"id": vpc["id"], "name": vpc["name"], "displaytext": vpc.get("displaytext", vpc["name"]),
            "zoneid": zone["id"], "zonename": zone["name"], "cidr": cidr, "state": "Enabled",
            "vpcofferingid": st.fixed_id("vpcoffering", "Default VPC offering"), "restartrequired": False,
            "redundantvpcrouter": False, "distributedvpcrouter": False, "regionlevelvpc": False,
            "fordisplay": True, "networkdomain": "cs1cloud.internal", "created": vpc.setdefault("created", now_str()),
            "service": [{"name": s, "provider": [{"name": "VpcVirtualRouter"}]}
                        for s in ("Dhcp", "Dns", "UserData", "SourceNat", "StaticNat", "PortForwarding", "Lb",
                                  "NetworkACL")],
            "network": [render_network(st, n) for n in tiers], "tags": st.tags_for("Vpc", vpc["id"]),
            **st.owner_fields()}


@command("listVPCs")
def list_vpcs(ctx):
    st = ctx.state
    items = by_ids(ctx, list(st.vpcs.values()))
    if ctx.has("zoneid"):
        items = [v for v in items if v["zoneid"] == ctx.p["zoneid"]]
    if ctx.has("name"):  # VpcManagerImpl.listVpcs (4.17+): name EQ; 4.11 had LIKE '%name%'
        items = [v for v in items if name_matches(ctx, v["name"], ctx.p["name"])]
    rendered = [render_vpc(st, v) for v in items]
    if ctx.has("state"):
        rendered = [v for v in rendered if v["state"].lower() == ctx.p["state"].lower()]
    if ctx.has("cidr"):
        rendered = [v for v in rendered if v["cidr"] == ctx.p["cidr"]]
    return list_response(ctx, "vpc", rendered, keyword_fields=("name", "displaytext"))


# ---------------------------------------------------------------------- network offerings
def network_offerings(st) -> list[dict]:
    """One offering per networkofferingid the scenario's networks use (names as listNetworks shows them)."""
    out: dict[str, dict] = {}
    for n in st.networks.values():
        oid = n["networkofferingid"]
        if oid in out:
            continue
        kind = n["_kind"]
        out[oid] = {"id": oid, "name": n["networkofferingname"], "displaytext": n["networkofferingname"],
                    "traffictype": "Guest", "isdefault": True, "specifyvlan": kind == "Shared" and not n["_basic"],
                    "conservemode": True, "specifyipranges": kind == "Shared",
                    "availability": "Required" if kind == "Isolated" else "Optional", "networkrate": 200,
                    "state": "Enabled", "guestiptype": n["type"], "forvpc": kind == "VPC-tier",
                    "ispersistent": False, "egressdefaultpolicy": False, "supportsstrechedl2subnet": False,
                    "supportspublicaccess": False, "created": now_str(), "details": {},
                    "service": [{"name": s["name"], "provider": s["provider"]} for s in n["service"]]}
    return list(out.values())


@command("listNetworkOfferings")
def list_network_offerings(ctx):
    st = ctx.state
    items = by_ids(ctx, network_offerings(st))
    # ConfigurationManagerImpl.searchForNetworkOfferings: name EQ, displaytext LIKE '%displaytext%'
    if ctx.has("name"):
        items = [o for o in items if name_equals(o["name"], ctx.p["name"])]
    if ctx.has("displaytext"):
        items = [o for o in items if name_like(o["displaytext"], ctx.p["displaytext"])]
    for f in ("traffictype", "availability"):
        if ctx.has(f):
            items = [o for o in items if o[f].lower() == ctx.p[f].lower()]
    if ctx.has("guestiptype"):
        items = [o for o in items if o["guestiptype"].lower() == ctx.p["guestiptype"].lower()]
    if ctx.has("state"):
        items = [o for o in items if o["state"].lower() == ctx.p["state"].lower()]
    for f in ("isdefault", "specifyvlan", "specifyipranges", "forvpc"):
        items = _bool_filter(ctx, items, f)
    if ctx.has("networkid"):
        net = ctx.find(st.networks, "networkid", "Unable to find network by id {id}")
        items = [o for o in items if o["id"] == net["networkofferingid"]]
    if ctx.has("zoneid"):
        zone_offerings = {n["networkofferingid"] for n in st.networks.values() if n["zoneid"] == ctx.p["zoneid"]}
        items = [o for o in items if o["id"] in zone_offerings]
    return list_response(ctx, "networkoffering", items, keyword_fields=("name", "displaytext"))


# ---------------------------------------------------------------------- projects, domains
def _projects(st) -> list[dict]:
    """The projects the caller belongs to (a user sees only those: ProjectManagerImpl.listProjects)."""
    out = []
    for p in st.projects.values():
        if p["_member"] or st.is_admin:
            out.append({**{k: v for k, v in p.items() if not k.startswith("_")},
                        "tags": st.tags_for("Project", p["id"]), "account": st.account["name"],
                        "domainid": st.account["domainid"], "domain": st.account["domain"],
                        **_project_resources(st, p["id"])})
    return out


def _project_resources(st, pid: str) -> dict:
    """ProjectJoinDaoImpl -> AccountJoinDaoImpl.setResourceLimits for the project's account: ``<r>limit`` and
    ``<r>available`` are strings ("Unlimited": the simulator sets no limits), ``<r>total`` numbers (GiB for storage,
    secondary storage a float), ``vmrunning`` / ``vmstopped`` integers."""
    vms = [v for v in st.vms.values() if v.get("projectid") == pid and v["state"] not in ("Destroyed", "Expunging")]
    vols = [v for v in st.volumes.values() if v.get("projectid") == pid]
    totals = {"vm": len(vms), "cpu": sum(v["cpunumber"] for v in vms), "memory": sum(v["memory"] for v in vms),
              "volume": len(vols), "primarystorage": sum(v["size"] for v in vols) // 1024 ** 3,
              "ip": sum(1 for i in st.publicips.values() if i.get("projectid") == pid),
              "network": sum(1 for n in st.networks.values() if n.get("projectid") == pid),
              "snapshot": sum(1 for x in st.snapshots.values() if x.get("projectid") == pid),
              "template": sum(1 for t in st.templates.values() if t.get("projectid") == pid),
              "vpc": 0, "secondarystorage": 0.0}
    out: dict = {}
    for r, total in totals.items():
        out.update({f"{r}limit": "Unlimited", f"{r}total": total, f"{r}available": "Unlimited"})
    out.update(vmrunning=sum(1 for v in vms if v["state"] == "Running"),
               vmstopped=sum(1 for v in vms if v["state"] == "Stopped"))
    return out


@command("listProjects")
def list_projects(ctx):
    items = by_ids(ctx, _projects(ctx.state))
    for f in ("name", "displaytext", "state"):
        if ctx.has(f):
            items = [p for p in items if p[f].lower() == ctx.p[f].lower()]
    return list_response(ctx, "project", items, keyword_fields=("name", "displaytext"))


def render_domain(st) -> dict:
    acc = st.account
    root = acc["domain"].upper() == "ROOT"
    d = {"id": acc["domainid"], "name": acc["domain"], "level": 0 if root else 1, "haschild": False,
         "path": "ROOT" if root else f"ROOT/{acc['domain']}", "state": "Active"}
    if not root:
        d.update(parentdomainid=st.fixed_id("domain", "ROOT"), parentdomainname="ROOT")
    return d


@command("listDomains", "org.apache.cloudstack.api.command.admin.domain.ListDomainsCmd")
def list_domains(ctx):
    items = by_ids(ctx, [render_domain(ctx.state)])
    if ctx.has("name"):
        items = [d for d in items if d["name"].lower() == ctx.p["name"].lower()]
    if ctx.has("level"):
        items = [d for d in items if d["level"] == ctx.i("level")]
    return list_response(ctx, "domain", items)


# ---------------------------------------------------------------------- resource limits
@command("listResourceLimits")
def list_resource_limits(ctx):
    st = ctx.state
    items = [{"resourcetype": str(num), "resourcetypename": name, "max": -1, **st.owner_fields()}
             for num, name in RESOURCE_TYPES]
    if ctx.has("resourcetype"):
        rt = ctx.i("resourcetype")
        if rt not in [n for n, _ in RESOURCE_TYPES]:
            raise param_error("Please specify a valid resource type.")
        items = [x for x in items if x["resourcetype"] == str(rt)]
    if ctx.has("resourcetypename"):
        name = ctx.p["resourcetypename"].lower()
        if name not in [n for _, n in RESOURCE_TYPES]:
            raise param_error("Please specify a valid resource type name.")
        items = [x for x in items if x["resourcetypename"] == name]
    return list_response(ctx, "resourcelimit", items, keyword_fields=())


# ---------------------------------------------------------------------- events
@command("listEvents")
def list_events(ctx):
    st = ctx.state
    items = by_ids(ctx, list(reversed(st.events)))   # newest first
    if ctx.has("type"):
        items = [e for e in items if e["type"].lower() == ctx.p["type"].lower()]
    if ctx.has("level"):
        items = [e for e in items if e["level"].lower() == ctx.p["level"].lower()]
    if ctx.has("startid"):
        items = [e for e in items if e["id"] == ctx.p["startid"] or e.get("parentid") == ctx.p["startid"]]
    # QueryManagerImpl.searchForEventsInternal: keyword is type, description or level LIKE '%keyword%'
    return list_response(ctx, "event", [public(e) for e in items], keyword_fields=("type", "description", "level"))


# ---------------------------------------------------------------------- capacity (admin only)
@command("listCapacity", "org.apache.cloudstack.api.command.admin.resource.ListCapacityCmd", admin_only=True)
def list_capacity(ctx):
    st = ctx.state
    items = []
    for zone in st.zones.values():
        if ctx.has("zoneid") and zone["id"] != ctx.p["zoneid"]:
            continue
        used_cpu, used_mem = st.used_capacity(zone["id"])
        pub = [i for i in st.publicips.values() if i["zoneid"] == zone["id"]]
        priv_total = sum(n["_end"] - n["_start"] + 1 for n in st.networks.values() if n["zoneid"] == zone["id"])
        priv_used = sum(len(n["_used"]) for n in st.networks.values() if n["zoneid"] == zone["id"])
        rows = [(CAPACITY_MEMORY, "MEMORY", used_mem * 1024 * 1024, zone["_memory"] * 1024 * 1024),
                (CAPACITY_CPU, "CPU", used_cpu * zone["_cpuspeed"], zone["_cpu"] * zone["_cpuspeed"]),
                (CAPACITY_PUBLIC_IP, "VIRTUAL_NETWORK_PUBLIC_IP", sum(1 for i in pub if i["state"] != "Free"),
                 len(pub)),
                (CAPACITY_PRIVATE_IP, "PRIVATE_IP", priv_used, priv_total)]
        for ctype, name, used, total in rows:
            pct = f"{(100.0 * used / total) if total else 0.0:.2f}"
            items.append({"type": ctype, "name": name, "zoneid": zone["id"], "zonename": zone["name"],
                          "capacityused": used, "capacityallocated": used, "capacitytotal": total,
                          "percentused": pct})
    if ctx.has("type"):
        items = [c for c in items if c["type"] == ctx.i("type")]
    return list_response(ctx, "capacity", items, keyword_fields=())
