"""The simulator against the real server's source (issue 15, items 4-7): each test quotes what it follows.

Sources are the apache/cloudstack files as stored in the code index (the 4.11-4.18 era text unless noted).
"""
from __future__ import annotations

import pytest

from .helpers import ApiError


def _basic_deploy_params(api) -> dict:
    zone = api.list("listZones", "zone")[0]
    return dict(zoneid=zone["id"], serviceofferingid=api.offering("small")["id"],
                templateid=api.template("bosh-stemcell-existing")["id"])


@pytest.mark.parametrize("extra", [
    {"networkids": "NETWORK"},
    {"networkids": ""},
    {"iptonetworklist[0].networkid": "NETWORK", "iptonetworklist[0].ip": "192.168.100.60"},
    {"iptonetworklist[0].networkid": "NETWORK"},
])
def test_basic_zone_refuses_network_ids_however_given(basic_api, basic_sim, extra):
    """apache/cloudstack api/src/main/java/org/apache/cloudstack/api/command/user/vm/DeployVMCmd.java:

    ``getNetworkIds()`` returns ``getIpToNetworkMap().keySet()`` when ``ipToNetworkList`` is not empty, and
    ``create()`` (the async-create phase, run by ApiServer before the job is queued) says
    ``if (zone.getNetworkType() == NetworkType.Basic) { if (getNetworkIds() != null) { throw new
    InvalidParameterValueException("Can't specify network Ids in Basic zone"); }``.  An
    InvalidParameterValueException there is answered at once with 431 (cserrorcode 4350): no job is made.
    """
    network = basic_api.list("listNetworks", "network")[0]["id"]
    params = {**_basic_deploy_params(basic_api), **{k: (network if v == "NETWORK" else v) for k, v in extra.items()}}
    basic_sim.clear_request_log()
    with pytest.raises(ApiError) as err:
        basic_api.call("deployVirtualMachine", **params)
    assert err.value.status == 431 and err.value.errorcode == 431
    assert err.value.body["deployvirtualmachineresponse"]["cserrorcode"] == 4350
    assert err.value.errortext == "Can't specify network Ids in Basic zone"
    assert basic_api.list("listVirtualMachines", "virtualmachine") == []
    assert basic_api.call("listAsyncJobs") == {}


def test_basic_zone_iptonetworklist_with_ipaddress_is_refused_first_for_the_mix(basic_api):
    """DeployVMCmd.getNetworkIds() (same file): with ``ipToNetworkList`` given and ``ipAddress`` too it throws
    "ipToNetworkMap can't be specified along with networkIds or ipAddress" before create() can look at the zone."""
    network = basic_api.list("listNetworks", "network")[0]["id"]
    with pytest.raises(ApiError) as err:
        basic_api.call("deployVirtualMachine", **_basic_deploy_params(basic_api), ipaddress="192.168.100.61",
                       **{"iptonetworklist[0].networkid": network})
    assert err.value.status == 431
    assert err.value.errortext == "ipToNetworkMap can't be specified along with networkIds or ipAddress"


def test_basic_zone_takes_ipaddress(basic_api):
    """DeployVMCmd.create(): a Basic zone passes ``new IpAddresses(ipAddress, ...)`` to
    createBasicSecurityGroupVirtualMachine; the one guest network is chosen by the server."""
    vm = basic_api.acall("deployVirtualMachine", **_basic_deploy_params(basic_api),
                         ipaddress="192.168.100.62")["virtualmachine"]
    assert vm["nic"][0]["ipaddress"] == "192.168.100.62"


HYPERVISORS = "XenServer, KVM, VMware, Hyperv, VirtualBox, Parralels, BareMetal, Simulator, Ovm, Ovm3, LXC, Any"


def _upload(api, hypervisor: str) -> dict:
    zone = api.zone("zone-1")
    return api.call("getUploadParamsForTemplate", name="up", displaytext="up", format="QCOW2",
                    hypervisor=hypervisor, zoneid=zone["id"], ostypeid=api.ostype("Ubuntu 22.04 LTS")["id"])


def test_upload_params_accept_a_hypervisor_the_zone_lacks(api):
    """apache/cloudstack server/src/main/java/com/cloud/template/TemplateAdapterBase.java,
    ``prepare(GetUploadParamsForTemplateCmd)`` builds TemplateUploadParams with
    ``HypervisorType.getType(cmd.getHypervisor())`` and ``prepareUploadParamsInternal`` refuses only
    ``params.getHypervisorType() == HypervisorType.None``: nothing compares with the zone's hypervisors."""
    answer = _upload(api, "vmware")["getuploadparams"]   # zone-1 has KVM only; getType ignores case
    row = api.list("listTemplates", "template", templatefilter="self", id=answer["id"])[0]
    assert row["hypervisor"] == "VMware"


