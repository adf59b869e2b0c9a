"""The load balancer service against the simulator.

CloudStack facts (apache/cloudstack): createLoadBalancerRule opens the public port in the IP's firewall itself
unless ``openfirewall=false`` (CreateLoadBalancerRuleCmd.getOpenFirewall defaults to true: a firewall rule for the
public port, open to all), so the CPI asks for none and opens the port itself only when ``lbs`` say so.
"""

from __future__ import annotations


def test_a_rule_is_created_on_the_ips_network_without_opening_the_firewall(sim, gateway, arranged):
    ip = next(ip for ip in gateway.addresses.allocated(arranged.zone) if ip.address == "203.0.113.11")
    made: list[str] = []
    sim.clear_request_log()
    rule = gateway.load_balancers.create(name="web", description="Created by the BOSH CPI: token-1", ip_id=ip.id,
                                         public_port=80, private_port=8080, algorithm="roundrobin",
                                         network_id=ip.network_id, made=made.append)
    (params,) = [params for command, params in sim.request_log if command == "createloadbalancerrule"]
    assert params["openfirewall"] == "false" and params["networkid"] == arranged.network
    assert made == [rule.id] and (rule.public_port, rule.private_port, rule.network_id) == (80, 8080, arranged.network)
    assert gateway.addresses.firewall_rules(ip.id) == []
    assert gateway.load_balancers.on_ip(ip.id) == [rule]


def test_the_members_of_a_rule_deleted_meanwhile_are_none(sim, gateway, arranged):
    """Parallel delete_vm calls of a rule's last members: one lists the rule, another deletes it, the first asks
    for its members.  CloudStack answers 431 for an id of no entity (ApiDispatcher's uuid translation: "entity does
    not exist"); that is a rule with no member, not a failed delete_vm (tests/lifecycle/test_loadbalancers.py
    test_parallel_creates_end_in_one_rule failed on it once its calls got faster)."""
    ip = next(ip for ip in gateway.addresses.allocated(arranged.zone) if ip.address == "203.0.113.11")
    rule = gateway.load_balancers.create(name="gone", description="Created by the BOSH CPI: token-2", ip_id=ip.id,
                                         public_port=81, private_port=8081, algorithm="roundrobin",
                                         network_id=ip.network_id, made=lambda rule_id: None)
    gateway.load_balancers.delete(rule)
    assert gateway.load_balancers.members(rule.id) == []
