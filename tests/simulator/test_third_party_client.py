"""A third-party CloudStack client (PyPI `cs`, used unchanged) against the simulator.

An expired signature cannot be produced with `cs` unchanged (it stamps `expires` itself): the simulator's own
raw-HTTP tests cover expiry (tests/simulator/test_signing*.py).
"""

import pytest

cs = pytest.importorskip("cs")


@pytest.fixture
def api(simulator):
    return cs.CloudStack(endpoint=simulator.endpoint, key=simulator.api_key, secret=simulator.secret_key,
                         poll_interval=0.05, job_timeout=30)


@pytest.mark.parametrize("method", ["get", "post"])
def test_list_deploy_poll_tag_and_destroy(simulator, method):
    api = cs.CloudStack(endpoint=simulator.endpoint, key=simulator.api_key, secret=simulator.secret_key,
                        method=method, poll_interval=0.05, job_timeout=30)
    zone = next(z for z in api.listZones(fetch_list=True) if z["name"] == "zone-1")
    offering = next(o for o in api.listServiceOfferings(fetch_list=True) if o["name"] == "small")
    template = api.listTemplates(templatefilter="executable", name="bosh-stemcell-existing", zoneid=zone["id"])
    network = next(n for n in api.listNetworks(zoneid=zone["id"], fetch_list=True) if n["name"] == "bosh-isolated")
    deployed = api.deployVirtualMachine(zoneid=zone["id"], serviceofferingid=offering["id"],
                                        templateid=template["template"][0]["id"], networkids=network["id"],
                                        userdata="e30=", fetch_result=True)
    vm = deployed["virtualmachine"]
    assert vm["state"] == "Running" and vm["nic"][0]["networkid"] == network["id"]
    api.createTags(resourceids=vm["id"], resourcetype="UserVm",
                   **{"tags[0].key": "owner", "tags[0].value": "third party"}, fetch_result=True)
    tagged = api.listVirtualMachines(**{"tags[0].key": "owner", "tags[0].value": "third party"}, fetch_list=True)
    assert [v["id"] for v in tagged] == [vm["id"]]
    api.destroyVirtualMachine(id=vm["id"], expunge=True, fetch_result=True)
    assert api.listVirtualMachines(id=vm["id"], fetch_list=True) == []
    assert simulator.inventory()["virtualmachines"] == []


def test_wrong_secret_is_the_real_401(simulator):
    api = cs.CloudStack(endpoint=simulator.endpoint, key=simulator.api_key, secret="not-the-secret")
    with pytest.raises(cs.CloudStackApiException) as caught:
        api.listZones()
    assert caught.value.error["errorcode"] == 401
    assert caught.value.error["errortext"] == "unable to verify user credentials and/or request signature"


def test_missing_parameter_is_the_real_431(api):
    with pytest.raises(cs.CloudStackApiException) as caught:
        api.listTemplates()
    assert caught.value.error["errorcode"] == 431
    assert "missing parameter templatefilter" in caught.value.error["errortext"]
