"""VM lifecycle through bin/cpi against the simulator: networks, user data, disks, failures, cleanup."""

from __future__ import annotations

import base64
import json

import pytest

from tests.simulator.helpers import Api

EMPTY = {"virtualmachines": [], "volumes": [], "staticnat": []}


def leftovers(simulator) -> dict:
    inventory = simulator.inventory()
    return {key: inventory[key] for key in EMPTY}


def template_id(simulator) -> str:
    return Api(simulator).template("bosh-stemcell-existing")["id"]


def manual(ip, name="bosh-isolated", default=("dns", "gateway"), gateway="10.1.0.1", dns=("10.1.0.1",), **props):
    return {"type": "manual", "ip": ip, "netmask": "255.255.255.0", "gateway": gateway, "dns": list(dns),
            "default": list(default), "cloud_properties": {"name": name, **props}}


def vm_record(simulator, vm_id) -> dict:
    return Api(simulator).list("listVirtualMachines", "virtualmachine", id=vm_id)[0]


def user_data(simulator, vm_id) -> dict:
    answer = Api(simulator).call("getVirtualMachineUserData", virtualmachineid=vm_id)
    return json.loads(base64.b64decode(answer["virtualmachineuserdata"]["userdata"], validate=True))


def test_two_nics_and_a_vip_with_an_ephemeral_disk(cpi, simulator):
    networks = {
        "second": {"type": "dynamic", "default": [], "cloud_properties": {"name": "bosh-shared"}},
        "private": manual("10.1.0.20", routes=[{"cidr": "10.50.0.0/16", "gateway": "10.1.0.254"}]),
        "public": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}},
    }
    props = {"compute_offering": "small", "disk": 3000, "root_disk_size": 10_240,
             "routes": {"second": [{"cidr": "172.16.0.0/12", "gateway": "10.2.0.1"}]}}
    env = {"bosh": {"group": "router", "password": "crypted-password-0123"}}
    vm_id, answered = cpi.ok("create_vm", "agent-007", template_id(simulator), props, networks, [], env)

    vm = vm_record(simulator, vm_id)
    assert vm["state"] == "Running"
    nics = {nic["networkname"]: nic for nic in vm["nic"]}
    assert nics["bosh-isolated"]["isdefault"] and nics["bosh-isolated"]["deviceid"] == "0"
    assert answered["second"]["ip"] == nics["bosh-shared"]["ipaddress"]
    assert answered["private"] == networks["private"]

    settings = user_data(simulator, vm_id)
    assert settings["agent_id"] == "agent-007" and settings["vm"]["name"] == vm["name"]
    assert settings["networks"]["private"]["mac"] == nics["bosh-isolated"]["macaddress"]
    assert settings["networks"]["second"]["mac"] == nics["bosh-shared"]["macaddress"]
    assert "alias" not in settings["networks"]["private"] and "alias" not in settings["networks"]["second"]
    # Written before CloudStack picks the dynamic address (one deploy job): the agent takes it by DHCP
    # (bosh-agent settings/service.go resolveNetwork); the director gets it in the answer.
    assert settings["networks"]["second"]["use_dhcp"] is True and "ip" not in settings["networks"]["second"]
    assert settings["networks"]["private"]["routes"] == [
        {"destination": "10.50.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.254"}]
    assert settings["networks"]["second"]["routes"] == [
        {"destination": "172.16.0.0", "netmask": "255.240.0.0", "gateway": "10.2.0.1"}]
    assert settings["networks"]["public"] == {"type": "vip", "ip": "203.0.113.10"}
    assert settings["env"] == env and settings["dns"] == {"nameserver": ["10.1.0.1"]}
    assert settings["mbus"].startswith("nats://") and settings["blobstore"]["provider"] == "dav"

    volumes = Api(simulator).list("listVolumes", "volume", virtualmachineid=vm_id, type="DATADISK")
    assert len(volumes) == 1 and volumes[0]["size"] == 3 * 1024 ** 3 and volumes[0]["deviceid"] == 1
    # The deploy's data disk, device 1, present from the first boot: bosh-agent tries /dev/sdb as /dev/xvdb, /dev/vdb
    # and /dev/sdb (mapped_device_path_resolver.go).
    assert settings["disks"]["ephemeral"] == {"path": "/dev/sdb", "volume_id": "1"}
    assert settings["disks"]["system"] == "/dev/vda" and settings["disks"]["persistent"] == {}

    address = Api(simulator).list("listPublicIpAddresses", "publicipaddress", ipaddress="203.0.113.10")[0]
    assert address["isstaticnat"] and address["virtualmachineid"] == vm_id

    assert cpi.ok("has_vm", vm_id) is True
    cpi.ok("set_vm_metadata", vm_id, {"deployment": "cf", "name": "router/6c0e-11", "index": "0"})
    vm = vm_record(simulator, vm_id)
    assert vm["displayname"] == "router/6c0e-11"
    assert {"deployment": "cf", "agent_id": "agent-007"}.items() <= {t["key"]: t["value"] for t in vm["tags"]}.items()
    cpi.ok("reboot_vm", vm_id)

    log = "".join(result.stderr for result in cpi.transcript)
    assert "crypted-password-0123" not in log and "nats-password" not in log and "blobstore-secret" not in log

    assert cpi.ok("delete_vm", vm_id) is None
    assert leftovers(simulator) == EMPTY
    assert cpi.ok("delete_vm", vm_id) is None  # repeated: still success
    assert cpi.ok("has_vm", vm_id) is False


