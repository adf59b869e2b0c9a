"""VM handlers against a faked CloudStack: what is sent, and that every failure branch cleans up."""

from __future__ import annotations

import base64
import io
import itertools
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from cloudstack_cpi import errors, models, tags
from cloudstack_cpi.actions import vms
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.models import ServiceOffering
from cloudstack_cpi.cloudstack.vms import ComputeSize, expunge_refused
from cloudstack_cpi.context import CallContext
from cloudstack_cpi.log import Logger

URL = "http://cs.test/client/api"
TEMPLATE = "tpl-1"
MBUS_PASSWORD = "mbus-password-0123"


class FakeCloud:
    """Just enough CloudStack for the VM handlers: catalogue, VMs, volumes, public IPs, affinity groups.

    ``fail[command] = (errorcode, text)`` makes a command fail: async commands as a
    failed job (carrying the new resource's id), sync ones as an API error.  A
    ``fail`` value of ``"drop"`` processes the command and then loses the answer;
    ``"pending"`` leaves an async command's job running forever.
    """

    ASYNC = frozenset({
        "deployVirtualMachine", "startVirtualMachine", "rebootVirtualMachine", "destroyVirtualMachine",
        "createVolume", "attachVolume", "detachVolume", "createTags", "deleteTags", "disableStaticNat",
        "createAffinityGroup", "deleteAffinityGroup", "createLoadBalancerRule", "deleteLoadBalancerRule",
        "assignToLoadBalancerRule", "removeFromLoadBalancerRule", "createFirewallRule", "deleteFirewallRule",
    })

    def __init__(self, zone_type="Advanced", sg=False):
        self.calls: list[tuple[str, dict]] = []
        self.fail: dict[str, object] = {}
        self.ids = itertools.count(1)
        self.jobs: dict[str, dict] = {}
        self.zone = {"id": "zone-1-id", "name": "zone-1", "networktype": zone_type, "securitygroupsenabled": sg}
        self.offerings = [
            {"id": "so-small", "name": "small", "cpunumber": 1, "memory": 1024, "iscustomized": False},
            {"id": "so-medium", "name": "medium", "cpunumber": 2, "memory": 4096, "iscustomized": False},
            {"id": "so-custom", "name": "custom", "iscustomized": True},
        ]
        self.disk_offerings = [
            {"id": "do-10", "name": "disk-10", "disksize": 10, "iscustomized": False},
            {"id": "do-custom", "name": "shared.custom", "disksize": 0, "iscustomized": True},
        ]
        self.networks = [{"id": "net-iso", "name": "bosh-isolated"}, {"id": "net-sh", "name": "bosh-shared"}]
        self.groups = [{"id": "sg-default", "name": "default"}, {"id": "sg-bosh", "name": "bosh"}]
        self.ips = {"ip-1": {"id": "ip-1", "ipaddress": "203.0.113.10", "associatednetworkid": "net-iso",
                             "isstaticnat": False, "zoneid": "zone-1-id"},
                    "ip-2": {"id": "ip-2", "ipaddress": "203.0.113.11", "associatednetworkid": "net-iso",
                             "isstaticnat": False, "zoneid": "zone-1-id"}}
        self.rules: dict[str, dict] = {}
        self.firewall: dict[str, dict] = {}
        self.vms: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.affinity: dict[str, dict] = {}
        self.userdata: dict[str, str] = {}

    # -- plumbing

    def install(self, mock: responses.RequestsMock) -> None:
        for method in (responses.GET, responses.POST):
            mock.add_callback(method, URL, callback=self.answer)

    def answer(self, request):
        if request.method == "GET":
            query = urlsplit(request.url).query
        else:
            query = request.body if isinstance(request.body, str) else request.body.decode()
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        command = params.pop("command")
        for key in ("apiKey", "signature", "signatureVersion", "expires", "response"):
            params.pop(key, None)
        if command == "queryAsyncJobResult":
            return self._json(command, self.jobs[params["jobid"]])
        self.calls.append((command, params))
        failure = self.fail.get(command)
        if failure == "drop":
            getattr(self, command)(params)
            raise requests.exceptions.ReadTimeout("read timed out")
        if failure and command not in self.ASYNC:
            code, text = failure
            return code, {}, json.dumps({f"{command.lower()}response": {"errorcode": code, "errortext": text}})
        if failure and failure != "pending" and command.startswith(("destroy", "delete", "detach", "remove")):
            result = {"_instance": params.get("id")}  # a failed removal leaves the resource as it was
        else:
            result = getattr(self, command)(params)
        if isinstance(result, tuple):  # (errorcode, text): refused before any job starts
            code, text = result
            return code, {}, json.dumps({f"{command.lower()}response": {"errorcode": code, "errortext": text}})
        if command not in self.ASYNC:
            return self._json(command, result)
        jobid = f"job-{next(self.ids)}"
        instance = (result.pop("_instance", None) if isinstance(result, dict) else None)
        if failure == "pending":
            self.jobs[jobid] = {"jobid": jobid, "jobstatus": 0, "jobinstanceid": instance}
        elif failure:
            code, text = failure
            self.jobs[jobid] = {"jobid": jobid, "jobstatus": 2, "jobresultcode": code, "jobinstanceid": instance,
                                "jobresult": {"errorcode": code, "errortext": text}}
        else:
            self.jobs[jobid] = {"jobid": jobid, "jobstatus": 1, "jobresultcode": 0, "jobinstanceid": instance,
                                "jobresult": result}
        return self._json(command, {"jobid": jobid, **({"id": instance} if instance else {})})

    @staticmethod
    def _json(command, inner):
        return 200, {}, json.dumps({f"{command.lower()}response": inner})

    @staticmethod
    def _list(key, items):
        return {"count": len(items), key: items} if items else {}

    def commands(self):
        return [command for command, _ in self.calls]

    def params(self, command):
        return [params for name, params in self.calls if name == command]

    def mutations(self):
        return [c for c in self.commands() if not c.startswith(("list", "get"))]

    # -- catalogue

    def listZones(self, p):
        return self._list("zone", [self.zone])

    def listServiceOfferings(self, p):
        return self._list("serviceoffering", self.offerings)

    def listDiskOfferings(self, p):
        return self._list("diskoffering", self.disk_offerings)

    def listTemplates(self, p):
        template = {"id": TEMPLATE, "name": "stemcell", "isready": True, "hypervisor": "KVM", "zoneid": p.get("zoneid")}
        return self._list("template", [template] if p.get("id") == TEMPLATE else [])

    def listNetworks(self, p):
        return self._list("network", self.networks)

    def listSecurityGroups(self, p):
        return self._list("securitygroup", self.groups)

    def listSSHKeyPairs(self, p):
        return self._list("sshkeypair", [{"name": "bosh"}])

    def listPublicIpAddresses(self, p):
        items = list(self.ips.values())
        if "id" in p:
            items = [ip for ip in items if ip["id"] == p["id"]]
        if p.get("isstaticnat") == "true":
            items = [ip for ip in items if ip["isstaticnat"]]
        return self._list("publicipaddress", [dict(ip) for ip in items])

    # -- affinity groups

    def listAffinityGroups(self, p):
        items = [g for g in self.affinity.values() if p.get("name") in (None, g["name"]) and p.get("id") in (None, g["id"])]
        for group in items:
            group["virtualmachineIds"] = [vm["id"] for vm in self.vms.values() if group["id"] in vm["_groups"]]
        return self._list("affinitygroup", items)

    def createAffinityGroup(self, p):
        gid = f"ag-{next(self.ids)}"
        self.affinity[gid] = {"id": gid, "name": p["name"], "type": p["type"]}
        return {"affinitygroup": self.affinity[gid], "_instance": gid}

    def deleteAffinityGroup(self, p):
        self.affinity.pop(p["id"])
        return {"success": True}

    # -- VMs

    def deployVirtualMachine(self, p):
        vm_id = f"vm-id-{next(self.ids)}"
        nics = []
        i = 0
        while f"iptonetworklist[{i}].networkid" in p:
            nics.append({"deviceid": str(i), "networkid": p[f"iptonetworklist[{i}].networkid"],
                         "ipaddress": p.get(f"iptonetworklist[{i}].ip") or f"10.2.0.{50 + i}",
                         "netmask": "255.255.255.0", "gateway": "10.2.0.1", "macaddress": f"02:00:00:00:00:{i:02x}"})
            i += 1
        if not nics:
            nics.append({"deviceid": "0", "networkid": "guest", "ipaddress": p.get("ipaddress") or "192.168.100.20",
                         "netmask": "255.255.255.0", "gateway": "192.168.100.1", "macaddress": "02:00:00:00:00:aa"})
        vm = {"id": vm_id, "name": p["name"], "displayname": p.get("displayname"), "state": "Stopped",
              "hypervisor": "KVM", "zoneid": self.zone["id"], "nic": nics, "tags": [],
              "_groups": p.get("affinitygroupids", "").split(",") if p.get("affinitygroupids") else []}
        self.vms[vm_id] = vm
        return {"virtualmachine": self._vm(vm), "_instance": vm_id}

    def _vm(self, vm):
        return {k: v for k, v in vm.items() if not k.startswith("_")}

    def listVirtualMachines(self, p):
        items = [vm for vm in self.vms.values() if vm["state"] not in ("Destroyed", "Expunging")]
        if "id" in p:
            items = [vm for vm in items if vm["id"] == p["id"]]
        if "name" in p:
            items = [vm for vm in items if vm["name"] == p["name"]]
        return self._list("virtualmachine", [self._vm(vm) for vm in items])

    def updateVirtualMachine(self, p):
        vm = self.vms[p["id"]]
        if "userdata" in p:
            self.userdata[p["id"]] = p["userdata"]
        if "displayname" in p:
            vm["displayname"] = p["displayname"]
        return {"virtualmachine": self._vm(vm)}

    def startVirtualMachine(self, p):
        vm = self.vms[p["id"]]
        vm["state"] = "Running"
        return {"virtualmachine": self._vm(vm), "_instance": vm["id"]}

    def rebootVirtualMachine(self, p):
        return {"virtualmachine": self._vm(self.vms[p["id"]]), "_instance": p["id"]}

    def destroyVirtualMachine(self, p):
        vm = self.vms.pop(p["id"])
        for volume in self.volumes.values():
            if volume.get("virtualmachineid") == vm["id"]:
                volume.pop("virtualmachineid")
        for ip in self.ips.values():
            if ip.get("virtualmachineid") == vm["id"]:
                ip.update(isstaticnat=False, virtualmachineid=None)
        return {"virtualmachine": {**self._vm(vm), "state": "Expunging"}, "_instance": vm["id"]}

    def _taggable(self, resource_type):
        return {"UserVm": self.vms, "Volume": self.volumes, "LoadBalancer": self.rules,
                "FirewallRule": self.firewall}[resource_type]

    def createTags(self, p):
        target = self._taggable(p["resourcetype"])
        i = 0
        while f"tags[{i}].key" in p:
            target[p["resourceids"]]["tags"].append({"key": p[f"tags[{i}].key"], "value": p[f"tags[{i}].value"]})
            i += 1
        return {"success": True}

    def deleteTags(self, p):
        target = self._taggable(p["resourcetype"])
        keys = {p[k] for k in p if k.endswith(".key")}
        resource = target[p["resourceids"]]
        resource["tags"] = [t for t in resource["tags"] if t["key"] not in keys]
        return {"success": True}

    # -- volumes

    def createVolume(self, p):
        vid = f"vol-{next(self.ids)}-0000-0000-0000-000000000000"
        self.volumes[vid] = {"id": vid, "name": p["name"], "type": "DATADISK", "state": "Allocated", "tags": [],
                             "zoneid": p["zoneid"], "diskofferingid": p["diskofferingid"], "size": p.get("size")}
        return {"volume": dict(self.volumes[vid]), "_instance": vid}

    def attachVolume(self, p):
        volume = self.volumes[p["id"]]
        volume.update(virtualmachineid=p["virtualmachineid"], deviceid=1, state="Ready")
        return {"volume": dict(volume), "_instance": volume["id"]}

    def detachVolume(self, p):
        self.volumes[p["id"]].pop("virtualmachineid", None)
        return {"volume": dict(self.volumes[p["id"]])}

    def deleteVolume(self, p):
        self.volumes.pop(p["id"])
        return {"success": True}

    def listVolumes(self, p):
        items = list(self.volumes.values())
        if "id" in p:
            items = [v for v in items if v["id"] == p["id"]]
        if "virtualmachineid" in p:
            items = [v for v in items if v.get("virtualmachineid") == p["virtualmachineid"]]
        return self._list("volume", [dict(v) for v in items])

    # -- static NAT

    def enableStaticNat(self, p):
        self.ips[p["ipaddressid"]].update(isstaticnat=True, virtualmachineid=p["virtualmachineid"])
        return {"success": True}

    def disableStaticNat(self, p):
        self.ips[p["ipaddressid"]].update(isstaticnat=False, virtualmachineid=None)
        return {"success": True}


    # -- load balancer and firewall rules

    def listLoadBalancerRules(self, p):
        items = list(self.rules.values())
        for key in ("id", "publicipid", "name"):
            if key in p:
                items = [r for r in items if r[key] == p[key]]
        if "virtualmachineid" in p:
            items = [r for r in items if p["virtualmachineid"] in r["_vms"]]
        return self._list("loadbalancerrule", [self._vm(r) for r in items])

    def createLoadBalancerRule(self, p):
        if any(r["publicipid"] == p["publicipid"] and r["publicport"] == p["publicport"] for r in self.rules.values()):
            return 537, f"The range specified, {p['publicport']}, conflicts with an existing rule"
        rid = f"lb-{next(self.ids)}"
        self.rules[rid] = {"id": rid, "name": p["name"], "publicipid": p["publicipid"],
                           "publicip": self.ips[p["publicipid"]]["ipaddress"], "publicport": p["publicport"],
                           "privateport": p["privateport"], "algorithm": p["algorithm"],
                           "networkid": p.get("networkid"), "tags": [], "_vms": [], "_openfirewall": p.get("openfirewall")}
        return {"loadbalancer": self._vm(self.rules[rid]), "_instance": rid}

    def deleteLoadBalancerRule(self, p):
        if p["id"] not in self.rules:
            return 431, f"Unable to find load balancer rule {p['id']}"
        self.rules.pop(p["id"])
        return {"success": True}

    def assignToLoadBalancerRule(self, p):
        if p["id"] not in self.rules:
            return 431, f"Unable to find load balancer rule {p['id']}"
        self.rules[p["id"]]["_vms"].append(p["virtualmachineids"])
        return {"success": True}

    def removeFromLoadBalancerRule(self, p):
        self.rules[p["id"]]["_vms"].remove(p["virtualmachineids"])
        return {"success": True}

    def listLoadBalancerRuleInstances(self, p):
        members = [self._vm(self.vms[v]) for v in self.rules[p["id"]]["_vms"] if v in self.vms]
        return self._list("loadbalancerruleinstance", members)

    def createFirewallRule(self, p):
        if any(f["ipaddressid"] == p["ipaddressid"] and f["startport"] == p["startport"] for f in self.firewall.values()):
            return 537, "conflicts with an existing firewall rule"
        fid = f"fw-{next(self.ids)}"
        self.firewall[fid] = {"id": fid, "ipaddressid": p["ipaddressid"], "protocol": p["protocol"],
                              "startport": p["startport"], "endport": p["endport"], "tags": []}
        return {"firewallrule": dict(self.firewall[fid]), "_instance": fid}

    def deleteFirewallRule(self, p):
        self.firewall.pop(p["id"])
        return {"success": True}

    def listFirewallRules(self, p):
        items = list(self.firewall.values())
        for key in ("id", "ipaddressid"):
            if key in p:
                items = [f for f in items if f[key] == p[key]]
        return self._list("firewallrule", [dict(f) for f in items])


