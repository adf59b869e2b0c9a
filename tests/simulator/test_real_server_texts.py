"""The simulator against the real server's source (issue 15, items 4-7): each test quotes what it follows.

Sources are the apache/cloudstack files as stored in the code index (the 4.11-4.18 era text unless noted).
"""
from __future__ import annotations

import re

import pytest

from .helpers import ApiError, JobFailed


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


def test_list_virtual_machines_name_is_an_exact_case_insensitive_match(api):
    """apache/cloudstack server/src/main/java/com/cloud/api/query/QueryManagerImpl.java as stored at 57c3316
    (4.18 era), searchForUserVMsInternal: ``sb.and("name", sb.entity().getName(), SearchCriteria.Op.EQ)`` and
    ``if (name != null) { sc.setParameters("name", name); }`` -- the LIKE '%name%' of 4.11-4.16 (whose listApis
    text still says "a substring match") went with apache/cloudstack PRs #6032/#7384.  MySQL compares the
    utf8_general_ci column case-insensitively."""
    short = api.deploy(name="web")
    api.deploy(name="web-2", ipaddress="10.1.0.77")
    assert [vm["id"] for vm in api.list("listVirtualMachines", "virtualmachine", name="web")] == [short["id"]]
    assert [vm["id"] for vm in api.list("listVirtualMachines", "virtualmachine", name="WEB")] == [short["id"]]
    assert api.call("listVirtualMachines", name="eb") == {}
    assert api.call("listVirtualMachines", name="we%") == {}   # EQ: no wildcard


def test_the_4_11_to_4_16_servers_matched_vm_and_snapshot_names_as_substrings():
    """Issue 15 item 6: 4.11's listApis documents listVirtualMachines ``name`` as "name of the virtual machine
    (a substring match is done)"; QueryManagerImpl.searchForUserVMsInternal (4.11 text, stored at 0018999):
    ``sb.and("name", sb.entity().getName(), SearchCriteria.Op.LIKE)`` with ``"%" + name + "%"``, and
    SnapshotManagerImpl.listSnapshots likewise, until apache/cloudstack PR #6032 (4.17).  The scenario setting
    ``list.name.operator: LIKE`` gives those servers' behaviour, which a client (the CPI's lookups.only_named)
    must survive: a name lookup may answer other resources whose names contain it."""
    from cloudstack_simulator import Simulator
    from cloudstack_simulator.state import load_scenario

    from .helpers import Api

    scenario = load_scenario("advanced")
    scenario["settings"] = {**scenario.get("settings", {}), "list.name.operator": "LIKE"}
    with Simulator(scenario=scenario, seed=1) as sim:
        api = Api(sim)
        web = api.deploy(name="web")
        web2 = api.deploy(name="web-2", ipaddress="10.1.0.77")
        assert {v["id"] for v in api.list("listVirtualMachines", "virtualmachine", name="WEB")} == {web["id"],
                                                                                                    web2["id"]}
        assert [v["id"] for v in api.list("listVirtualMachines", "virtualmachine", name="b-_")] == [web2["id"]]
        root = api.list("listVolumes", "volume", virtualmachineid=web["id"])[0]
        api.acall("createSnapshot", volumeid=root["id"], name="nightly")
        api.acall("createSnapshot", volumeid=root["id"], name="nightly-2")
        assert sorted(s["name"] for s in api.list("listSnapshots", "snapshot", name="night")) == ["nightly",
                                                                                                  "nightly-2"]


