"""Lost answers to the load balancer and firewall rule mutations of create_vm and delete_vm (issue 16).

A VM is created with ``lbs`` naming two rules on 203.0.113.11: ``web`` (port 80, which the CPI creates, opening
the port with a firewall rule of its own) and ``ops`` (port 443, which an operator made, with firewall rules for
ports 443 and 22).  One answer is lost (``LossyProxy.lose_answer``: the server acts, the answer never arrives)
and the test plays the director: a failed create_vm must have removed what it made, and is retried; a failed
delete_vm is repeated until it succeeds.  Then a successful create_vm has left exactly one ``web`` rule and one
firewall rule for it, both marked as the CPI's, and after delete_vm nothing the CPI made is left (rules, tags,
VM) while the operator's rule and firewall rules are as the operator left them.

What CloudStack does that the CPI relies on:

* createLoadBalancerRule and createFirewallRule are BaseAsyncCreateCmds: ``create()`` stores the rule before the
  answer is sent (LoadBalancingRulesManagerImpl.createPublicLoadBalancer, FirewallManagerImpl.
  createIngressFirewallRule), so after a lost answer the rule is there to be found.  A load balancer rule carries
  the ``description`` it was created with (CreateLoadBalancerRuleCmd, up to 4096 characters): the CPI puts a
  unique token in it, so the rule found is this call's and not one made meanwhile by someone else.  A firewall
  rule has no such field: it is the rule for the port that was not there before (FirewallManagerImpl.
  detectRulesConflict refuses a second rule for the same port, protocol and CIDR).
* The create job's instance is the new rule (ApiServer.queueCommand: ``instanceId = objectId``), so the job of a
  lost createFirewallRule is found with listAsyncJobs and waited for: CreateFirewallRuleCmd.execute revokes the
  rule when applying it fails.
* deleteLoadBalancerRule revokes the rule's VM mappings with it (LoadBalancingRulesManagerImpl.
  deleteLoadBalancerRule): the last member leaving deletes the rule (its firewall rule first) without removing
  itself, so until the rule is gone the VM is still in it and a repeated delete_vm finds it again.

``JOB_NOT_FOUND`` loses answers to commands on existing rules where the job cannot be found either (a role without
listAsyncJobs, a job already purged): the call then fails, and only the director's repeat can finish the work.
"""

from __future__ import annotations

import pytest

from cloudstack_cpi.cloudstack.client import Client
from cloudstack_cpi.cloudstack.errors import CloudStackError
from tests.simulator.helpers import Api

from .harness import DIRECTOR_UUID, error_problems
from .test_unknown_outcomes import (
    IN_REAL_TIME,
    Cloud,
    cloud as cloud,  # the fixture: a simulator behind a LossyProxy, its timing parametrized by IN_REAL_TIME
)

PUBLIC_IP = "203.0.113.11"
WEB = {"name": "web", "public_ip": PUBLIC_IP, "public_port": 80, "private_port": 8080, "open_firewall": True}
OPS = {"name": "ops", "public_ip": PUBLIC_IP, "public_port": 443, "private_port": 8443}
NETWORKS = {"private": {"type": "manual", "ip": "10.1.0.60", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.1"], "default": ["dns", "gateway"],
                        "cloud_properties": {"name": "bosh-isolated"}}}


class Operator:
    """What an operator made on the public IP before BOSH came: the ``ops`` rule and two firewall rules."""

    def __init__(self, cloud: Cloud) -> None:
        api = Api(cloud.sim)  # straight to the simulator, not through the lossy proxy
        address = api.list("listPublicIpAddresses", "publicipaddress", ipaddress=PUBLIC_IP)[0]
        self.rule = api.acall("createLoadBalancerRule", "POST", name="ops", publicipid=address["id"],
                              publicport=443, privateport=8443, algorithm="roundrobin",
                              openfirewall="false")["loadbalancer"]["id"]
        api.acall("createTags", "POST", resourceids=self.rule, resourcetype="LoadBalancer",
                  **{"tags[0].key": "owner", "tags[0].value": "ops-team"})
        self.firewall = sorted(
            api.acall("createFirewallRule", "POST", ipaddressid=address["id"], protocol="tcp", startport=port,
                      endport=port, cidrlist="0.0.0.0/0")["firewallrule"]["id"] for port in (443, 22))
        self.before = snapshot(cloud)

    def untouched(self, cloud: Cloud) -> bool:
        return snapshot(cloud) == self.before


