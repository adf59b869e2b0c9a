"""Fidelity of the simulator measured against responses recorded from real CloudStack servers (issue 15, item 10).

The recordings are apache-libcloud's CloudStack test fixtures (``libcloud/test/compute/fixtures/cloudstack/*.json``
in the apache-libcloud wheel: answers captured from real management servers, 2.2 to 4.x, including error bodies and
``queryAsyncJobResult_<jobid>.json`` job results).  For every command that both the recordings and the simulator's
registry cover, ``exercise`` drives a live simulator over HTTP on 127.0.0.1 to answer the same command for an
equivalent object, and ``compare`` checks names, JSON types, envelopes and error codes; the field lists of the real
4.11 ``listApis`` answer (``/work/shared/reference/cloudstack-4.11-listApis.json``) decide which extra simulator
fields are legitimate.  Every tolerated difference is in one of the commented allow-lists below, with its reason.

``python -m tests.simulator.fidelity`` prints the summary that docs/simulator.md quotes.
"""
from __future__ import annotations

import importlib.resources
import json
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIST_APIS = ROOT.parent / "shared/reference/cloudstack-4.11-listApis.json"

# ---------------------------------------------------------------------------------------------------------------
# The 4.11 reference
# ---------------------------------------------------------------------------------------------------------------
# 4.11's ApiDiscoveryServiceImpl lists the fields *declared* by a command's response class, not inherited ones:
# CreateSSHKeyPairResponse (privatekey) extends SSHKeyPairResponse, which registerSSHKeyPair answers.
INHERITED_RESPONSE = {"createSSHKeyPair": "registerSSHKeyPair"}
# BaseResponse (apache/cloudstack api/.../api/BaseResponse.java) gives every response object ``jobid`` and
# ``jobstatus`` (the latest async job acting on it); the 4.11 dump lists them for only a few commands.
BASE_FIELDS = {"jobid": "string", "jobstatus": "integer"}
# ExceptionResponse (api/.../api/response/ExceptionResponse.java): the body of every error answer and of a
# failed job's jobresult (later servers added errortextkey and errormetadata, which the simulator does not answer).
ERROR_FIELDS = {"uuidList": "list", "errorcode": "integer", "cserrorcode": "integer", "errortext": "string"}
# The asynchronous answer of a BaseAsyncCmd is {"jobid"}; of a BaseAsyncCreateCmd {"id", "jobid"}
# (ApiServer.queueCommand); a list answer is ListResponse: {"count", "<object name>": [...]} or {} when empty.
ASYNC_FIELDS = {"jobid": "string", "id": "string"}
LIST_FIELDS = {"count": "integer"}

# 4.11 type names -> the JSON types their values serialize to (gson).
JSON_TYPES = {"string": "str", "boolean": "bool", "integer": "int", "long": "int", "short": "int", "int": "int",
              "list": "list", "set": "list", "map": "dict", "date": "str", "state": "str", "float": "float",
              "uuid": "str", "url": "str", "imageformat": "str", "hypervisortype": "str", "powerstate": "str",
              "status": "str", "type": "str"}


def load_reference() -> dict[str, dict] | None:
    if not LIST_APIS.exists():
        return None
    return {a["name"]: a for a in json.loads(LIST_APIS.read_text())["api"]}


def _fields(items: list) -> dict[str, dict]:
    return {f["name"]: f for f in items if f and "name" in f}


# UserVmResponse, VolumeResponse and TemplateResponse extend BaseResponseWithTagInformation, whose ``tags`` (a list
# of ResourceTagResponse) the 4.11 dump therefore leaves out (the nameless ``{}`` entry of listVirtualMachines is
# UserVmResponse's transient tagIds); ResourceTagResponse's fields are listTags' response.
TAG_INFORMATION = {
    "deployVirtualMachine", "listVirtualMachines", "startVirtualMachine", "stopVirtualMachine", "rebootVirtualMachine",
    "destroyVirtualMachine", "recoverVirtualMachine", "updateVirtualMachine",
    "createVolume", "attachVolume", "detachVolume", "listVolumes", "resizeVolume",
    "listTemplates", "createTemplate", "registerTemplate", "copyTemplate",
}


def ref_fields(ref: dict[str, dict], command: str) -> dict[str, dict]:
    """The 4.11 response fields of ``command`` (declared and inherited), plus BaseResponse's."""
    out = {n: {"name": n, "type": t} for n, t in BASE_FIELDS.items()}
    if command in INHERITED_RESPONSE:
        out.update(_fields(ref[INHERITED_RESPONSE[command]]["response"]))
    if command in TAG_INFORMATION:
        out["tags"] = {"name": "tags", "type": "set", "response": ref["listTags"]["response"]}
    out.update(_fields(ref[command]["response"]))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Allow-lists: every recorded field the simulator does not answer alike, and every simulator field 4.11 does not