def test_list_snapshots_and_volumes_match_names_exactly(api):
    """server/src/main/java/com/cloud/storage/snapshot/SnapshotManagerImpl.java (4.19-era text as stored),
    listSnapshots: ``sb.and("name", sb.entity().getName(), SearchCriteria.Op.EQ)`` ... ``sc.setParameters("name",
    name)`` (4.1x had LIKE with ``"%" + name + "%"``); ``keyword`` stays ``name LIKE '%keyword%'``.
    QueryManagerImpl.searchForVolumesInternal: ``sb.and("name", sb.entity().getName(), SearchCriteria.Op.EQ)``;
    keyword: name, volumeType or state LIKE '%keyword%'."""
    vm = api.deploy(name="snap-host")
    offering = api.disk_offering("disk-10")["id"]
    zone = api.zone("zone-1")["id"]
    short = api.acall("createVolume", name="data", zoneid=zone, diskofferingid=offering)["volume"]
    longer = api.acall("createVolume", name="data-2", zoneid=zone, diskofferingid=offering)["volume"]
    assert [v["id"] for v in api.list("listVolumes", "volume", name="DATA")] == [short["id"]]
    assert {v["id"] for v in api.list("listVolumes", "volume", keyword="ata")} == {short["id"], longer["id"]}
    api.acall("attachVolume", id=short["id"], virtualmachineid=vm["id"])
    api.acall("createSnapshot", volumeid=short["id"], name="nightly")
    api.acall("createSnapshot", volumeid=short["id"], name="nightly-2")
    assert [s["name"] for s in api.list("listSnapshots", "snapshot", name="Nightly")] == ["nightly"]
    assert sorted(s["name"] for s in api.list("listSnapshots", "snapshot", keyword="night")) == ["nightly",
                                                                                                  "nightly-2"]


def test_list_zones_and_key_pairs_match_names_exactly(api):
    """QueryManagerImpl.listDataCenters: ``else if (name != null) sc.addAnd("name", SearchCriteria.Op.EQ, name)``;
    ManagementServerImpl.listSSHKeyPairs: ``sc.addAnd("name", SearchCriteria.Op.EQ, name)``."""
    assert api.call("listZones", name="zone") == {}
    assert [z["name"] for z in api.list("listZones", "zone", name="zone-1")] == ["zone-1"]
    assert api.call("listSSHKeyPairs", name="bos") == {}


@pytest.mark.parametrize("size", [1025, 2000])
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


# ---------------------------------------------------------------------------------------------------------------
# name= / keyword= operators (issue 15 item 6).  MySQL evaluates EQ and LIKE on the cloud schema's utf8_general_ci
# columns: case-insensitively, trailing blanks ignored by EQ, ``%``/``_`` wildcards in a LIKE pattern.

@pytest.mark.parametrize("command,key,param,name,extra", [
    # QueryManagerImpl.listDataCentersInternal: ``else if (name != null) sc.addAnd("name", Op.EQ, name)``
    ("listZones", "zone", "name", "zone-1", {}),
    # QueryManagerImpl.searchForServiceOfferingsInternal: ``sc.addAnd("name", SearchCriteria.Op.EQ, name)``
    ("listServiceOfferings", "serviceoffering", "name", "small", {}),
    # QueryManagerImpl.searchForDiskOfferingsInternal: ``sc.addAnd("name", SearchCriteria.Op.EQ, name)``
    ("listDiskOfferings", "diskoffering", "name", "disk-10", {}),
    # QueryManagerImpl.templateChecks: ``else if (name != null) sc.addAnd("name", SearchCriteria.Op.EQ, name)``
    ("listTemplates", "template", "name", "bosh-stemcell-existing", {"templatefilter": "executable"}),
    # ManagementServerImpl.listSSHKeyPairs: ``sc.addAnd("name", SearchCriteria.Op.EQ, name)``
    ("listSSHKeyPairs", "sshkeypair", "name", "bosh", {}),
    # QueryManagerImpl.searchForSecurityGroupsInternal: ``sb.and("name", sb.entity().getName(), Op.EQ)`` set
    # from ``cmd.getSecurityGroupName()``
    ("listSecurityGroups", "securitygroup", "securitygroupname", "default", {}),
])
def test_name_filters_are_exact_and_ignore_case(api, command, key, param, name, extra):
    """Each list command's ``name`` criterion in the 4.18-era source (QueryManagerImpl as stored at
    apache/cloudstack@57c3316 and 0018999, ManagementServerImpl): SearchCriteria.Op.EQ with the value as given,
    no ``%``.  EQ on a utf8_general_ci column ignores case and trailing blanks; a prefix or a pattern finds
    nothing."""
    assert [row["name"] for row in api.list(command, key, **extra, **{param: name})][:1] == [name]
    assert [row["name"] for row in api.list(command, key, **extra, **{param: name.upper() + " "})][:1] == [name]
    assert api.call(command, **extra, **{param: name[:-1]}) == {}
    assert api.call(command, **extra, **{param: name[:-1] + "%"}) == {}


