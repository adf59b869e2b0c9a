"""Load balancer membership: rule matching (pure) and resolving ``lbs`` against the fake gateway.  Joining and
leaving through create_vm and delete_vm is tested in tests/unit/actions/test_vms.py; what the gateway sends for a
rule, against the simulator in tests/unit/cloudstack/test_loadbalancers.py."""

from __future__ import annotations

import pytest

from cloudstack_cpi import errors, loadbalancers
from cloudstack_cpi.cloudstack.models import LoadBalancerRule, PublicIp, Vm, Zone
from cloudstack_cpi.models import LoadBalancer
from tests.unit.fake_cloud import FakeGateway

WEB = {"name": "web", "public_ip": "203.0.113.11", "public_port": 80, "private_port": 8080}
ZONE = Zone("zone-1-id", "zone-1")


def lb(**overrides) -> LoadBalancer:
    return LoadBalancer.model_validate({**WEB, **overrides})


# -- pure matching ---------------------------------------------------------------------------------------------


def test_find_address_by_address_or_id():
    addresses = [PublicIp.from_api(row) for row in ({"id": "ip-1", "ipaddress": "203.0.113.10"},
                                                    {"id": "ip-2", "ipaddress": "203.0.113.11"})]
    assert loadbalancers.find_address(addresses, "203.0.113.11").id == "ip-2"
    assert loadbalancers.find_address(addresses, "ip-1").address == "203.0.113.10"
    assert loadbalancers.find_address(addresses, "198.51.100.1") is None


def test_named_keeps_the_lowest_id_first():
    rules = [LoadBalancerRule(rule_id, name) for rule_id, name in (("b", "web"), ("c", "api"), ("a", "web"))]
    assert [r.id for r in loadbalancers.named(rules, "web")] == ["a", "b"]
    assert loadbalancers.named(rules, "db") == []


def test_check_compatible_refuses_other_ports_or_algorithm():
    rule = LoadBalancerRule.from_api({"id": "lb-1", "name": "web", "publicip": "203.0.113.11", "publicport": "80",
                                      "privateport": "8080", "algorithm": "roundrobin"})
    loadbalancers.check_compatible(rule, lb())
    with pytest.raises(errors.CloudError, match="exists with ports 80->8080, but the VM's lbs ask for 80->9090"):
        loadbalancers.check_compatible(rule, lb(private_port=9090))
    with pytest.raises(errors.CloudError, match="algorithm 'roundrobin', but the VM's lbs ask for 'source'"):
        loadbalancers.check_compatible(rule, lb(algorithm="source"))


def test_created_by_cpi_reads_the_tag():
    def rule(*tags):
        return LoadBalancerRule.from_api({"id": "lb-1", "tags": [{"key": k, "value": v} for k, v in tags]})
    assert loadbalancers.created_by_cpi(rule(("cpi_created", "true")))
    assert not loadbalancers.created_by_cpi(rule(("owner", "ops")))
    assert not loadbalancers.created_by_cpi(rule())


def test_is_member_reads_the_vm_tag():
    assert loadbalancers.is_member(Vm.from_api({"id": "v", "tags": [{"key": "cpi_lb_member", "value": "true"}]}))
    assert not loadbalancers.is_member(Vm("v"))


ADDRESSES = [PublicIp.from_api(row) for row in (
    {"id": "ip-1", "ipaddress": "203.0.113.10", "associatednetworkid": "net-iso", "isstaticnat": True,
     "zoneid": "zone-1-id"},
    {"id": "ip-2", "ipaddress": "203.0.113.11", "associatednetworkid": "net-iso", "isstaticnat": False,
     "zoneid": "zone-1-id"},
    {"id": "ip-3", "ipaddress": "203.0.113.12", "associatednetworkid": "net-other",
     "associatednetworkname": "other", "isstaticnat": False, "zoneid": "zone-1-id"},
    {"id": "ip-4", "ipaddress": "198.51.100.7", "associatednetworkid": "net-iso", "zoneid": "zone-2-id"},
)]


def listing() -> FakeGateway:
    fake = FakeGateway()
    fake.addresses.items = {ip.id: ip for ip in ADDRESSES}
    return fake


def test_resolve_finds_the_ip_and_its_network():
    fake = listing()
    [target] = loadbalancers.resolve(fake, [lb()], ZONE, {"net-iso"}, "net-iso", None)
    assert target.address.id == "ip-2" and target.network_id == "net-iso"
    assert fake.called("addresses.allocated") == [{"args": ("zone-1-id",)}]
    assert loadbalancers.resolve(fake, [], ZONE, set(), None, None) == []


@pytest.mark.parametrize("wanted, vip, message", [
    ("198.51.100.7", None, ("public IP 198.51.100.7 is not allocated to this account in zone 'zone-1' "
                            "\\(allocated: 203.0.113.10, 203.0.113.11, 203.0.113.12\\)")),
    ("203.0.113.10", None, "public IP 203.0.113.10 is used for static NAT"),
    ("203.0.113.11", "203.0.113.11", "public IP 203.0.113.11 is used for static NAT"),
    ("203.0.113.12", None, "public IP 203.0.113.12 belongs to network 'other', where the VM has no NIC"),
])
def test_resolve_refuses_unusable_ips(wanted, vip, message):
    with pytest.raises(errors.CloudError, match=f"Load balancer 'web': {message}"):
        loadbalancers.resolve(listing(), [lb(public_ip=wanted)], ZONE, {"net-iso"}, "net-iso", vip)