# list, with the reason.  Paths are rooted at the object key ("virtualmachine.nic.id") or, for envelope fields,
# at the response name ("createtagsresponse.id").  A stale entry fails test_allow_lists_are_all_used.
# ---------------------------------------------------------------------------------------------------------------
_V22 = "a CloudStack 2.2 field (recorded from a 2011 server), not in 4.11's NetworkResponse"
_UNSET = "an optional value the recorded cloud had set and the simulator's scenario does not: 4.11 omits it when null"
ALLOW_MISSING: dict[str, str] = {
    # envelopes
    "createtagsresponse.id": "CreateTagsCmd is a BaseAsyncCmd, answered with the jobid only (apache/cloudstack "
                             "CreateTagsCmd.java); libcloud's fixture is hand-made (jobid \"createtagsjob\")",
    "deletetagsresponse.id": "DeleteTagsCmd is a BaseAsyncCmd, answered with the jobid only; libcloud's fixture is "
                             "hand-made (jobid \"deletetagsjob\")",
    # virtual machines
    "virtualmachine.jobid": "the latest async job still acting on the VM (BaseResponse.jobId, from user_vm_view): the "
                            "simulator's jobs run to completion before any answer, so none is pending",
    "virtualmachine.jobstatus": "see virtualmachine.jobid",
    # networks and offerings
    "network.startip": _V22, "network.endip": _V22, "network.isshared": _V22, "network.securitygroupenabled": _V22,
    "network.service.capability": "service capabilities (SupportedSourceNatTypes, ElasticIp, ...) are not modelled",
    "networkoffering.service.capability": "service capabilities are not modelled",
    "networkoffering.maxconnections": _UNSET + " (an LB concurrent-connection limit)",
    "networkoffering.serviceofferingid": _UNSET + " (a system offering for the offering's routers)",
    "networkoffering.tags": _UNSET,
    "serviceoffering.domain": _UNSET + " (a domain-scoped offering; the scenario's offerings are public)",
    "serviceoffering.domainid": _UNSET + " (a domain-scoped offering)",
    "serviceoffering.networkrate": _UNSET + " (a network rate on the offering)",
    "serviceoffering.tags": _UNSET + " (storage tags)",
    # security groups
    "securitygroup.ingressrule.account": "a rule authorizing another account's security group "
                                         "(usersecuritygrouplist); the simulator models CIDR rules only",
    "securitygroup.ingressrule.securitygroupname": "see securitygroup.ingressrule.account",
    # storage
    "template.checksum": "the simulator computes no checksum for a template created from a snapshot or volume",
    "volume.storage": "a volume not yet on primary storage (Allocated, createVolume's result) has no pool here; the "
                      "2012 server answered \"none\"",
}
ALLOW_TYPE: dict[str, str] = {
    "virtualmachine.ostypeid": "4.11 answered the OS type's row id (a Long); later servers answer its UUID "
                               "(UserVmResponse.osTypeId is a String), as the simulator does",
    "ipforwardingrule.ipaddressid": "the wire carries IpForwardingRuleResponse (the IP's row id, a Long: the "
                                    "recording listIpForwardingRules_default.json has 34000), not the "
                                    "FirewallRuleResponse 4.11's listApis names",
}
_NEWER = "a field of newer servers, which the simulator answers too"
ALLOW_EXTRA: dict[str, str] = {
    # envelopes
    "createaffinitygroupresponse.id": "CreateAffinityGroupCmd is a BaseAsyncCreateCmd (apache/cloudstack "
                                      "CreateAffinityGroupCmd.java): ApiServer answers id and jobid; the recording "
                                      "has the jobid only",
    # IpForwardingRuleResponse on the wire (see ALLOW_TYPE), ports as numbers: listIpForwardingRules_default.json
    "ipforwardingrule.startport": "IpForwardingRuleResponse's field (recorded: listIpForwardingRules_default.json)",
    "ipforwardingrule.endport": "IpForwardingRuleResponse's field (recorded: listIpForwardingRules_default.json)",
    # newer servers (apache/cloudstack response classes)
    "virtualmachine.osdisplayname": _NEWER + " (UserVmResponse, since 4.13.2)",
    "virtualmachine.keypairs": _NEWER + " (UserVmResponse, several key pairs, 4.17)",
    "keypair.id": _NEWER + " (SSHKeyPairResponse.id)",
    "sshkeypair.id": _NEWER + " (SSHKeyPairResponse.id)",
    "network.vpcname": _NEWER + " (NetworkResponse, since 4.15)",
    "vpc.network.vpcname": _NEWER + " (NetworkResponse, since 4.15)",
    "ostype.name": _NEWER + " (GuestOSResponse.name; description is deprecated)",
    "ostype.oscategoryname": _NEWER + " (GuestOSResponse)",
    "ostype.fordisplay": _NEWER + " (GuestOSResponse, 4.19)",
    "publicipaddress.virtualmachinetype": _NEWER + " (IPAddressResponse, since 4.19.0)",
    "serviceoffering.cacheMode": _NEWER + " (ServiceOfferingResponse; DiskOfferingResponse has it in 4.11)",
    "serviceoffering.dynamicscalingenabled": _NEWER + " (ServiceOfferingResponse, 4.16)",
    "diskoffering.disksizestrictness": _NEWER + " (DiskOfferingResponse, 4.17)",
    "diskoffering.encrypt": _NEWER + " (DiskOfferingResponse, 4.18)",
    "snapshot.zonename": _NEWER + " (SnapshotResponse)",
    "template.deployasis": _NEWER + " (TemplateResponse, since 4.15)",
    "template.requireshvm": _NEWER + " (TemplateResponse.requiresHvm)",
    "ipaddress.hasannotations": _NEWER + " (BaseResponseWithAnnotations, 4.16)",
    "publicipaddress.hasannotations": _NEWER + " (BaseResponseWithAnnotations, 4.16)",
    "serviceoffering.hasannotations": _NEWER + " (BaseResponseWithAnnotations, 4.16)",
    "snapshot.hasannotations": _NEWER + " (BaseResponseWithAnnotations, 4.16)",
    "template.hasannotations": _NEWER + " (BaseResponseWithAnnotations, 4.16)",
}