def test_list_zones_name_gives_way_to_id_and_silences_keyword(api):
    """QueryManagerImpl.listDataCentersInternal: ``if (id != null) { id EQ } else if (name != null) { name EQ }
    else { if (keyword != null) { name LIKE '%keyword%' OR description LIKE '%keyword%' } ... }``."""
    zone_1, zone_2 = api.zone("zone-1"), api.zone("zone-2")
    assert [z["id"] for z in api.list("listZones", "zone", id=zone_1["id"], name="zone-2")] == [zone_1["id"]]
    assert [z["id"] for z in api.list("listZones", "zone", name="zone-2", keyword="nothing-like-it")] == \
        [zone_2["id"]]
    assert api.call("listZones", keyword="nothing-like-it") == {}
    assert {z["name"] for z in api.list("listZones", "zone", keyword="ZONE-_")} == {"zone-1", "zone-2"}


def test_list_templates_keyword_replaces_name(api):
    """QueryManagerImpl.templateChecks: ``if (keyword != null) { sc.addAnd("name", Op.LIKE, "%" + keyword + "%")
    } else if (name != null) { sc.addAnd("name", Op.EQ, name) }`` -- the keyword matches the name only (not
    the display text) and, when given, the name is not looked at."""
    rows = api.list("listTemplates", "template", templatefilter="executable", keyword="STEMCELL", name="other")
    assert {t["name"] for t in rows} == {"bosh-stemcell-existing"}
    template = rows[0]
    if template.get("displaytext") and "stemcell" not in template["displaytext"].lower():
        assert api.call("listTemplates", templatefilter="executable", keyword=template["displaytext"]) == {}


def test_list_networks_has_no_name_parameter(api):
    """api/.../command/user/network/ListNetworksCmd.java (4.11 listApis; 4.18 source as stored at c6d0e48) declares
    no ``name``; ParamProcessWorker only reads the declared @Parameter fields, so the server ignores it.  The
    keyword is NetworkServiceImpl.searchForNetworks' ``ssc.addOr("name", SearchCriteria.Op.LIKE, "%" + keyword +
    "%")``, the name only."""
    zone = api.zone("zone-1")["id"]
    everything = api.list("listNetworks", "network", zoneid=zone)
    assert len(everything) > 1
    assert api.list("listNetworks", "network", zoneid=zone, name="bosh-isolated") == everything
    assert {n["name"] for n in api.list("listNetworks", "network", zoneid=zone, keyword="ISOLATED")} == \
        {"bosh-isolated"}