def snapshot(cloud: Cloud) -> dict:
    """Every rule and tag in the simulator, as comparable values."""
    with cloud.sim.state.lock:
        state = cloud.sim.state
        return {
            "rules": {rid: {k: v for k, v in r.items() if k not in ("_vms", "state")} for rid, r in state.lbrules.items()},
            "firewall": {rid: {k: v for k, v in r.items() if k != "state"} for rid, r in state.fwrules.items()},
            "tags": sorted((t["resourcetype"], t["resourceid"], t["key"], t["value"]) for t in state.tags),
        }


def create_vm(cloud: Cloud) -> dict:
    return cloud.call("create_vm", "agent-lb", cloud.stemcell, {"compute_offering": "small", "lbs": [WEB, OPS]},
                      NETWORKS, [], {})


def play_create(cloud: Cloud, operator: Operator) -> str:
    """create_vm as the director runs it: a failure must have left nothing behind, then it is tried again."""
    response = create_vm(cloud)
    if response["error"] is not None:
        assert error_problems("create_vm", response["error"]) == [], response["error"]
        assert cloud.inventory()["virtualmachines"] == [], cloud.logs[-1]
        assert operator.untouched(cloud), f"the failed create_vm left rules or tags behind\n{cloud.logs[-1]}"
        response = create_vm(cloud)  # the director's retry
    assert response["error"] is None, f"{response['error']}\n{cloud.logs[-1]}"
    return response["result"][0]


def play_delete(cloud: Cloud, vm_id: str) -> None:
    """delete_vm as the director runs it: repeated until it succeeds."""
    for _ in range(3):
        response = cloud.call("delete_vm", vm_id)
        if response["error"] is None:
            return
        assert error_problems("delete_vm", response["error"]) == [], response["error"]
    raise AssertionError(f"delete_vm still fails after 3 tries: {response['error']}\n{cloud.logs[-1]}")


def assert_joined_and_marked(cloud: Cloud, operator: Operator, vm_id: str) -> None:
    """One web rule, marked as the CPI's, with its own firewall rule for port 80; the VM in web and ops."""
    with cloud.sim.state.lock:
        state = cloud.sim.state
        rules = {r["name"]: dict(r, _vms=list(r["_vms"])) for r in state.lbrules.values()}
        assert sorted(r["name"] for r in state.lbrules.values()) == ["ops", "web"]
        web = rules["web"]
        assert (web["publicip"], web["publicport"], web["privateport"]) == (PUBLIC_IP, "80", "8080")
        assert web["_vms"] == [vm_id] and rules["ops"]["_vms"] == [vm_id]
        assert {t["key"]: t["value"] for t in state.tags_for("LoadBalancer", web["id"])} == {
            "cpi_created": "true", "director_uuid": DIRECTOR_UUID}
        [port] = [f for f in state.fwrules.values() if f["startport"] == 80]
        assert (port["ipaddressid"], port["endport"], port["protocol"]) == (web["publicipid"], 80, "tcp")
        assert {t["key"]: t["value"] for t in state.tags_for("FirewallRule", port["id"])} == {
            "cpi_created": "true", "cpi_lb_rule": web["id"], "director_uuid": DIRECTOR_UUID}
        assert sorted(state.fwrules) == sorted([port["id"], *operator.firewall])
        assert {t["key"] for t in state.tags_for("LoadBalancer", operator.rule)} == {"owner"}


def assert_nothing_left(cloud: Cloud, operator: Operator) -> None:
    assert cloud.inventory()["virtualmachines"] == []
    assert operator.untouched(cloud), f"left behind or changed: {snapshot(cloud)}\n{cloud.logs[-1]}"
    with cloud.sim.state.lock:
        assert cloud.sim.state.lbrules[operator.rule]["_vms"] == []


def run_lifecycle(cloud: Cloud) -> None:
    operator = Operator(cloud)
    vm_id = play_create(cloud, operator)
    assert_joined_and_marked(cloud, operator, vm_id)
    play_delete(cloud, vm_id)
    assert_nothing_left(cloud, operator)