@pytest.fixture
def cloud():
    fake = FakeCloud()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        yield fake


def make_ctx(tmp_path, api_version=2, **cloudstack):
    path = tmp_path / "cpi.json"
    path.write_text(json.dumps({
        "cloudstack": {"endpoint": URL, "api_key": "key", "secret_access_key": "secret-key-0123",
                       "default_zone": "zone-1", "default_key_name": "bosh", "api_retries": 1, **cloudstack},
        "agent": {"mbus": f"nats://nats:{MBUS_PASSWORD}@10.0.0.6:4222", "ntp": ["0.pool.ntp.org"]},
    }))
    stream = io.StringIO()
    ctx = CallContext(method="create_vm", api_version=api_version, context={"director_uuid": "dir-1"},
                      config_path=str(path), log=Logger(stream=stream, level="debug"))
    ctx.client.sleep = lambda seconds: None
    ctx.stderr = stream
    return ctx


@pytest.fixture
def ctx(tmp_path):
    context = make_ctx(tmp_path)
    yield context
    context.close()


NETWORKS = {"default": {"type": "manual", "ip": "10.1.0.10", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.2"], "default": ["dns", "gateway"],
                        "cloud_properties": {"name": "bosh-isolated"}}}
ENV = {"bosh": {"group": "zookeeper", "password": "env-password-hash-0123"}}


