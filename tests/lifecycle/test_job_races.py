"""Through bin/cpi against the simulator: CPI calls that meet a job still running on CloudStack.

On a real cloud jobs take seconds (docs/simulator.md, "Timing profiles"), so the job of an earlier attempt whose
answer was lost may still be running, and finish, while the director's repeat of the call runs.
"""

from __future__ import annotations

import threading
import time

from cloudstack_simulator import Simulator
from cloudstack_simulator.commands import REGISTRY
from cloudstack_simulator.state import load_scenario
from tests.conftest import cpi_for
from tests.simulator.helpers import Api


def release_when_queued(simulator, held_job: str, command: str) -> threading.Thread:
    """Finish ``held_job`` as soon as another job of ``command`` is queued (that is, after the caller's listing)."""

    def run():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with simulator.state.lock:
                jobs = simulator.state.jobs
                if any(j.command == command and j.id != held_job for j in jobs.jobs.values()):
                    jobs.jobs[held_job].due = 0.0
                    jobs.tick()
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_set_vm_metadata_while_an_earlier_create_tags_job_finishes(simulator, tmp_path):
    """A createTags job of an earlier set_vm_metadata (its answer lost) sets ``deployment`` after the repeat listed
    the VM's tags and before the repeat's own createTags job runs: that job fails, as TaggedResourceManagerImpl.
    createTags refuses a key the resource already has (CloudRuntimeException "tag <key> already on <type> with id
    <id>", inside the job: errorcode 530).  The tags the director asked for are then all there or creatable: the
    call must succeed, not fail the deploy over a tag that holds the very value wanted."""
    api = Api(simulator)
    vm = api.deploy()
    cpi = cpi_for(simulator, tmp_path)
    simulator.set_job_seconds(60)  # the earlier attempt's job: still running
    earlier = api.call("createTags", resourcetype="UserVm", resourceids=vm["id"],
                       **{"tags[0].key": "deployment", "tags[0].value": "cf"})["jobid"]
    simulator.set_job_seconds(0.5)
    releaser = release_when_queued(simulator, earlier, "createTags")
    result = cpi.call("set_vm_metadata", vm["id"], {"deployment": "cf", "job": "router", "index": "0"})
    releaser.join()
    assert result.error is None, result.stderr
    tags = api.list("listTags", "tag", resourceid=vm["id"])
    assert sorted((t["key"], t["value"]) for t in tags) == [("deployment", "cf"), ("index", "0"), ("job", "router")]


# -- CloudStack 4.11 to 4.19: a refusal inside a job is errorcode 530 -------------------------------------------------

def legacy_job_codes_simulator():
    """The advanced cloud as 4.11 to 4.19 report failed jobs: ApiAsyncJobDispatcher.runJob there has no
    ``catch (InvalidParameterValueException ipve)``, so the manager's refusal is "not a ServerApiException" and the
    job fails with errorcode 530 (the simulator's job_error_codes setting)."""
    scenario = load_scenario("advanced")
    scenario["settings"] = {**scenario.get("settings", {}), "job_error_codes": "4.11"}
    return Simulator(scenario=scenario).start()


def failed_jobs(sim, command: str) -> list[int]:
    with sim.state.lock:
        return [j.result["errorcode"] for j in sim.state.jobs.jobs.values() if j.command == command and j.status == 2]


def before(monkeypatch, command: str, change) -> None:
    """``change(state, ctx)`` happens (under the state lock) just before the simulator handles ``command``: what a
    concurrent task did between the CPI's listing and its request."""
    entry = REGISTRY[command.lower()]
    handler = entry.handler

    def wrapped(ctx):
        change(ctx.state, ctx)
        return handler(ctx)

    monkeypatch.setattr(entry, "handler", wrapped)


def test_delete_vm_when_the_vm_is_expunged_meanwhile(monkeypatch, tmp_path):
    """The VM is expunged after delete_vm listed it: UserVmManagerImpl.destroyVm(DestroyVMCmd), inside the job,
    ``if (vm == null || vm.getRemoved() != null) { throw new InvalidParameterValueException("unable to find a virtual
    machine with id " + vmId); }`` — errorcode 530 on 4.11–4.19.  The VM is gone, which is what delete_vm wants."""
    sim = legacy_job_codes_simulator()
    try:
        vm = Api(sim).deploy()
        before(monkeypatch, "destroyVirtualMachine", lambda st, ctx: st.expunge_destroyed(st.vms[ctx.p["id"]]))
        result = cpi_for(sim, tmp_path).call("delete_vm", vm["id"])
        assert result.error is None, result.stderr
        assert failed_jobs(sim, "destroyVirtualMachine") == [530]  # it met the in-job refusal
    finally:
        sim.stop()


def test_delete_stemcell_when_the_template_is_deleted_meanwhile(monkeypatch, tmp_path):
    """The template goes after delete_stemcell listed it: TemplateManagerImpl.deleteTemplate, inside the job,
    ``throw new InvalidParameterValueException("unable to find template with id " + templateId)`` — errorcode 530
    on 4.11–4.19.  A stemcell that is gone is deleted (BOSH: not an error)."""
    from tests.simulator.test_templates import QCOW2, post, upload_params, wait_template

    sim = legacy_job_codes_simulator()
    try:
        api = Api(sim)
        params = upload_params(api)
        assert post(params, QCOW2).status_code == 200
        wait_template(api, params["id"])
        before(monkeypatch, "deleteTemplate", lambda st, ctx: st.templates.pop(ctx.p["id"], None))
        result = cpi_for(sim, tmp_path).call("delete_stemcell", params["id"])
        assert result.error is None, result.stderr
        assert failed_jobs(sim, "deleteTemplate") == [530]
    finally:
        sim.stop()


def test_delete_vm_when_the_vm_left_its_load_balancer_rule_meanwhile(monkeypatch, tmp_path):
    """The VM leaves the rule after delete_vm listed the rules: LoadBalancingRulesManagerImpl.removeFromLoadBalancer
    refuses an instance that is not mapped (an InvalidParameterValueException in the job: errorcode 530 on
    4.11–4.19).  The VM is out of the rule, which is what delete_vm wants."""
    sim = legacy_job_codes_simulator()
    try:
        api = Api(sim)
        zone = api.zone("zone-1")["id"]
        network = api.network(zone, "bosh-isolated")["id"]
        vm = api.deploy()
        api.acall("createTags", resourcetype="UserVm", resourceids=vm["id"],
                  **{"tags[0].key": "cpi_lb_member", "tags[0].value": "true"})
        ip = api.acall("associateIpAddress", networkid=network)["ipaddress"]
        rule = api.acall("createLoadBalancerRule", publicipid=ip["id"], name="web", algorithm="roundrobin",
                         publicport=80, privateport=8080, networkid=network)["loadbalancer"]
        api.acall("assignToLoadBalancerRule", id=rule["id"], virtualmachineids=vm["id"])
        before(monkeypatch, "removeFromLoadBalancerRule", lambda st, ctx: st.lbrules[rule["id"]]["_vms"].clear())
        result = cpi_for(sim, tmp_path).call("delete_vm", vm["id"])
        assert result.error is None, result.stderr
        assert failed_jobs(sim, "removeFromLoadBalancerRule") == [530]
    finally:
        sim.stop()
