"""The agent settings document and its user-data encoding."""

import base64
import json

import pytest

from cloudstack_cpi import agent_settings, config, models, networks as nets
from cloudstack_cpi.cloudstack.models import Nic
from cloudstack_cpi.errors import CloudError
from tests import agent_model

CONFIG = config.parse({
    "cloudstack": {"endpoint": "http://cs.test/client/api", "api_key": "k", "secret_access_key": "s"},
    "agent": {"mbus": "nats://nats:secret-pass@10.0.0.6:4222", "ntp": ["ntp-1"],
              "blobstore": {"provider": "dav", "options": {"endpoint": "http://10.0.0.6:25250", "password": "p"}}},
})
NETWORKS = {
    "main": {"type": "manual", "ip": "10.1.0.10", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
             "dns": ["10.1.0.2"], "default": ["dns", "gateway"], "prefix": "24",
             "cloud_properties": {"name": "iso", "routes": [{"destination": "10.9.0.0", "netmask": "255.255.0.0",
                                                              "gateway": "10.1.0.254"}]}},
    "dyn": {"type": "dynamic", "dns": ["10.2.0.2"], "default": [], "cloud_properties": {"name": "shared"}},
    "pub": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {"secret": "x"}},
}
NICS = {
    "main": Nic("nic-1", mac="02:00:00:00:00:01", ip="10.1.0.10", netmask="255.255.255.0", gateway="10.1.0.1"),
    "dyn": Nic("nic-2", mac="02:00:00:00:00:02", ip="10.2.0.33", netmask="255.255.255.0", gateway="10.2.0.1"),
}


def network_settings(vm_routes=None):
    parsed = nets.parse(NETWORKS)
    order = nets.nic_order(parsed)
    return parsed, order, agent_settings.network_settings(parsed, NICS, vm_routes or {})


def test_networks_carry_mac_dhcp_and_routes_but_no_alias_nor_cloud_properties():
    vm_routes = models.VMCloudProperties.model_validate(
        {"routes": {"dyn": [{"cidr": "172.16.0.0/12", "gateway": "10.2.0.254"}]}}).routes
    _, _, settings = network_settings(vm_routes)
    main, dyn, pub = settings["main"], settings["dyn"], settings["pub"]
    assert main == {"type": "manual", "ip": "10.1.0.10", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                    "dns": ["10.1.0.2"], "default": ["dns", "gateway"], "prefix": "24",
                    "mac": "02:00:00:00:00:01", "use_dhcp": False,
                    "routes": [{"destination": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.254"}]}
    assert dyn["ip"] == "10.2.0.33" and dyn["gateway"] == "10.2.0.1" and dyn["netmask"] == "255.255.255.0"
    assert dyn["mac"] == "02:00:00:00:00:02" and dyn["use_dhcp"] is True and "alias" not in dyn
    assert dyn["routes"] == [{"destination": "172.16.0.0", "netmask": "255.240.0.0", "gateway": "10.2.0.254"}]
    assert pub == {"type": "vip", "ip": "203.0.113.10"}


@pytest.mark.parametrize("eth0, eth1", [("main", "dyn"), ("dyn", "main")])
def test_the_agent_configures_dynamic_nics_by_dhcp_and_manual_ones_statically(eth0, eth1):
    """bosh-agent (interface_configuration_creator.go) gives DHCP only to a network without ``alias``, and
    settings/service.go overwrites the address of every DHCP network with the default route's: with the
    alias of earlier versions, eth1 (dynamic) came up static with eth0's address."""
    _, _, settings = network_settings()
    by_mac = {NICS[eth0].mac: "eth0", NICS[eth1].mac: "eth1"}
    resolved = agent_model.resolved_networks(settings, default_ip=NICS[eth0].ip)
    configs = {c.name: c for c in agent_model.interface_configurations(resolved, by_mac)}
    assert set(configs) == {"eth0", "eth1"}
    main, dyn = configs[by_mac[NICS["main"].mac]], configs[by_mac[NICS["dyn"].mac]]
    assert not main.dhcp and main.address == "10.1.0.10"
    assert main.routes == [{"destination": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.254"}]
    assert dyn.dhcp


def test_a_single_dynamic_nic_uses_dhcp():
    parsed = nets.parse({"dyn": NETWORKS["dyn"]})
    settings = agent_settings.network_settings(parsed, {"dyn": NICS["dyn"]}, {})
    (config_,) = agent_model.interface_configurations(settings, {NICS["dyn"].mac: "eth0"})
    assert config_.name == "eth0" and config_.dhcp


def test_document_has_what_the_agent_reads():
    parsed, order, networks = network_settings()
    hint = {"path": "/dev/sdb", "volume_id": "1", "id": "abc"}
    env = {"bosh": {"password": "secret-hash", "group": "g"}}
    doc = agent_settings.build(agent_id="agent-1", vm_name="vm-1", networks=networks,
                               dns=agent_settings.default_dns(order), hypervisor="KVM", ephemeral=hint, env=env,
                               config=CONFIG)
    assert doc["agent_id"] == "agent-1"
    assert doc["vm"] == {"name": "vm-1"} and doc["server"] == {"name": "vm-1"}
    assert doc["mbus"] == "nats://nats:secret-pass@10.0.0.6:4222"
    assert doc["ntp"] == ["ntp-1"]
    assert doc["blobstore"] == {"provider": "dav", "options": {"endpoint": "http://10.0.0.6:25250", "password": "p"}}
    assert doc["disks"] == {"system": "/dev/vda", "ephemeral": hint, "persistent": {}}
    assert doc["env"] == env
    assert doc["dns"] == {"nameserver": ["10.1.0.2"]}
    assert doc["networks"] is networks


def test_no_ephemeral_disk_leaves_the_key_out_and_xen_system_disk():
    doc = agent_settings.build(agent_id="a", vm_name="v", networks={}, dns=[], hypervisor="XenServer",
                               ephemeral=None, env=None, config=config.parse(
                                   {"cloudstack": {"endpoint": "http://x/client/api", "api_key": "k",
                                                   "secret_access_key": "s"}, "ntp": ["legacy-ntp"]}))
    assert doc["disks"] == {"system": "/dev/xvda", "persistent": {}}
    assert "mbus" not in doc and "blobstore" not in doc and "dns" not in doc
    assert doc["ntp"] == ["legacy-ntp"] and doc["env"] == {}


def test_encode_is_standard_base64_of_compact_json():
    doc = {"agent_id": "a", "env": {"bosh": {"x": "ü~?>>"}}}
    encoded = agent_settings.encode(doc)
    assert json.loads(base64.b64decode(encoded, validate=True)) == doc
    assert " " not in base64.b64decode(encoded).decode()


def test_size_check_names_the_excess_and_the_setting():
    agent_settings.check_size("A" * 2048, 2048)
    with pytest.raises(CloudError) as raised:
        agent_settings.check_size("A" * 2100, 2048)
    message = raised.value.message
    assert "52 bytes over the user data limit" in message
    assert "cloudstack.user_data_limit" in message and "vm.userdata.max.length" in message