# id-like fields (``id``, ``*id``, ``*ids``; not the device numbers) that a pre-4.0 server answered as JSON
# numbers; 4.x answers UUID strings (4.11 listApis: type string).  The CPI's client turns such numbers into strings.
_NUMBER_FIELDS = {"deviceid", "rootdeviceid"}


def is_id_field(name: str) -> bool:
    n = name.lower()
    return n not in _NUMBER_FIELDS and (n == "id" or n.endswith(("id", "ids")))


# ---------------------------------------------------------------------------------------------------------------
# The recordings
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Recording:
    name: str                 # file name, e.g. "listZones_default.json"
    command: str              # "listZones"
    variant: str              # "default"
    body: dict
    job_of: list[str] = field(default_factory=list)  # for queryAsyncJobResult_*: the recordings that started it

    @property
    def key(self) -> str:
        return next(iter(self.body))

    @property
    def inner(self):
        return self.body[self.key]

    @property
    def job_command(self) -> str | None:
        return self.job_of[0].split("_", 1)[0] if self.job_of else None


def fixtures_dir():
    """The fixtures inside the installed apache-libcloud package (never fetched)."""
    return importlib.resources.files("libcloud") / "test" / "compute" / "fixtures" / "cloudstack"


def load_recordings() -> list[Recording]:
    recs = []
    for entry in sorted(fixtures_dir().iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        command, _, variant = entry.name[:-5].partition("_")
        recs.append(Recording(entry.name, command, variant, json.loads(entry.read_text())))
    started: dict[str, list[str]] = defaultdict(list)
    for r in recs:
        if r.command != "queryAsyncJobResult" and isinstance(r.inner, dict) and "jobid" in r.inner:
            started[str(r.inner["jobid"])].append(r.name)
    for r in recs:
        if r.command == "queryAsyncJobResult":
            jobid = r.name[len("queryAsyncJobResult_"):-5]
            r.job_of = sorted(started.get(jobid, []))
    return recs


def jtype(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(v), type(v).__name__)


# ---------------------------------------------------------------------------------------------------------------
# Driving the simulator
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    command: str
    status: int
    body: dict
    params: dict

    @property
    def inner(self):
        return next(iter(self.body.values()))


class Capture:
    """Sends signed requests through the tests' independent client and keeps every answer and job result."""

    def __init__(self, api):
        self.api = api
        self.answers: dict[str, list[Answer]] = defaultdict(list)   # command (lower) -> answers
        self.jobs: dict[str, list[dict]] = defaultdict(list)       # command (lower) -> final queryAsyncJobResult bodies

    def send(self, command: str, **params) -> dict:
        method = "GET" if command.startswith("list") else "POST"
        r = self.api.raw(command, method, **params)
        body = r.json()
        ans = Answer(command, r.status_code, body, params)
        self.answers[command.lower()].append(ans)
        inner = ans.inner
        if r.status_code == 200 and isinstance(inner, dict) and "jobid" in inner and command != "queryAsyncJobResult":
            job = self._wait(inner["jobid"])
            self.jobs[command.lower()].append(job)
            return job["queryasyncjobresultresponse"]
        return inner

    def _wait(self, jobid: str) -> dict:
        deadline = time.monotonic() + 10
        while True:
            r = self.api.raw("queryAsyncJobResult", "GET", jobid=jobid)
            body = r.json()
            self.answers["queryasyncjobresult"].append(Answer("queryAsyncJobResult", r.status_code, body, {}))
            if body["queryasyncjobresultresponse"]["jobstatus"] != 0:
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(jobid)
            time.sleep(0.01)

    def result(self, command: str, **params) -> dict:
        """Run an async command and return its jobresult (the job must succeed)."""
        job = self.send(command, **params)
        assert job.get("jobstatus") == 1, (command, job)
        return job["jobresult"]


def scenario() -> dict:
    """The built-in "advanced" cloud plus the "basic" scenario's Basic zone with security groups (for VMs in a
    security group, as the deploysecuritygroup recording has) and one project (listProjects_default.json)."""
    from cloudstack_simulator.state import load_scenario

    sc = load_scenario("advanced")
    basic = load_scenario("basic")
    sc["name"] = "conformance"
    sc["zones"].append(basic["zones"][0])
    sc["templates"].append(dict(basic["templates"][0], name="basic-stemcell"))
    sc["security_groups"] = basic["security_groups"]
    sc["projects"] = [{"name": "conformance", "displaytext": "Conformance project"}]
    return sc


PUBLIC_KEY = ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDconformance0key0material0only0for0tests000000000000000000000000"
              "000000 conformance@test")


