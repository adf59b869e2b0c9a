"""Public IPs, static NAT, load balancer and firewall rules, tags."""
import pytest

from .helpers import ApiError, JobFailed


def test_public_ip_and_static_nat(api, sim):
    z = api.zone("zone-1")
    iso = api.network(z["id"], "bosh-isolated")
    pre = api.list("listPublicIpAddresses", "publicipaddress")
    assert sorted(i["ipaddress"] for i in pre) == ["198.51.100.10", "203.0.113.10", "203.0.113.11"]
    assert sim.inventory()["publicips"] == []       # scenario-preallocated ones excluded
    ip = api.acall("associateIpAddress", networkid=iso["id"])["ipaddress"]
    assert ip["state"] == "Allocated" and ip["associatednetworkid"] == iso["id"]
    assert sim.inventory()["publicips"] == [ip["id"]]
    vm = api.deploy()
    assert api.call("enableStaticNat", ipaddressid=ip["id"], virtualmachineid=vm["id"]) == {"success": True}
    got = api.list("listPublicIpAddresses", "publicipaddress", id=ip["id"])[0]
    assert got["isstaticnat"] and got["virtualmachineid"] == vm["id"] and got["vmipaddress"] == vm["nic"][0]["ipaddress"]
    assert [i["id"] for i in api.list("listPublicIpAddresses", "publicipaddress", isstaticnat="true")] == [ip["id"]]
    other = api.deploy()
    with pytest.raises(ApiError) as e:
        api.call("enableStaticNat", ipaddressid=ip["id"], virtualmachineid=other["id"])
    assert e.value.status == 537
    shared_vm = api.deploy(network="bosh-shared")
    ip2 = api.acall("associateIpAddress", networkid=iso["id"])["ipaddress"]
    with pytest.raises(ApiError):
        api.call("enableStaticNat", ipaddressid=ip2["id"], virtualmachineid=shared_vm["id"])
    assert sim.inventory()["staticnat"] == [ip["id"]]
    api.acall("disableStaticNat", ipaddressid=ip["id"])
    assert sim.inventory()["staticnat"] == []
    api.call("enableStaticNat", ipaddressid=ip["id"], virtualmachineid=vm["id"])
    api.acall("destroyVirtualMachine", id=vm["id"], expunge="true")
    assert sim.inventory()["staticnat"] == []
    api.acall("disassociateIpAddress", id=ip["id"])
    api.acall("disassociateIpAddress", id=ip2["id"])
    assert sim.inventory()["publicips"] == []
    free = api.list("listPublicIpAddresses", "publicipaddress", allocatedonly="false", zoneid=z["id"])
    assert len(free) == 31


def test_associate_by_zone_and_vip_use(api):
    z = api.zone("zone-2")
    ip = api.acall("associateIpAddress", zoneid=z["id"])["ipaddress"]
    assert "associatednetworkid" not in ip
    vm = api.deploy(zone="zone-2")
    api.call("enableStaticNat", ipaddressid=ip["id"], virtualmachineid=vm["id"])
    assert api.list("listPublicIpAddresses", "publicipaddress", id=ip["id"])[0]["associatednetworkid"] == vm["nic"][0]["networkid"]


def test_basic_zone_has_no_public_ips(basic_api):
    z = basic_api.zone("basic-zone")
    with pytest.raises(ApiError):
        basic_api.call("associateIpAddress", zoneid=z["id"])


