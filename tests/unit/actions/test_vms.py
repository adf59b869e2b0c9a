"""VM handlers against the fake gateway: what create_vm plans and asks for, the agent settings, error types and
breadcrumbs, what a failure cleans up, delete_vm's order of steps, load balancer membership (``lbs``), reboot_vm's
choices, metadata, display names and calculate_vm_cloud_properties.

What the gateway sends on the wire for these (the deploy's parameters, the VM's id answered with the deploy's job, a
lost answer recovered by the VM's name, a failed job naming its VM, reboot or start, the refusal to expunge, static
NAT after a lost answer, load balancer rules without CloudStack's firewall rule) is tested against the simulator in
tests/unit/cloudstack/test_vms.py and test_loadbalancers.py."""

from __future__ import annotations

import base64
import json

import pytest

from cloudstack_cpi import errors, models, rpc, tags
from cloudstack_cpi.actions import vms
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.models import ServiceOffering
from cloudstack_cpi.cloudstack.vms import ComputeSize, NicRequest
from tests.unit.fake_cloud import api_error, job_failure

MBUS_PASSWORD = "nats-password-0123"  # the agent's mbus password in tests.conftest.write_config
NETWORKS = {"default": {"type": "manual", "ip": "10.1.0.10", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
                        "dns": ["10.1.0.2"], "default": ["dns", "gateway"],
                        "cloud_properties": {"name": "bosh-isolated"}}}
NETWORKS_2 = {"default": {**NETWORKS["default"], "ip": "10.1.0.11"}}
VIP = {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}}
ENV = {"bosh": {"group": "zookeeper", "password": "env-password-hash-0123"}}
EXPUNGE_REFUSED = "Parameter expunge can be passed by Admin only. Or when the allow.user.expunge.recover.vm key is set."
# The fake's methods that only read; every other one changes the cloud.
READS = frozenset({
    "get", "named", "holding", "settled", "unconfirmed", "in_zone", "security_groups", "allocated", "static_nat_to",
    "firewall_rules", "firewall_rule", "on_ip", "of_vm", "members", "tagged", "listed", "zones", "service_offerings",
    "disk_offerings", "key_pairs", "os_types", "hypervisors", "rows", "executable_by_id", "executable_named",
})


def mutations(cloud) -> list[str]:
    return [method for method in cloud.methods() if method.split(".", 1)[1] not in READS]


def arrange(cloud) -> str:
    """What create_vm needs beyond the fake's catalogue: a stemcell in both zones and the account's two public IPs
    in zone-1 (on bosh-isolated); the stemcell's id."""
    cloud.addresses.add("203.0.113.10")
    cloud.addresses.add("203.0.113.11")
    return cloud.templates.add("bosh-stemcell", zones=("z1", "z2"))


@pytest.fixture
def create(cloud):
    """``create(ctx, props, networks, disks, env)``: create_vm for agent-1 from the arranged stemcell."""
    stemcell = arrange(cloud)

    def create_vm(ctx, props=None, networks=None, disks=None, env=None):
        return vms.create_vm(ctx, "agent-1", stemcell, {"compute_offering": "small", **(props or {})},
                             networks or NETWORKS, disks, env if env is not None else ENV)

    return create_vm


def deployments(cloud) -> list:
    return [call["args"][0] for call in cloud.called("vms.start_deploy")]


def user_data(cloud, vm_id) -> dict:
    return json.loads(base64.b64decode(cloud.vms.user_data[vm_id], validate=True))


def assert_nothing_left(cloud):
    assert cloud.vms.items == {}
    assert cloud.volumes.items == {}
    assert not any(ip.static_nat for ip in cloud.addresses.items.values())


# -- create_vm: the happy path --------------------------------------------------------------------------------


def test_create_vm_deploys_started_in_one_job(cloud, ctx, create):
    """One deploy job makes, boots and configures the VM (issue 17): NICs with MACs chosen here and written into the
    agent settings it boots with, the ephemeral disk made by the deploy (DeployVMCmd ``diskofferingid``/``size``:
    a DATADISK at device 1, VolumeOrchestrator.allocateRawVolume), the tags beside the job.  Nothing is waited for
    one after another but the deploy and taking the unconfirmed mark off."""
    vm_id, networks = create(ctx, {"disk": 3000, "root_disk_size": 15_000})
    (deployment,) = deployments(cloud)
    assert deployment.started and deployment.root_disk_gib == 15 and deployment.key_pair == "bosh"
    assert deployment.data_disk.offering_id == "off-custom" and deployment.data_disk.size_gib == 3
    (nic,) = deployment.networks.nics
    assert (nic.network_id, nic.ip) == ("net-iso", "10.1.0.10")
    first_octet = int(nic.mac[:2], 16)
    assert first_octet & 0x03 == 0x02 and first_octet != 0x02  # unicast, locally administered, not CloudStack's 02:
    assert mutations(cloud) == ["vms.start_deploy", "tags.start", "tags.start", "tags.confirm"]
    assert networks == NETWORKS
    vm = cloud.vms.items[vm_id]
    assert vm.state == "Running" and vm.nics[0].mac == nic.mac
    settings = user_data(cloud, vm_id)
    assert settings["agent_id"] == "agent-1" and settings["vm"]["name"] == deployment.name
    assert settings["networks"]["default"]["mac"] == nic.mac
    assert settings["disks"]["ephemeral"] == {"path": "/dev/sdb", "volume_id": "1"}
    (volume_id,) = cloud.volumes.data_volumes()
    volume = cloud.volumes.items[volume_id]
    assert volume.vm_id == vm_id and volume.device_id == 1 and volume.size_gib == 3
    assert cloud.tags.of("Volume", volume_id) == {tags.ROLE_KEY: tags.ROLE_EPHEMERAL, tags.VM_KEY: vm_id,
                                                  tags.DIRECTOR_KEY: "director-uuid-1"}
    assert cloud.tags.of("UserVm", vm_id) == {tags.AGENT_KEY: "agent-1", tags.DIRECTOR_KEY: "director-uuid-1"}
    log = cloud.log_text
    assert MBUS_PASSWORD not in log and "env-password-hash" not in log and cloud.vms.user_data[vm_id] not in log