def exercise(api) -> Capture:
    """Answer every command the recordings and the simulator share, for objects like the recorded ones."""
    c = Capture(api)
    first = lambda ans, key: ans[key][0]  # noqa: E731
    zones = c.send("listZones")["zone"]
    zone = next(z for z in zones if z["name"] == "zone-1")
    bzone = next(z for z in zones if z["name"] == "basic-zone")
    c.send("listZones", name="no-such-zone")
    small = first(c.send("listServiceOfferings", name="small"), "serviceoffering")
    c.send("listServiceOfferings")
    c.send("listDiskOfferings")
    d10 = next(d for d in c.send("listDiskOfferings")["diskoffering"] if d["name"] == "disk-10")
    custom = next(d for d in c.send("listDiskOfferings")["diskoffering"] if d["name"] == "custom")
    c.send("listOsTypes")
    tpl = first(c.send("listTemplates", templatefilter="executable", name="bosh-stemcell-existing"), "template")
    btpl = first(c.send("listTemplates", templatefilter="executable", name="basic-stemcell"), "template")
    c.send("listTemplates", templatefilter="executable", name="no-such-template")
    nets = c.send("listNetworks", zoneid=zone["id"])["network"]
    iso = next(n for n in nets if n["name"] == "bosh-isolated")
    c.send("listNetworks")
    c.send("listNetworkOfferings")
    project = first(c.send("listProjects"), "project")
    c.send("listResourceLimits")
    c.send("listAffinityGroupTypes")
    c.send("listVPCs")
    c.send("listSecurityGroups")
    c.send("listSecurityGroups", securitygroupname="no-such-group")
    sg = next(g for g in c.send("listSecurityGroups")["securitygroup"] if g["name"] == "bosh")

    # key pairs
    c.send("createSSHKeyPair", name="conformance-created")
    c.send("registerSSHKeyPair", name="conformance-registered", publickey=PUBLIC_KEY)
    c.send("registerSSHKeyPair", name="conformance-bad", publickey="not a key")          # recorded 431
    c.send("listSSHKeyPairs")
    c.send("listSSHKeyPairs", name="conformance-registered")
    c.send("listSSHKeyPairs", name="no-such-key")

    # affinity groups
    ag = c.result("createAffinityGroup", name="conformance-ag", type="host anti-affinity")["affinitygroup"]
    doomed_ag = c.result("createAffinityGroup", name="conformance-doomed", type="host anti-affinity")["affinitygroup"]

    # virtual machines: the deploy variants of the recordings
    base = dict(zoneid=zone["id"], serviceofferingid=small["id"], templateid=tpl["id"])
    vm = c.result("deployVirtualMachine", networkids=iso["id"], keypair="conformance-registered",
                  affinitygroupids=ag["id"], name="conformance-vm", **base)["virtualmachine"]
    c.send("deployVirtualMachine", ipaddress="10.1.0.99", networkids=iso["id"], **base)
    c.send("deployVirtualMachine", rootdisksize=20, networkids=iso["id"], **base)
    c.send("deployVirtualMachine", startvm="false", networkids=iso["id"], **base)
    c.send("deployVirtualMachine", projectid=project["id"], networkids=iso["id"], **base)
    c.send("deployVirtualMachine", zoneid=bzone["id"], serviceofferingid=small["id"], templateid=btpl["id"],
           securitygroupids=sg["id"])
    c.send("deployVirtualMachine", zoneid=zone["id"], serviceofferingid=zone["id"], templateid=tpl["id"])  # 431
    c.send("deployVirtualMachine", zoneid=zone["id"], serviceofferingid=small["id"], templateid=tpl["id"],
           networkids=iso["id"], ipaddress="10.1.0.99")                                   # 431: IP in use
    custom_so = first(c.send("listServiceOfferings", name="custom"), "serviceoffering")
    c.send("deployVirtualMachine", zoneid=zone["id"], serviceofferingid=custom_so["id"], templateid=tpl["id"],
           networkids=iso["id"], **{"details[0].cpuNumber": 128, "details[0].cpuSpeed": 1000,
                                    "details[0].memory": 1024})                           # the job fails: capacity
    c.send("rebootVirtualMachine", id=vm["id"])
    c.send("stopVirtualMachine", id=vm["id"])
    c.send("startVirtualMachine", id=vm["id"])
    c.send("listNics", virtualmachineid=vm["id"])

    # tags
    c.send("createTags", resourcetype="UserVm", resourceids=vm["id"], **{"tags[0].key": "testkey",
                                                                          "tags[0].value": "testvalue"})
    c.send("listVirtualMachines")
    c.send("deleteTags", resourcetype="UserVm", resourceids=vm["id"], **{"tags[0].key": "testkey"})

    # volumes, snapshots, templates
    vol = c.result("createVolume", name="conformance-vol", zoneid=zone["id"], diskofferingid=d10["id"])["volume"]
    c.send("createVolume", name="conformance-custom", zoneid=zone["id"], diskofferingid=custom["id"], size=5)
    c.send("attachVolume", id=vol["id"], virtualmachineid=vm["id"])
    c.send("listVolumes")
    c.send("detachVolume", id=vol["id"])
    root = first(c.send("listVolumes", virtualmachineid=vm["id"], type="ROOT"), "volume")
    snap = c.result("createSnapshot", volumeid=root["id"])["snapshot"]
    c.send("listSnapshots")
    pw_tpl = c.result("createTemplate", snapshotid=snap["id"], name="conformance-tpl", displaytext="conformance",
                      ostypeid=tpl["ostypeid"], passwordenabled="true")["template"]
    c.send("listTemplates", templatefilter="self")
    c.send("deployVirtualMachine", zoneid=zone["id"], serviceofferingid=small["id"], templateid=pw_tpl["id"],
           networkids=iso["id"])                                                  # answers the new password
    c.send("deleteSnapshot", id=snap["id"])
    c.send("deleteVolume", id=vol["id"])

    # public addresses and rules
    ip = c.result("associateIpAddress", networkid=iso["id"])["ipaddress"]
    c.send("listPublicIpAddresses")
    fw = c.result("createFirewallRule", ipaddressid=ip["id"], protocol="tcp", startport=22, endport=22,
                  cidrlist="0.0.0.0/0")["firewallrule"]
    c.send("createFirewallRule", ipaddressid=ip["id"], protocol="icmp", icmptype=-1, icmpcode=-1,
           cidrlist="0.0.0.0/0")
    c.send("listFirewallRules")
    c.send("deleteFirewallRule", id=fw["id"])
    pf = c.result("createPortForwardingRule", ipaddressid=ip["id"], virtualmachineid=vm["id"], protocol="tcp",
                  publicport=2222, privateport=22)["portforwardingrule"]
    c.send("listPortForwardingRules")
    c.send("deletePortForwardingRule", id=pf["id"])
    nat = c.result("associateIpAddress", networkid=iso["id"])["ipaddress"]
    c.send("enableStaticNat", ipaddressid=nat["id"], virtualmachineid=vm["id"])
    c.send("createIpForwardingRule", ipaddressid=nat["id"], protocol="tcp", startport=22, endport=22)
    c.send("listIpForwardingRules")
    c.send("listPublicIpAddresses")
    c.send("listVirtualMachines")
    c.send("disassociateIpAddress", id=ip["id"])

    # clean-up commands with recordings
    c.send("listAffinityGroups")
    c.send("deleteAffinityGroup", id=doomed_ag["id"])
    c.send("deleteSSHKeyPair", name="conformance-created")
    c.send("destroyVirtualMachine", id=vm["id"])
    return c


