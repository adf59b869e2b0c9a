"""BOSH networks to deploy parameters: validation, NIC order, zone types, NIC matching."""

import pytest

from cloudstack_cpi import networks as nets
from cloudstack_cpi.cloudstack.models import Network, Nic, SecurityGroup, Zone
from cloudstack_cpi.cloudstack.vms import DeployNetworks, NicRequest
from cloudstack_cpi.errors import CloudError, CpiError
from tests.unit.fake_cloud import FakeGateway

ADVANCED = Zone.from_api({"id": "z1", "name": "zone-1", "networktype": "Advanced", "securitygroupsenabled": False})
ADVANCED_SG = Zone.from_api({"id": "z2", "name": "zone-sg", "networktype": "Advanced", "securitygroupsenabled": True})
BASIC = Zone.from_api({"id": "z3", "name": "basic-zone", "networktype": "Basic", "securitygroupsenabled": True})


def manual(ip="10.1.0.10", name="bosh-isolated", default=("dns", "gateway"), **props):
    return {"type": "manual", "ip": ip, "netmask": "255.255.255.0", "gateway": ip.rsplit(".", 1)[0] + ".1",
            "dns": ["10.1.0.2"], "default": list(default), "cloud_properties": {"name": name, **props}}


def dynamic(name="bosh-shared", default=(), **props):
    return {"type": "dynamic", "default": list(default), "cloud_properties": {"name": name, **props}}


def vip(ip="203.0.113.10"):
    return {"type": "vip", "ip": ip, "cloud_properties": {}}


class FakeLog:
    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)


def fake_cloud(zone=ADVANCED, networks=(), groups=()):
    """The fake gateway with these networks (id, name) in ``zone`` and these security groups (id, name)."""
    cloud = FakeGateway()
    cloud.networks.network_list = [Network(network_id, name, zone.id) for network_id, name in networks]
    cloud.networks.group_list = [SecurityGroup(group_id, name) for group_id, name in groups]
    return cloud


# -- parse ----------------------------------------------------------------------------------------------------


def test_parse_keeps_order_and_cloud_properties():
    parsed = nets.parse({"a": manual(), "b": dynamic(), "pub": vip()})
    assert [n.name for n in parsed] == ["a", "b", "pub"]
    assert [n.type for n in parsed] == ["manual", "dynamic", "vip"]
    assert parsed[0].props.name == "bosh-isolated"
    assert nets.vip(parsed).ip == "203.0.113.10"


@pytest.mark.parametrize("networks, message", [
    ({"a": {"type": "weird"}}, "type 'weird'"),
    ({"a": {"type": "manual", "cloud_properties": {"name": "n"}}}, "manual but has no ip"),
    ({"a": manual(), "v1": vip(), "v2": vip("203.0.113.11")}, "At most one vip network per VM, got 2: v1, v2"),
    ({"v": vip()}, "at least one manual or dynamic network"),
])
def test_parse_refuses_networks_this_cpi_cannot_serve(networks, message):
    with pytest.raises(CloudError, match=message):
        nets.parse(networks)


# Malformed values: a CpiError naming the path in the networks argument and quoting (a prefix of) the value.
@pytest.mark.parametrize("networks, message", [
    ({"a": "not-an-object"}, "networks.a must be an object"),
    ({"default": {**manual(), "netmask": "banana"}},
     "networks.default.netmask: must be a netmask such as 255.255.255.0, got 'banana'"),
    ({"default": {**manual(), "netmask": "255.0.255.0"}}, "networks.default.netmask: must be a netmask"),
    ({"default": {**manual(), "netmask": 24}}, "networks.default.netmask: Input should be a valid string, got 24"),
    ({"default": {**manual(), "ip": "10.1.0.300"}}, "networks.default.ip: must be an IP address.*got '10.1.0.300'"),
    ({"default": {**manual(), "ip": ["10.1.0.3"]}}, "networks.default.ip: Input should be a valid string"),
    ({"default": {**manual(), "gateway": "router"}}, "networks.default.gateway: must be an IP address.*'router'"),
    ({"default": {**manual(), "gateway": "fd00::1"}}, "networks.default: gateway 'fd00::1' is not an IPv4 address"),
    ({"default": {**manual(), "dns": ["10.1.0.2", "dns.example.com"]}},
     "networks.default.dns.1: must be an IP address.*'dns.example.com'"),
    ({"default": {**manual(), "dns": "10.1.0.2"}}, "networks.default.dns: Input should be a valid list"),
    ({"default": {**manual(), "default": "gateway"}}, "networks.default.default: Input should be a valid list"),
    ({"default": {**manual(), "type": 7}}, "networks.default.type: Input should be a valid string"),
    ({"a": {**manual(), "cloud_properties": {"routes": [{"destination": "10.0.0.0"}]}}},
     "networks.a.cloud_properties.routes.0.netmask: Field required"),
    ({"a": manual(routes=[{"destination": "10.9.0.0", "netmask": "banana", "gateway": "10.1.0.1"}])},
     "networks.a.cloud_properties.routes.0.netmask: must be a netmask.*'banana'"),
    ({"a": manual(routes=[{"destination": "10.9.0.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.1"}])},
     "networks.a.cloud_properties.routes.0.destination: must be an IP address"),
    ({"a": manual(routes=[{"destination": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "x"}])},
     "networks.a.cloud_properties.routes.0.gateway: must be an IP address"),
    ({"a": manual(routes=[{"cidr": "10.9.0.0/33", "gateway": "10.1.0.1"}])},
     "networks.a.cloud_properties.routes.0: cidr must be a network such as 10.20.0.0/16, got '10.9.0.0/33'"),
    ({"a": manual(routes=[{"cidr": ["10.9.0.0/16"], "gateway": "10.1.0.1"}])},
     "networks.a.cloud_properties.routes.0: cidr must be a network"),
    ({"a": manual(routes=True)}, "networks.a.cloud_properties.routes: Input should be a valid list"),
    ({"a": manual(routes=[True])}, "networks.a.cloud_properties.routes.0: Input should be a valid dictionary"),
    ({"a": manual(security_groups="web")}, "networks.a.cloud_properties.security_groups: Input should be a valid list"),
    ({"": {**manual(), "netmask": "banana"}}, r"networks\[''\].netmask: must be a netmask"),
])
def test_parse_refuses_malformed_values_naming_their_path(networks, message):
    with pytest.raises(CpiError, match=message) as raised:
        nets.parse(networks)
    assert "\n" not in raised.value.message