def test_load_balancer_and_affinity_group_names_are_exact(api):
    """LoadBalancingRulesManagerImpl.searchForLoadBalancers (apache/cloudstack as stored): ``sb.and("name",
    sb.entity().getName(), SearchCriteria.Op.EQ)`` and ``sc.setParameters("name", name)`` (4.2 had LIKE with
    ``"%" + name + "%"``); keyword: name or description LIKE.  QueryManagerImpl.buildAffinityGroupSearchCriteria:
    ``sc.addAnd("name", SearchCriteria.Op.EQ, affinityGroupName)``; keyword: name or type LIKE."""
    network = api.network(api.zone("zone-1")["id"], "bosh-isolated")
    ip = api.acall("associateIpAddress", networkid=network["id"])["ipaddress"]
    lb = api.acall("createLoadBalancerRule", name="web", algorithm="roundrobin", privateport=8080, publicport=80,
                   publicipid=ip["id"], openfirewall="false")["loadbalancer"]
    api.acall("createLoadBalancerRule", name="web-2", algorithm="roundrobin", privateport=8081, publicport=81,
              publicipid=ip["id"], openfirewall="false")
    assert [r["id"] for r in api.list("listLoadBalancerRules", "loadbalancerrule", name="WEB")] == [lb["id"]]
    assert len(api.list("listLoadBalancerRules", "loadbalancerrule", keyword="web")) == 2
    group = api.acall("createAffinityGroup", name="spread", type="host anti-affinity")["affinitygroup"]
    api.acall("createAffinityGroup", name="spread-2", type="host anti-affinity")
    assert [g["id"] for g in api.list("listAffinityGroups", "affinitygroup", name="Spread")] == [group["id"]]
    assert len(api.list("listAffinityGroups", "affinitygroup", keyword="anti")) == 2


def test_list_apis_name_is_exact_and_an_unknown_name_is_an_error(api):
    """plugins/api/discovery ApiDiscoveryServiceImpl.listApis: ``if (!s_apiNameDiscoveryResponseMap.containsKey(
    name)) return null;`` (a HashMap keyed by the API's exact name) and ListApisCmd.execute: ``if (response ==
    null) throw new ServerApiException(ApiErrorCode.INTERNAL_ERROR, "Api Discovery plugin was unable to find an api
    by that name or process any apis")`` -- 530, cserrorcode 9999 (CSExceptionErrorCode's ServerApiException)."""
    assert [a["name"] for a in api.list("listApis", "api", name="deployVirtualMachine")] == ["deployVirtualMachine"]
    for name in ("deployvirtualmachine", "noSuchApi"):
        with pytest.raises(ApiError) as err:
            api.call("listApis", name=name)
        assert err.value.status == 530 and err.value.errorcode == 530
        assert err.value.body["listapisresponse"]["cserrorcode"] == 9999
        assert err.value.errortext == ("Api Discovery plugin was unable to find an api by that name or process any "
                                       "apis")


# ---------------------------------------------------------------------------------------------------------------
# error texts (issue 15 item 7)

def test_create_volume_size_zero_and_size_with_a_fixed_offering(api):
    """VolumeApiServiceImpl.allocVolume (4.11 and 4.18-era text alike): ``if (size != null) { if (size > 0) {...}
    else { throw new InvalidParameterValueException("Disk size must be larger than 0"); } }`` before the offering
    is looked at, and ``if (!diskOffering.isCustomized() && size != null) throw new
    InvalidParameterValueException("This disk offering does not allow custom size")`` -- any size, even the
    offering's own."""
    zone = api.zone("zone-1")["id"]
    with pytest.raises(ApiError) as err:
        api.call("createVolume", name="v", zoneid=zone, diskofferingid=api.disk_offering("shared.custom")["id"], size=0)
    assert err.value.status == 431 and err.value.errortext == "Disk size must be larger than 0"
    with pytest.raises(ApiError) as err:
        api.call("createVolume", name="v", zoneid=zone, diskofferingid=api.disk_offering("disk-10")["id"], size=10)
    assert err.value.status == 431 and err.value.errortext == "This disk offering does not allow custom size"


