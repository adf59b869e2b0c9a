"""In-memory CloudStack state. Every access happens with ``State.lock`` (an RLock) held."""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .errors import param_error
from .jobs import Job, JobManager
from .timing import Timing
from .util import GiB, now_str, public

SCENARIO_DIR = Path(__file__).parent / "scenarios"
_NS = uuid.UUID("6f1c2f3e-5d0b-4c4e-9a51-0c0d5e7a1b10")

# tag resource types (ResourceObjectType, matched case-insensitively) -> state table
TAGGABLE = {
    "uservm": ("UserVm", "vms"),
    "volume": ("Volume", "volumes"),
    "snapshot": ("Snapshot", "snapshots"),
    "template": ("Template", "templates"),
    "publicipaddress": ("PublicIpAddress", "publicips"),
    "loadbalancer": ("LoadBalancer", "lbrules"),
    "firewallrule": ("FirewallRule", "fwrules"),
    "network": ("Network", "networks"),
    "securitygroup": ("SecurityGroup", "secgroups"),
    "affinitygroup": ("AffinityGroup", "affinitygroups"),
}
NOT_TAGGABLE = {"zone": "Zone", "serviceoffering": "ServiceOffering", "diskoffering": "DiskOffering", "nic": "Nic",
                "storage": "Storage"}


BUILT_IN = ("advanced", "basic")
# Variants of the built-in scenarios: "<built-in>-<variant>", e.g. "advanced-user".  The name (and so every id)
# stays the built-in's; only the account and settings change.
VARIANTS = {
    # A plain user account under the real server's defaults: destroyVirtualMachine with expunge=true is refused.
    "user": {"account": {"role": "user"}, "settings": {"allow.user.expunge.recover.vm": False}},
}

# Account roles a scenario may give: (accounttype, roletype, rolename) as listAccounts reports them.
ALL_PROJECTS = "-1"   # projectid=-1: every project the caller belongs to

ROLES = {
    "user": (0, "User", "User"),
    "domain-admin": (2, "DomainAdmin", "Domain Admin"),
    "root-admin": (1, "Admin", "Root Admin"),
}
# Global settings a scenario may override, with the real server's defaults (allow.user.* are account-scoped
# ConfigKeys, "false" in UserVmManager / QueryService; expunge.delay is seconds, 86400 in Config.java;
# custom.diskoffering.size.min/max are GB, 1 and 1024 in VolumeOrchestrationService's ConfigKeys).
SETTING_DEFAULTS: dict[str, Any] = {
    "max_data_volumes": 6, "vm.userdata.max.length": 32768, "default_page_size": 500,
    "allow.user.expunge.recover.vm": False, "allow.user.view.destroyed.vm": False, "expunge.delay": 86400,
    "list.name.operator": "EQ",
    "custom.diskoffering.size.min": 1, "custom.diskoffering.size.max": 1024,
}


def load_scenario(scenario: str | os.PathLike | dict) -> dict:
    """A scenario dict from a built-in name ("advanced", "basic"), a variant ("advanced-user") or a JSON file."""
    if isinstance(scenario, dict):
        return scenario
    s = str(scenario)
    base, _, suffix = s.partition("-")
    variant: dict = {}
    if s in BUILT_IN:
        path = SCENARIO_DIR / f"{s}.json"
    elif base in BUILT_IN and suffix in VARIANTS:
        path, variant = SCENARIO_DIR / f"{base}.json", VARIANTS[suffix]
    else:
        path = Path(s)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data.setdefault("name", path.stem)
    for section, values in variant.items():
        data[section] = {**data.get(section, {}), **values}
    return data


