"""VM life cycle, zone rules, user data, capacity."""
import base64
import time

import pytest

from cloudstack_simulator import Simulator
from cloudstack_simulator.state import load_scenario

from .helpers import Api, ApiError, JobFailed


def test_lifecycle(api, sim):
    vm = api.deploy(name="vm-a", displayname="A")
    assert vm["state"] == "Running" and vm["displayname"] == "A"
    nic = vm["nic"][0]
    assert nic["isdefault"] and nic["networkname"] == "bosh-isolated" and nic["macaddress"].startswith("02:00:")
    assert nic["gateway"] == "10.1.0.1" and nic["netmask"] == "255.255.255.0" and nic["traffictype"] == "Guest"
    root = api.list("listVolumes", "volume", virtualmachineid=vm["id"])
    assert root[0]["type"] == "ROOT" and root[0]["deviceid"] == 0
    assert api.acall("stopVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Stopped"
    with pytest.raises(JobFailed) as e:     # UserVmManagerImpl.rebootVirtualMachine checks inside the job
        api.acall("rebootVirtualMachine", id=vm["id"])
    assert e.value.errorcode == 431
    assert api.acall("startVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Running"
    assert api.acall("rebootVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Running"
    assert api.acall("destroyVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Destroyed"
    assert api.call("listVirtualMachines", id=vm["id"]) == {}       # non-admin: destroyed VMs hidden
    assert sim.inventory()["virtualmachines"] == [vm["id"]]
    api.acall("expungeVirtualMachine", id=vm["id"])
    assert sim.inventory()["virtualmachines"] == []
    assert api.call("listVirtualMachines", id=vm["id"]) == {}       # known id: empty, not 431
    with pytest.raises(JobFailed) as e:     # the expunged VM's uuid still resolves; the manager refuses it
        api.acall("stopVirtualMachine", id=vm["id"])
    assert "unable to find a virtual machine with id" in e.value.errortext


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
    failed = next(v for v in api.list("listVirtualMachines", "virtualmachine") if v["name"] == "too-many")
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


# -- accounts: who may expunge and recover, and what a destroyed VM keeps ---------------------------------------
# Sources: UserVmManagerImpl (destroyVm(DestroyVMCmd), expungeVm, recoverVirtualMachine, ExpungeTask) in
# rafaelweingartner/cloudstack@05011b3 server/src/com/cloud/vm/ and apache/cloudstack@00114e8
# server/src/main/java/com/cloud/vm/; ApiAsyncJobDispatcher.runJob (an exception other than ServerApiException ends
# the job with errorcode 530 and its message); ApiServer (a synchronous PermissionDeniedException is 531).


def scenario_sim(variant: str = "advanced-user", **account):
    scenario = load_scenario(variant)
    scenario["account"].update(account)
    return Simulator(scenario=scenario, seed=1)


@pytest.fixture
def user_api():
    """The advanced cloud seen by a plain user under the real server's defaults."""
    with Simulator(scenario="advanced-user", seed=1) as s:
        yield Api(s)


def test_a_user_may_not_expunge_and_a_destroyed_vm_keeps_its_ip(user_api):
    """allow.user.expunge.recover.vm defaults to false (UserVmManager.AllowUserExpungeRecoverVm): destroy with
    expunge=true fails inside the job (530) before touching the VM; expungeVirtualMachine likewise;
    recoverVirtualMachine (synchronous) answers 531.  Without expunge the VM is Destroyed and keeps its NICs and
    their IPs (NICs are released by the expunge, VirtualMachineManagerImpl.advanceExpunge)."""
    api = user_api
    vm = api.deploy(ipaddress="10.1.0.50")
    with pytest.raises(JobFailed) as e:
        api.acall("destroyVirtualMachine", id=vm["id"], expunge="true")
    assert e.value.errorcode == 530 and e.value.errortext == (
        "Parameter expunge can be passed by Admin only. Or when the allow.user.expunge.recover.vm key is set.")
    assert api.list("listVirtualMachines", "virtualmachine", id=vm["id"])[0]["state"] == "Running"

    assert api.acall("destroyVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Destroyed"
    assert api.call("listVirtualMachines", id=vm["id"]) == {}       # a user does not see destroyed VMs
    with pytest.raises(ApiError) as e:
        api.deploy(ipaddress="10.1.0.50")
    assert "already in use" in e.value.errortext
    with pytest.raises(JobFailed) as e:
        api.acall("expungeVirtualMachine", id=vm["id"])
    assert e.value.errorcode == 530 and e.value.errortext == (
        "Expunging a vm can only be done by an Admin. Or when the allow.user.expunge.recover.vm key is set.")
    with pytest.raises(ApiError) as e:
        api.call("recoverVirtualMachine", id=vm["id"])
    assert e.value.status == 531 and e.value.errortext.startswith("Recovering a vm can only be done by an Admin.")
    # destroying a destroyed VM answers it as it is ("Vm ... is already destroyed")
    assert api.acall("destroyVirtualMachine", id=vm["id"])["virtualmachine"]["state"] == "Destroyed"
    assert api.sim.inventory()["virtualmachines"] == [vm["id"]]


def test_capabilities_and_accounts_say_who_may_expunge(api, user_api):
    """listCapabilities' allowuserexpungerecovervm is the setting's value for the caller, whatever its role
    (ManagementServerImpl.listCapabilities); listAccounts shows a user its own account (accounttype 0, roletype
    User; 4.11 listApis response fields)."""
    assert api.call("listCapabilities")["capability"]["allowuserexpungerecovervm"] is True
    assert user_api.call("listCapabilities")["capability"]["allowuserexpungerecovervm"] is False
    account = user_api.list("listAccounts", "account")[0]
    assert (account["name"], account["accounttype"], account["roletype"]) == ("bosh", 0, "User")
    assert not any("key" in field for field in account["user"][0])
    with scenario_sim(role="domain-admin") as sim:
        account = Api(sim).list("listAccounts", "account")[0]
        assert (account["accounttype"], account["roletype"], account["rolename"]) == (2, "DomainAdmin", "Domain Admin")
        assert Api(sim).call("listCapabilities")["capability"]["allowuserexpungerecovervm"] is False


def test_an_admin_expunges_and_lists_destroyed_vms():
    """Admins (AccountManager.isAdmin) may expunge whatever the setting; they list Destroyed VMs until the
    expunge (QueryManagerImpl), state=present excepted; destroy with expunge=true expunges a Destroyed VM."""
    with scenario_sim(role="root-admin") as sim:
        api = Api(sim)
        a, b = api.deploy(ipaddress="10.1.0.53"), api.deploy()
        api.acall("destroyVirtualMachine", id=a["id"])
        assert [v["state"] for v in api.list("listVirtualMachines", "virtualmachine", id=a["id"])] == ["Destroyed"]
        assert api.call("listVirtualMachines", id=a["id"], state="present") == {}
        api.acall("destroyVirtualMachine", id=a["id"], expunge="true")
        api.acall("destroyVirtualMachine", id=b["id"], expunge="true")
        assert sim.inventory()["virtualmachines"] == []
        assert api.deploy(ipaddress="10.1.0.53")["nic"][0]["ipaddress"] == "10.1.0.53"


def test_a_destroyed_vm_is_expunged_after_expunge_delay():
    """The expunge thread removes VMs destroyed more than expunge.delay seconds ago (UserVmManagerImpl.ExpungeTask,
    findDestroyedVms); their addresses are free again."""
    scenario = load_scenario("advanced-user")
    scenario["settings"]["expunge.delay"] = 1.0
    with Simulator(scenario=scenario, seed=1) as sim:
        api = Api(sim)
        vm = api.deploy(ipaddress="10.1.0.51")
        api.acall("destroyVirtualMachine", id=vm["id"])
        assert sim.inventory()["virtualmachines"] == [vm["id"]]
        time.sleep(1.1)
        assert sim.inventory()["virtualmachines"] == []
        assert api.deploy(ipaddress="10.1.0.51")["nic"][0]["ipaddress"] == "10.1.0.51"


def test_recover_brings_a_destroyed_vm_back_with_its_addresses(api):
    """recoverVirtualMachine: a Destroyed VM comes back Stopped with the NICs it kept; any other state is refused
    ("Vm with id ... is not in the right state")."""
    vm = api.deploy(ipaddress="10.1.0.52")
    api.acall("destroyVirtualMachine", id=vm["id"])
    back = api.call("recoverVirtualMachine", id=vm["id"])["virtualmachine"]
    assert back["state"] == "Stopped" and back["nic"][0]["ipaddress"] == "10.1.0.52"
    with pytest.raises(ApiError) as e:
        api.call("recoverVirtualMachine", id=vm["id"])
    assert e.value.status == 431 and "is not in the right state" in e.value.errortext



def test_the_user_data_limit_is_the_real_global_setting():
    """Issue 15 item 3: the limit is CloudStack's global setting ``vm.userdata.max.length`` (ConfigurationManager /
    UserVmManagerImpl.validateUserData: "User data has exceeded configurable max length : " + the setting)."""
    from cloudstack_simulator.state import load_scenario

    scenario = load_scenario("advanced")
    scenario["settings"] = {**scenario["settings"], "vm.userdata.max.length": 2048}
    with Simulator(scenario=scenario, seed=1) as sim:
        api = Api(sim)
        with pytest.raises(ApiError) as e:
            api.deploy(userdata=base64.b64encode(b"x" * 2000).decode())  # 2668 chars
        assert e.value.errortext == "User data has exceeded configurable max length : 2048"


def test_requested_macs_are_checked_before_the_job(api):
    """A requested MAC (``macaddress`` for the default NIC, ``iptonetworklist[n].mac``) must be a valid MAC
    (DeployVMCmd.getMacAddress: "Mac address is not valid: "), unicast ("Mac address is not unicast: "), and not
    another NIC's in the same network (NetworkModelImpl.checkRequestedIpAddresses: "The requested Mac address is
    already taken! "): all 431 from DeployVMCmd.create, so no VM exists."""
    vm = api.deploy(macaddress="0e:00:00:00:00:01")
    assert vm["nic"][0]["macaddress"] == "0e:00:00:00:00:01"
    for mac, text in (("0e:00:00:00:00:01", "The requested Mac address is already taken! 0e:00:00:00:00:01"),
                      ("01:00:00:00:00:02", "Mac address is not unicast: 01:00:00:00:00:02"),
                      ("0e:00:00:00:00", "Mac address is not valid: 0e:00:00:00:00")):
        before = len(api.call("listVirtualMachines").get("virtualmachine", []))
        with pytest.raises(ApiError) as e:
            api.deploy(macaddress=mac)
        assert e.value.errorcode == 431 and e.value.errortext == text
        assert len(api.call("listVirtualMachines").get("virtualmachine", [])) == before