# (command, which request of it the CPI sends: the operator's own requests do not pass the proxy)
LB_MUTATIONS = [
    pytest.param("createLoadBalancerRule", 1, id="createLoadBalancerRule-web"),
    pytest.param("createFirewallRule", 1, id="createFirewallRule-web"),
    pytest.param("assignToLoadBalancerRule", 1, id="assignToLoadBalancerRule-web"),
    pytest.param("removeFromLoadBalancerRule", 1, id="removeFromLoadBalancerRule-ops"),
    pytest.param("deleteFirewallRule", 1, id="deleteFirewallRule-web"),
    pytest.param("deleteLoadBalancerRule", 1, id="deleteLoadBalancerRule-web"),
]


@IN_REAL_TIME
@pytest.mark.parametrize("command, nth", LB_MUTATIONS)
def test_lost_answer_leaves_no_rule_behind(cloud, command, nth):
    """In real time the lost request's job is still running when the CPI looks."""
    cloud.proxy.lose_answer(command, nth=nth)
    run_lifecycle(cloud)
    assert cloud.proxy.lost == [command.lower()], "the answer was not lost: the test did not test anything"
    if command.startswith("create"):
        assert cloud.proxy.count(command) == nth, f"{command} was sent again after its answer was lost"
    if command == "createFirewallRule":  # its job was looked for (and, in real time, waited for)
        assert [p["keyword"] for c, p in cloud.sim.request_log if c == "listasyncjobs"] == ["CreateFirewallRuleCmd"]


def refuse_list_async_jobs(monkeypatch) -> None:
    """listAsyncJobs answers as to a role without it (ApiServer.commandAvailable: 401, cserrorcode 9999)."""
    original = Client.list_all

    def list_all(self, command, **params):
        if command == "listAsyncJobs":
            raise CloudStackError(command, "The given command 'listAsyncJobs' either does not exist, is not "
                                  "available for user.", http_status=401, errorcode=401, cserrorcode=9999)
        return original(self, command, **params)
    monkeypatch.setattr(Client, "list_all", list_all)


# Where the lost answer's job cannot be found.  removeFromLoadBalancerRule #2 is the web rule's last member removing
# itself, as the CPI did before deleting the rule (it now deletes the rule instead, and sends no such request);
# assignToLoadBalancerRule makes create_vm fail, whose cleanup deletes the web rule with its last member.
JOB_NOT_FOUND = [
    pytest.param("assignToLoadBalancerRule", 1, id="assignToLoadBalancerRule-web"),
    pytest.param("removeFromLoadBalancerRule", 2, id="removeFromLoadBalancerRule-web"),
    pytest.param("deleteFirewallRule", 1, id="deleteFirewallRule-web"),
]


@pytest.mark.parametrize("command, nth", JOB_NOT_FOUND)
def test_lost_answer_without_its_job_is_finished_by_the_repeat(cloud, monkeypatch, command, nth):
    """The call fails (it cannot know what happened), and the director's repeat must finish what it began: with
    the VM removed from the web rule and the rule not yet deleted, a repeated delete_vm found the VM in no rule,
    answered success and left the rule."""
    refuse_list_async_jobs(monkeypatch)
    cloud.proxy.lose_answer(command, nth=nth)
    run_lifecycle(cloud)
    if cloud.proxy.count(command) >= nth:
        assert cloud.proxy.lost == [command.lower()]



def test_firewall_rule_opened_for_a_deleted_rule_goes_with_the_ports_next_rule(cloud):
    """A rule deleted by its last member while another call was opening its port left that call's firewall rule,
    tagged for the deleted rule; the port's next rule found the port open and used it.  Deleting that next rule
    closes the port: the firewall rule is the CPI's (its tags) and served no other rule (CloudStack keeps one load
    balancer rule per IP and port)."""
    operator = Operator(cloud)
    api = Api(cloud.sim)
    address = api.list("listPublicIpAddresses", "publicipaddress", ipaddress=PUBLIC_IP)[0]
    orphan = api.acall("createFirewallRule", "POST", ipaddressid=address["id"], protocol="tcp", startport=80,
                       endport=80, cidrlist="0.0.0.0/0")["firewallrule"]["id"]
    api.acall("createTags", "POST", resourceids=orphan, resourcetype="FirewallRule",
              **{"tags[0].key": "cpi_created", "tags[0].value": "true",
                 "tags[1].key": "cpi_lb_rule", "tags[1].value": "a-rule-deleted-meanwhile"})
    vm_id = play_create(cloud, operator)
    assert cloud.proxy.count("createFirewallRule") == 0  # the port was open
    play_delete(cloud, vm_id)
    assert_nothing_left(cloud, operator)