# ---------------------------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------------------------
MATCHED, ALLOWED, FAILED = "matched", "allowed", "failed"


@dataclass
class Finding:
    status: str           # matched / allowed / failed
    kind: str             # field / type / missing / extra / envelope / error / coverage
    recording: str        # file name ("" for simulator-only checks)
    command: str
    path: str
    detail: str = ""


class Proto:
    """The simulator's objects of one kind, seen together: a field's values across every answer."""

    def __init__(self, objs: list[dict]):
        self.objs = [o for o in objs if isinstance(o, dict)]

    def __bool__(self) -> bool:
        return bool(self.objs)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for o in self.objs:
            seen.update(dict.fromkeys(o))
        return list(seen)

    def values(self, key: str) -> list:
        return [o[key] for o in self.objs if key in o]

    def types(self, key: str) -> set[str]:
        return {jtype(v) for v in self.values(key)}

    def child(self, key: str) -> Proto:
        out: list[dict] = []
        for v in self.values(key):
            if isinstance(v, dict):
                out.append(v)
            elif isinstance(v, list):
                out.extend(x for x in v if isinstance(x, dict))
        return Proto(out)


def _allow(table: dict[str, str], path: str, used: set[str]) -> str | None:
    key = path.removeprefix("jobresult.")
    if key in table:
        used.add(key)
        return table[key]
    return None