def test_recreated_vm_takes_over_the_vip_and_v1_answers_a_bare_cid(cpi, simulator):
    networks = {"private": manual("10.1.0.30"), "public": {"type": "vip", "ip": "203.0.113.11", "cloud_properties": {}}}
    stemcell = template_id(simulator)
    old, _ = cpi.ok("create_vm", "agent-a", stemcell, {"compute_offering": "small"}, networks, [], {})
    networks["private"]["ip"] = "10.1.0.31"
    new = cpi.ok("create_vm", "agent-a", stemcell, {"compute_offering": "small"}, networks, [], {}, api_version=1)
    assert isinstance(new, str)
    address = Api(simulator).list("listPublicIpAddresses", "publicipaddress", ipaddress="203.0.113.11")[0]
    assert address["virtualmachineid"] == new
    cpi.ok("delete_vm", old)
    assert Api(simulator).list("listPublicIpAddresses", "publicipaddress", ipaddress="203.0.113.11")[0][
        "virtualmachineid"] == new
    cpi.ok("delete_vm", new)
    assert leftovers(simulator) == EMPTY


def test_capacity_failure_is_retryable_and_leaves_nothing(cpi, simulator):
    result = cpi.call("create_vm", "agent-big", template_id(simulator),
                      {"compute_offering": "custom", "cpu": 1000, "ram": 4096, "disk": 2048},
                      {"private": manual("10.1.0.40")}, [], {})
    assert result.error["type"] == "Bosh::Clouds::VMCreationFailed"
    assert result.error["ok_to_retry"] is True
    assert result.error["message"].startswith("Creating VM for agent 'agent-big': ")
    assert leftovers(simulator) == EMPTY
    assert simulator.inventory()["tags"] == 0


@pytest.mark.parametrize("props, networks, message", [
    ({"compute_offering": "xxl"}, {"private": manual("10.1.0.41")},
     "Compute offering 'xxl' not found (available: custom, large, medium, small)"),
    ({"compute_offering": "small", "security_groups": ["bosh"]}, {"private": manual("10.1.0.42")},
     "Zone 'zone-1' does not have security groups enabled"),
])
def test_configuration_mistakes_create_nothing(cpi, simulator, props, networks, message):
    simulator.clear_request_log()
    result = cpi.call("create_vm", "agent-x", template_id(simulator), props, networks, [], {})
    assert result.error["type"] == "Bosh::Clouds::CloudError" and message in result.error["message"]
    assert not [command for command, _ in simulator.request_log if not command.startswith(("list", "query"))]
    assert leftovers(simulator) == EMPTY


def test_basic_zone_with_security_groups(basic_cpi, basic_simulator):
    api = Api(basic_simulator)
    stemcell = api.template("bosh-stemcell-existing")["id"]
    networks = {"default": {"type": "manual", "ip": "192.168.100.50", "netmask": "255.255.255.0",
                            "gateway": "192.168.100.1", "dns": ["8.8.8.8"], "default": ["dns", "gateway"],
                            "cloud_properties": {"security_groups": ["bosh"]}}}
    vm_id, _ = basic_cpi.ok("create_vm", "agent-b", stemcell, {"compute_offering": "small", "disk": 1024},
                            networks, [], {})
    vm = vm_record(basic_simulator, vm_id)
    assert [group["name"] for group in vm["securitygroup"]] == ["bosh"]
    assert vm["nic"][0]["ipaddress"] == "192.168.100.50"
    settings = user_data(basic_simulator, vm_id)
    assert settings["networks"]["default"]["mac"] == vm["nic"][0]["macaddress"]
    assert settings["disks"]["system"] == "/dev/xvda" and "id" not in settings["disks"]["ephemeral"]
    basic_cpi.ok("delete_vm", vm_id)
    assert leftovers(basic_simulator) == EMPTY


def test_calculate_vm_cloud_properties(cpi):
    assert cpi.ok("calculate_vm_cloud_properties", {"cpu": 2, "ram": 3000, "ephemeral_disk_size": 20_000}) == \
        {"compute_offering": "medium", "ephemeral_disk_offering": "shared.custom", "disk": 20_000}


def test_basic_zone_deploy_never_names_networks(basic_cpi, basic_simulator):
    """A Basic zone refuses any network ids at once, iptonetworklist included: DeployVMCmd.getNetworkIds()
    answers the iptonetworklist's networks and DeployVMCmd.create() throws "Can't specify network Ids in Basic
    zone" when it is not null (apache/cloudstack api/.../command/user/vm/DeployVMCmd.java).  The CPI sends
    only ``ipaddress`` there, for a manual network."""
    api = Api(basic_simulator)
    networks = {"default": {"type": "manual", "ip": "192.168.100.51", "netmask": "255.255.255.0",
                            "gateway": "192.168.100.1", "dns": ["8.8.8.8"], "default": ["dns", "gateway"],
                            "cloud_properties": {"name": api.list("listNetworks", "network")[0]["name"]}}}
    basic_simulator.clear_request_log()
    vm_id, _ = basic_cpi.ok("create_vm", "agent-n", api.template("bosh-stemcell-existing")["id"],
                            {"compute_offering": "small"}, networks, [], {})
    deploys = [params for command, params in basic_simulator.request_log if command == "deployvirtualmachine"]
    assert len(deploys) == 1
    sent = {name.lower() for name in deploys[0]}
    assert "networkids" not in sent and not any(name.startswith("iptonetworklist") for name in sent)
    assert deploys[0].get("ipaddress") == "192.168.100.51"
    basic_cpi.ok("delete_vm", vm_id)
    assert leftovers(basic_simulator) == EMPTY