def test_create_vm_deploys_stopped_sets_user_data_then_starts_when_chosen_macs_are_refused(cloud, ctx, create):
    """A cloud that refuses every chosen MAC (MAC_TRIES times) gets the VM the other way: deployed stopped, its
    user data set once its NICs (and the ephemeral volume, attached) exist, then started."""
    cloud.vms.refuse_macs(vms.MAC_TRIES)
    vm_id, networks = create(ctx, {"disk": 3000, "root_disk_size": 15_000})
    assert "refused a VM deployed in one job" in cloud.log_text
    *refused, deployment = deployments(cloud)
    assert len(refused) == vms.MAC_TRIES and not deployment.started and deployment.data_disk is None
    assert len({r.networks.nics[0].mac for r in refused}) == vms.MAC_TRIES  # chosen again after each refusal
    assert deployment.name.startswith("vm-") and deployment.offering_id == "so-small" and deployment.zone_id == "z1"
    assert deployment.key_pair == "bosh" and deployment.root_disk_gib == 15 and deployment.size is None
    assert deployment.networks.nics == (NicRequest("net-iso", "10.1.0.10"),)
    # The ephemeral volume and the tags start beside the deploy; the user data is set before the first boot.
    made = mutations(cloud)[vms.MAC_TRIES:]
    assert made[:5] == ["vms.start_deploy", "volumes.start_create", "tags.start", "tags.start", "volumes.attach"]
    assert made.index("vms.set_user_data") < made.index("vms.start")
    assert networks == NETWORKS
    vm = cloud.vms.items[vm_id]
    assert vm.state == "Running"
    settings = user_data(cloud, vm_id)
    assert settings["agent_id"] == "agent-1" and settings["vm"]["name"] == deployment.name
    assert settings["networks"]["default"]["mac"] == vm.nics[0].mac
    (volume_id,) = cloud.volumes.data_volumes()
    volume = cloud.volumes.items[volume_id]
    assert volume.vm_id == vm_id and volume.size_gib == 3 and volume.name == f"{deployment.name}-ephemeral"
    assert cloud.tags.of("Volume", volume_id) == {tags.ROLE_KEY: tags.ROLE_EPHEMERAL, tags.VM_KEY: vm_id,
                                                  tags.DIRECTOR_KEY: "director-uuid-1"}
    assert settings["disks"]["ephemeral"] == {"path": "/dev/disk/by-id/virtio-" + volume_id.replace("-", "")[:20],
                                              "volume_id": "1"}
    assert cloud.tags.of("UserVm", vm_id) == {tags.AGENT_KEY: "agent-1", tags.DIRECTOR_KEY: "director-uuid-1"}
    log = cloud.log_text
    assert MBUS_PASSWORD not in log and "env-password-hash" not in log and cloud.vms.user_data[vm_id] not in log


def test_a_chosen_mac_in_use_is_chosen_again(cloud, ctx, create):
    """CloudStack refuses a requested MAC another NIC of the network has, before any VM exists
    (NetworkModelImpl.checkRequestedIpAddresses: "The requested Mac address is already taken!", 431 from
    DeployVMCmd.create): other MACs are chosen and the VM still comes in one job."""
    cloud.vms.refuse_macs(1)
    vm_id, _ = create(ctx)
    refused, deployment = deployments(cloud)
    assert deployment.started and refused.networks.nics[0].mac != deployment.networks.nics[0].mac
    assert user_data(cloud, vm_id)["networks"]["default"]["mac"] == deployment.networks.nics[0].mac
    assert "refused the chosen MAC addresses" in cloud.log_text and "vms.start" not in cloud.methods()


def test_a_refused_data_disk_in_the_deploy_falls_back_to_the_stopped_way(cloud, ctx, create):
    """A cloud that refuses the deploy's data disk (a disk offering it will not use that way) before any VM exists
    gets the VM deployed stopped, with the ephemeral disk created and attached on its own."""
    cloud.vms.refuse_data_disk = "Disk offering off-custom requires size parameter."
    vm_id, _ = create(ctx, {"disk": 2048})
    _, deployment = deployments(cloud)
    assert not deployment.started and deployment.data_disk is None
    assert {"volumes.start_create", "volumes.attach", "vms.set_user_data", "vms.start"} <= set(cloud.methods())
    assert user_data(cloud, vm_id)["disks"]["ephemeral"]["path"].startswith("/dev/disk/by-id/virtio-")


def test_a_cloud_that_ignores_the_chosen_macs_gets_the_real_ones_and_a_reboot(cloud, ctx, create):
    """A deployVirtualMachine that takes ``iptonetworklist[].mac`` without using it (a CloudStack older than the
    parameter: unknown map fields are ignored) boots the VM with settings naming a MAC it lacks, which the agent
    refuses ("No device found for network ... with MAC address", bosh-agent settings/service.go): the settings are
    set again with the MACs CloudStack gave, and the VM rebooted so that its agent reads them."""
    cloud.vms.ignores_macs = True
    vm_id, _ = create(ctx)
    vm = cloud.vms.items[vm_id]
    assert user_data(cloud, vm_id)["networks"]["default"]["mac"] == vm.nics[0].mac
    assert mutations(cloud).index("vms.set_user_data") < mutations(cloud).index("vms.reboot")
    assert "did not get the MAC addresses chosen for it" in cloud.log_text and vm.state == "Running"