class Comparer:
    def __init__(self, capture: Capture, reference: dict[str, dict] | None):
        self.c = capture
        self.ref = reference
        self.findings: list[Finding] = []
        self.used: set[str] = set()
        self._extras_done: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ helpers
    def add(self, status, kind, rec, command, path, detail="") -> None:
        self.findings.append(Finding(status, kind, rec.name if rec else "", command, path, detail))

    def fields(self, command: str) -> dict[str, dict] | None:
        if self.ref is None or command not in self.ref:
            return None
        return ref_fields(self.ref, command)

    def answers(self, command: str, ok: bool = True) -> list[Answer]:
        return [a for a in self.c.answers.get(command.lower(), []) if (a.status == 200) == ok]

    # ------------------------------------------------------------------ objects
    def compare(self, rec: Recording, command: str, path: str, recorded: dict, sim: Proto,
                ref: dict[str, dict] | None) -> None:
        """Every recorded field present in the simulator's objects with the same JSON type; recursively."""
        for key, value in recorded.items():
            p = f"{path}.{key}" if path else key
            if key not in sim.keys():  # noqa: SIM118 - a Proto has keys(), not a dict's `in`
                reason = _allow(ALLOW_MISSING, p, self.used)
                if reason:
                    self.add(ALLOWED, "missing", rec, command, p, reason)
                else:
                    self.add(FAILED, "missing", rec, command, p, "recorded field absent in the simulator")
                continue
            rt, st = jtype(value), self.types_of(sim, key)
            if rt == "null" or (rt in st and len(st) == 1):
                self.add(MATCHED, "field", rec, command, p)
            elif rt == "int" and st == {"str"} and is_id_field(key) and self._declared(ref, key) in (None, "str"):
                self.add(ALLOWED, "type", rec, command, p, "number id of a pre-4.0 server; 4.x answers a UUID string")
            elif len(st) == 1 and self._declared(ref, key) in st:
                self.add(ALLOWED, "type", rec, command, p, f"recorded {rt} by a server of another version; the "
                         f"simulator answers the {ref[key]['type']} that 4.11 declares")
            else:
                reason = _allow(ALLOW_TYPE, p, self.used)
                detail = f"recorded {rt}, simulator {'/'.join(sorted(st))}"
                if reason:
                    self.add(ALLOWED, "type", rec, command, p, f"{detail}: {reason}")
                else:
                    self.add(FAILED, "type", rec, command, p, detail)
            sub = (ref or {}).get(key, {})
            if sub.get("type") == "map" or key in FREE_MAPS:
                continue  # keys are data (details, serviceofferingdetails)
            subref = _fields(sub["response"]) if sub.get("response") else None
            if isinstance(value, dict):
                self.compare(rec, command, p, value, sim.child(key), subref)
            elif isinstance(value, list) and any(isinstance(x, dict) for x in value):
                child = sim.child(key)
                if not child:
                    reason = _allow(ALLOW_MISSING, p + "[]", self.used)
                    if reason:
                        self.add(ALLOWED, "missing", rec, command, p + "[]", reason)
                    else:
                        self.add(FAILED, "missing", rec, command, p + "[]",
                                 "recorded items; the simulator's list is empty in every answer")
                    continue
                for item in value:
                    if isinstance(item, dict):
                        self.compare(rec, command, p, item, child, subref)

    @staticmethod
    def types_of(sim: Proto, key: str) -> set[str]:
        return sim.types(key) - {"null"} or {"null"}

    @staticmethod
    def _declared(ref, key):
        if not ref or key not in ref:
            return None
        return JSON_TYPES.get(ref[key].get("type"))

    def extras(self, command: str, path: str, sim: Proto, ref: dict[str, dict] | None, allowed: dict | None = None):
        """Every simulator field is one the real 4.11 API lists for the command (or allow-listed), same type."""
        if ref is None:
            return
        allowed_names = dict(ref)
        if allowed:
            allowed_names.update(allowed)
        for key in sim.keys():  # noqa: SIM118 - a Proto has keys(), it is not iterable
            p = f"{path}.{key}" if path else key
            if (command, p) in self._extras_done:
                continue
            self._extras_done.add((command, p))
            if key not in allowed_names:
                reason = _allow(ALLOW_EXTRA, p, self.used)
                if reason:
                    self.add(ALLOWED, "extra", None, command, p, reason)
                else:
                    self.add(FAILED, "extra", None, command, p, "simulator field not in 4.11's response")
                continue
            declared = JSON_TYPES.get(allowed_names[key].get("type"))
            st = self.types_of(sim, key)
            if declared and st != {declared} and st != {"null"}:
                reason = _allow(ALLOW_TYPE, p, self.used)
                detail = f"4.11 declares {allowed_names[key].get('type')}, simulator {'/'.join(sorted(st))}"
                if reason:
                    self.add(ALLOWED, "extra-type", None, command, p, f"{detail}: {reason}")
                else:
                    self.add(FAILED, "extra-type", None, command, p, detail)
            else:
                self.add(MATCHED, "extra", None, command, p)
            sub = allowed_names[key]
            if sub.get("type") == "map" or key in FREE_MAPS:
                continue
            if sub.get("response"):
                self.extras(command, p, sim.child(key), _fields(sub["response"]))

    # ------------------------------------------------------------------ one recording
    def check(self, rec: Recording) -> None:
        cmd = rec.command
        if rec.command.lower() not in registry_names():
            return
        inner = rec.inner
        if rec.key != cmd.lower() + "response":
            self.add(FAILED, "envelope", rec, cmd, rec.key, "recording's response name is not <command>response")
        if cmd == "queryAsyncJobResult":
            return self.check_job(rec)
        if isinstance(inner, dict) and "errorcode" in inner:
            return self.check_error(rec, cmd, rec.key, inner, self.answers(cmd, ok=False))
        ok = self.answers(cmd)
        if not ok:
            return self.add(FAILED, "coverage", rec, cmd, rec.key,
                            "recorded and in the simulator's registry, but exercise() never asked it: add it there")
        sim_keys = {a.body and next(iter(a.body)) for a in ok}
        if sim_keys != {rec.key}:
            self.add(FAILED, "envelope", rec, cmd, rec.key, f"simulator answers {sorted(sim_keys)}")
        inners = [a.inner for a in ok]
        if cmd.startswith("list"):
            return self.check_list(rec, cmd, inner, inners)
        if "jobid" in inner:
            return self.check_async(rec, cmd, inner, inners)
        ref = self.fields(cmd)
        sim = Proto(inners)
        for key, value in inner.items():  # {"keypair": {...}} or {"success": true}
            if isinstance(value, dict):
                self.compare(rec, cmd, key, value, sim.child(key), ref)
                self.extras(cmd, key, sim.child(key), ref)
            else:
                self.compare(rec, cmd, rec.key, {key: value}, sim, ref)
        self.extras(cmd, rec.key, Proto([{k: v for k, v in i.items() if not isinstance(v, dict)} for i in inners]),
                    ref)

    def check_list(self, rec, cmd, inner, inners) -> None:
        if not inner:
            if {} not in inners:
                self.add(FAILED, "envelope", rec, cmd, rec.key, "recorded an empty answer {}; the simulator never did")
            else:
                self.add(MATCHED, "envelope", rec, cmd, rec.key + ".{}")
            return
        item_keys = [k for k in inner if k != "count"]
        if len(item_keys) != 1 or not isinstance(inner[item_keys[0]], list):
            self.add(FAILED, "envelope", rec, cmd, rec.key, f"unexpected recorded list keys {sorted(inner)}")
            return
        item = item_keys[0]
        full = [i for i in inners if i]
        if not full:
            self.add(FAILED, "coverage", rec, cmd, rec.key, "the simulator answered only empty lists")
            return
        env = Proto(full)
        self.compare(rec, cmd, rec.key, {k: v for k, v in inner.items() if k != item}, env, LIST_FIELDS)
        if "count" not in inner:
            self.add(ALLOWED, "envelope", rec, cmd, rec.key + ".count",
                     "an older (2.2) server's list answer without count; 4.11's ListResponse always has it")
        other = set(env.keys()) - {"count", item}
        if other:
            self.add(FAILED, "envelope", rec, cmd, rec.key, f"simulator list answer also has {sorted(other)}")
        if not all(isinstance(i.get("count"), int) and isinstance(i.get(item), list) for i in full):
            self.add(FAILED, "envelope", rec, cmd, rec.key, f"simulator list answers lack count/{item}")
        ref = self.fields(cmd)
        sim = env.child(item)
        for obj in inner[item]:
            self.compare(rec, cmd, item, obj, sim, ref)
        self.extras(cmd, item, sim, ref)

    def check_async(self, rec, cmd, inner, inners) -> None:
        starts = [i for i in inners if "jobid" in i]
        if not starts:
            return self.add(FAILED, "envelope", rec, cmd, rec.key, "the simulator answered synchronously")
        sim_sets = {tuple(sorted(i)) for i in starts}
        if sim_sets != {tuple(sorted(inner))}:
            missing = set(inner) - set().union(*map(set, sim_sets))
            for key in sorted(missing):
                reason = _allow(ALLOW_MISSING, f"{rec.key}.{key}", self.used)
                if reason:
                    self.add(ALLOWED, "missing", rec, cmd, f"{rec.key}.{key}", reason)
                else:
                    self.add(FAILED, "envelope", rec, cmd, f"{rec.key}.{key}", "recorded, not in the simulator's answer")
            for key in sorted(set().union(*map(set, sim_sets)) - set(inner)):
                reason = _allow(ALLOW_EXTRA, f"{rec.key}.{key}", self.used)
                if reason:
                    self.add(ALLOWED, "extra", rec, cmd, f"{rec.key}.{key}", reason)
                else:
                    self.add(FAILED, "envelope", rec, cmd, f"{rec.key}.{key}", "in the simulator's answer, not recorded")
        self.compare(rec, cmd, rec.key, {k: v for k, v in inner.items() if k in set().union(*map(set, sim_sets))},
                     Proto(starts), ASYNC_REF)

    def check_error(self, rec, cmd, path, inner, errors: list[Answer]) -> None:
        same = [a for a in errors if a.inner.get("errorcode") == inner.get("errorcode")]
        if not same:
            return self.add(FAILED, "error", rec, cmd, path,
                            f"the simulator never answered errorcode {inner.get('errorcode')}")
        for a in same:
            if a.status != a.inner.get("errorcode"):
                self.add(FAILED, "error", rec, cmd, path, f"HTTP {a.status} for errorcode {a.inner.get('errorcode')}")
            if set(a.body) != {rec.key}:
                self.add(FAILED, "envelope", rec, cmd, path, f"simulator error envelope {sorted(a.body)}")
        self.add(MATCHED, "error", rec, cmd, path + ".http-status")
        sim = Proto([a.inner for a in same])
        self.compare(rec, cmd, path, inner, sim, ERROR_REF)
        self.extras(cmd, path, sim, ERROR_REF)

    def check_job(self, rec: Recording) -> None:
        job = rec.inner
        of = rec.job_command
        if of is None:
            return self.add(FAILED, "coverage", rec, "queryAsyncJobResult", rec.key, "no recording started this job")
        if of.lower() not in registry_names():
            return  # a job of a command the simulator does not implement: counted as not covered
        status = job.get("jobstatus")
        jobs = [j["queryasyncjobresultresponse"] for j in self.c.jobs.get(of.lower(), [])]
        jobs = [j for j in jobs if j.get("jobstatus") == status]
        if not jobs:
            return self.add(FAILED, "coverage", rec, of, "queryasyncjobresultresponse",
                            f"no {of} job of the simulator ended with jobstatus {status}")
        qref = self.fields("queryAsyncJobResult")
        if qref is not None:
            qref = {**qref, "jobid": {"name": "jobid", "type": "string"}, "completed": {"name": "completed",
                                                                                      "type": "date"}}
        env = Proto(jobs)
        path = "queryasyncjobresultresponse"
        self.compare(rec, of, path, {k: v for k, v in job.items() if k != "jobresult"}, env, qref)
        self.extras("queryAsyncJobResult", path, Proto([{k: v for k, v in j.items() if k != "jobresult"}
                                                         for j in jobs]), qref)
        result = job.get("jobresult")
        sims = [j["jobresult"] for j in jobs if isinstance(j.get("jobresult"), dict)]
        if status == 2 and not isinstance(result, dict):
            # recorded without a jobresult (queryAsyncJobResult_17177.json): the simulator's still has the
            # ExceptionResponse shape
            self.extras(of, "jobresult", Proto(sims), ERROR_REF)
            return
        if not isinstance(result, dict):
            return
        if status == 2:
            sim = Proto(sims)
            self.compare(rec, of, "jobresult", result, sim, ERROR_REF)
            self.extras(of, "jobresult", sim, ERROR_REF)
            return
        ref = self.fields(of)
        sim = Proto(sims)
        for key, value in result.items():
            if isinstance(value, dict):
                self.compare(rec, of, "jobresult." + key, value, sim.child(key), ref)
                self.extras(of, key, sim.child(key), ref)
            else:
                self.compare(rec, of, "jobresult", {key: value}, sim, ref)


