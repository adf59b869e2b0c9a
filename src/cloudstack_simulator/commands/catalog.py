"""Zones, offerings, OS types, networks, hypervisors, jobs, capabilities, key pairs, security and affinity groups."""
from __future__ import annotations

import base64
import os

from ..errors import CS_SERVER_API, ApiError, param_error
from ..spec import load_spec
from ..util import public
from . import REGISTRY, by_ids, command, list_response, name_equals

VM = "org.apache.cloudstack.api.command.user"


@command("listZones")
def list_zones(ctx):
    st = ctx.state
    items = [public(z) for z in st.zones.values()]
    items = by_ids(ctx, items)
    # QueryManagerImpl.listDataCentersInternal: ``if (id != null) ... else if (name != null) name EQ ... else
    # { keyword: name or description LIKE }`` -- a name is ignored beside an id, a keyword beside either
    if ctx.has("name") and not ctx.has("id"):
        items = [z for z in items if name_equals(z["name"], ctx.p["name"])]
    if ctx.has("networktype"):
        items = [z for z in items if z["networktype"].lower() == ctx.p["networktype"].lower()]
    fields = () if ctx.has("id") or ctx.has("name") else ("name", "description")
    return list_response(ctx, "zone", items, keyword_fields=fields)


@command("listServiceOfferings")
def list_service_offerings(ctx):
    items = by_ids(ctx, [dict(o) for o in ctx.state.service_offerings.values()])
    if ctx.has("name"):  # QueryManagerImpl.searchForServiceOfferingsInternal: name EQ
        items = [o for o in items if name_equals(o["name"], ctx.p["name"])]
    if ctx.has("virtualmachineid"):
        vm = ctx.state.vms.get(ctx.p["virtualmachineid"])
        items = [o for o in items if vm and o["id"] == vm["serviceofferingid"]]
    return list_response(ctx, "serviceoffering", items, keyword_fields=("displaytext", "name"))


@command("listDiskOfferings")
def list_disk_offerings(ctx):
    items = by_ids(ctx, [dict(o) for o in ctx.state.disk_offerings.values()])
    if ctx.has("name"):  # QueryManagerImpl.searchForDiskOfferingsInternal: name EQ
        items = [o for o in items if name_equals(o["name"], ctx.p["name"])]
    return list_response(ctx, "diskoffering", items, keyword_fields=("displaytext", "name"))


@command("listOsTypes")
def list_os_types(ctx):
    items = by_ids(ctx, [dict(o) for o in ctx.state.ostypes.values()])
    if ctx.has("description"):
        d = ctx.p["description"].lower()
        items = [o for o in items if d in o["description"].lower()]
    if ctx.has("oscategoryid"):
        items = [o for o in items if o["oscategoryid"] == ctx.p["oscategoryid"]]
    return list_response(ctx, "ostype", items, keyword_fields=("description",))


@command("listHypervisors")
def list_hypervisors(ctx):
    names = []
    for z in ctx.state.zones.values():
        if ctx.has("zoneid") and z["id"] != ctx.p["zoneid"]:
            continue
        for h in z["_hypervisors"]:
            if h not in names:
                names.append(h)
    return list_response(ctx, "hypervisor", [{"name": n} for n in names])


def render_network(st, net: dict) -> dict:
    d = public(net)
    d["tags"] = st.tags_for("Network", net["id"])
    return d