@pytest.mark.parametrize("os_type, details", [("Other Linux (64-bit)", None), ("Ubuntu 22.04 LTS",
                                                                                 {"rootDiskController": "scsi"})])
def test_a_kvm_template_without_a_virtio_root_disk_gets_its_ephemeral_disk_attached(cloud, ctx, os_type, details):
    """A KVM guest whose root disk is not virtio (an OS type KVM does not paravirtualise: IDE; a SCSI root disk
    controller) does not name a deploy's data disk vdb (LibvirtComputingResource.getGuestDiskModel, createVbd), so
    /dev/sdb would miss it: the VM is deployed stopped and the ephemeral disk attached and hinted by its by-id link.
    Without an ephemeral disk the one job serves."""
    cloud.addresses.add("203.0.113.10")
    stemcell = cloud.templates.add("bosh-stemcell-other", zones=("z1",), os_type_name=os_type, details=details)
    vm_id, _ = vms.create_vm(ctx, "agent-1", stemcell, {"compute_offering": "small", "disk": 2048}, NETWORKS, [], ENV)
    (deployment,) = deployments(cloud)
    assert not deployment.started and "does not boot from a virtio disk on KVM" in cloud.log_text
    assert user_data(cloud, vm_id)["disks"]["ephemeral"]["path"].startswith("/dev/disk/by-id/")
    vms.create_vm(ctx, "agent-2", stemcell, {"compute_offering": "small"}, NETWORKS_2, [], ENV)
    assert deployments(cloud)[-1].started


def test_dynamic_networks_boot_without_the_address_cloudstack_picks(cloud, ctx, create):
    """In one job the agent settings are written before CloudStack picks a dynamic network's address: they name
    its MAC only, and the agent takes the address by DHCP (bosh-agent settings/service.go resolveNetwork fills a
    dynamic network's IP from the interface); create_vm answers the director the address CloudStack picked."""
    networks = {"default": {"type": "dynamic", "dns": ["10.1.0.2"], "default": ["dns", "gateway"],
                            "cloud_properties": {"name": "bosh-isolated"}}}
    vm_id, answered = create(ctx, networks=networks)
    setting = user_data(cloud, vm_id)["networks"]["default"]
    assert setting["use_dhcp"] is True and "ip" not in setting
    assert setting["mac"] == cloud.vms.items[vm_id].nics[0].mac
    assert answered["default"]["ip"] == cloud.vms.items[vm_id].nics[0].ip


def test_create_vm_v1_answers_the_bare_cid(cloud, make_ctx, create):
    """The action answers [vm_cid, networks]; rpc answers a v1 caller the bare cid (shapes live in rpc only)."""
    answer = create(make_ctx(api_version=1))
    assert rpc.answer_for_version("create_vm", answer, 1) == answer[0] and isinstance(answer[0], str)
    assert rpc.answer_for_version("create_vm", answer, 2) == answer


def test_create_vm_customized_offering_asks_for_the_size(cloud, ctx, create):
    create(ctx, {"compute_offering": "custom", "cpu": 2, "ram": 3072})
    (deployment,) = deployments(cloud)
    assert deployment.offering_id == "so-custom"
    assert deployment.size == ComputeSize(cpus=2, cpu_speed_mhz=2000, memory_mib=3072)


def test_create_vm_customized_offering_without_sizes_is_refused_before_creating(cloud, ctx, create):
    with pytest.raises(errors.CloudError, match="Compute offering 'custom' is customized: set ram"):
        create(ctx, {"compute_offering": "custom", "cpu": 2})
    assert mutations(cloud) == []


@pytest.mark.parametrize("props, message", [
    ({"compute_offering": "huge"}, "Compute offering 'huge' not found \\(available: custom, medium, small\\)"),
    ({"availability_zone": "zone-9"}, "Zone 'zone-9' not found \\(available: zone-1, zone-2\\)"),
    ({"disk": 20_000, "ephemeral_disk_offering": "disk-10"}, "Disk offering 'disk-10' has 10 GiB"),
    ({"security_groups": ["bosh"]}, "does not have security groups enabled"),
    ({"key_name": "nope"}, "Key pair 'nope' not found"),
])
def test_configuration_mistakes_are_cloud_errors_before_anything_is_created(cloud, ctx, create, props, message):
    with pytest.raises(errors.CloudError, match=message) as raised:
        create(ctx, props)
    assert raised.value.message.startswith("Creating VM for agent 'agent-1': ")
    assert type(raised.value) is errors.CloudError
    assert mutations(cloud) == []


def test_unknown_stemcell_is_named(cloud, ctx):
    with pytest.raises(errors.CloudError, match="Stemcell 'tpl-9' \\(a template\\) not found in zone 'zone-1'"):
        vms.create_vm(ctx, "agent-1", "tpl-9", {"compute_offering": "small"}, NETWORKS, [], {})
    assert mutations(cloud) == []


def test_missing_public_ip_is_refused_before_creating(cloud, ctx, create):
    networks = {**NETWORKS, "public": {**VIP, "ip": "198.51.100.99"}}
    with pytest.raises(errors.CloudError, match="Public IP 198.51.100.99 of vip network 'public' is not allocated"
                                                ".*\\(allocated: 203.0.113.10, 203.0.113.11\\)"):
        create(ctx, networks=networks)
    assert mutations(cloud) == []


def test_user_data_over_the_limit_fails_before_creating(cloud, make_ctx, create):
    with pytest.raises(errors.CloudError, match="Agent settings are \\d+ bytes over the user data limit"):
        create(make_ctx(user_data_limit=2048), env={"bosh": {"blob": "x" * 2000}})
    assert mutations(cloud) == []


