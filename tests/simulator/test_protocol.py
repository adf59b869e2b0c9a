"""Envelopes, errors, paging and the async job machinery."""
import time

import pytest

from .helpers import ApiError


def test_list_envelope_and_empty(api):
    r = api.raw("listZones")
    body = r.json()
    assert list(body) == ["listzonesresponse"]
    assert body["listzonesresponse"]["count"] == 2
    r = api.raw("listVirtualMachines")
    assert r.json() == {"listvirtualmachinesresponse": {}}


def test_missing_required_parameter(api):
    r = api.raw("listTemplates")
    assert r.status_code == 431
    assert r.headers["X-Description"] == "Unable to execute API command listtemplates due to missing parameter templatefilter"
    assert r.json() == {"listtemplatesresponse": {
        "uuidList": [], "errorcode": 431, "cserrorcode": 4350,
        "errortext": "Unable to execute API command listtemplates due to missing parameter templatefilter"}}


def test_missing_required_follows_411_spec(api):
    # 4.11 marks registerTemplate displaytext/ostypeid as required
    r = api.raw("registerTemplate", name="x", format="QCOW2", hypervisor="KVM", url="http://x/y", zoneid="-1")
    assert r.status_code == 431
    assert "due to missing parameter" in r.json()["registertemplateresponse"]["errortext"]


def test_malformed_map_key(api):
    r = api.raw("listVirtualMachines", **{"tags[x].key": "a"})
    assert r.status_code == 430
    assert r.json()["listvirtualmachinesresponse"]["errortext"].startswith("Unable to decode parameter tags[x].key")


def test_unknown_uuid(api):
    r = api.raw("listVirtualMachines", id="00000000-0000-0000-0000-000000000000")
    assert r.status_code == 431
    assert "Invalid parameter id value=00000000-0000-0000-0000-000000000000" in r.json()["listvirtualmachinesresponse"]["errortext"]


def test_invalid_integer(api):
    r = api.raw("listZones", page="x", pagesize="1")
    assert r.status_code == 431


def test_paging(api):
    items = api.list("listOsTypes", "ostype")
    total = len(items)
    assert total > 5
    r = api.call("listOsTypes", page=1, pagesize=2)
    assert r["count"] == total and len(r["ostype"]) == 2
    r2 = api.call("listOsTypes", page=2, pagesize=2)
    assert r2["ostype"][0]["id"] == items[2]["id"]
    past = api.call("listOsTypes", page=100, pagesize=2)
    assert past == {"count": total}
    assert len(api.call("listOsTypes", pagesize=-1)["ostype"]) == total


@pytest.mark.parametrize("params,text", [
    ({"pagesize": 501, "page": 1}, "Page size can't exceed max allowed page size value: 500"),
    ({"pagesize": 5}, '"page" parameter is required when "pagesize" is specified'),
    ({"page": 1}, '"pagesize" parameter is required when "page" is specified'),
    ({"page": 1, "pagesize": -1}, "Can't specify page parameter when pagesize is -1 (Unlimited)"),
])
def test_paging_errors(api, params, text):
    with pytest.raises(ApiError) as e:
        api.call("listZones", **params)
    assert e.value.status == 431 and e.value.errortext == text


def test_async_create_envelope_and_job_fields(api):
    z = api.zone("zone-1")
    r = api.call("createVolume", zoneid=z["id"], diskofferingid=api.disk_offering("disk-10")["id"], name="v1")
    assert set(r) == {"id", "jobid"}
    j = api.wait(r["jobid"])
    assert j["jobstatus"] == 1 and j["jobresultcode"] == 0 and j["jobresulttype"] == "object"
    assert j["jobinstancetype"] == "Volume" and j["jobinstanceid"] == r["id"]
    assert j["cmd"].endswith("CreateVolumeCmd")
    assert j["jobresult"]["volume"]["id"] == r["id"]
    assert j["created"].endswith("+0000") and j["completed"].endswith("+0000")


