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