def create(ctx, props=None, networks=None, disks=None, env=None):
    return vms.create_vm(ctx, "agent-1", TEMPLATE, {"compute_offering": "small", **(props or {})},
                         networks or NETWORKS, disks, env if env is not None else ENV)


def user_data(cloud, vm_id):
    return json.loads(base64.b64decode(cloud.userdata[vm_id], validate=True))


# -- create_vm: the happy path --------------------------------------------------------------------------------


def test_create_vm_deploys_stopped_sets_user_data_then_starts(cloud, ctx):
    vm_id, networks = create(ctx, {"disk": 3000, "root_disk_size": 15_000})
    deploy = cloud.params("deployVirtualMachine")[0]
    assert deploy["startvm"] == "false" and deploy["keypair"] == "bosh" and deploy["rootdisksize"] == "15"
    assert deploy["iptonetworklist[0].networkid"] == "net-iso" and deploy["iptonetworklist[0].ip"] == "10.1.0.10"
    assert deploy["name"].startswith("vm-") and deploy["serviceofferingid"] == "so-small"
    assert cloud.mutations().index("updateVirtualMachine") < cloud.mutations().index("startVirtualMachine")
    assert networks == NETWORKS
    settings = user_data(cloud, vm_id)
    assert settings["agent_id"] == "agent-1" and settings["vm"]["name"] == deploy["name"]
    assert settings["networks"]["default"]["mac"] == cloud.vms[vm_id]["nic"][0]["macaddress"]
    volume = next(iter(cloud.volumes.values()))
    assert volume["virtualmachineid"] == vm_id and volume["size"] == "3"
    assert {"key": "cpi_role", "value": "ephemeral"} in volume["tags"]
    assert settings["disks"]["ephemeral"] == {"path": "/dev/disk/by-id/virtio-" + volume["id"].replace("-", "")[:20], "volume_id": "1"}
    assert {"key": "agent_id", "value": "agent-1"} in cloud.vms[vm_id]["tags"]
    assert {"key": "director_uuid", "value": "dir-1"} in cloud.vms[vm_id]["tags"]
    log = ctx.stderr.getvalue()
    assert MBUS_PASSWORD not in log and "env-password-hash" not in log and cloud.userdata[vm_id] not in log