@command("listNetworks")
def list_networks(ctx):
    st = ctx.state
    items = list(st.networks.values())
    items = by_ids(ctx, items)
    if ctx.has("zoneid"):
        items = [n for n in items if n["zoneid"] == ctx.p["zoneid"]]
    # no ``name`` here: ListNetworksCmd (4.11-4.18) has no such parameter and the server ignores what it does not know
    if ctx.has("type"):
        items = [n for n in items if n["type"].lower() == ctx.p["type"].lower()]
    if ctx.has("vpcid"):
        items = [n for n in items if n.get("vpcid") == ctx.p["vpcid"]]
    if ctx.has("traffictype"):
        items = [n for n in items if n["traffictype"].lower() == ctx.p["traffictype"].lower()]
    if ctx.has("canusefordeploy"):
        items = [n for n in items if n["canusefordeploy"] == ctx.b("canusefordeploy")]
    tf = ctx.tag_filter()
    if tf:
        items = [n for n in items if st.match_tags("Network", n["id"], tf)]
    # NetworkServiceImpl.searchForNetworks: keyword is ``name LIKE '%keyword%'`` only
    return list_response(ctx, "network", [render_network(st, n) for n in items], keyword_fields=("name",))


@command("queryAsyncJobResult", "org.apache.cloudstack.api.command.user.job.QueryAsyncJobResultCmd")
def query_async_job_result(ctx):
    st = ctx.state
    job = st.jobs.jobs.get(ctx.p["jobid"])
    if job is None:
        if ctx.p["jobid"] in st.known:
            raise param_error(f"Unable to find a job by id {ctx.p['jobid']}")
        from ..errors import invalid_uuid
        raise invalid_uuid(ctx.lname, "jobid", ctx.p["jobid"])
    return job.to_response(st.account)


@command("listAsyncJobs")
def list_async_jobs(ctx):
    st = ctx.state
    items = [j.to_response(st.account) for j in sorted(st.jobs.jobs.values(), key=lambda j: j.seq)]
    return list_response(ctx, "asyncjobs", items, keyword_fields=("cmd",))


@command("listCapabilities")
def list_capabilities(ctx):
    st = ctx.state
    return {"capability": {
        "cloudstackversion": "4.18.0.0",
        "securitygroupsenabled": any(z["securitygroupsenabled"] for z in st.zones.values()),
        "userpublictemplateenabled": True,
        "supportELB": "false",
        "projectinviterequired": False,
        "allowusercreateprojects": True,
        "customdiskofferingminsize": 1,
        "customdiskofferingmaxsize": 1024,
        "kvmsnapshotenabled": True,
        "regionsecondaryenabled": False,
        "apilimitinterval": 1,
        "apilimitmax": 0,
        # the account-scoped settings' values for the caller (ManagementServerImpl.listCapabilities), whatever its role
        "allowuserviewdestroyedvm": bool(st.settings["allow.user.view.destroyed.vm"]),
        "allowuserexpungerecovervm": bool(st.settings["allow.user.expunge.recover.vm"]),
        "allowuserexpungerecovervolume": True,
        "allowuserviewalldomainaccounts": False,
        "dynamicrolesenabled": True,
        "kubernetesserviceenabled": False,
        "kubernetesclusterexperimentalfeaturesenabled": False,
        "defaultuipagesize": st.settings.get("default_page_size", 500),
        "instancesstatsretentiontime": 720,
        "instancesstatsuseronly": False,
        "sharedfsvmminramsize": 1024,
        "sharedfsvmmincpucount": 1,
    }}


@command("listAccounts")
def list_accounts(ctx):
    """The caller's own account: all a user sees (QueryManagerImpl); the scenario has no other."""
    return list_response(ctx, "account", by_ids(ctx, [ctx.state.account_record()]))


@command("listApis")
def list_apis(ctx):
    """ApiDiscoveryServiceImpl.listApis: the APIs the caller's role may call; ``name`` is looked up in a HashMap
    keyed by the exact (case-sensitive) API name, and a name that is not there or not allowed makes ListApisCmd
    throw ServerApiException(INTERNAL_ERROR, ...): 530 with cserrorcode 9999, never an empty list."""
    items = []
    for name, a in sorted(load_spec().items()):
        cmd = REGISTRY.get(name)
        if cmd is not None and cmd.admin_only and not ctx.state.is_admin:
            continue
        if ctx.has("name") and a["name"] != ctx.p["name"]:
            continue
        items.append({"name": a["name"], "isasync": a["isasync"], "description": "",
                      "params": [dict(p) for p in a["params"]], "response": [], "related": ""})
    if ctx.has("name") and not items:
        raise ApiError(530, "Api Discovery plugin was unable to find an api by that name or process any apis",
                       CS_SERVER_API)
    return list_response(ctx, "api", items)