def test_malformed_values_are_quoted_by_a_short_prefix():
    with pytest.raises(CpiError) as raised:
        nets.parse({"default": {**manual(), "netmask": "2" * 100_000}})
    message = raised.value.message
    assert len(message) < 200, message
    assert "networks.default.netmask" in message and "[100000 characters]" in message


@pytest.mark.parametrize("spec", [
    {**manual(), "ip": "fd00::10", "netmask": "ffff:ffff:ffff:ffff::", "gateway": "fd00::1", "dns": ["fd00::2"]},
    {**manual(), "netmask": "255.255.255.255"},
    {**manual(), "netmask": "0.0.0.0"},
    {**manual(), "dns": None, "default": None, "cloud_properties": None},
    {**manual(), "mac": "02:00:00:00:00:01", "alias": "eth0", "preconfigured": False},
    {**dynamic(), "netmask": "", "gateway": "", "ip": ""},
    {**manual(), "cloud_properties": {"name": "n", "routes": None}},
])
def test_parse_accepts_well_formed_values(spec):
    parsed = nets.parse({"n": spec})
    assert parsed[0].spec == spec


def test_parse_accepts_go_cpi_cidr_routes():
    parsed = nets.parse({"a": manual(routes=[{"cidr": "10.20.0.0/16", "gateway": "10.1.0.254"}])})
    route = parsed[0].props.routes[0]
    assert (route.destination, route.netmask, route.gateway) == ("10.20.0.0", "255.255.0.0", "10.1.0.254")


# -- NIC order ------------------------------------------------------------------------------------------------


def names(order):
    return [n.name for n in order]


def test_default_gateway_network_is_eth0_whatever_its_position():
    parsed = nets.parse({"second": dynamic(), "main": manual(default=("gateway",)), "pub": vip()})
    assert names(nets.nic_order(parsed)) == ["main", "second"]


def test_without_default_gateway_the_first_discoverable_network_is_eth0():
    parsed = nets.parse({"hidden": dynamic(undiscoverable=True), "a": manual(default=()), "b": dynamic("x")})
    assert names(nets.nic_order(parsed)) == ["a", "b", "hidden"]


def test_undiscoverable_networks_come_last():
    parsed = nets.parse({"u1": dynamic("n1", undiscoverable=True), "main": manual(), "d": dynamic("n2"),
                         "u2": dynamic("n3", undiscoverable=True)})
    assert names(nets.nic_order(parsed)) == ["main", "d", "u1", "u2"]


def test_undiscoverable_default_network_is_refused():
    parsed = nets.parse({"main": manual(undiscoverable=True), "other": dynamic()})
    with pytest.raises(CloudError, match="'main' carries the default gateway but is marked undiscoverable"):
        nets.nic_order(parsed)


def test_all_undiscoverable_is_refused():
    parsed = nets.parse({"a": dynamic(undiscoverable=True)})
    with pytest.raises(CloudError, match="Every network is marked undiscoverable"):
        nets.nic_order(parsed)