def test_vip_moves_static_nat_from_the_previous_vm(cloud, ctx, create):
    cloud.addresses.point("203.0.113.10", "old-vm")
    vm_id, _ = create(ctx, networks={**NETWORKS, "public": VIP})
    made = mutations(cloud)
    assert made.index("addresses.disable_static_nat") + 1 == made.index("addresses.enable_static_nat")
    assert made.index("vms.start_deploy") < made.index("addresses.disable_static_nat")
    ip = cloud.addresses.by_address("203.0.113.10")
    assert ip.static_nat and ip.vm_id == vm_id
    (enable,) = cloud.called("addresses.enable_static_nat")
    assert enable["args"][1:] == (vm_id, "net-iso")  # on the VM's NIC in the IP's network
    assert "Public IP 203.0.113.10 is statically NATed to VM 'old-vm': moving it" in cloud.log_text


def test_static_nat_released_meanwhile_is_moved_all_the_same(cloud, ctx, create, monkeypatch):
    """Another call released the IP between this call's look and its disable: the gateway answers that disable
    False (tests/unit/cloudstack/test_vms.py), and the IP is pointed at the new VM all the same."""
    cloud.addresses.point("203.0.113.10", "old-vm")
    disable = cloud.addresses.disable_static_nat

    def released_meanwhile(ip):
        cloud.addresses.point("203.0.113.10", None)
        return disable(ip)
    monkeypatch.setattr(cloud.addresses, "disable_static_nat", released_meanwhile)
    vm_id, _ = create(ctx, networks={**NETWORKS, "public": VIP})
    assert cloud.addresses.by_address("203.0.113.10").vm_id == vm_id


def test_disk_locality_picks_the_zone_and_refuses_a_different_availability_zone(cloud, ctx, create):
    network = cloud.networks.add("bosh-isolated", zone="z2")
    disk = cloud.volumes.add(zone="z2")
    create(ctx, disks=[disk])
    (deployment,) = deployments(cloud)
    assert deployment.zone_id == "z2" and deployment.networks.nics[0].network_id == network
    with pytest.raises(errors.CloudError,
                       match=f"availability_zone is 'zone-1' but persistent disk '{disk}' is in zone 'zone-2'"):
        create(ctx, {"availability_zone": "zone-1"}, disks=[disk])
    assert len(deployments(cloud)) == 1


def test_auto_anti_affinity_group_is_created_and_joined(cloud, make_ctx, create):
    ctx = make_ctx(enable_auto_anti_affinity=True)
    first, _ = create(ctx)
    (group_id,) = cloud.affinity.items
    group = cloud.affinity.items[group_id]
    assert group.name == "director-uuid-1-zookeeper" and group.type == "host anti-affinity"
    assert deployments(cloud)[0].affinity_group_ids == (group_id,)
    second, _ = create(ctx)  # the second VM of the group finds it
    assert list(cloud.affinity.items) == [group_id] and cloud.methods().count("affinity.create") == 1
    assert cloud.affinity.member_ids[group_id] == [first, second]


# -- create_vm: failures clean up -----------------------------------------------------------------------------


def test_capacity_failure_of_deploy_is_retryable_and_destroys_the_vm_record(cloud, ctx, create):
    failure = job_failure("deployVirtualMachine", "Unable to create a deployment for VM", code=533)
    cloud.vms.fail_after_deploy(failure)  # the failed job names the VM it made
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx)
    assert raised.value.ok_to_retry is True
    assert "errorcode 533" in raised.value.message
    (destroy,) = cloud.called("vms.destroy")
    assert destroy["args"] == (failure.resource_id,) and destroy["expunge"] is True
    assert_nothing_left(cloud)


def test_capacity_failure_on_start_removes_vm_and_ephemeral_disk(cloud, ctx, create):
    cloud.vms.refuse_macs(vms.MAC_TRIES)  # the stopped way
    cloud.fail("vms.start", job_failure("startVirtualMachine", "Insufficient capacity", code=533))
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx, {"disk": 2048})
    assert raised.value.ok_to_retry is True
    assert mutations(cloud)[-2:] == ["volumes.delete_detaching", "vms.destroy"]  # the volume first: see _cleanup
    assert_nothing_left(cloud)


def test_a_failed_started_deploy_is_removed_with_the_data_disk_it_made(cloud, ctx, create):
    """A started deploy whose job fails (no capacity) leaves its VM in state Error with the deploy's data disk
    attached, which CloudStack will not detach from a VM in that state (VolumeApiServiceImpl.detachVolumeFromVM:
    "Please specify a VM that is either running or stopped."): the VM goes first, then the disk its destroy
    detached."""
    cloud.vms.fail_after_deploy(job_failure("deployVirtualMachine", "Insufficient capacity", code=533))
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx, {"disk": 2048})
    assert raised.value.ok_to_retry is True and "could not remove" not in raised.value.message
    assert mutations(cloud)[-3:] == ["volumes.delete_detaching", "vms.destroy", "volumes.delete_detaching"]
    assert "goes after the VM" in cloud.log_text
    assert_nothing_left(cloud)


def test_attach_failure_removes_volume_and_vm(cloud, ctx, create):
    cloud.vms.refuse_macs(vms.MAC_TRIES)  # the stopped way
    cloud.fail("volumes.attach", job_failure("attachVolume", "The specified VM already has the maximum number of "
                                                             "data disks (6). Please specify another VM.", code=431))
    with pytest.raises(errors.CloudError) as raised:
        create(ctx, {"disk": 2048})
    assert type(raised.value) is errors.CloudError and "maximum number of data disks" in raised.value.message
    assert raised.value.ok_to_retry is False
    assert_nothing_left(cloud)


