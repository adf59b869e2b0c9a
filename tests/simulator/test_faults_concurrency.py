"""Fault injection (deterministic with a seed), concurrency, TLS."""
import threading
import time

import pytest
import requests

from cloudstack_simulator import FaultConfig, Simulator

from .helpers import Api, JobFailed


def _outcomes(seed):
    with Simulator(seed=seed, faults=FaultConfig(error_rate=0.2, throttle_rate=0.2, drop_rate=0.1)) as sim:
        api = Api(sim)
        out = []
        for _ in range(40):
            try:
                r = api.raw("listZones")
                out.append(r.status_code)
            except requests.ConnectionError:
                out.append("drop")
        return out, sim.fault_counts


def test_faults_deterministic_with_seed():
    a, counts_a = _outcomes(7)
    b, counts_b = _outcomes(7)
    assert a == b and counts_a == counts_b
    assert {200, 429, "drop"} <= set(a) and ({500, 503} & set(a))
    assert counts_a["error"] == sum(1 for x in a if x in (500, 503))
    assert counts_a["throttle"] == a.count(429)
    c, _ = _outcomes(8)
    assert c != a


def test_fault_bodies(sim, api):
    sim.set_faults(FaultConfig(throttle_rate=1.0))
    r = api.raw("listZones")
    assert r.status_code == 429
    body = r.json()["listzonesresponse"]
    assert body["errorcode"] == 429 and "api limit" in body["errortext"]
    sim.set_faults(FaultConfig(error_rate=1.0))
    r = api.raw("queryAsyncJobResult", jobid="x")
    assert r.status_code in (500, 503) and "errortext" in r.json()["queryasyncjobresultresponse"]
    sim.set_faults(FaultConfig())
    assert api.raw("listZones").status_code == 200


def test_drop_after_action(sim, api):
    z = api.zone("zone-1")
    do = api.disk_offering("disk-10")
    sim.set_faults(FaultConfig(drop_after_action_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        api.raw("createVolume", zoneid=z["id"], diskofferingid=do["id"], name="ghost")
    sim.set_faults(FaultConfig())
    assert [v["name"] for v in api.list("listVolumes", "volume")] == ["ghost"]     # the action happened
    assert sim.fault_counts["drop_after_action"] == 1


def test_job_failure_fault(sim, api):
    sim.set_faults(FaultConfig(job_failure_rate=1.0))
    with pytest.raises(JobFailed) as e:
        api.deploy(name="doomed")
    assert e.value.errorcode == 530 and e.value.job["jobresultcode"] == 530
    sim.set_faults(FaultConfig())
    vm = api.list("listVirtualMachines", "virtualmachine", name="doomed")[0]
    assert vm["state"] == "Error"
    api.acall("destroyVirtualMachine", id=vm["id"], expunge="true")
    assert sim.inventory()["virtualmachines"] == []


def test_slow(sim, api):
    sim.set_faults(FaultConfig(slow_rate=1.0, slow_seconds=0.3))
    t = time.monotonic()
    assert api.raw("listZones").status_code == 200
    assert time.monotonic() - t >= 0.3


def test_concurrent_deploys(sim):
    api0 = Api(sim)
    z = api0.zone("zone-1")
    params = dict(zoneid=z["id"], serviceofferingid=api0.offering("small")["id"],
                  templateid=api0.template("bosh-stemcell-existing")["id"],
                  networkids=api0.network(z["id"], "bosh-isolated")["id"])
    results, errors = [], []

    def worker(i):
        try:
            a = Api(sim)
            vm = a.acall("deployVirtualMachine", method="POST", name=f"c-{i}", **params)["virtualmachine"]
            v = a.acall("createVolume", zoneid=z["id"], diskofferingid=a.disk_offering("disk-10")["id"])["volume"]
            a.acall("attachVolume", id=v["id"], virtualmachineid=vm["id"])
            results.append(vm)
        except Exception as e:  # noqa: BLE001  # pragma: no cover - whatever a thread hits is reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ips = [vm["nic"][0]["ipaddress"] for vm in results]
    macs = [vm["nic"][0]["macaddress"] for vm in results]
    assert len(set(ips)) == 16 and len(set(macs)) == 16
    inv = sim.inventory()
    assert len(inv["virtualmachines"]) == 16 and len(inv["volumes"]) == 16
    listed = api0.list("listVirtualMachines", "virtualmachine")
    assert {v["nic"][0]["ipaddress"] for v in listed} == set(ips)


def test_tls(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(cert_pem)
    cert.private_key_pem.write_to_path(key_pem)
    ca.cert_pem.write_to_path(ca_pem)
    with Simulator(tls_cert=str(cert_pem), tls_key=str(key_pem)) as sim:
        assert sim.endpoint.startswith("https://127.0.0.1:")
        api = Api(sim)
        api.http.trust_env = False
        api.http.verify = str(ca_pem)
        assert len(api.list("listZones", "zone")) == 2