def test_create_snapshot_of_a_volume_not_ready_prints_its_internal_id(api):
    """VolumeApiServiceImpl.allocSnapshot / SnapshotManagerImpl: ``throw new InvalidParameterValueException(
    "VolumeId: " + volumeId + " is not in " + Volume.State.Ready + " state but " + volume.getState() + ". Cannot take
    snapshot.")`` -- ``volumeId`` is the long database id, not the uuid."""
    volume = api.acall("createVolume", name="fresh", zoneid=api.zone("zone-1")["id"],
                       diskofferingid=api.disk_offering("disk-10")["id"])["volume"]
    assert volume["state"] == "Allocated"
    with pytest.raises((ApiError, JobFailed)) as err:
        api.acall("createSnapshot", volumeid=volume["id"])
    assert re.fullmatch(r"VolumeId: \d+ is not in Ready state but Allocated\. Cannot take snapshot\.",
                        err.value.errortext), err.value.errortext


def test_affinity_group_names_collide_ignoring_case_and_delete_texts(api):
    """server/.../affinity/AffinityGroupServiceImpl.java (4.11+): verifyAffinityGroupNameInUse: ``if
    (_affinityGroupDao.isNameInUse(...)) throw new InvalidParameterValueException("Unable to create affinity group,
    a group with name " + affinityGroupName + " already exists.")`` (an EQ, so any case); getAffinityGroup: ``throw
    new InvalidParameterValueException("Either the affinity group Id or group name must be specified to delete the
    group")`` and ``"Unable to find affinity group " + (affinityGroupId == null ? affinityGroupName :
    affinityGroupId)``; deleteAffinityGroup(long) removes the group's VM mappings: a group in use is deleted."""
    api.acall("createAffinityGroup", name="ag", type="host anti-affinity")
    with pytest.raises(ApiError) as err:
        api.call("createAffinityGroup", name="AG", type="host anti-affinity")
    assert err.value.errortext == "Unable to create affinity group, a group with name AG already exists."
    # DeleteAffinityGroupCmd.getEntityOwnerId looks only at the owner: the lookups run in the job (execute())
    with pytest.raises(JobFailed) as failed:
        api.acall("deleteAffinityGroup", name="missing")
    assert failed.value.errorcode == 431 and failed.value.errortext == "Unable to find affinity group missing"
    with pytest.raises(JobFailed) as failed:
        api.acall("deleteAffinityGroup")
    assert failed.value.errortext == ("Either the affinity group Id or group name must be specified to delete the "
                                      "group")
    vm = api.deploy(affinitygroupnames="ag")
    api.acall("deleteAffinityGroup", name="Ag")
    assert api.call("listAffinityGroups") == {}
    assert api.list("listVirtualMachines", "virtualmachine", id=vm["id"])[0]["affinitygroup"] == []


def test_delete_tags_that_match_nothing_fails_the_job(api):
    """server/.../tags/TaggedResourceManagerImpl.java (as stored at 03896ee, 4.17+): deleteTags ``if
    (tagsToDelete.isEmpty()) { return false; }`` and DeleteTagsCmd.execute: ``throw new
    ServerApiException(ApiErrorCode.INTERNAL_ERROR, "Failed to delete tags")`` -- the job fails with 530.  (4.11
    threw InvalidParameterValueException("Unable to find any tags which conform to specified delete
    parameters.").)"""
    vm = api.deploy(name="tagged")
    with pytest.raises(JobFailed) as err:
        api.acall("deleteTags", resourcetype="UserVm", resourceids=vm["id"],
                  **{"tags[0].key": "absent", "tags[0].value": "x"})
    assert err.value.errorcode == 530 and err.value.errortext == "Failed to delete tags"


def test_list_tags_ignores_keyword(api):
    """QueryManagerImpl.listTagsInternal (0018999 and 57c3316) builds its criteria from key, value, resourceId,
    resourceType and customer only: ListTagsCmd accepts ``keyword`` (BaseListCmd) and the search never reads it."""
    vm = api.deploy(name="kw")
    api.acall("createTags", resourcetype="UserVm", resourceids=vm["id"],
              **{"tags[0].key": "role", "tags[0].value": "db"})
    assert [t["key"] for t in api.list("listTags", "tag", keyword="no-such-thing")] == ["role"]