def test_job_pending_then_done(api, sim):
    sim.set_job_seconds(0.4)
    z = api.zone("zone-1")
    r = api.call("createVolume", zoneid=z["id"], diskofferingid=api.disk_offering("disk-10")["id"], name="v1")
    j = api.job(r["jobid"])
    assert j["jobstatus"] == 0 and "jobresult" not in j
    time.sleep(0.5)
    assert api.job(r["jobid"])["jobstatus"] == 1
    jobs = api.list("listAsyncJobs", "asyncjobs")
    assert r["jobid"] in [x["jobid"] for x in jobs]


def test_sync_success_response(api):
    r = api.call("deleteSSHKeyPair", name="bosh")
    assert r == {"success": True}


def test_capabilities(api):
    cap = api.call("listCapabilities")["capability"]
    assert cap["cloudstackversion"] == "4.18.0.0"
    assert cap["userpublictemplateenabled"] is True


def test_catalog(api):
    names = {o["name"] for o in api.list("listServiceOfferings", "serviceoffering")}
    assert {"small", "medium", "large", "custom"} <= names
    disks = {o["name"]: o for o in api.list("listDiskOfferings", "diskoffering")}
    assert disks["disk-10"]["disksize"] == 10 and disks["shared.custom"]["iscustomized"]
    os_names = {o["description"] for o in api.list("listOsTypes", "ostype")}
    assert {"Ubuntu 22.04 LTS", "Other PV (64-bit)", "Other Linux (64-bit)", "Ubuntu 20.04 LTS"} <= os_names
    assert [h["name"] for h in api.list("listHypervisors", "hypervisor")] == ["KVM"]
    nets = api.list("listNetworks", "network", zoneid=api.zone("zone-1")["id"])
    assert {n["name"]: n["type"] for n in nets} == {"bosh-isolated": "Isolated", "bosh-shared": "Shared",
                                                     "bosh-vpc-tier": "Isolated"}
    assert next(n for n in nets if n["name"] == "bosh-isolated")["cidr"] == "10.1.0.0/24"
    assert [k["name"] for k in api.list("listSSHKeyPairs", "sshkeypair")] == ["bosh"]
    assert api.list("listSecurityGroups", "securitygroup")[0]["name"] == "default"
    apis = api.list("listApis", "api", name="deployVirtualMachine")
    assert apis[0]["isasync"] is True


def test_upload_params_response_name(api):
    z = api.zone("zone-1")
    r = api.raw("getUploadParamsForTemplate", name="t", displaytext="t", format="QCOW2", hypervisor="KVM",
                zoneid=z["id"], ostypeid=api.ostype("Ubuntu 22.04 LTS")["id"])
    body = r.json()
    assert list(body) == ["postuploadtemplateresponse"]
    assert set(body["postuploadtemplateresponse"]["getuploadparams"]) == {"id", "postURL", "metadata", "expires",
                                                                          "signature"}


def test_request_log(api, sim):
    sim.clear_request_log()
    api.call("listZones", name="zone-1")
    (cmd, params), = sim.request_log
    assert cmd == "listzones" and params["name"] == "zone-1" and "signature" not in params


def test_affinity_groups(api, sim):
    g = api.acall("createAffinityGroup", name="ag", type="host anti-affinity")["affinitygroup"]
    assert sim.inventory()["affinitygroups"] == [g["id"]]
    vm = api.deploy(affinitygroupnames="ag")
    assert vm["affinitygroup"][0]["id"] == g["id"]
    # a group in use is deleted with its VM mappings (AffinityGroupServiceImpl.deleteAffinityGroup), not refused
    api.acall("deleteAffinityGroup", id=g["id"])
    assert sim.inventory()["affinitygroups"] == []
    assert api.list("listVirtualMachines", "virtualmachine", id=vm["id"])[0]["affinitygroup"] == []
    api.acall("destroyVirtualMachine", id=vm["id"], expunge="true")