def test_load_balancer(api, sim):
    z = api.zone("zone-1")
    iso = api.network(z["id"], "bosh-isolated")
    ip = api.acall("associateIpAddress", networkid=iso["id"])["ipaddress"]
    with pytest.raises(ApiError) as e:
        api.call("createLoadBalancerRule", name="lb", algorithm="roundrobin", privateport=80, publicport=80,
                 publicipid="00000000-0000-0000-0000-000000000000")
    assert e.value.status == 431
    lb = api.acall("createLoadBalancerRule", name="lb", algorithm="roundrobin", privateport=8080, publicport=80,
                   publicipid=ip["id"], openfirewall="false")["loadbalancer"]
    assert lb["publicip"] == ip["ipaddress"] and lb["state"] == "Active"
    vms = [api.deploy() for _ in range(2)]
    api.acall("assignToLoadBalancerRule", id=lb["id"], virtualmachineids=",".join(v["id"] for v in vms))
    inst = api.list("listLoadBalancerRuleInstances", "loadbalancerruleinstance", id=lb["id"])
    assert sorted(v["id"] for v in inst) == sorted(v["id"] for v in vms)
    api.acall("removeFromLoadBalancerRule", id=lb["id"], virtualmachineids=vms[0]["id"])
    api.acall("destroyVirtualMachine", id=vms[1]["id"])
    assert api.call("listLoadBalancerRuleInstances", id=lb["id"]) == {}
    assert [r["id"] for r in api.list("listLoadBalancerRules", "loadbalancerrule", publicipid=ip["id"])] == [lb["id"]]
    assert sim.inventory()["loadbalancerrules"] == [lb["id"]]
    api.acall("deleteLoadBalancerRule", id=lb["id"])
    assert sim.inventory()["loadbalancerrules"] == []


def test_firewall_rules(api, sim):
    z = api.zone("zone-1")
    ip = api.acall("associateIpAddress", networkid=api.network(z["id"], "bosh-isolated")["id"])["ipaddress"]
    fw = api.acall("createFirewallRule", ipaddressid=ip["id"], protocol="tcp", startport=22, endport=22,
                   cidrlist="10.0.0.0/8")["firewallrule"]
    assert fw["cidrlist"] == "10.0.0.0/8" and fw["startport"] == 22
    with pytest.raises(ApiError) as e:
        api.call("createFirewallRule", ipaddressid=ip["id"], protocol="tcp", startport=20, endport=30)
    assert e.value.status == 537
    assert [r["id"] for r in api.list("listFirewallRules", "firewallrule", ipaddressid=ip["id"])] == [fw["id"]]
    api.acall("deleteFirewallRule", id=fw["id"])
    assert sim.inventory()["firewallrules"] == []


def test_tags(api, sim):
    vm = api.deploy()
    api.acall("createTags", resourcetype="UserVm", resourceids=vm["id"],
              **{"tags[0].key": "director", "tags[0].value": "d1", "tags[1].key": "deployment", "tags[1].value": "cf"})
    assert sim.inventory()["tags"] == 2
    with pytest.raises(JobFailed) as e:
        api.acall("createTags", resourcetype="UserVm", resourceids=vm["id"], **{"tags[0].key": "director",
                                                                                 "tags[0].value": "d2"})
    assert e.value.errorcode == 530 and e.value.errortext == f"tag director already on UserVm with id {vm['id']}"
    with pytest.raises(JobFailed) as e:
        api.acall("createTags", resourcetype="UserVm", resourceids=vm["id"], **{"tags[0].key": "k", "tags[0].value": ""})
    assert e.value.errorcode == 431
    with pytest.raises(JobFailed) as e:     # CreateTagsCmd.execute parses the type inside the job
        api.acall("createTags", resourcetype="Zone", resourceids=vm["id"], **{"tags[0].key": "k", "tags[0].value": "v"})
    assert e.value.errorcode == 431
    tags = api.list("listTags", "tag", resourceid=vm["id"])
    assert {(t["key"], t["value"], t["resourcetype"]) for t in tags} == {("director", "d1", "UserVm"),
                                                                       ("deployment", "cf", "UserVm")}
    api.acall("deleteTags", resourcetype="UserVm", resourceids=vm["id"], **{"tags[0].key": "director"})
    assert [t["key"] for t in api.list("listVirtualMachines", "virtualmachine", id=vm["id"])[0]["tags"]] == ["deployment"]
    vol = api.list("listVolumes", "volume", virtualmachineid=vm["id"])[0]
    api.acall("createTags", resourcetype="volume", resourceids=vol["id"], **{"tags[0].key": "a", "tags[0].value": "b"})
    assert api.list("listVolumes", "volume", **{"tags[0].key": "a"})[0]["id"] == vol["id"]
    api.acall("destroyVirtualMachine", id=vm["id"], expunge="true")
    assert sim.inventory()["tags"] == 0