def test_create_vm_v1_answers_the_bare_cid(cloud, tmp_path):
    """The action answers [vm_cid, networks]; rpc answers a v1 caller the bare cid (shapes live in rpc only)."""
    from cloudstack_cpi import rpc

    ctx = make_ctx(tmp_path, api_version=1)
    answer = create(ctx)
    assert rpc.answer_for_version("create_vm", answer, 1) == answer[0] and isinstance(answer[0], str)
    assert rpc.answer_for_version("create_vm", answer, 2) == answer


def test_create_vm_customized_offering_sends_details(cloud, ctx):
    create(ctx, {"compute_offering": "custom", "cpu": 2, "ram": 3072})
    deploy = cloud.params("deployVirtualMachine")[0]
    assert (deploy["details[0].cpuNumber"], deploy["details[0].cpuSpeed"], deploy["details[0].memory"]) == \
        ("2", "2000", "3072")


def test_create_vm_customized_offering_without_sizes_is_refused_before_creating(cloud, ctx):
    with pytest.raises(errors.CloudError, match="Compute offering 'custom' is customized: set ram"):
        create(ctx, {"compute_offering": "custom", "cpu": 2})
    assert cloud.mutations() == []


@pytest.mark.parametrize("props, message", [
    ({"compute_offering": "huge"}, "Compute offering 'huge' not found \\(available: custom, medium, small\\)"),
    ({"availability_zone": "zone-9"}, "Zone 'zone-9' not found \\(available: zone-1\\)"),
    ({"disk": 20_000, "ephemeral_disk_offering": "disk-10"}, "Disk offering 'disk-10' has 10 GiB"),
    ({"security_groups": ["bosh"]}, "does not have security groups enabled"),
    ({"key_name": "nope"}, "Key pair 'nope' not found"),
])
def test_configuration_mistakes_are_cloud_errors_before_anything_is_created(cloud, ctx, props, message):
    with pytest.raises(errors.CloudError, match=message) as raised:
        create(ctx, props)
    assert raised.value.message.startswith("Creating VM for agent 'agent-1': ")
    assert type(raised.value) is errors.CloudError
    assert cloud.mutations() == []


def test_unknown_stemcell_is_named(cloud, ctx):
    with pytest.raises(errors.CloudError, match="Stemcell 'tpl-9' \\(a template\\) not found in zone 'zone-1'"):
        vms.create_vm(ctx, "agent-1", "tpl-9", {"compute_offering": "small"}, NETWORKS, [], {})