# ---------------------------------------------------------------------- SSH key pairs
@command("listSSHKeyPairs")
def list_ssh_key_pairs(ctx):
    items = [public(k) for k in ctx.state.sshkeys.values()]
    if ctx.has("name"):  # ManagementServerImpl.listSSHKeyPairs: name EQ
        items = [k for k in items if name_equals(k["name"], ctx.p["name"])]
    if ctx.has("fingerprint"):
        items = [k for k in items if k["fingerprint"] == ctx.p["fingerprint"]]
    if ctx.has("id"):
        items = [k for k in items if k["id"] == ctx.p["id"]]
    return list_response(ctx, "sshkeypair", items)


def _check_new_key(ctx, name):
    if name in ctx.state.sshkeys:
        raise param_error(f"A key pair with name '{name}' already exists.")


@command("createSSHKeyPair")
def create_ssh_key_pair(ctx):
    name = ctx.p["name"]
    _check_new_key(ctx, name)
    blob = b"\x00\x00\x00\x07ssh-rsa" + os.urandom(64)
    pub = "ssh-rsa " + base64.b64encode(blob).decode() + f" {name}@simulator"
    k = ctx.state.add_keypair(name, pub)
    out = public(k)
    out["privatekey"] = ("-----BEGIN RSA PRIVATE KEY-----\n" + base64.b64encode(os.urandom(96)).decode()
                         + "\n-----END RSA PRIVATE KEY-----\n")
    return {"keypair": out}


@command("registerSSHKeyPair")
def register_ssh_key_pair(ctx):
    name = ctx.p["name"]
    _check_new_key(ctx, name)
    pub = ctx.p["publickey"]
    parts = pub.split()
    try:
        if len(parts) < 2:
            raise ValueError
        base64.b64decode(parts[1], validate=True)
    except ValueError:  # binascii.Error included
        raise param_error("Public key is invalid") from None
    return {"keypair": public(ctx.state.add_keypair(name, pub))}


@command("deleteSSHKeyPair")
def delete_ssh_key_pair(ctx):
    name = ctx.p["name"]
    if ctx.state.sshkeys.pop(name, None) is None:
        raise param_error(f"A key pair with name '{name}' does not exist for account {ctx.state.account['name']} "
                          f"in specified domain id")
    return {"success": True}


# ---------------------------------------------------------------------- security groups
def render_secgroup(st, g):
    d = public(g)
    vms = [v for v in st.vms.values() if g["id"] in v["_secgroups"] and v["state"] not in ("Destroyed", "Expunging")]
    d["virtualmachinecount"] = len(vms)
    d["virtualmachineids"] = [v["id"] for v in vms]
    d["tags"] = st.tags_for("SecurityGroup", g["id"])
    return d


@command("listSecurityGroups")
def list_security_groups(ctx):
    st = ctx.state
    items = by_ids(ctx, list(st.secgroups.values()))
    if ctx.has("securitygroupname"):  # QueryManagerImpl.searchForSecurityGroupsInternal: name EQ
        items = [g for g in items if name_equals(g["name"], ctx.p["securitygroupname"])]
    if ctx.has("virtualmachineid"):
        vm = st.vms.get(ctx.p["virtualmachineid"])
        items = [g for g in items if vm and g["id"] in vm["_secgroups"]]
    tf = ctx.tag_filter()
    if tf:
        items = [g for g in items if st.match_tags("SecurityGroup", g["id"], tf)]
    return list_response(ctx, "securitygroup", [render_secgroup(st, g) for g in items],
                         keyword_fields=("name", "description"))


# ---------------------------------------------------------------------- affinity groups
AFFINITY_TYPES = ("host anti-affinity", "host affinity")