def test_dns_network_prefers_the_dns_default():
    parsed = nets.parse({"main": manual(default=("gateway",)), "dnsnet": {**dynamic(), "default": ["dns"]}})
    assert nets.dns_network(nets.nic_order(parsed)).name == "dnsnet"


# -- security groups per zone type --------------------------------------------------------------------------


def test_security_groups_refused_in_zone_without_them():
    parsed = nets.parse({"a": manual(security_groups=["web"])})
    with pytest.raises(CloudError, match="Zone 'zone-1' does not have security groups enabled.*\\(web\\)"):
        nets.security_groups(ADVANCED, parsed, [], [])
    with pytest.raises(CloudError, match="requested \\(vm-group\\)"):
        nets.security_groups(ADVANCED, nets.parse({"a": manual()}), ["vm-group"], [])


def test_config_default_groups_ignored_in_zone_without_them():
    assert nets.security_groups(ADVANCED, nets.parse({"a": manual()}), [], ["default"]) == []


def test_security_group_precedence_vm_then_networks_then_defaults():
    parsed = nets.parse({"a": manual(security_groups=["n1", "n2"]), "b": dynamic(security_groups=["n2", "n3"])})
    assert nets.security_groups(BASIC, parsed, ["vm1", "vm1"], ["d"]) == ["vm1"]
    assert nets.security_groups(BASIC, parsed, [], ["d"]) == ["n1", "n2", "n3"]
    assert nets.security_groups(ADVANCED_SG, nets.parse({"a": manual()}), [], ["d1", "d2"]) == ["d1", "d2"]


# -- deploy parameters --------------------------------------------------------------------------------------


def test_advanced_zone_puts_the_nics_in_nic_order():
    parsed = nets.parse({"dyn": dynamic("shared"), "main": manual(name="isolated"), "pub": vip()})
    order = nets.nic_order(parsed)
    cloud = fake_cloud(networks=[("net-iso", "isolated"), ("net-sh", "shared")])
    placement = nets.resolve(cloud, ADVANCED, parsed, order, [], ["ignored-default"], FakeLog())
    assert nets.deploy_networks(placement, order) == DeployNetworks(
        nics=(NicRequest("net-iso", "10.1.0.10"), NicRequest("net-sh", None)))
    assert cloud.methods() == ["networks.in_zone"]  # no security group lookup
    assert cloud.called("networks.in_zone") == [{"args": ("z1",)}]


def test_advanced_zone_requires_network_names():
    parsed = nets.parse({"main": {**manual(), "cloud_properties": {}}})
    with pytest.raises(CloudError, match="advanced zone: network cloud_properties must name the CloudStack network.*main"):
        nets.resolve(fake_cloud(), ADVANCED, parsed, nets.nic_order(parsed), [], [], FakeLog())


def test_advanced_zone_unknown_network_lists_what_exists():
    parsed = nets.parse({"main": manual(name="nope")})
    cloud = fake_cloud(networks=[("n1", "bosh-isolated"), ("n2", "bosh-shared")])
    with pytest.raises(CloudError, match="Network 'nope' not found in zone 'zone-1' \\(available: bosh-isolated, bosh-shared\\)"):
        nets.resolve(cloud, ADVANCED, parsed, nets.nic_order(parsed), [], [], FakeLog())


def test_advanced_zone_with_security_groups_sends_networks_and_groups():
    parsed = nets.parse({"main": manual(name="shared", security_groups=["web"])})
    order = nets.nic_order(parsed)
    cloud = fake_cloud(ADVANCED_SG, networks=[("net-sh", "shared")], groups=[("sg-web", "web"), ("sg-d", "default")])
    placement = nets.resolve(cloud, ADVANCED_SG, parsed, order, [], [], FakeLog())
    assert nets.deploy_networks(placement, order) == DeployNetworks(
        nics=(NicRequest("net-sh", "10.1.0.10"),), security_group_ids=("sg-web",))


def test_basic_zone_sends_no_network_and_a_manual_ip():
    parsed = nets.parse({"main": manual(name="guest", security_groups=["bosh"])})
    order = nets.nic_order(parsed)
    log = FakeLog()
    cloud = fake_cloud(BASIC, groups=[("sg-bosh", "bosh"), ("sg-def", "default")])
    placement = nets.resolve(cloud, BASIC, parsed, order, [], ["default"], log)
    assert nets.deploy_networks(placement, order) == DeployNetworks(ip="10.1.0.10", security_group_ids=("sg-bosh",))
    assert cloud.methods() == ["networks.security_groups"]
    assert "cloud_properties.name of network(s) main ignored" in log.warnings[0]