def test_missing_public_ip_is_refused_before_creating(cloud, ctx):
    networks = {**NETWORKS, "public": {"type": "vip", "ip": "198.51.100.99", "cloud_properties": {}}}
    with pytest.raises(errors.CloudError, match="Public IP 198.51.100.99 of vip network 'public' is not allocated"
                                                ".*\\(allocated: 203.0.113.10, 203.0.113.11\\)"):
        create(ctx, networks=networks)
    assert cloud.mutations() == []


def test_user_data_over_the_limit_fails_before_creating(cloud, tmp_path):
    ctx = make_ctx(tmp_path, user_data_limit=2048)
    with pytest.raises(errors.CloudError, match="Agent settings are \\d+ bytes over the user data limit"):
        create(ctx, env={"bosh": {"blob": "x" * 2000}})
    assert cloud.mutations() == []


def test_vip_moves_static_nat_from_the_previous_vm(cloud, ctx):
    cloud.ips["ip-1"].update(isstaticnat=True, virtualmachineid="old-vm")
    networks = {**NETWORKS, "public": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}}}
    vm_id, _ = create(ctx, networks=networks)
    assert cloud.mutations()[-2:] == ["disableStaticNat", "enableStaticNat"]
    assert cloud.ips["ip-1"]["virtualmachineid"] == vm_id
    assert cloud.params("enableStaticNat")[0]["networkid"] == "net-iso"


def test_disk_locality_picks_the_zone_and_refuses_a_different_availability_zone(cloud, ctx):
    cloud.volumes["disk-1"] = {"id": "disk-1", "type": "DATADISK", "state": "Ready", "zoneid": "zone-1-id",
                               "zonename": "zone-1", "tags": []}
    cloud.zone["id"] = "zone-1-id"
    vm_id, _ = create(ctx, disks=["disk-1"])
    assert cloud.params("deployVirtualMachine")[0]["zoneid"] == "zone-1-id"
    cloud.volumes["disk-1"]["zoneid"] = "elsewhere"
    cloud.volumes["disk-1"]["zonename"] = "zone-2"
    with pytest.raises(errors.CloudError, match="availability_zone is 'zone-1' but persistent disk 'disk-1' is in zone 'zone-2'"):
        create(ctx, {"availability_zone": "zone-1"}, disks=["disk-1"])


def test_auto_anti_affinity_group_is_created_and_joined(cloud, tmp_path):
    ctx = make_ctx(tmp_path, enable_auto_anti_affinity=True)
    create(ctx)
    group = next(iter(cloud.affinity.values()))
    assert group["name"] == "dir-1-zookeeper" and group["type"] == "host anti-affinity"
    assert cloud.params("deployVirtualMachine")[0]["affinitygroupids"] == group["id"]
    create(ctx)  # the second VM of the group finds it
    assert len(cloud.affinity) == 1 and cloud.commands().count("createAffinityGroup") == 1


# -- create_vm: failures clean up -----------------------------------------------------------------------------


def assert_nothing_left(cloud):
    assert cloud.vms == {}
    assert cloud.volumes == {}
    assert not any(ip["isstaticnat"] for ip in cloud.ips.values())


def test_capacity_failure_of_deploy_is_retryable_and_destroys_the_vm_record(cloud, ctx):
    cloud.fail["deployVirtualMachine"] = (533, "Unable to create a deployment for VM")
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx)
    assert raised.value.ok_to_retry is True
    assert "errorcode 533" in raised.value.message
    assert cloud.params("destroyVirtualMachine")[0]["expunge"] == "true"
    assert_nothing_left(cloud)


def test_capacity_failure_on_start_removes_vm_and_ephemeral_disk(cloud, ctx):
    cloud.fail["startVirtualMachine"] = (533, "Insufficient capacity")
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx, {"disk": 2048})
    assert raised.value.ok_to_retry is True
    assert cloud.mutations()[-2:] == ["destroyVirtualMachine", "deleteVolume"]
    assert_nothing_left(cloud)


def test_attach_failure_removes_volume_and_vm(cloud, ctx):
    cloud.fail["attachVolume"] = (431, "maximum number of data disks")
    with pytest.raises(errors.CloudError) as raised:
        create(ctx, {"disk": 2048})
    assert type(raised.value) is errors.CloudError and "maximum number of data disks" in raised.value.message
    assert_nothing_left(cloud)


def test_static_nat_failure_undoes_everything(cloud, ctx):
    cloud.fail["enableStaticNat"] = (537, "conflict")
    networks = {**NETWORKS, "public": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}}}
    with pytest.raises(errors.CloudError, match="conflict"):
        create(ctx, {"disk": 2048}, networks=networks)
    assert_nothing_left(cloud)


def test_failure_deletes_the_affinity_group_it_created(cloud, ctx):
    cloud.fail["startVirtualMachine"] = (530, "internal error")
    with pytest.raises(errors.VMCreationFailed):
        create(ctx, {"affinity_group": "my-group"})
    assert cloud.affinity == {}
    assert "deleteAffinityGroup" in cloud.commands()


def test_failure_keeps_an_affinity_group_it_did_not_create(cloud, ctx):
    cloud.affinity["ag-0"] = {"id": "ag-0", "name": "my-group", "type": "host anti-affinity"}
    cloud.fail["startVirtualMachine"] = (530, "internal error")
    with pytest.raises(errors.VMCreationFailed):
        create(ctx, {"affinity_group": "my-group"})
    assert "ag-0" in cloud.affinity and "deleteAffinityGroup" not in cloud.commands()