def test_upload_params_refuse_what_is_no_hypervisor_type(api):
    """TemplateAdapterBase.prepareUploadParamsInternal (same file, 4.15-4.18 text):
    ``throw new InvalidParameterValueException("Hypervisor Type: " + params.getHypervisorType() + " is invalid.
    Supported Hypervisor types are " + EnumUtils.listValues(HypervisorType.values()).replace("None, ", ""))`` --
    it prints the parsed type, which is always None there; HypervisorType in api/.../hypervisor/Hypervisor.java
    lists XenServer .. Any in that order."""
    with pytest.raises(ApiError) as err:
        _upload(api, "Xen")
    assert err.value.status == 431
    assert err.value.errortext == f"Hypervisor Type: None is invalid. Supported Hypervisor types are {HYPERVISORS}"


def test_register_template_refuses_what_is_no_hypervisor_type_by_its_name(api):
    """TemplateAdapterBase.prepare(RegisterTemplateCmd): ``HypervisorType.getType(cmd.getHypervisor())``, and for
    None ``"Hypervisor Type: " + cmd.getHypervisor() + " is invalid. Supported Hypervisor types are " + ...``."""
    with pytest.raises(ApiError) as err:
        api.call("registerTemplate", name="t", displaytext="t", format="QCOW2", hypervisor="Xen",
                 url="http://127.0.0.1:1/t.qcow2", zoneid=api.zone("zone-1")["id"],
                 ostypeid=api.ostype("Ubuntu 22.04 LTS")["id"])
    assert err.value.errortext == f"Hypervisor Type: Xen is invalid. Supported Hypervisor types are {HYPERVISORS}"


def test_list_virtual_machines_name_is_a_substring_match(api):
    """cloudstack-4.11-listApis.json, listVirtualMachines ``name``: "name of the virtual machine (a substring
    match is made against the parameter value, data for all matching VMs will be returned)"; QueryManagerImpl
    sets ``sc.setParameters("name", "%" + name + "%")`` on a LIKE criterion (MySQL: case-insensitive)."""
    short = api.deploy(name="web")
    longer = api.deploy(name="web-2", ipaddress="10.1.0.77")
    other = api.deploy(name="db", ipaddress="10.1.0.78")
    found = {vm["id"] for vm in api.list("listVirtualMachines", "virtualmachine", name="web")}
    assert found == {short["id"], longer["id"]}
    assert {vm["id"] for vm in api.list("listVirtualMachines", "virtualmachine", name="EB-")} == {longer["id"]}
    assert other["id"] not in found


def test_list_snapshots_name_is_a_substring_match_and_volumes_are_exact(api):
    """SnapshotManagerImpl.listSnapshots: ``sb.and("name", sb.entity().getName(), SearchCriteria.Op.LIKE)`` with
    ``sc.setParameters("name", "%" + name + "%")``.  QueryManagerImpl.searchForVolumesInternal:
    ``sb.and("name", sb.entity().getName(), SearchCriteria.Op.EQ)``."""
    vm = api.deploy(name="snap-host")
    offering = api.disk_offering("disk-10")["id"]
    zone = api.zone("zone-1")["id"]
    short = api.acall("createVolume", name="data", zoneid=zone, diskofferingid=offering)["volume"]
    api.acall("createVolume", name="data-2", zoneid=zone, diskofferingid=offering)
    assert [v["id"] for v in api.list("listVolumes", "volume", name="data")] == [short["id"]]
    api.acall("attachVolume", id=short["id"], virtualmachineid=vm["id"])
    api.acall("createSnapshot", volumeid=short["id"], name="nightly")
    api.acall("createSnapshot", volumeid=short["id"], name="nightly-2")
    names = sorted(s["name"] for s in api.list("listSnapshots", "snapshot", name="nightly"))
    assert names == ["nightly", "nightly-2"]


def test_list_zones_and_key_pairs_match_names_exactly(api):
    """QueryManagerImpl.listDataCenters: ``else if (name != null) sc.addAnd("name", SearchCriteria.Op.EQ, name)``;
    ManagementServerImpl.listSSHKeyPairs: ``sc.addAnd("name", SearchCriteria.Op.EQ, name)``."""
    assert api.call("listZones", name="zone") == {}
    assert [z["name"] for z in api.list("listZones", "zone", name="zone-1")] == ["zone-1"]
    assert api.call("listSSHKeyPairs", name="bos") == {}


@pytest.mark.parametrize("size", [0, 1025])
def test_create_volume_size_out_of_range(api, size):
    """apache/cloudstack server/.../storage/VolumeApiServiceImpl.java allocVolume:
    ``if ((sizeInGB < customDiskOfferingMinSize) || (sizeInGB > customDiskOfferingMaxSize)) throw new
    InvalidParameterValueException("Volume size: " + sizeInGB + "GB is out of allowed range. Max: " +
    customDiskOfferingMaxSize + " Min:" + customDiskOfferingMinSize)``; the bounds are the ConfigKeys
    custom.diskoffering.size.min (1) and custom.diskoffering.size.max (1024).  createVolume's create() runs
    allocVolume before any job, so the answer is an immediate 431."""
    with pytest.raises(ApiError) as err:
        api.call("createVolume", name="v", zoneid=api.zone("zone-1")["id"],
                 diskofferingid=api.disk_offering("shared.custom")["id"], size=size)
    assert err.value.status == 431
    assert err.value.errortext == f"Volume size: {size}GB is out of allowed range. Max: 1024 Min:1"