# What the real server answers at the envelope level, in the 4.11 listApis format.
ERROR_REF = {n: {"name": n, "type": t} for n, t in ERROR_FIELDS.items()}
ASYNC_REF = {n: {"name": n, "type": t} for n, t in ASYNC_FIELDS.items()}
LIST_FIELDS = {n: {"name": n, "type": t} for n, t in LIST_FIELDS.items()}
# Maps whose keys are data, not field names.
FREE_MAPS = {"details", "serviceofferingdetails", "resourcedetails"}


def registry_names() -> set[str]:
    """The simulator's commands (lower-case), as its server dispatches them."""
    from cloudstack_simulator.commands import REGISTRY, load_all

    load_all()
    return set(REGISTRY)


def compare(recordings: list[Recording], capture: Capture, reference: dict[str, dict] | None) -> Comparer:
    cmp = Comparer(capture, reference)
    for rec in recordings:
        cmp.check(rec)
    return cmp


# ---------------------------------------------------------------------------------------------------------------
# The measurement
# ---------------------------------------------------------------------------------------------------------------
def measure() -> tuple[list[Recording], Comparer]:
    """Start a simulator on 127.0.0.1, exercise it, compare every recording."""
    from cloudstack_simulator import Simulator

    from .helpers import Api

    recordings = load_recordings()
    with Simulator(scenario=scenario(), seed=1) as sim:
        capture = exercise(Api(sim))
    return recordings, compare(recordings, capture, load_reference())