def render_affinity(st, g):
    d = public(g)
    d["virtualmachineIds"] = [v["id"] for v in st.vms.values() if g["id"] in v["_affinity"]]
    return d


@command("listAffinityGroupTypes")
def list_affinity_group_types(ctx):
    return list_response(ctx, "affinityGroupType", [{"type": t} for t in AFFINITY_TYPES])


@command("createAffinityGroup", "org.apache.cloudstack.api.command.user.affinitygroup.CreateAffinityGroupCmd")
def create_affinity_group(ctx):
    st = ctx.state
    name, typ = ctx.p["name"], ctx.p["type"]
    if typ not in AFFINITY_TYPES:
        raise param_error(f"Unable to create affinity group, invalid affinity group type{typ}")
    # AffinityGroupServiceImpl.verifyAffinityGroupNameInUse: AffinityGroupDao.isNameInUse, an EQ on the name
    if any(name_equals(g["name"], name) for g in st.affinitygroups.values()):
        raise param_error(f"Unable to create affinity group, a group with name {name} already exists.")
    gid = st.new_id("affinitygroup")
    g = {"id": gid, "name": name, "type": typ, "description": ctx.s("description", ""), **st.owner_fields()}
    st.affinitygroups[gid] = g

    def complete():
        return {"affinitygroup": render_affinity(st, g)}

    def rollback():
        st.affinitygroups.pop(gid, None)
    return ctx.submit(instancetype="AffinityGroup", instanceid=gid, complete=complete, rollback=rollback, create=True)


@command("listAffinityGroups")
def list_affinity_groups(ctx):
    st = ctx.state
    items = by_ids(ctx, list(st.affinitygroups.values()))
    if ctx.has("name"):  # QueryManagerImpl.buildAffinityGroupSearchCriteria: name EQ
        items = [g for g in items if name_equals(g["name"], ctx.p["name"])]
    if ctx.has("type"):
        items = [g for g in items if g["type"] == ctx.p["type"]]
    if ctx.has("virtualmachineid"):
        vm = st.vms.get(ctx.p["virtualmachineid"])
        items = [g for g in items if vm and g["id"] in vm["_affinity"]]
    return list_response(ctx, "affinitygroup", [render_affinity(st, g) for g in items], keyword_fields=("name", "type"))


@command("deleteAffinityGroup", "org.apache.cloudstack.api.command.user.affinitygroup.DeleteAffinityGroupCmd")
def delete_affinity_group(ctx):
    """DeleteAffinityGroupCmd: getEntityOwnerId looks only at the owner, so the group is looked up inside the job
    (execute() -> AffinityGroupServiceImpl.deleteAffinityGroup): a missing group fails the job."""
    st = ctx.state
    found = ctx.p.get("id") if ctx.has("id") else None

    def checks():
        if ctx.has("id"):
            g = ctx.find(st.affinitygroups, "id", "Unable to find affinity group by id {id}")
        elif ctx.has("name"):
            # AffinityGroupServiceImpl.getAffinityGroup: findByAccountAndName (EQ), else "Unable to find affinity
            # group " + the name; neither id nor name: "Either the affinity group Id or group name must be
            # specified ..."
            g = next((x for x in st.affinitygroups.values() if name_equals(x["name"], ctx.p["name"])), None)
            if g is None:
                raise param_error(f"Unable to find affinity group {ctx.p['name']}")
        else:
            raise param_error("Either the affinity group Id or group name must be specified to delete the group")

        def complete():
            # deleteAffinityGroup(long) removes the group's VM mappings with it: a group in use is no refusal
            for v in st.vms.values():
                if g["id"] in v["_affinity"]:
                    v["_affinity"].remove(g["id"])
            st.affinitygroups.pop(g["id"], None)
            st.drop_tags("AffinityGroup", g["id"])
            return {"success": True}
        return complete, None, None
    return ctx.submit_checked(checks, instancetype="AffinityGroup", instanceid=found)