def test_static_nat_failure_undoes_everything(cloud, ctx, create):
    cloud.fail("addresses.enable_static_nat", api_error("enableStaticNat", "conflict", code=537))
    with pytest.raises(errors.CloudError, match="conflict"):
        create(ctx, {"disk": 2048}, networks={**NETWORKS, "public": VIP})
    assert_nothing_left(cloud)


def test_failure_deletes_the_affinity_group_it_created(cloud, ctx, create):
    cloud.vms.fail_after_deploy(job_failure("deployVirtualMachine", "internal error"))
    with pytest.raises(errors.VMCreationFailed):
        create(ctx, {"affinity_group": "my-group"})
    assert cloud.affinity.items == {}
    made = mutations(cloud)
    assert made.index("vms.destroy") < made.index("affinity.delete_unused")  # the group is empty by then


def test_failure_keeps_an_affinity_group_it_did_not_create(cloud, ctx, create):
    group_id = cloud.affinity.add("my-group")
    cloud.vms.fail_after_deploy(job_failure("deployVirtualMachine", "internal error"))
    with pytest.raises(errors.VMCreationFailed):
        create(ctx, {"affinity_group": "my-group"})
    assert list(cloud.affinity.items) == [group_id] and "affinity.delete_unused" not in cloud.methods()
    assert deployments(cloud)[0].affinity_group_ids == (group_id,)


def test_lost_deploy_answer_destroys_the_vm_found_by_name(cloud, ctx, create):
    """The gateway reports the VM a lost deploy answer made, found by its name; create_vm destroys it."""
    cloud.vms.fail_after_deploy(CloudStackError("deployVirtualMachine", "no answer (read timed out)",
                                                kind="transport", outcome_unknown=True))
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx)
    assert raised.value.ok_to_retry is True
    assert mutations(cloud) == ["vms.start_deploy", "vms.destroy"]
    assert_nothing_left(cloud)


def test_start_job_timeout_is_retryable_and_cleans_up(cloud, ctx, create):
    cloud.vms.refuse_macs(vms.MAC_TRIES)  # the stopped way
    cloud.fail("vms.start", CloudStackError("startVirtualMachine", "starting VM x did not finish within 0.01s",
                                            kind="timeout", jobid="job-3"))
    with pytest.raises(errors.VMCreationFailed, match="did not finish within 0.01s") as raised:
        create(ctx, {"disk": 1024})
    assert raised.value.ok_to_retry is True
    assert_nothing_left(cloud)


def test_vm_that_does_not_reach_running_is_retryable_and_cleaned_up(cloud, ctx, create):
    cloud.vms.boot_state = "Stopped"
    with pytest.raises(errors.VMCreationFailed, match="did not reach Running \\(state Stopped\\)") as raised:
        create(ctx)
    assert raised.value.ok_to_retry is True
    assert_nothing_left(cloud)


@pytest.mark.parametrize("way", ["started", "stopped"])
def test_user_data_refused_by_the_cloud_explains_the_setting(cloud, ctx, create, way):
    """The deploy that carries the user data (started), or the update that sets it (stopped), is refused."""
    refusal = "User data has exceeded configurable max length : 4096"
    if way == "started":
        cloud.fail("vms.start_deploy", api_error("deployVirtualMachine", refusal, code=431))
    else:
        cloud.vms.refuse_macs(vms.MAC_TRIES)
        cloud.fail("vms.set_user_data", api_error("updateVirtualMachine", refusal, code=431))
    with pytest.raises(errors.CloudError, match="must not exceed the cloud's vm.userdata.max.length"):
        create(ctx)
    assert_nothing_left(cloud)


def test_cleanup_failure_is_reported_with_the_leftover(cloud, ctx, create):
    cloud.vms.fail_after_deploy(job_failure("deployVirtualMachine", "no capacity", code=533))
    cloud.fail("vms.destroy", job_failure("destroyVirtualMachine", "stuck"), times=None)
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx)
    (vm_id,) = cloud.vms.items
    assert raised.value.message.endswith(f"(could not remove: VM {vm_id})")
    assert f"Could not clean up VM {vm_id}" in cloud.log_text


def test_lost_ephemeral_volume_answer_removes_the_volume_found_by_name(cloud, ctx, create):
    """The gateway reports the volume a lost createVolume answer made, found by its name; create_vm removes it."""
    cloud.vms.refuse_macs(vms.MAC_TRIES)  # the stopped way: the ephemeral volume is created on its own
    cloud.volumes.fail_after_create(CloudStackError("createVolume", "no answer (read timed out)", kind="transport",
                                                    outcome_unknown=True))
    with pytest.raises(errors.VMCreationFailed) as raised:
        create(ctx, {"disk": 2048})
    assert raised.value.ok_to_retry is True and "createVolume: no answer" in raised.value.message
    assert cloud.methods().count("volumes.start_create") == 1
    assert "Cleaned up volume vol-" in cloud.log_text
    assert_nothing_left(cloud)


# -- delete_vm / has_vm / reboot_vm / set_vm_metadata ---------------------------------------------------------


