"""Load balancer membership: rule matching (pure) and the join/leave calls against a faked CloudStack."""

from __future__ import annotations

import pytest
import responses

from cloudstack_cpi import errors, loadbalancers
from cloudstack_cpi.actions import vms
from cloudstack_cpi.cloudstack.models import LoadBalancerRule, PublicIp, Vm, Zone
from cloudstack_cpi.models import LoadBalancer
from tests.unit.actions.test_vms import FakeCloud, create, make_ctx
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


# -- through create_vm / delete_vm ----------------------------------------------------------------------------------


@pytest.fixture
def cloud():
    fake = FakeCloud()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        yield fake


@pytest.fixture
def ctx(tmp_path):
    context = make_ctx(tmp_path)
    yield context
    context.close()


def create_member(ctx, ip, **lb_overrides):
    return create(ctx, {"lbs": [{**WEB, **lb_overrides}]}, networks={
        "default": {"type": "manual", "ip": ip, "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                    "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}})[0]


def test_first_vm_creates_the_rule_second_joins_last_one_out_removes_it(cloud, ctx):
    first = create_member(ctx, "10.1.0.10", open_firewall=True)
    assert {"key": "cpi_lb_member", "value": "true"} in cloud.vms[first]["tags"]
    [rule] = cloud.rules.values()
    assert rule["_vms"] == [first] and rule["name"] == "web" and rule["publicport"] == "80"
    assert rule["_openfirewall"] == "false" and rule["networkid"] == "net-iso"
    assert {"key": "cpi_created", "value": "true"} in rule["tags"]
    [firewall] = cloud.firewall.values()
    assert firewall["startport"] == "80" and {"key": "cpi_lb_rule", "value": rule["id"]} in firewall["tags"]

    second = create_member(ctx, "10.1.0.11", open_firewall=True)
    assert rule["_vms"] == [first, second]
    assert cloud.commands().count("createLoadBalancerRule") == 1 and len(cloud.firewall) == 1

    vms.delete_vm(ctx, first)
    assert rule["_vms"] == [second] and cloud.rules and cloud.firewall
    vms.delete_vm(ctx, second)
    assert cloud.rules == {} and cloud.firewall == {}


def test_rule_made_by_an_operator_is_joined_and_kept(cloud, ctx):
    cloud.rules["lb-ops"] = {"id": "lb-ops", "name": "web", "publicipid": "ip-2", "publicip": "203.0.113.11",
                             "publicport": "80", "privateport": "8080", "algorithm": "roundrobin", "tags": [],
                             "_vms": []}
    member = create_member(ctx, "10.1.0.10")
    assert cloud.rules["lb-ops"]["_vms"] == [member] and "createLoadBalancerRule" not in cloud.commands()
    vms.delete_vm(ctx, member)
    assert cloud.rules["lb-ops"]["_vms"] == [] and "deleteLoadBalancerRule" not in cloud.commands()


def test_existing_rule_with_other_ports_is_a_clear_error_and_cleans_up(cloud, ctx):
    cloud.rules["lb-ops"] = {"id": "lb-ops", "name": "web", "publicipid": "ip-2", "publicip": "203.0.113.11",
                             "publicport": "80", "privateport": "9999", "algorithm": "roundrobin", "tags": [],
                             "_vms": []}
    with pytest.raises(errors.CloudError, match="Load balancer rule 'web' on 203.0.113.11 exists with ports 80->9999"):
        create_member(ctx, "10.1.0.10")
    assert cloud.vms == {} and cloud.rules["lb-ops"]["_vms"] == []


def test_losing_the_create_race_uses_the_winners_rule(cloud, ctx, monkeypatch):
    original = cloud.createLoadBalancerRule

    def winner_first(p):
        cloud.rules["lb-0"] = {"id": "lb-0", "name": "web", "publicipid": "ip-2", "publicip": "203.0.113.11",
                               "publicport": "80", "privateport": "8080", "algorithm": "roundrobin",
                               "tags": [{"key": "cpi_created", "value": "true"}], "_vms": ["other-vm"]}
        return original(p)  # now refused: the port is taken
    monkeypatch.setattr(cloud, "createLoadBalancerRule", winner_first)
    member = create_member(ctx, "10.1.0.10")
    assert list(cloud.rules) == ["lb-0"] and cloud.rules["lb-0"]["_vms"] == ["other-vm", member]
    assert "created meanwhile by another call" in ctx.stderr.getvalue()


def test_duplicate_rules_converge_on_the_first(cloud, ctx, monkeypatch):
    original = cloud.createLoadBalancerRule

    def racing_twin(p):
        answer = original(p)  # this call's rule
        cloud.rules["lb-0"] = {"id": "lb-0", "name": "web", "publicipid": "ip-2", "publicip": "203.0.113.11",
                               "publicport": "80", "privateport": "8080", "algorithm": "roundrobin",
                               "tags": [{"key": "cpi_created", "value": "true"}], "_vms": []}
        return answer
    monkeypatch.setattr(cloud, "createLoadBalancerRule", racing_twin)
    member = create_member(ctx, "10.1.0.10", open_firewall=True)
    assert list(cloud.rules) == ["lb-0"] and cloud.rules["lb-0"]["_vms"] == [member]
    assert cloud.firewall == {}  # the duplicate's firewall rule went with it


def test_rule_deleted_meanwhile_is_created_again(cloud, ctx, monkeypatch):
    original = cloud.assignToLoadBalancerRule
    state = {"first": True}

    def vanish_once(p):
        if state.pop("first", False):
            cloud.rules.pop(p["id"])  # the last member of an existing rule left and deleted it
        return original(p)
    cloud.rules["lb-0"] = {"id": "lb-0", "name": "web", "publicipid": "ip-2", "publicip": "203.0.113.11",
                           "publicport": "80", "privateport": "8080", "algorithm": "roundrobin", "tags": [],
                           "_vms": []}
    monkeypatch.setattr(cloud, "assignToLoadBalancerRule", vanish_once)
    member = create_member(ctx, "10.1.0.10")
    [rule] = cloud.rules.values()
    assert rule["id"] != "lb-0" and rule["_vms"] == [member]


def test_failure_after_joining_leaves_the_rule_and_deletes_what_it_created(cloud, ctx):
    cloud.fail["createFirewallRule"] = (530, "firewall backend down")
    with pytest.raises(errors.VMCreationFailed):
        create_member(ctx, "10.1.0.10", open_firewall=True)
    assert cloud.vms == {} and cloud.rules == {} and cloud.firewall == {}


def test_missing_public_ip_fails_before_creating(cloud, ctx):
    with pytest.raises(errors.CloudError, match="Load balancer 'web': public IP 198.51.100.9 is not allocated"):
        create_member(ctx, "10.1.0.10", public_ip="198.51.100.9")
    assert cloud.mutations() == []
