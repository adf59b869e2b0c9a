"""Load balancer membership through bin/cpi against the simulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.lifecycle.test_vms import EMPTY, leftovers, manual, template_id
from tests.simulator.helpers import Api

WEB = {"name": "web", "public_ip": "203.0.113.11", "public_port": 80, "private_port": 8080, "open_firewall": True}


def rules(simulator) -> list[dict]:
    return Api(simulator).list("listLoadBalancerRules", "loadbalancerrule", listall=True)


def members(simulator, rule_id) -> list[str]:
    return sorted(vm["id"] for vm in Api(simulator).list("listLoadBalancerRuleInstances", "loadbalancerruleinstance",
                                                           id=rule_id))


def firewall(simulator) -> list[dict]:
    return Api(simulator).list("listFirewallRules", "firewallrule", listall=True)


def create_member(cpi, stemcell, ip, agent):
    return cpi.ok("create_vm", agent, stemcell, {"compute_offering": "small", "lbs": [WEB]}, {"private": manual(ip)},
                  [], {})[0]


def test_members_share_a_rule_that_goes_with_the_last_one(cpi, simulator):
    stemcell = template_id(simulator)
    first = create_member(cpi, stemcell, "10.1.0.50", "agent-1")
    second = create_member(cpi, stemcell, "10.1.0.51", "agent-2")
    [rule] = rules(simulator)
    assert (rule["name"], rule["publicip"], rule["publicport"], rule["privateport"]) == \
        ("web", "203.0.113.11", "80", "8080")
    assert {"cpi_created": "true", "director_uuid": "director-uuid-1"}.items() <= \
        {t["key"]: t["value"] for t in rule["tags"]}.items()
    assert members(simulator, rule["id"]) == sorted([first, second])
    [port] = firewall(simulator)
    assert (port["startport"], port["endport"], port["ipaddress"]) == (80, 80, "203.0.113.11")

    cpi.ok("delete_vm", first)
    assert [r["id"] for r in rules(simulator)] == [rule["id"]] and members(simulator, rule["id"]) == [second]
    assert len(firewall(simulator)) == 1
    cpi.ok("delete_vm", second)
    assert rules(simulator) == [] and firewall(simulator) == []
    assert leftovers(simulator) == EMPTY
    assert simulator.inventory()["loadbalancerrules"] == [] and simulator.inventory()["firewallrules"] == []


def test_parallel_creates_end_in_one_rule(cpi, simulator):
    stemcell = template_id(simulator)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(create_member, cpi, stemcell, f"10.1.0.{60 + i}", f"agent-p{i}") for i in range(2)]
        created = [future.result() for future in futures]
    [rule] = rules(simulator)
    assert members(simulator, rule["id"]) == sorted(created)
    assert len(firewall(simulator)) == 1
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda vm: cpi.ok("delete_vm", vm), created))
    assert rules(simulator) == [] and firewall(simulator) == []
    assert leftovers(simulator) == EMPTY


def test_missing_public_ip_is_refused_before_anything_exists(cpi, simulator):
    simulator.clear_request_log()
    result = cpi.call("create_vm", "agent-x", template_id(simulator),
                      {"compute_offering": "small", "lbs": [{**WEB, "public_ip": "203.0.113.39"}]},
                      {"private": manual("10.1.0.70")}, [], {})
    assert result.error["type"] == "Bosh::Clouds::CloudError"
    assert "Load balancer 'web': public IP 203.0.113.39 is not allocated to this account in zone 'zone-1'" in \
        result.error["message"]
    assert not [command for command, _ in simulator.request_log if not command.startswith(("list", "query"))]
    assert leftovers(simulator) == EMPTY


def test_a_rule_whose_port_a_killed_call_never_opened_gets_it_opened_by_the_next_member(cpi, simulator):
    """Found by the fault soak (bench/fault_soak.py --kill create_vm@createtags#3:after): a create_vm killed between
    making the rule and opening its port left a CPI rule with the port closed, and every later member joined it and
    answered success with the port still closed.  open_firewall now holds for an existing rule too."""
    stemcell = template_id(simulator)
    create_member(cpi, stemcell, "10.1.0.70", "agent-1")
    [port] = firewall(simulator)
    Api(simulator).call("deleteFirewallRule", id=port["id"])  # what the killed call never made
    assert firewall(simulator) == []
    create_member(cpi, stemcell, "10.1.0.71", "agent-2")
    [port] = firewall(simulator)
    assert (port["startport"], port["ipaddress"]) == (80, "203.0.113.11")
