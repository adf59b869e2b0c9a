"""VM life cycle, zone rules, user data, capacity."""
import base64

import pytest

from .helpers import ApiError, JobFailed


def test_lifecycle(api, sim):
    vm = api.deploy(name="vm-a", displayname="A")
    assert vm["state"] == "Running" and vm["displayname"] == "A"
    nic = vm["nic"][0]
    assert nic["isdefault"] and nic["networkname"] == "bosh-isolated" and nic["macaddress"].startswith("02:00:")
    assert nic["gateway"] == "10.1.0.1" and nic["netmask"] == "255.255.255.0" and nic["traffictype"] == "Guest"
    root = api.list("listVolumes", "volume", virtualmachineid=vm["id"])
    assert root[0]["type"] == "ROOT" and root[0]["deviceid"] == 0
    assert api.acall("stopVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Stopped"
    with pytest.raises(ApiError) as e:
        api.call("rebootVirtualMachine", id=vm["id"])
    assert e.value.status == 431
    assert api.acall("startVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Running"
    assert api.acall("rebootVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Running"
    assert api.acall("destroyVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Destroyed"
    assert api.call("listVirtualMachines", id=vm["id"]) == {}       # non-admin: destroyed VMs hidden
    assert sim.inventory()["virtualmachines"] == [vm["id"]]
    api.acall("expungeVirtualMachine", id=vm["id"])
    assert sim.inventory()["virtualmachines"] == []
    assert api.call("listVirtualMachines", id=vm["id"]) == {}       # known id: empty, not 431
    with pytest.raises(ApiError) as e:
        api.call("stopVirtualMachine", id=vm["id"])
    assert "Unable to find virtual machine with id" in e.value.errortext


def test_destroy_releases_ip_and_name(api):
    vm = api.deploy(name="same", ipaddress="10.1.0.50")
    with pytest.raises(ApiError) as e:
        api.deploy(name="other", ipaddress="10.1.0.50")
    assert "already in use" in e.value.errortext
    with pytest.raises(ApiError):
        api.deploy(name="same")
    api.acall("destroyVirtualMachine", id=vm["id"], expunge="true")
    vm2 = api.deploy(name="same", ipaddress="10.1.0.50")
    assert vm2["nic"][0]["ipaddress"] == "10.1.0.50"


def test_requested_ip_outside_cidr(api):
    with pytest.raises(ApiError) as e:
        api.deploy(ipaddress="10.9.0.5")
    assert e.value.status == 431


def test_startvm_false_and_recover(api):
    vm = api.deploy(startvm="false")
    assert vm["state"] == "Stopped"
    api.acall("destroyVirtualMachine", id=vm["id"])
    assert api.call("recoverVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Stopped"


def test_multi_nic_iptonetworklist(api):
    z = api.zone("zone-1")
    iso, shared = api.network(z["id"], "bosh-isolated"), api.network(z["id"], "bosh-shared")
    vm = api.deploy(network=None, **{"iptonetworklist[0].networkid": shared["id"], "iptonetworklist[0].ip": "10.2.0.20",
                                     "iptonetworklist[1].networkid": iso["id"],
                                     "iptonetworklist[1].mac": "02:00:aa:bb:cc:dd"})
    assert [(n["networkname"], n["isdefault"]) for n in vm["nic"]] == [("bosh-shared", True), ("bosh-isolated", False)]
    assert vm["nic"][0]["ipaddress"] == "10.2.0.20" and vm["nic"][1]["macaddress"] == "02:00:aa:bb:cc:dd"
    assert api.list("listVirtualMachines", "virtualmachine", networkid=shared["id"])[0]["id"] == vm["id"]
    with pytest.raises(ApiError) as e:
        api.deploy(**{"iptonetworklist[0].networkid": iso["id"]})
    assert "ipToNetworkMap can't be specified along with networkIds" in e.value.errortext


def test_advanced_rejects_security_groups(api):
    with pytest.raises(ApiError) as e:
        api.deploy(securitygroupnames="default")
    assert e.value.errortext == "Can't create vm with security groups; security group feature is not enabled per zone"


def test_basic_zone_rules(basic_api):
    api = basic_api
    z = api.zone("basic-zone")
    assert z["networktype"] == "Basic" and z["securitygroupsenabled"] is True
    net = api.list("listNetworks", "network")[0]
    with pytest.raises(ApiError) as e:
        api.deploy(zone="basic-zone", network="defaultGuestNetwork")
    assert e.value.errortext == "Can't specify network Ids in Basic zone"
    with pytest.raises(ApiError):
        api.deploy(zone="basic-zone", network=None, networkids="")
    vm = api.deploy(zone="basic-zone", network=None, securitygroupnames="bosh", ipaddress="192.168.100.50")
    assert vm["nic"][0]["ipaddress"] == "192.168.100.50" and vm["nic"][0]["networkid"] == net["id"]
    assert [g["name"] for g in vm["securitygroup"]] == ["bosh"]
    vm2 = api.deploy(zone="basic-zone", network=None)
    assert [g["name"] for g in vm2["securitygroup"]] == ["default"]
    assert vm2["hypervisor"] == "XenServer"


def test_custom_offering(api):
    with pytest.raises(ApiError) as e:
        api.deploy(offering="custom")
    assert e.value.status == 431
    vm = api.deploy(offering="custom", **{"details[0].cpuNumber": "3", "details[0].cpuSpeed": "1500",
                                          "details[0].memory": "3072"})
    assert (vm["cpunumber"], vm["cpuspeed"], vm["memory"]) == (3, 1500, 3072)


def test_capacity_exhaustion_job_fails_533(api, sim):
    vms = [api.deploy(offering="large") for _ in range(16)]       # 64 cores
    with pytest.raises(JobFailed) as e:
        api.deploy(offering="small", name="too-many")
    assert e.value.errorcode == 533 and "Unable to create a deployment for" in e.value.errortext
    failed = [v for v in api.list("listVirtualMachines", "virtualmachine") if v["name"] == "too-many"][0]
    assert failed["state"] == "Error"
    api.acall("stopVirtualMachine", id=vms[0]["id"])
    with pytest.raises(JobFailed):
        pass_vm = api.deploy(offering="large")  # 60 + 4 = 64 fits
        api.acall("startVirtualMachine", id=vms[0]["id"])
    assert pass_vm["state"] == "Running"


def test_ip_pool_exhaustion_533(api):
    z = api.zone("zone-2")
    # shared network 10.4.0.10-250 is big; use the VPC-less isolated net of zone-2 (/24 minus gw = 253)
    net = api.network(z["id"], "bosh-isolated")
    st = api.sim.state
    with st.lock:
        n = st.networks[net["id"]]
        for i in range(n["_start"], n["_end"] + 1):
            n["_used"].setdefault(i, "test")
    with pytest.raises(JobFailed) as e:
        api.deploy(zone="zone-2")
    assert e.value.errorcode == 533


def test_userdata(api):
    ud = base64.b64encode(b"#cloud-config\n" * 10).decode()
    vm = api.deploy(method="POST", userdata=ud) if False else api.deploy(userdata=ud)
    assert api.call("getVirtualMachineUserData", virtualmachineid=vm["id"])["virtualmachineuserdata"]["userdata"] == ud
    ud2 = base64.b64encode(b"new").decode()
    r = api.call("updateVirtualMachine", method="POST", id=vm["id"], userdata=ud2, displayname="renamed")
    assert r["virtualmachine"]["displayname"] == "renamed"
    assert api.call("getVirtualMachineUserData", virtualmachineid=vm["id"])["virtualmachineuserdata"]["userdata"] == ud2


def test_userdata_limits(api):
    big_get = base64.b64encode(b"x" * 3100).decode()           # 4136 chars
    with pytest.raises(ApiError) as e:
        api.deploy(userdata=big_get)
    assert e.value.errortext == "User data is too long for an http GET request"
    z = api.zone("zone-1")
    params = dict(zoneid=z["id"], serviceofferingid=api.offering("small")["id"],
                  templateid=api.template("bosh-stemcell-existing")["id"],
                  networkids=api.network(z["id"], "bosh-isolated")["id"])
    ok = api.call("deployVirtualMachine", method="POST", userdata=big_get, **params)
    assert api.wait(ok["jobid"])["jobstatus"] == 1
    too_big = base64.b64encode(b"x" * 25000).decode()          # 33336 chars
    with pytest.raises(ApiError) as e:
        api.call("deployVirtualMachine", method="POST", userdata=too_big, **params)
    assert e.value.errortext == "User data has exceeded configurable max length : 32768"
    with pytest.raises(ApiError) as e:
        api.call("deployVirtualMachine", method="POST", userdata="not base64 !!", **params)
    assert e.value.errortext == "User data is not base64 encoded"


def test_list_filters_and_tags(api):
    a = api.deploy(name="a")
    b = api.deploy(name="b", zone="zone-2")
    api.acall("createTags", resourcetype="UserVm", resourceids=a["id"], **{"tags[0].key": "role", "tags[0].value": "db"})
    assert [v["id"] for v in api.list("listVirtualMachines", "virtualmachine", **{"tags[0].key": "role",
                                                                                 "tags[0].value": "db"})] == [a["id"]]
    assert [v["id"] for v in api.list("listVirtualMachines", "virtualmachine", zoneid=b["zoneid"])] == [b["id"]]
    assert [v["id"] for v in api.list("listVirtualMachines", "virtualmachine", name="b")] == [b["id"]]
    assert api.list("listVirtualMachines", "virtualmachine", ids=f"{a['id']},{b['id']}").__len__() == 2
    assert api.list("listVirtualMachines", "virtualmachine", id=a["id"])[0]["tags"][0]["key"] == "role"
    nics = api.list("listNics", "nic", virtualmachineid=a["id"])
    assert nics[0]["ipaddress"] == a["nic"][0]["ipaddress"]