def test_delete_vm_expunges_which_releases_nat_and_deletes_only_the_ephemeral_disk(cloud, ctx, create):
    """No disable of the static NAT first: the expunge releases it itself (UserVmManagerImpl.cleanupVmResources;
    the fake does too)."""
    vm_id, _ = create(ctx, {"disk": 2048}, networks={**NETWORKS, "public": VIP})
    persistent = cloud.volumes.add(vm=vm_id)
    cloud.calls.clear()
    assert vms.delete_vm(ctx, vm_id) is None
    assert mutations(cloud) == ["vms.destroy", "volumes.delete_detaching"]
    assert cloud.called("vms.destroy")[0]["expunge"] is True
    assert not any(ip.static_nat for ip in cloud.addresses.items.values())
    assert not any(m.startswith("load_balancers.") for m in cloud.methods())  # created without lbs: no rule to leave
    assert cloud.volumes.data_volumes() == [persistent] and cloud.volumes.items[persistent].vm_id is None
    assert vms.has_vm(ctx, vm_id) is False
    cloud.calls.clear()
    assert vms.delete_vm(ctx, vm_id) is None
    assert mutations(cloud) == []
    assert f"VM '{vm_id}' is already gone" in cloud.log_text


def test_delete_vm_without_expunge_detaches_disks_first(cloud, make_ctx, create):
    ctx = make_ctx(expunge_vm=False)
    vm_id, _ = create(ctx, {"disk": 2048})
    persistent = cloud.volumes.add(vm=vm_id)
    cloud.calls.clear()
    vms.delete_vm(ctx, vm_id)
    assert mutations(cloud) == ["volumes.detach", "volumes.detach", "vms.destroy", "volumes.delete_detaching"]
    assert cloud.called("vms.destroy")[0]["expunge"] is False
    assert cloud.volumes.data_volumes() == [persistent] and cloud.volumes.items[persistent].vm_id is None


def test_delete_vm_without_expunge_releases_the_static_nat_first(cloud, make_ctx, create):
    """A destroyed, unexpunged VM keeps its static NAT: delete_vm releases it before the destroy."""
    ctx = make_ctx(expunge_vm=False)
    vm_id, _ = create(ctx, networks={**NETWORKS, "public": VIP})
    cloud.calls.clear()
    vms.delete_vm(ctx, vm_id)
    assert mutations(cloud) == ["addresses.disable_static_nat", "vms.destroy"]
    assert not cloud.addresses.by_address("203.0.113.10").static_nat


def test_delete_vm_refused_expunge_detaches_destroys_and_explains_once(cloud, ctx, create):
    vm_id, _ = create(ctx, {"disk": 2048})
    persistent = cloud.volumes.add(vm=vm_id)
    cloud.fail("vms.destroy", job_failure("destroyVirtualMachine", EXPUNGE_REFUSED))
    cloud.calls.clear()
    vms.delete_vm(ctx, vm_id)
    assert mutations(cloud) == ["vms.destroy", "volumes.detach", "volumes.detach", "vms.destroy",
                                "volumes.delete_detaching"]
    assert [call["expunge"] for call in cloud.called("vms.destroy")] == [True, False]
    assert cloud.volumes.data_volumes() == [persistent] and cloud.volumes.items[persistent].vm_id is None
    log = cloud.log_text
    assert log.count("refused to expunge") == 1 and "allow.user.expunge.recover.vm" in log


def test_delete_vm_of_a_gone_vm_deletes_the_ephemeral_disk_left_behind(cloud, ctx, create):
    vm_id, _ = create(ctx, {"disk": 2048})
    (ephemeral,) = cloud.volumes.data_volumes()
    assert cloud.tags.of("Volume", ephemeral)[tags.VM_KEY] == vm_id
    other = cloud.volumes.add(role=tags.ROLE_EPHEMERAL)
    cloud.tags.put("Volume", other, {tags.VM_KEY: "another-vm"})
    cloud.vms.destroy(vm_id, expunge=True)  # an earlier delete_vm got this far
    cloud.calls.clear()
    assert vms.delete_vm(ctx, vm_id) is None
    assert mutations(cloud) == ["volumes.delete_detaching"] and cloud.volumes.data_volumes() == [other]


def test_has_vm_for_unknown_destroyed_and_existing_vms(cloud, ctx):
    assert vms.has_vm(ctx, "no-such-vm") is False
    assert vms.has_vm(ctx, cloud.vms.add(state="Destroyed")) is False
    assert vms.has_vm(ctx, cloud.vms.add(state="Stopped")) is True


def test_reboot_vm_hands_the_vm_as_listed_to_the_gateway(cloud, ctx):
    """The gateway reboots a running VM and starts a stopped one by the state it is given (CloudStack refuses to
    reboot a VM that does not run: tests/unit/cloudstack/test_vms.py)."""
    running, stopped = cloud.vms.add(state="Running"), cloud.vms.add(state="Stopped")
    vms.reboot_vm(ctx, running)
    vms.reboot_vm(ctx, stopped)
    assert [(call["args"][0].id, call["args"][0].state) for call in cloud.called("vms.reboot")] == \
        [(running, "Running"), (stopped, "Stopped")]
    assert cloud.vms.items[stopped].state == "Running"
    with pytest.raises(errors.VMNotFound, match="Rebooting VM 'v9': VM 'v9' not found"):
        vms.reboot_vm(ctx, "v9")


def test_reboot_vm_that_stays_stopped_is_a_cloud_error(cloud, ctx):
    vm_id = cloud.vms.add(state="Stopped")
    cloud.vms.boot_state = "Stopped"
    with pytest.raises(errors.CloudError,
                       match=f"Rebooting VM '{vm_id}': VM '{vm_id}' did not reach Running \\(state Stopped\\)") \
            as raised:
        vms.reboot_vm(ctx, vm_id)
    assert type(raised.value) is errors.CloudError


def test_reboot_vm_waits_for_a_vm_on_its_way_to_a_state(cloud, ctx):
    vm_id = cloud.vms.add(state="Stopping")
    cloud.vms.arrives_at[vm_id] = "Stopped"
    vms.reboot_vm(ctx, vm_id)
    assert cloud.methods() == ["vms.get", "vms.settled", "vms.reboot"]
    assert cloud.called("vms.reboot")[0]["args"][0].state == "Stopped"  # started, as the VM is now


