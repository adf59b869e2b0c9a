"""What the real bosh-agent does with create_vm's settings and attach_disk's hints, through bin/cpi.

The CPI's output is fed to tests/agent_model.py, a restatement of bosh-agent's
own rules (interface configuration, DHCP resolution, device path resolution)
and of how a KVM guest names virtio disks, with the sources cited there.
"""

from __future__ import annotations

import base64
import json

from tests import agent_model
from tests.lifecycle.test_vms import manual, template_id
from tests.simulator.helpers import Api


def _vm(simulator, vm_id) -> dict:
    return Api(simulator).list("listVirtualMachines", "virtualmachine", id=vm_id)[0]


def _settings(simulator, vm_id) -> dict:
    answer = Api(simulator).call("getVirtualMachineUserData", virtualmachineid=vm_id)
    return json.loads(base64.b64decode(answer["virtualmachineuserdata"]["userdata"]))


def _guest_interfaces(vm: dict) -> dict[str, str]:
    """MAC -> ethN: the guest names NICs in CloudStack's NIC device order."""
    nics = sorted(vm["nic"], key=lambda nic: int(nic["deviceid"]))
    return {nic["macaddress"]: f"eth{i}" for i, nic in enumerate(nics)}


def test_manual_eth0_and_dynamic_eth1_come_up_static_and_by_dhcp_on_their_own_nics(cpi, simulator):
    """Seen with bosh-agent 2.695.0: with ``alias`` on every network, eth1 (dynamic) was configured statically
    with eth0's address (interface_configuration_creator.go; settings/service.go resolveNetwork)."""
    networks = {
        "private": manual("10.1.0.21", routes=[{"cidr": "10.50.0.0/16", "gateway": "10.1.0.254"}]),
        "second": {"type": "dynamic", "default": [], "cloud_properties": {"name": "bosh-shared"}},
    }
    vm_id, _ = cpi.ok("create_vm", "agent-nics", template_id(simulator), {"compute_offering": "small"}, networks,
                      [], {})
    vm = _vm(simulator, vm_id)
    by_mac = _guest_interfaces(vm)
    eth0_ip = next(nic["ipaddress"] for nic in vm["nic"] if nic["isdefault"])
    settings = agent_model.resolved_networks(_settings(simulator, vm_id)["networks"], default_ip=eth0_ip)
    configs = {c.name: c for c in agent_model.interface_configurations(settings, by_mac)}

    assert sorted(configs) == ["eth0", "eth1"]
    assert not configs["eth0"].dhcp and configs["eth0"].address == "10.1.0.21"
    assert configs["eth0"].routes == [{"destination": "10.50.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.254"}]
    assert configs["eth1"].dhcp
    cpi.ok("delete_vm", vm_id)


def test_a_single_dynamic_network_uses_dhcp(cpi, simulator):
    networks = {"default": {"type": "dynamic", "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}}
    vm_id, _ = cpi.ok("create_vm", "agent-dyn", template_id(simulator), {"compute_offering": "small"}, networks, [], {})
    vm = _vm(simulator, vm_id)
    settings = agent_model.resolved_networks(_settings(simulator, vm_id)["networks"],
                                             default_ip=vm["nic"][0]["ipaddress"])
    (config,) = agent_model.interface_configurations(settings, _guest_interfaces(vm))
    assert config.name == "eth0" and config.dhcp
    cpi.ok("delete_vm", vm_id)


def test_kvm_disk_migration_hint_names_the_real_disk_before_and_after_a_restart(cpi, simulator):
    """The defect: the new disk of a migration is CloudStack device 4 (3 is the CD-ROM, IDE on KVM), the guest's
    vdd, but the hint said /dev/sde and the agent waited for a device that never appears. After the old disk is
    detached and the VM restarted, the same disk is vdc: only the serial's by-id link names it in both states."""
    networks = {"default": {"type": "dynamic", "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}}
    vm_id, _ = cpi.ok("create_vm", "agent-disks", template_id(simulator), {"compute_offering": "small", "disk": 1024},
                      networks, [], {})
    volumes = Api(simulator).list("listVolumes", "volume", virtualmachineid=vm_id)
    guest = agent_model.KvmGuest()
    guest.boot({volume["id"]: int(volume["deviceid"]) for volume in volumes})
    ephemeral = _settings(simulator, vm_id)["disks"]["ephemeral"]
    (ephemeral_volume,) = [v for v in volumes if v["type"] == "DATADISK"]
    assert agent_model.agent_resolve(None, ephemeral, guest.files()) == f"/dev/{guest.names[ephemeral_volume['id']]}"

    old, new = (cpi.ok("create_disk", 1024, {}, vm_id) for _ in range(2))
    for disk in (old, new):
        hint = cpi.ok("attach_disk", vm_id, disk)
        guest.hotplug(disk, int(hint["volume_id"]))
        assert agent_model.agent_resolve(disk, hint, guest.files()) == f"/dev/{guest.names[disk]}"
    assert guest.device_ids[new] == 4 and guest.names[new] == "vdd"

    cpi.ok("detach_disk", vm_id, old)
    guest.unplug(old)
    guest.restart()
    assert guest.names[new] == "vdc"
    assert agent_model.agent_resolve(new, hint, guest.files()) == "/dev/vdc"

    cpi.ok("detach_disk", vm_id, new)
    cpi.ok("delete_vm", vm_id)
    for disk in (old, new):
        cpi.ok("delete_disk", disk)