def test_lost_deploy_answer_finds_the_vm_by_name_and_destroys_it(cloud, ctx):
    cloud.fail["deployVirtualMachine"] = "drop"
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx)
    assert raised.value.ok_to_retry is True
    name = cloud.params("deployVirtualMachine")[0]["name"]
    assert any(p.get("name") == name for p in cloud.params("listVirtualMachines"))
    assert cloud.mutations() == ["deployVirtualMachine", "destroyVirtualMachine"]
    assert_nothing_left(cloud)


def test_start_job_timeout_is_retryable_and_cleans_up(cloud, tmp_path):
    ctx = make_ctx(tmp_path, timeout={"create_vm": 0.01})
    cloud.fail["startVirtualMachine"] = "pending"
    with pytest.raises(errors.VMCreationFailed, match="did not finish within 0.01s") as raised:
        create(ctx, {"disk": 1024})
    assert raised.value.ok_to_retry is True
    assert_nothing_left(cloud)


def test_vm_that_does_not_reach_running_is_retryable_and_cleaned_up(cloud, ctx, monkeypatch):
    def start_but_stay_stopped(p):
        return {"virtualmachine": cloud._vm(cloud.vms[p["id"]]), "_instance": p["id"]}
    monkeypatch.setattr(cloud, "startVirtualMachine", start_but_stay_stopped)
    with pytest.raises(errors.VMCreationFailed, match="did not reach Running \\(state Stopped\\)") as raised:
        create(ctx)
    assert raised.value.ok_to_retry is True
    assert_nothing_left(cloud)


def test_user_data_refused_by_the_cloud_explains_the_setting(cloud, ctx):
    cloud.fail["updateVirtualMachine"] = (431, "User data has exceeded configurable max length : 4096")
    with pytest.raises(errors.CloudError, match="must not exceed the cloud's vm.userdata.max.length"):
        create(ctx)
    assert_nothing_left(cloud)


def test_cleanup_failure_is_reported_with_the_leftover(cloud, ctx):
    cloud.fail["startVirtualMachine"] = (533, "no capacity")
    cloud.fail["destroyVirtualMachine"] = (530, "stuck")
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx)
    assert "could not remove: VM vm-id-" in raised.value.message
    assert list(cloud.vms) == [raised.value.message.split("could not remove: VM ")[1].rstrip(")")]


def test_lost_ephemeral_volume_answer_finds_the_volume_by_name_and_removes_it(cloud, ctx):
    cloud.fail["createVolume"] = "drop"  # made, but the answer never arrives
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx, {"disk": 2048})
    assert raised.value.ok_to_retry is True and "createVolume: no answer" in raised.value.message
    assert cloud.commands().count("createVolume") == 1
    name = cloud.params("createVolume")[0]["name"]
    assert name.endswith("-ephemeral") and any(p.get("name") == name for p in cloud.params("listVolumes"))
    assert "Cleaned up volume vol-" in ctx.stderr.getvalue()
    assert_nothing_left(cloud)


def test_lost_static_nat_answer_is_looked_up_not_sent_again(cloud, ctx):
    cloud.fail["enableStaticNat"] = "drop"
    networks = {**NETWORKS, "public": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}}}
    vm_id, _ = create(ctx, networks=networks)
    assert cloud.commands().count("enableStaticNat") == 1 and cloud.ips["ip-1"]["virtualmachineid"] == vm_id
    assert f"but it points to VM '{vm_id}' now" in ctx.stderr.getvalue()


def test_static_nat_released_meanwhile_is_moved_all_the_same(cloud, ctx, monkeypatch):
    """Disabling the static NAT of an IP that no longer points to its VM is done (the gateway looks after a
    refusal): here another call released it between this call's look and its disableStaticNat."""
    cloud.ips["ip-1"].update(isstaticnat=True, virtualmachineid="old-vm")

    def released_meanwhile(p):
        cloud.ips[p["ipaddressid"]].update(isstaticnat=False, virtualmachineid=None)
        return 431, "Specified IP address id is not associated with any vm Id"
    monkeypatch.setattr(cloud, "disableStaticNat", released_meanwhile)
    networks = {**NETWORKS, "public": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}}}
    vm_id, _ = create(ctx, networks=networks)
    assert cloud.ips["ip-1"]["virtualmachineid"] == vm_id
    assert "Static NAT of 203.0.113.10 went meanwhile" in ctx.stderr.getvalue()


# -- delete_vm / has_vm / reboot_vm / set_vm_metadata ---------------------------------------------------------


def test_delete_vm_expunges_which_releases_nat_and_deletes_only_the_ephemeral_disk(cloud, ctx):
    """No disableStaticNat first: the expunge disables the VM's static NAT itself (UserVmManagerImpl
    .cleanupVmResources, "Disabled 1-1 NAT for IP address ... as a part of ... expunge"; the fake does too)."""
    networks = {**NETWORKS, "public": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}}}
    vm_id, _ = create(ctx, {"disk": 2048}, networks=networks)
    cloud.volumes["persistent"] = {"id": "persistent", "type": "DATADISK", "state": "Ready", "tags": [],
                                   "virtualmachineid": vm_id}
    cloud.calls.clear()
    assert vms.delete_vm(ctx, vm_id) is None
    assert cloud.mutations() == ["destroyVirtualMachine", "deleteVolume"]
    assert not any(ip["isstaticnat"] for ip in cloud.ips.values())
    assert "listLoadBalancerRules" not in cloud.commands()  # created without lbs: no rule to leave
    assert cloud.params("destroyVirtualMachine")[0]["expunge"] == "true"
    assert list(cloud.volumes) == ["persistent"] and "virtualmachineid" not in cloud.volumes["persistent"]
    assert vms.has_vm(ctx, vm_id) is False
    cloud.calls.clear()
    assert vms.delete_vm(ctx, vm_id) is None
    assert cloud.mutations() == []