def test_reboot_vm_of_a_vm_that_stays_on_its_way_is_retryable(cloud, make_ctx):
    ctx = make_ctx(timeout={"reboot_vm": 0.05})
    vm_id = cloud.vms.add(state="Migrating")
    with pytest.raises(errors.CloudError, match=f"Rebooting VM '{vm_id}': VM is still Migrating after 0.05s") \
            as raised:
        vms.reboot_vm(ctx, vm_id)
    assert raised.value.ok_to_retry is True and mutations(cloud) == []


def test_set_vm_metadata_tags_from_the_listed_tags_and_names_the_vm(cloud, ctx):
    vm_id = cloud.vms.add(display_name="vm-x")
    cloud.tags.put("UserVm", vm_id, {"deployment": "old", "agent_id": "a"})
    vms.set_vm_metadata(ctx, vm_id, {"deployment": "cf", "job": "router", "index": "0", "name": "router/abc-1"})
    assert mutations(cloud) == ["tags.apply", "vms.rename"]
    assert cloud.called("tags.apply")[0]["existing"] == {"deployment": "old", "agent_id": "a"}  # no listTags
    assert cloud.vms.items[vm_id].display_name == "router/abc-1"
    assert cloud.tags.of("UserVm", vm_id) == \
        {"agent_id": "a", "deployment": "cf", "job": "router", "index": "0", "name": "router/abc-1"}
    cloud.calls.clear()
    vms.set_vm_metadata(ctx, vm_id, {"deployment": "cf", "name": "router/abc-1"})
    assert mutations(cloud) == ["tags.apply"]  # the name is the same; apply sends nothing (test_tagging.py)
    with pytest.raises(errors.VMNotFound):
        vms.set_vm_metadata(ctx, "v9", {"name": "x"})


@pytest.mark.parametrize("metadata, name", [
    ({"name": "router/6c0e"}, "router/6c0e"),
    ({"job": "router", "index": "2"}, "router/2"),
    ({"instance_group": "db", "index": 0}, "db/0"),
    ({"compiling": "golang-1.21"}, "compiling/golang-1.21"),
    ({"name": "we\nird\t<name>;"}, "we-ird-name-"),
    ({"name": "x" * 300}, "x" * 255),
    ({"deployment": "cf"}, None),
])
def test_display_name(metadata, name):
    assert vms.display_name(metadata) == name


# -- load balancer membership (lbs), joined by create_vm and left by delete_vm ---------------------------------

WEB = {"name": "web", "public_ip": "203.0.113.11", "public_port": 80, "private_port": 8080}


@pytest.fixture
def create_member(create):
    """``create_member(ctx, ip, **lb)``: create_vm of a VM with ``ip`` on bosh-isolated, in the load balancer WEB."""

    def member(ctx, ip, **lb_overrides):
        return create(ctx, {"lbs": [{**WEB, **lb_overrides}]}, networks={"default": {**NETWORKS["default"], "ip": ip}})[0]

    return member


def web_ip(cloud) -> str:
    """The id of the arranged public IP WEB balances on."""
    return cloud.addresses.by_address(WEB["public_ip"]).id


def test_first_vm_creates_the_rule_second_joins_last_one_out_removes_it(cloud, ctx, create_member):
    first = create_member(ctx, "10.1.0.10", open_firewall=True)
    assert cloud.tags.of("UserVm", first)["cpi_lb_member"] == "true"
    (rule,) = cloud.load_balancers.items.values()
    assert cloud.load_balancers.member_ids[rule.id] == [first]
    assert (rule.name, rule.public_port, rule.private_port, rule.network_id) == ("web", 80, 8080, "net-iso")
    assert cloud.tags.of("LoadBalancer", rule.id)["cpi_created"] == "true"
    (firewall,) = cloud.addresses.rules.values()
    assert firewall.start_port == 80 and cloud.tags.of("FirewallRule", firewall.id)["cpi_lb_rule"] == rule.id

    second = create_member(ctx, "10.1.0.11", open_firewall=True)
    assert cloud.load_balancers.member_ids[rule.id] == [first, second]
    assert cloud.methods().count("load_balancers.create") == 1 and len(cloud.addresses.rules) == 1

    vms.delete_vm(ctx, first)
    assert cloud.load_balancers.member_ids[rule.id] == [second] and cloud.addresses.rules
    vms.delete_vm(ctx, second)
    assert cloud.load_balancers.items == {} and cloud.addresses.rules == {}


def test_rule_made_by_an_operator_is_joined_and_kept(cloud, ctx, create_member):
    rule = cloud.load_balancers.add("web", web_ip(cloud))
    member = create_member(ctx, "10.1.0.10")
    assert cloud.load_balancers.member_ids[rule] == [member] and "load_balancers.create" not in cloud.methods()
    vms.delete_vm(ctx, member)
    assert cloud.load_balancers.member_ids[rule] == [] and "load_balancers.delete" not in cloud.methods()


def test_existing_rule_with_other_ports_is_a_clear_error_and_cleans_up(cloud, ctx, create_member):
    rule = cloud.load_balancers.add("web", web_ip(cloud), private_port=9999)
    with pytest.raises(errors.CloudError, match="Load balancer rule 'web' on 203.0.113.11 exists with ports 80->9999"):
        create_member(ctx, "10.1.0.10")
    assert cloud.vms.items == {} and cloud.load_balancers.member_ids[rule] == []