def test_basic_zone_dynamic_network_uses_default_groups_by_id_or_name():
    parsed = nets.parse({"main": {"type": "dynamic", "default": ["dns", "gateway"]}})
    order = nets.nic_order(parsed)
    cloud = fake_cloud(BASIC, groups=[("sg-bosh", "bosh"), ("sg-def", "default")])
    placement = nets.resolve(cloud, BASIC, parsed, order, [], ["sg-def", "bosh"], FakeLog())
    assert nets.deploy_networks(placement, order) == DeployNetworks(security_group_ids=("sg-def", "sg-bosh"))


def test_basic_zone_allows_one_nic_only():
    parsed = nets.parse({"a": manual(), "b": dynamic()})
    with pytest.raises(CloudError, match="basic zone with one guest network.*got 2 \\(a, b\\)"):
        nets.resolve(fake_cloud(BASIC), BASIC, parsed, nets.nic_order(parsed), [], [], FakeLog())


def test_unknown_security_group_is_named():
    parsed = nets.parse({"a": manual()})
    cloud = fake_cloud(BASIC, groups=[("sg-def", "default")])
    with pytest.raises(CloudError, match="Security group 'web' not found \\(available: default\\)"):
        nets.resolve(cloud, BASIC, parsed, nets.nic_order(parsed), ["web"], [], FakeLog())


# -- after deploy -------------------------------------------------------------------------------------------


def test_match_nics_by_network_id_and_fill_dynamic_results():
    parsed = nets.parse({"main": manual(name="iso"), "dyn": dynamic("sh"), "pub": vip()})
    order = nets.nic_order(parsed)
    placement = nets.Placement(basic=False, network_ids={"main": "net-iso", "dyn": "net-sh"})
    vm_nics = [Nic.from_api(row) for row in (
        {"id": "nic-2", "deviceid": "1", "networkid": "net-sh", "ipaddress": "10.2.0.17", "netmask": "255.255.255.0",
         "gateway": "10.2.0.1", "macaddress": "02:00:00:00:00:02"},
        {"id": "nic-1", "deviceid": "0", "networkid": "net-iso", "ipaddress": "10.1.0.10", "netmask": "255.255.255.0",
         "gateway": "10.1.0.1", "macaddress": "02:00:00:00:00:01"},
    )]
    matched = nets.match_nics(placement, order, vm_nics)
    assert matched["main"].mac == "02:00:00:00:00:01"
    assert matched["dyn"].mac == "02:00:00:00:00:02"
    assert (matched["dyn"].ip, matched["dyn"].netmask, matched["dyn"].gateway) == ("10.2.0.17", "255.255.255.0",
                                                                                    "10.2.0.1")
    result = nets.result_networks(parsed, matched)
    assert result["dyn"]["ip"] == "10.2.0.17" and result["dyn"]["gateway"] == "10.2.0.1"
    assert result["dyn"]["cloud_properties"] == {"name": "sh"}
    assert result["main"] == parsed[0].spec
    assert result["pub"] == parsed[2].spec


def test_match_nics_in_basic_zone_by_position_and_missing_nic_is_an_error():
    parsed = nets.parse({"main": {"type": "dynamic"}})
    order = nets.nic_order(parsed)
    nic = Nic.from_api({"id": "nic-9", "deviceid": "0", "networkid": "guest", "macaddress": "02:00:00:00:00:09"})
    assert nets.match_nics(nets.Placement(basic=True), order, [nic])["main"] is nic
    with pytest.raises(CloudError, match="no NIC on the CloudStack network of BOSH network 'main'"):
        nets.match_nics(nets.Placement(basic=False, network_ids={"main": "other"}), order, [nic])


def test_chosen_macs_are_unicast_locally_administered_and_never_cloudstacks_own_range():
    """A MAC with the multicast bit CloudStack refuses (DeployVMCmd: "Mac address is not unicast"); a vendor's
    (globally administered) MAC could be a real device's; CloudStack gives guest NICs 02:00:.. addresses itself
    (NetworkModel.getNextAvailableMacAddressInNetwork), so a chosen MAC never starts with 02."""
    order = nets.nic_order(nets.parse({
        "a": {"type": "manual", "ip": "10.0.0.5", "netmask": "255.255.255.0", "gateway": "10.0.0.1",
              "default": ["dns", "gateway"]},
        "b": {"type": "dynamic"}}))
    for first in (0x00, 0x01, 0x02, 0x03, 0xff, 0xfe):
        macs = nets.choose_macs(order, lambda n, first=first: bytes([first, 0, 0x12, 0x34, 0x56, 0x78]))
        assert set(macs) == {"a", "b"}
        for mac in macs.values():
            octet = int(mac[:2], 16)
            assert octet & 0x01 == 0 and octet & 0x02 and octet != 0x02 and mac.endswith(":00:12:34:56:78")
    assert nets.deploy_networks(nets.Placement(False, {"a": "n1", "b": "n2"}), order, {"a": "0e:00:00:00:00:01"}) \
        .nics[0].mac == "0e:00:00:00:00:01"