def test_delete_vm_without_expunge_detaches_disks_first(cloud, tmp_path):
    ctx = make_ctx(tmp_path, expunge_vm=False)
    vm_id, _ = create(ctx, {"disk": 2048})
    cloud.volumes["persistent"] = {"id": "persistent", "type": "DATADISK", "state": "Ready", "tags": [],
                                   "virtualmachineid": vm_id}
    cloud.calls.clear()
    vms.delete_vm(ctx, vm_id)
    assert cloud.mutations() == ["detachVolume", "detachVolume", "destroyVirtualMachine", "deleteVolume"]
    assert cloud.params("destroyVirtualMachine")[0]["expunge"] == "false"
    assert list(cloud.volumes) == ["persistent"]


class _FailOnce(dict):
    """FakeCloud.fail whose entries fail one request each."""

    def get(self, key, default=None):
        return self.pop(key, default)


EXPUNGE_REFUSED = "Parameter expunge can be passed by Admin only. Or when the allow.user.expunge.recover.vm key is set."


def test_delete_vm_refused_expunge_detaches_destroys_and_explains_once(cloud, ctx):
    vm_id, _ = create(ctx, {"disk": 2048})
    cloud.volumes["persistent"] = {"id": "persistent", "type": "DATADISK", "state": "Ready", "tags": [],
                                   "virtualmachineid": vm_id}
    cloud.fail = _FailOnce(destroyVirtualMachine=(530, EXPUNGE_REFUSED))
    cloud.calls.clear()
    vms.delete_vm(ctx, vm_id)
    assert cloud.mutations() == ["destroyVirtualMachine", "detachVolume", "detachVolume", "destroyVirtualMachine",
                                 "deleteVolume"]
    assert [p["expunge"] for p in cloud.params("destroyVirtualMachine")] == ["true", "false"]
    assert list(cloud.volumes) == ["persistent"] and "virtualmachineid" not in cloud.volumes["persistent"]
    log = ctx.stderr.getvalue()
    assert log.count("refused to expunge") == 1 and "allow.user.expunge.recover.vm" in log


def test_delete_vm_of_a_gone_vm_deletes_the_ephemeral_disk_left_behind(cloud, ctx):
    vm_id, _ = create(ctx, {"disk": 2048})
    (volume_id, volume), = cloud.volumes.items()
    assert {"key": tags.VM_KEY, "value": vm_id} in volume["tags"]
    cloud.volumes["other"] = {"id": "other", "type": "DATADISK", "state": "Ready", "tags": [
        {"key": "cpi_role", "value": "ephemeral"}, {"key": tags.VM_KEY, "value": "another-vm"}]}
    cloud.destroyVirtualMachine({"id": vm_id})   # an earlier delete_vm got this far
    cloud.calls.clear()
    assert vms.delete_vm(ctx, vm_id) is None
    assert cloud.mutations() == ["deleteVolume"] and list(cloud.volumes) == ["other"]


@pytest.mark.parametrize("kind, errorcode, text, refused", [
    ("job", 530, EXPUNGE_REFUSED, True),                                            # 4.x
    ("job", 530, "Account does not have permission for expunging.", True),          # since apache/cloudstack#8689
    ("job", 530, "Failed to expunge vm VM instance {\"id\": 7}", False),
    ("job", 530, "Internal error executing command, please contact your system administrator", False),
    ("api", 531, EXPUNGE_REFUSED, False),
])
def test_only_the_refusal_to_expunge_is_recognised(kind, errorcode, text, refused):
    err = CloudStackError("destroyVirtualMachine", text, kind=kind, errorcode=errorcode)
    assert expunge_refused(err) is refused


def test_has_vm_for_unknown_and_destroyed_vms(cloud, ctx):
    assert vms.has_vm(ctx, "no-such-vm") is False
    cloud.vms["gone"] = {"id": "gone", "state": "Destroyed", "nic": [], "tags": [], "_groups": []}
    assert vms.has_vm(ctx, "gone") is False


def test_reboot_vm_reboots_running_and_starts_stopped(cloud, ctx):
    cloud.vms["v1"] = {"id": "v1", "state": "Running", "nic": [], "tags": [], "_groups": []}
    vms.reboot_vm(ctx, "v1")
    cloud.vms["v1"]["state"] = "Stopped"
    vms.reboot_vm(ctx, "v1")
    assert cloud.mutations() == ["rebootVirtualMachine", "startVirtualMachine"]
    with pytest.raises(errors.VMNotFound, match="Rebooting VM 'v9': VM 'v9' not found"):
        vms.reboot_vm(ctx, "v9")


def test_reboot_vm_that_stays_stopped_is_a_cloud_error(cloud, ctx, monkeypatch):
    cloud.vms["v1"] = {"id": "v1", "state": "Stopped", "nic": [], "tags": [], "_groups": []}
    monkeypatch.setattr(cloud, "startVirtualMachine",
                        lambda p: {"virtualmachine": cloud._vm(cloud.vms[p["id"]]), "_instance": p["id"]})
    with pytest.raises(errors.CloudError, match="Rebooting VM 'v1': VM 'v1' did not reach Running \\(state Stopped\\)") \
            as raised:
        vms.reboot_vm(ctx, "v1")
    assert type(raised.value) is errors.CloudError