def test_losing_the_create_race_uses_the_winners_rule(cloud, ctx, create_member, monkeypatch):
    create = cloud.load_balancers.create

    def winner_first(**kwargs):
        cloud.load_balancers.add("web", kwargs["ip_id"], members=("other-vm",), rule_id="lb-0",
                                 tags={"cpi_created": "true"})
        return create(**kwargs)  # now refused: the port is taken
    monkeypatch.setattr(cloud.load_balancers, "create", winner_first)
    member = create_member(ctx, "10.1.0.10")
    assert list(cloud.load_balancers.items) == ["lb-0"]
    assert cloud.load_balancers.member_ids["lb-0"] == ["other-vm", member]
    assert "created meanwhile by another call" in cloud.log_text


def test_duplicate_rules_converge_on_the_first(cloud, ctx, create_member, monkeypatch):
    create = cloud.load_balancers.create

    def racing_twin(**kwargs):
        rule = create(**kwargs)  # this call's rule
        cloud.load_balancers.add("web", kwargs["ip_id"], rule_id="lb-0", tags={"cpi_created": "true"})
        return rule
    monkeypatch.setattr(cloud.load_balancers, "create", racing_twin)
    member = create_member(ctx, "10.1.0.10", open_firewall=True)
    assert list(cloud.load_balancers.items) == ["lb-0"] and cloud.load_balancers.member_ids["lb-0"] == [member]
    assert cloud.addresses.rules == {}  # the duplicate's firewall rule went with it


def test_rule_deleted_meanwhile_is_created_again(cloud, ctx, create_member, monkeypatch):
    rule = cloud.load_balancers.add("web", web_ip(cloud))
    assign = cloud.load_balancers.assign

    def vanish_once(found, vm_id):
        if found.id == rule:  # the last member of the existing rule left and deleted it
            cloud.load_balancers.items.pop(rule, None)
            cloud.load_balancers.member_ids.pop(rule, None)
        return assign(found, vm_id)
    monkeypatch.setattr(cloud.load_balancers, "assign", vanish_once)
    member = create_member(ctx, "10.1.0.10")
    (rule_id,) = cloud.load_balancers.items
    assert rule_id != rule and cloud.load_balancers.member_ids[rule_id] == [member]
    assert "was deleted meanwhile: creating it again" in cloud.log_text


def test_failure_after_joining_leaves_the_rule_and_deletes_what_it_created(cloud, ctx, create_member):
    cloud.fail("addresses.open_port", job_failure("createFirewallRule", "firewall backend down"))
    with pytest.raises(errors.VMCreationFailed):
        create_member(ctx, "10.1.0.10", open_firewall=True)
    assert cloud.vms.items == {} and cloud.load_balancers.items == {} and cloud.addresses.rules == {}


def test_lbs_missing_public_ip_fails_before_creating(cloud, ctx, create_member):
    with pytest.raises(errors.CloudError, match="Load balancer 'web': public IP 198.51.100.9 is not allocated"):
        create_member(ctx, "10.1.0.10", public_ip="198.51.100.9")
    assert mutations(cloud) == []


# -- calculate_vm_cloud_properties ----------------------------------------------------------------------------


OFFERINGS = [ServiceOffering.from_api(row) for row in (
    {"id": "1", "name": "big-mem", "cpunumber": 1, "memory": 16384},
    {"id": "2", "name": "medium", "cpunumber": 2, "memory": 4096},
    {"id": "3", "name": "large", "cpunumber": 4, "memory": 8192},
    {"id": "4", "name": "custom", "iscustomized": True},
)]


@pytest.mark.parametrize("cpu, ram, chosen", [(1, 512, "medium"), (2, 4096, "medium"), (3, 4096, "large"),
                                              (1, 9000, "big-mem")])
def test_choose_offering_smallest_that_fits(cpu, ram, chosen):
    assert vms.choose_offering(OFFERINGS, cpu, ram).name == chosen


def test_choose_offering_names_the_largest_when_nothing_fits():
    with pytest.raises(errors.CloudError, match="No compute offering has 8 CPUs and 2048 MiB: the largest is 'big-mem'"):
        vms.choose_offering(OFFERINGS, 8, 2048)


def test_calculate_vm_cloud_properties_fixed_and_custom(cloud, make_ctx):
    ctx = make_ctx()
    assert vms.calculate_vm_cloud_properties(ctx, {"cpu": 2, "ram": 2048, "ephemeral_disk_size": 10_000}) == \
        {"compute_offering": "medium", "ephemeral_disk_offering": "shared.custom", "disk": 10_000}
    custom = make_ctx(default_offer={"custom_compute": "custom", "ephemeral_disk": "disk-10"})
    assert vms.calculate_vm_cloud_properties(custom, {"cpu": 3, "ram": 5000, "ephemeral_disk_size": 1024}) == \
        {"compute_offering": "custom", "cpu": 3, "ram": 5000, "ephemeral_disk_offering": "disk-10", "disk": 1024}
    with pytest.raises(errors.CloudError, match="Disk offering 'disk-10' has 10 GiB"):
        vms.calculate_vm_cloud_properties(custom, {"cpu": 1, "ram": 1, "ephemeral_disk_size": 20_000})
    with pytest.raises(errors.CloudError, match="vm_resources.ram must be an integer"):
        vms.calculate_vm_cloud_properties(ctx, {"cpu": 1, "ephemeral_disk_size": 0})
    assert mutations(cloud) == []


def test_custom_size_defaults_cpu_speed():
    props = models.VMCloudProperties.model_validate({"cpu": 4, "ram": 8192})
    custom = ServiceOffering.from_api({"id": "c", "name": "c", "iscustomized": True})
    assert vms.custom_size(custom, props) == ComputeSize(cpus=4, cpu_speed_mhz=2000, memory_mib=8192)
    assert vms.custom_size(ServiceOffering.from_api({"id": "s", "name": "s", "iscustomized": False}), props) is None