class State:
    def __init__(self, scenario: dict, datadir: Path, device_dir: Path | None, injector,
                 job_seconds: float | None = None, timing: Timing | None = None):
        self.lock = threading.RLock()
        self.datadir = Path(datadir)
        for sub in ("volumes", "snapshots", "templates", "tmp"):
            (self.datadir / sub).mkdir(parents=True, exist_ok=True)
        self.device_dir = Path(device_dir) if device_dir else None
        self.injector = injector
        self.jobs = JobManager(timing=timing or Timing(override=job_seconds))
        self.scenario = scenario
        self.scenario_name = scenario.get("name", "custom")
        self.settings = {**SETTING_DEFAULTS, **scenario.get("settings", {})}
        # the name scenarios used before the real setting's: read when the scenario does not set the real one
        if "userdata_max_length" in self.settings and "vm.userdata.max.length" not in scenario.get("settings", {}):
            self.settings["vm.userdata.max.length"] = self.settings["userdata_max_length"]
        self.jobs.error_codes = str(self.settings.get("job_error_codes", "4.20"))  # jobs.py: JobManager.error_codes
        if self.jobs.error_codes not in ("4.11", "4.20"):
            raise ValueError(f"setting job_error_codes must be 4.11 or 4.20, not {self.jobs.error_codes!r}")
        self.known: dict[str, str] = {}          # every id ever issued -> kind (like findByUuidIncludingRemoved)
        self.zones: dict[str, dict] = {}
        self.networks: dict[str, dict] = {}
        self.vpcs: dict[str, dict] = {}
        self.service_offerings: dict[str, dict] = {}
        self.disk_offerings: dict[str, dict] = {}
        self.ostypes: dict[str, dict] = {}
        self.templates: dict[str, dict] = {}
        self.vms: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.snapshots: dict[str, dict] = {}
        self.publicips: dict[str, dict] = {}
        self.lbrules: dict[str, dict] = {}
        self.fwrules: dict[str, dict] = {}
        self.pfrules: dict[str, dict] = {}       # port forwarding and IP forwarding (static NAT) rules
        self.events: list[dict] = []             # listEvents, newest last
        self.affinitygroups: dict[str, dict] = {}
        self.sshkeys: dict[str, dict] = {}
        self.secgroups: dict[str, dict] = {}
        self.tags: list[dict] = []
        self.extracts: dict[str, dict] = {}      # token -> {"path", "name"}
        self.upload_key = os.urandom(32)
        self._mac_counter = 0
        self._vm_counter = 0
        self._vol_counter = 0
        self.base_url = ""                       # http(s)://host:port, set by the server
        # The project a request acts in (its projectid: a project record, ALL_PROJECTS for -1, None for the
        # account itself); set by the server for each request, read by owner_fields and the list commands.
        self.scope: dict | str | None = None
        self._load(scenario)

    # ------------------------------------------------------------------ ids
    def new_id(self, kind: str) -> str:
        i = str(uuid.uuid4())
        self.known[i] = kind
        return i

    def fixed_id(self, kind: str, name: str) -> str:
        i = str(uuid.uuid5(_NS, f"{self.scenario_name}:{kind}:{name}"))
        self.known[i] = kind
        return i

    def new_mac(self) -> str:
        self._mac_counter += 1
        n = self._mac_counter + 0x1e0000
        return "02:00:" + ":".join("%02x" % ((n >> s) & 0xFF) for s in (24, 16, 8, 0))

    def next_vm_number(self) -> int:
        self._vm_counter += 1
        return self._vm_counter

    def next_vol_number(self) -> int:
        self._vol_counter += 1
        return self._vol_counter

    # ------------------------------------------------------------------ scenario
    def _load(self, sc: dict) -> None:
        acc = sc.get("account", {})
        self.account = {
            "name": acc.get("name", "bosh"),
            "domain": acc.get("domain", "ROOT"),
            "id": self.fixed_id("account", acc.get("name", "bosh")),
            "userid": self.fixed_id("user", acc.get("name", "bosh")),
            "domainid": self.fixed_id("domain", acc.get("domain", "ROOT")),
            "api_key": acc["api_key"],
            "secret_key": acc["secret_key"],
            "role": acc.get("role", "user"),
        }
        if self.account["role"] not in ROLES:
            raise ValueError(f"account role {self.account['role']!r} is not one of {', '.join(ROLES)}")
        self.projects: dict[str, dict] = {}
        for pr in sc.get("projects", []):
            pid = self.fixed_id("project", pr["name"])
            self.projects[pid] = {"id": pid, "name": pr["name"], "displaytext": pr.get("displaytext", pr["name"]),
                                  "state": pr.get("state", "Active"), "_member": pr.get("member", True),
                                  "_accountid": self.fixed_id("projectaccount", pr["name"])}
        for os_ in sc.get("os_types", []):
            oid = self.fixed_id("ostype", os_["description"])
            self.ostypes[oid] = {"id": oid, "description": os_["description"], "name": os_["description"],
                                 "oscategoryid": self.fixed_id("oscategory", os_.get("category", "Other")),
                                 "oscategoryname": os_.get("category", "Other"), "isuserdefined": False,
                                 "fordisplay": True}
        for so in sc.get("service_offerings", []):
            sid = self.fixed_id("serviceoffering", so["name"])
            custom = bool(so.get("customized"))
            o = {"id": sid, "name": so["name"], "displaytext": so.get("displaytext", so["name"]),
                 "iscustomized": custom, "storagetype": "shared", "provisioningtype": "thin", "offerha": False,
                 "limitcpuuse": False, "isvolatile": False, "issystem": False, "defaultuse": False,
                 "iscustomizediops": False, "created": now_str(), "dynamicscalingenabled": True,
                 "cacheMode": "none", "hasannotations": False}
            if not custom:
                o.update(cpunumber=so["cpunumber"], cpuspeed=so["cpuspeed"], memory=so["memory"])
            else:
                o["serviceofferingdetails"] = {"mincpunumber": "1", "maxcpunumber": "16", "minmemory": "512",
                                               "maxmemory": "65536"}
            self.service_offerings[sid] = o
        for do in sc.get("disk_offerings", []):
            did = self.fixed_id("diskoffering", do["name"])
            custom = bool(do.get("customized"))
            self.disk_offerings[did] = {"id": did, "name": do["name"], "displaytext": do.get("displaytext", do["name"]),
                                        "disksize": 0 if custom else do["disksize"], "iscustomized": custom,
                                        "storagetype": "shared", "provisioningtype": "thin",
                                        "iscustomizediops": False, "displayoffering": True, "created": now_str(),
                                        "disksizestrictness": False, "encrypt": False}
        for z in sc.get("zones", []):
            self._load_zone(z)
        ostypes_by_name = {o["description"]: o for o in self.ostypes.values()}
        for t in sc.get("templates", []):
            tid = self.fixed_id("template", t["name"])
            os_ = ostypes_by_name.get(t.get("ostype", "Other Linux (64-bit)")) or next(iter(self.ostypes.values()))
            tpl = self.new_template_record(tid, name=t["name"], displaytext=t.get("displaytext", t["name"]),
                                           fmt=t.get("format", "QCOW2"), hypervisor=t.get("hypervisor", "KVM"),
                                           ostype=os_, size=int(t.get("size_gb", 5)) * GiB,
                                           ispublic=t.get("public", True), isfeatured=t.get("featured", True),
                                           isextractable=t.get("extractable", False), templatetype="USER")
            tpl["_scenario"] = True
            tpl["_owned"] = bool(t.get("owned", False))
            if not tpl["_owned"]:
                tpl["account"] = "system"
            for zname in t.get("zones", [z["name"] for z in sc.get("zones", [])]):
                zone = self.zone_by_name(zname)
                tpl["_zones"][zone["id"]] = {"status": "Download Complete", "isready": True, "created": now_str()}
            self.templates[tid] = tpl
        for k in sc.get("ssh_key_pairs", []):
            self.add_keypair(k["name"], k["public_key"], fixed=True, project=self._project_named(k.get("project")))
        for g in sc.get("security_groups", []):
            gid = self.fixed_id("securitygroup", g["name"])
            rules = []
            for r in g.get("ingress", []):
                rules.append({"ruleid": self.fixed_id("sgrule", f"{g['name']}:{r}"), "protocol": r["protocol"],
                              "startport": r.get("startport"), "endport": r.get("endport"),
                              "cidr": r.get("cidr", "0.0.0.0/0"), "tags": []})
            self.secgroups[gid] = {"id": gid, "name": g["name"], "description": g.get("description", ""),
                                   "account": self.account["name"], "domainid": self.account["domainid"],
                                   "domain": self.account["domain"], "ingressrule": rules, "egressrule": []}

    def _load_zone(self, z: dict) -> None:
        zid = self.fixed_id("zone", z["name"])
        basic = z.get("networktype", "Advanced") == "Basic"
        cap = z.get("capacity", {})
        zone = {"id": zid, "name": z["name"], "description": z.get("description", z["name"]),
                "networktype": "Basic" if basic else "Advanced",
                "securitygroupsenabled": bool(z.get("securitygroupsenabled", basic)),
                "allocationstate": "Enabled", "dhcpprovider": "VirtualRouter", "localstorageenabled": False,
                "dns1": z.get("dns1", "8.8.8.8"), "internaldns1": z.get("internaldns1", "10.0.0.2"),
                "zonetoken": hashlib.sha1(zid.encode()).hexdigest()[:36], "tags": [],
                "_hypervisors": z.get("hypervisors", ["KVM"]),
                "_cpu": int(cap.get("cpu", 64)), "_memory": int(cap.get("memory_mib", 262144)),
                "_cpuspeed": int(cap.get("cpu_mhz", 2400))}
        self.zones[zid] = zone
        pub_net_id = self.fixed_id("network", f"{z['name']}:public")
        zone["_public_network"] = pub_net_id
        for r in z.get("public_ip_ranges", []):
            vlan_id = self.fixed_id("vlan", f"{z['name']}:{r['start']}")
            start, end = int(ipaddress.IPv4Address(r["start"])), int(ipaddress.IPv4Address(r["end"]))
            for n in range(start, end + 1):
                ip = str(ipaddress.IPv4Address(n))
                pid = self.fixed_id("publicip", f"{z['name']}:{ip}")
                self.publicips[pid] = {"id": pid, "ipaddress": ip, "zoneid": zid, "zonename": z["name"],
                                       "issourcenat": False, "isstaticnat": False, "issystem": False,
                                       "forvirtualnetwork": True, "isportable": False, "fordisplay": True,
                                       "vlanid": vlan_id, "vlanname": r.get("vlan", "vlan://untagged"),
                                       "networkid": pub_net_id, "state": "Free", "hasannotations": False,
                                       "physicalnetworkid": self.fixed_id("physicalnetwork", z["name"]),
                                       "_gateway": r.get("gateway"), "_netmask": r.get("netmask")}
        for n in z.get("networks", []):
            self._load_network(zone, n)
        for p in z.get("preallocated_public_ips", []):
            address = next((x for x in self.publicips.values()
                            if x["ipaddress"] == p["ipaddress"] and x["zoneid"] == zid), None)
            if address is None:
                raise ValueError(f"preallocated public IP {p['ipaddress']} is not in a public range of {z['name']}")
            net = None
            if p.get("network"):
                net = next(x for x in self.networks.values() if x["name"] == p["network"] and x["zoneid"] == zid)
            self.allocate_public_ip(address, net)
            address["_scenario"] = True

    def _load_network(self, zone: dict, n: dict) -> None:
        nid = self.fixed_id("network", f"{zone['name']}:{n['name']}")
        ntype = n.get("type", "Isolated")
        cidr = ipaddress.IPv4Network(n["cidr"], strict=False)
        gw = n.get("gateway") or str(cidr.network_address + 1)
        start = ipaddress.IPv4Address(n["startip"]) if n.get("startip") else cidr.network_address + 2
        end = ipaddress.IPv4Address(n["endip"]) if n.get("endip") else cidr.broadcast_address - 1
        vpcid = None
        if ntype == "VPC-tier":
            vname = n.get("vpc", "vpc")
            vpcid = self.fixed_id("vpc", f"{zone['name']}:{vname}")
            self.vpcs.setdefault(vpcid, {"id": vpcid, "name": vname, "zoneid": zone["id"]})
        is_basic = zone["networktype"] == "Basic"
        cs_type = "Isolated" if ntype in ("Isolated", "VPC-tier") else ntype
        dns = n.get("dns", [])
        userdata_provider = n.get("userdata_provider", "VirtualRouter")
        services = [{"name": "UserData", "provider": [{"name": userdata_provider}]},
                    {"name": "Dhcp", "provider": [{"name": "VirtualRouter"}]},
                    {"name": "Dns", "provider": [{"name": "VirtualRouter"}]}]
        if cs_type == "Isolated":
            router = "VpcVirtualRouter" if vpcid else "VirtualRouter"
            services += [{"name": "SourceNat", "provider": [{"name": router}]},
                         {"name": "StaticNat", "provider": [{"name": router}]},
                         {"name": "Lb", "provider": [{"name": router}]},
                         {"name": "Firewall", "provider": [{"name": "VirtualRouter"}]}]
        if is_basic or zone["securitygroupsenabled"]:
            services.append({"name": "SecurityGroup", "provider": [{"name": "SecurityGroupProvider"}]})
        net = {"id": nid, "name": n["name"], "displaytext": n.get("displaytext", n["name"]),
               "broadcastdomaintype": "Native" if is_basic else "Vlan", "traffictype": "Guest",
               "gateway": gw, "netmask": str(cidr.netmask), "cidr": str(cidr), "zoneid": zone["id"],
               "zonename": zone["name"], "type": cs_type, "state": "Implemented" if cs_type != "Shared" else "Setup",
               "related": nid, "dns1": dns[0] if dns else zone["dns1"], "dns2": dns[1] if len(dns) > 1 else "",
               "isdefault": ntype == "Shared" and is_basic, "issystem": False,
               "acltype": "Domain" if cs_type == "Shared" else "Account",
               **self.owner_fields(self._project_named(n.get("project"))),
               "networkofferingid": self.fixed_id("networkoffering", ntype),
               "networkofferingname": {"Isolated": "DefaultIsolatedNetworkOfferingWithSourceNatService",
                                       "Shared": ("DefaultSharedNetworkOffering" if not is_basic
                                                  else "DefaultSharedNetworkOfferingWithSGService"),
                                       "VPC-tier": "DefaultIsolatedNetworkOfferingForVpcNetworks"}.get(ntype, ntype),
               "canusefordeploy": True, "specifyipranges": cs_type == "Shared", "restartrequired": False,
               "ispersistent": False, "service": services, "tags": [], "networkdomain": "cs1cloud.internal",
               "physicalnetworkid": self.fixed_id("physicalnetwork", zone["name"]),
               "vlan": None if is_basic else str(100 + len(self.networks)),
               "_start": int(start), "_end": int(end), "_used": {}, "_reserved": {int(ipaddress.IPv4Address(gw))},
               "_basic": is_basic, "_kind": ntype}
        # 4.11 NetworkResponse: the offering's availability, display text and conserve mode (as listNetworkOfferings
        # answers them); subdomainaccess only for Domain-wide networks (ApiResponseHelper.createNetworkResponse)
        net.update(networkofferingavailability="Required" if ntype == "Isolated" else "Optional",
                   networkofferingdisplaytext=net["networkofferingname"], networkofferingconservemode=True)
        if net["acltype"] == "Domain":
            net["subdomainaccess"] = True
        if net["vlan"] is None:
            del net["vlan"]
        else:
            net["broadcasturi"] = "vlan://" + net["vlan"]
        if vpcid:
            net["vpcid"] = vpcid
            net["vpcname"] = self.vpcs[vpcid]["name"]
        if n.get("pod"):
            net["_pod"] = n["pod"]
        self.networks[nid] = net

    # ------------------------------------------------------------------ lookups
    def zone_by_name(self, name: str) -> dict:
        for z in self.zones.values():
            if z["name"] == name:
                return z
        raise ValueError(f"unknown zone {name}")

    def add_keypair(self, name: str, public_key: str, fixed: bool = False, project: dict | None = None) -> dict:
        try:
            blob = base64.b64decode(public_key.split()[1] + "==")
        except (IndexError, ValueError):  # no second field, or not base64 (binascii.Error)
            blob = public_key.encode()
        fp = ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())
        kid = self.fixed_id("sshkeypair", name) if fixed else self.new_id("sshkeypair")
        k = {"id": kid, "name": name, "fingerprint": fp, **self.owner_fields(project), "_publickey": public_key}
        self.sshkeys[name] = k
        return k

    def owner_fields(self, project: dict | None = None) -> dict:
        """The owner fields of a new resource: the request's project when it names one, else the account.

        ApiResponseHelper.populateOwner: a resource whose owner is a project's account answers ``projectid`` and
        ``project`` instead of ``account``; both answer the domain."""
        project = project or (self.scope if isinstance(self.scope, dict) else None)
        if project is not None:
            return {"projectid": project["id"], "project": project["name"], "domainid": self.account["domainid"],
                    "domain": self.account["domain"]}
        return {"account": self.account["name"], "domainid": self.account["domainid"], "domain": self.account["domain"]}

    def owner_of(self, resource_id: str) -> dict:
        """The owner fields of an existing resource: what a resource made from it, or a tag on it, belongs to
        (TaggedResourceManagerImpl takes a tag's account from its resource; a snapshot's is its volume's)."""
        for table in (self.vms, self.volumes, self.snapshots, self.templates, self.publicips, self.lbrules,
                      self.fwrules, self.pfrules, self.affinitygroups, self.networks, self.secgroups):
            found = table.get(resource_id)
            if found is not None:
                return {k: found[k] for k in ("account", "projectid", "project", "domainid", "domain") if k in found}
        return self.owner_fields()

    def _project_named(self, name: str | None) -> dict | None:
        if name is None:
            return None
        found = [p for p in self.projects.values() if p["name"] == name]
        if not found:
            raise ValueError(f"unknown project {name}")
        return found[0]

    def visible(self, item: dict, *, by_id: bool) -> bool:
        """Whether a list command in the request's scope shows ``item`` (AccountManagerImpl.buildACLSearchParameters).

        Without projectid a project's resources are skipped (SkipProjectResources), except for an admin asking for
        one id; a normal user's list is narrowed to its own account, by id too.  With projectid=<id> the list shows
        that project's resources, with projectid=-1 those of every project the caller belongs to; resources of the
        caller's own account are then left out.  Resources no account owns here (public templates, offerings,
        zones, shared networks with ACL type Domain) are shown in every scope."""
        owned_by_project = "projectid" in item
        if self.scope is None:
            return not owned_by_project or (by_id and self.is_admin)
        if owned_by_project:
            scope = self.scope
            return scope == ALL_PROJECTS or (isinstance(scope, dict) and item["projectid"] == scope["id"])
        owned_by_account = item.get("account") == self.account["name"] and item.get("acltype") != "Domain"
        return not owned_by_account

    # ------------------------------------------------------------------ the account's role and settings
    @property
    def is_admin(self) -> bool:
        """AccountManager.isAdmin: root and domain admins (resource admins too, not modelled)."""
        return self.account["role"] != "user"

    def may_expunge(self) -> bool:
        """Admins always; users when allow.user.expunge.recover.vm is true (UserVmManagerImpl.destroyVm)."""
        return self.is_admin or bool(self.settings["allow.user.expunge.recover.vm"])

    def sees_destroyed(self) -> bool:
        """Admins list Destroyed VMs until expunged; users when allow.user.view.destroyed.vm is true."""
        return self.is_admin or bool(self.settings["allow.user.view.destroyed.vm"])

    def account_record(self) -> dict:
        """The account as listAccounts answers it (no keys: those belong to its users)."""
        accounttype, roletype, rolename = ROLES[self.account["role"]]
        acc = self.account
        user = {"id": acc["userid"], "username": acc["name"], "account": acc["name"], "accountid": acc["id"],
                "accounttype": accounttype, "roletype": roletype, "rolename": rolename,
                "domainid": acc["domainid"], "domain": acc["domain"], "state": "enabled", "created": now_str()}
        return {"id": acc["id"], "name": acc["name"], "accounttype": accounttype, "roletype": roletype,
                "rolename": rolename, "roleid": self.fixed_id("role", rolename), "domainid": acc["domainid"],
                "domain": acc["domain"], "state": "enabled", "isdefault": False, "user": [user]}

    # ------------------------------------------------------------------ expunging destroyed VMs
    def expunge_destroyed(self, vm: dict) -> None:
        """Expunge a Destroyed VM: its NICs' addresses are freed, its ROOT volume and tags go."""
        for nic in vm["_nics"]:
            self.release_ip(nic["networkid"], nic.get("ipaddress"))
        for vol in [v for v in self.volumes.values() if v.get("virtualmachineid") == vm["id"]]:
            self.volumes.pop(vol["id"], None)
            self.drop_tags("Volume", vol["id"])
        self.vms.pop(vm["id"], None)
        self.drop_tags("UserVm", vm["id"])
        vm["state"] = "Expunging"

    def expunge_due(self) -> None:
        """The server's expunge thread: VMs Destroyed expunge.delay seconds ago are expunged.  The real thread
        wakes every expunge.interval; here VMs are expunged when next looked at (VM commands, inventory)."""
        deadline = time.monotonic() - float(self.settings["expunge.delay"])
        for vm in [v for v in self.vms.values() if v["state"] == "Destroyed" and v["_destroyed_at"] <= deadline]:
            self.expunge_destroyed(vm)

    # ------------------------------------------------------------------ templates
    def new_template_record(self, tid: str, *, name: str, displaytext: str, fmt: str, hypervisor: str, ostype: dict,
                            size: int, ispublic=False, isfeatured=False, isextractable=False,
                            templatetype="USER", passwordenabled=False, sshkeyenabled=False, details=None,
                            bits=64) -> dict:
        t = {"id": tid, "name": name, "displaytext": displaytext, "format": fmt.upper(), "hypervisor": hypervisor,
             "ostypeid": ostype["id"], "ostypename": ostype["description"], "size": size,
             "ispublic": bool(ispublic), "isfeatured": bool(isfeatured), "isextractable": bool(isextractable),
             "passwordenabled": bool(passwordenabled), "sshkeyenabled": bool(sshkeyenabled),
             "templatetype": templatetype, "crossZones": False, "bootable": True, "isdynamicallyscalable": False,
             "requireshvm": True, "directdownload": False, "deployasis": False, "bits": bits,
             "created": now_str(), "details": details or {}, "hasannotations": False, **self.owner_fields(),
             "_zones": {}, "_file": None, "_owned": True}
        return t

    def template_rows(self, tpl: dict) -> list[dict]:
        rows = []
        for zid, zr in tpl["_zones"].items():
            zone = self.zones[zid]
            row = public(tpl)
            row.update(zoneid=zid, zonename=zone["name"], isready=zr["isready"], status=zr["status"],
                       created=zr.get("created", tpl["created"]))
            if tpl.get("_physicalsize") is not None:
                row["physicalsize"] = tpl["_physicalsize"]
            row["tags"] = self.tags_for("Template", tpl["id"])
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ networking
    def network_free_ips(self, net: dict) -> int:
        total = net["_end"] - net["_start"] + 1
        reserved = sum(1 for r in net["_reserved"] if net["_start"] <= r <= net["_end"])
        return total - reserved - len(net["_used"])

    def allocate_ip(self, net: dict, owner: str, requested: str | None = None) -> str | None:
        """Return the allocated IP, None when the pool is exhausted; raise 431 for a bad requested IP."""
        if requested:
            try:
                addr = ipaddress.IPv4Address(requested)
            except ValueError:
                raise param_error(f"Invalid format for IPv4 address: {requested}") from None
            cidr = ipaddress.IPv4Network(net["cidr"])
            n = int(addr)
            if addr not in cidr or n == int(cidr.network_address) or n == int(cidr.broadcast_address):
                raise param_error(f"Requested ip address {requested} is not in the network {net['name']} "
                                  f"cidr {net['cidr']}")
            if not (net["_start"] <= n <= net["_end"]) or n in net["_reserved"]:
                raise param_error(f"Requested ip address {requested} is not in the ip range of network id={net['id']}")
            if n in net["_used"]:
                raise param_error(f"IP address {requested} is already in use in network {net['name']}")
            net["_used"][n] = owner
            return requested
        for n in range(net["_start"], net["_end"] + 1):
            if n not in net["_used"] and n not in net["_reserved"]:
                net["_used"][n] = owner
                return str(ipaddress.IPv4Address(n))
        return None

    def release_ip(self, net_id: str, ip: str | None) -> None:
        net = self.networks.get(net_id)
        if net and ip:
            net["_used"].pop(int(ipaddress.IPv4Address(ip)), None)

    def allocate_public_ip(self, ip: dict, net: dict | None) -> None:
        ip.update(state="Allocated", allocated=now_str(), **self.owner_fields())
        if net is not None:
            ip["associatednetworkid"] = net["id"]
            ip["associatednetworkname"] = net["name"]
            if net.get("vpcid"):
                ip["vpcid"] = net["vpcid"]

    # ------------------------------------------------------------------ capacity
    def used_capacity(self, zone_id: str) -> tuple[int, int]:
        cpu = mem = 0
        for vm in self.vms.values():
            if vm["zoneid"] == zone_id and vm["_consumes"]:
                cpu += vm["cpunumber"]
                mem += vm["memory"]
        return cpu, mem

    # ------------------------------------------------------------------ tags
    def tags_for(self, rtype: str, rid: str) -> list[dict]:
        return [public(t) for t in self.tags if t["resourcetype"] == rtype and t["resourceid"] == rid]

    def drop_tags(self, rtype: str, rid: str) -> None:
        self.tags = [t for t in self.tags if not (t["resourcetype"] == rtype and t["resourceid"] == rid)]

    def match_tags(self, rtype: str, rid: str, wanted: list[tuple[str, str | None]]) -> bool:
        have = self.tags_for(rtype, rid)
        return all(any(t["key"] == k and (v is None or t["value"] == v) for t in have) for k, v in wanted)

    # ------------------------------------------------------------------ events
    def record_event(self, etype: str, description: str, level: str = "INFO") -> None:
        """An ActionEvent in state Completed, as the real server records when an action finishes."""
        acc = self.account
        self.events.append({"id": self.new_id("event"), "type": etype, "level": level, "state": "Completed",
                            "description": description, "created": now_str(), "username": acc["name"],
                            "account": acc["name"], "domainid": acc["domainid"], "domain": acc["domain"]})

    # ------------------------------------------------------------------ jobs
    def submit_job(self, *, command: str, cmd_class: str, instancetype: str | None, instanceid: str | None,
                   complete, rollback=None, variant: str | None = None, seconds: float | None = None) -> Job:
        """Queue an async job of ``command``; it runs ``seconds``, by default as long as the timing says for
        ``command``/``variant``."""
        job = Job(id=self.new_id("job"), cmd=cmd_class, command=command, instancetype=instancetype,
                  instanceid=instanceid, created=now_str(), due=0.0, complete=complete, rollback=rollback,
                  fail_fault=self.injector.job_fails(command))
        return self.jobs.submit(job, self.jobs.duration(command, variant) if seconds is None else seconds)

    # ------------------------------------------------------------------ inventory
    def inventory(self) -> dict[str, Any]:
        self.jobs.tick()
        self.expunge_due()
        return {
            "virtualmachines": sorted(v["id"] for v in self.vms.values()),
            "volumes": sorted(v["id"] for v in self.volumes.values() if v["type"] == "DATADISK"),
            "snapshots": sorted(self.snapshots),
            "templates": sorted(t["id"] for t in self.templates.values() if not t.get("_scenario")),
            "staticnat": sorted(i["id"] for i in self.publicips.values() if i["isstaticnat"]),
            "publicips": sorted(i["id"] for i in self.publicips.values()
                                if i["state"] != "Free" and not i.get("_scenario")),
            "loadbalancerrules": sorted(self.lbrules),
            "firewallrules": sorted(self.fwrules),
            "portforwardingrules": sorted(self.pfrules),
            "affinitygroups": sorted(self.affinitygroups),
            "tags": len(self.tags),
        }