def test_reboot_vm_waits_for_a_vm_on_its_way_to_a_state(cloud, ctx, monkeypatch):
    cloud.vms["v1"] = {"id": "v1", "state": "Stopping", "nic": [], "tags": [], "_groups": []}
    original = cloud.listVirtualMachines

    def arrive(p):
        answer = original(p)
        cloud.vms["v1"]["state"] = "Stopped"  # the next look sees it stopped
        return answer
    monkeypatch.setattr(cloud, "listVirtualMachines", arrive)
    vms.reboot_vm(ctx, "v1")
    assert cloud.commands() == ["listVirtualMachines", "listVirtualMachines", "startVirtualMachine"]


def test_reboot_vm_of_a_vm_that_stays_on_its_way_is_retryable(cloud, tmp_path):
    ctx = make_ctx(tmp_path, timeout={"reboot_vm": 0.05})
    cloud.vms["v1"] = {"id": "v1", "state": "Migrating", "nic": [], "tags": [], "_groups": []}
    with pytest.raises(errors.CloudError, match="Rebooting VM 'v1': VM is still Migrating after 0.05s") as raised:
        vms.reboot_vm(ctx, "v1")
    assert raised.value.ok_to_retry is True and cloud.mutations() == []


def test_set_vm_metadata_tags_changes_only_and_names_the_vm(cloud, ctx):
    cloud.vms["v1"] = {"id": "v1", "state": "Running", "nic": [], "displayname": "vm-x", "_groups": [],
                       "tags": [{"key": "deployment", "value": "old"}, {"key": "agent_id", "value": "a"}]}
    vms.set_vm_metadata(ctx, "v1", {"deployment": "cf", "job": "router", "index": "0", "name": "router/abc-1"})
    assert cloud.mutations() == ["deleteTags", "createTags", "updateVirtualMachine"]
    assert cloud.vms["v1"]["displayname"] == "router/abc-1"
    assert {t["key"]: t["value"] for t in cloud.vms["v1"]["tags"]} == \
        {"agent_id": "a", "deployment": "cf", "job": "router", "index": "0", "name": "router/abc-1"}
    cloud.calls.clear()
    vms.set_vm_metadata(ctx, "v1", {"deployment": "cf", "name": "router/abc-1"})
    assert cloud.mutations() == []
    with pytest.raises(errors.VMNotFound):
        vms.set_vm_metadata(ctx, "v9", {"name": "x"})


@pytest.mark.parametrize("metadata, name", [
    ({"name": "router/6c0e"}, "router/6c0e"),
    ({"job": "router", "index": "2"}, "router/2"),
    ({"instance_group": "db", "index": 0}, "db/0"),
    ({"compiling": "golang-1.21"}, "compiling/golang-1.21"),
    ({"name": "we\nird\t<name>;"}, "we-ird-name-"),
    ({"name": "x" * 300}, "x" * 255),
    ({"deployment": "cf"}, None),
])
def test_display_name(metadata, name):
    assert vms.display_name(metadata) == name


# -- calculate_vm_cloud_properties ----------------------------------------------------------------------------


OFFERINGS = [ServiceOffering.from_api(row) for row in (
    {"id": "1", "name": "big-mem", "cpunumber": 1, "memory": 16384},
    {"id": "2", "name": "medium", "cpunumber": 2, "memory": 4096},
    {"id": "3", "name": "large", "cpunumber": 4, "memory": 8192},
    {"id": "4", "name": "custom", "iscustomized": True},
)]


@pytest.mark.parametrize("cpu, ram, chosen", [(1, 512, "medium"), (2, 4096, "medium"), (3, 4096, "large"),
                                              (1, 9000, "big-mem")])
def test_choose_offering_smallest_that_fits(cpu, ram, chosen):
    assert vms.choose_offering(OFFERINGS, cpu, ram).name == chosen


def test_choose_offering_names_the_largest_when_nothing_fits():
    with pytest.raises(errors.CloudError, match="No compute offering has 8 CPUs and 2048 MiB: the largest is 'big-mem'"):
        vms.choose_offering(OFFERINGS, 8, 2048)


def test_calculate_vm_cloud_properties_fixed_and_custom(cloud, tmp_path):
    ctx = make_ctx(tmp_path)
    assert vms.calculate_vm_cloud_properties(ctx, {"cpu": 2, "ram": 2048, "ephemeral_disk_size": 10_000}) == \
        {"compute_offering": "medium", "ephemeral_disk_offering": "shared.custom", "disk": 10_000}
    custom = make_ctx(tmp_path, default_offer={"custom_compute": "custom", "ephemeral_disk": "disk-10"})
    assert vms.calculate_vm_cloud_properties(custom, {"cpu": 3, "ram": 5000, "ephemeral_disk_size": 1024}) == \
        {"compute_offering": "custom", "cpu": 3, "ram": 5000, "ephemeral_disk_offering": "disk-10", "disk": 1024}
    with pytest.raises(errors.CloudError, match="Disk offering 'disk-10' has 10 GiB"):
        vms.calculate_vm_cloud_properties(custom, {"cpu": 1, "ram": 1, "ephemeral_disk_size": 20_000})
    with pytest.raises(errors.CloudError, match="vm_resources.ram must be an integer"):
        vms.calculate_vm_cloud_properties(ctx, {"cpu": 1, "ephemeral_disk_size": 0})


def test_custom_size_defaults_cpu_speed():
    props = models.VMCloudProperties.model_validate({"cpu": 4, "ram": 8192})
    custom = ServiceOffering.from_api({"id": "c", "name": "c", "iscustomized": True})
    assert vms.custom_size(custom, props) == ComputeSize(cpus=4, cpu_speed_mhz=2000, memory_mib=8192)
    assert vms.custom_size(ServiceOffering.from_api({"id": "s", "name": "s", "iscustomized": False}), props) is None