_RANK = {MATCHED: 0, ALLOWED: 1, FAILED: 2}
_FIELD_KINDS = ("field", "type", "missing")


def _worst(findings) -> dict[tuple[str, str], Finding]:
    out: dict[tuple[str, str], Finding] = {}
    for f in findings:
        key = (f.command, f.path.removeprefix("jobresult."))
        if key not in out or _RANK[f.status] > _RANK[out[key].status]:
            out[key] = f
    return out


def summary(recordings: list[Recording], cmp: Comparer) -> str:
    import libcloud

    names = registry_names()
    recorded = sorted({r.command for r in recordings})
    shared = [c for c in recorded if c.lower() in names]
    only = [c for c in recorded if c.lower() not in names]
    checked = [r for r in recordings if r.command.lower() in names
               and (r.command != "queryAsyncJobResult" or (r.job_command or "").lower() in names)]
    jobs = [r for r in checked if r.command == "queryAsyncJobResult"]
    errors = [r for r in checked if isinstance(r.inner, dict) and "errorcode" in r.inner]
    fields = _worst(f for f in cmp.findings if f.kind in _FIELD_KINDS and f.recording)
    extras = _worst(f for f in cmp.findings if f.kind in ("extra", "extra-type") and not f.recording)
    count = lambda table, status: sum(1 for f in table.values() if f.status == status)  # noqa: E731
    reasons: dict[str, int] = defaultdict(int)
    for f in fields.values():
        if f.status == ALLOWED:
            if f.detail.startswith("number id of a pre-4.0 server"):
                reasons["ids answered as numbers by a pre-4.0 server (4.x and the simulator: UUID strings)"] += 1
            elif "that 4.11 declares" in f.detail:
                reasons["another type recorded by another server version (the simulator answers 4.11's type)"] += 1
            else:
                reasons["recorded field allow-listed as absent (ALLOW_MISSING)"] += 1
    envelope_ok = not [f for f in cmp.findings if f.kind in ("envelope", "error", "coverage") and f.status == FAILED]
    failed = [f for f in cmp.findings if f.status == FAILED]
    lines = [
        (f"Recordings: {len(recordings)} JSON responses of apache-libcloud {libcloud.__version__} "
         f"(libcloud/test/compute/fixtures/cloudstack), {len(recorded)} commands."),
        f"Commands covered (recorded and in the simulator's registry): {len(shared)} of {len(recorded)}: "
        + ", ".join(shared) + ".",
        f"Recorded only (not simulated): {len(only)}: " + ", ".join(only) + ".",
        (f"Recordings compared: {len(checked)} ({len(jobs)} job results, {len(errors)} error bodies); "
         f"envelopes and error codes {'all alike' if envelope_ok else 'DIFFER'}."),
        (f"Recorded fields (distinct command + field path): {len(fields)}; same name and JSON type: "
         f"{count(fields, MATCHED)}; allowed differences: {count(fields, ALLOWED)}; failures: {count(fields, FAILED)}."),
    ]
    lines += [f"  - {n}: {why}" for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    envelopes = _worst(f for f in cmp.findings if f.status == ALLOWED and f.kind in ("envelope", "extra", "missing")
                       and f.path.split(".")[0].endswith("response"))
    grouped: dict[str, list[str]] = defaultdict(list)
    for f in envelopes.values():
        grouped[f.detail.split(";")[0].strip()].append(f.path.split(".")[0].removesuffix("response"))
    lines.append(f"Envelope differences allowed: {len(envelopes)}.")
    lines += [f"  - {', '.join(sorted(where))}: {why}" for why, where in sorted(grouped.items())]
    lines += [
        (f"Simulator fields compared with the 4.11 listApis response lists: {len(extras)}; listed there with the "
         f"same type: {count(extras, MATCHED)}; allow-listed (newer servers, the real wire): {count(extras, ALLOWED)}; "
         f"failures: {count(extras, FAILED)}."),
        (f"Allow-lists: {len(ALLOW_MISSING)} absent fields, {len(ALLOW_TYPE)} types, {len(ALLOW_EXTRA)} extra "
         f"fields (tests/simulator/fidelity.py, each with its reason)."),
    ]
    lines += [f"FAILED {f.kind} {f.command} {f.path}: {f.detail} [{f.recording}]" for f in failed]
    return "\n".join(textwrap.fill(line, 116, subsequent_indent="    ", break_on_hyphens=False) for line in lines)


def main() -> None:
    recordings, cmp = measure()
    print(summary(recordings, cmp))


if __name__ == "__main__":
    main()
