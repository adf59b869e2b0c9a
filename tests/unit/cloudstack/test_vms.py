"""The VM service (and the static NAT create_vm sets up) against the simulator: what a deploy asks for, the VM's id
answered with the deploy's job, a lost answer recovered by the VM's name, a failed job naming its VM, reboot or start,
waiting for a moving VM, the refusal to expunge, user data, and static NAT after a lost answer or a release
meanwhile.

CloudStack facts these rest on (apache/cloudstack):
- DeployVMCmd is a BaseAsyncCreateCmd: ApiServer.queueCommand answers the new VM's id with the job id, so its tags
  can go on while the deploy's job runs; ``startvm=false`` leaves the VM Stopped (UserVmManagerImpl.startVirtualMachine
  is not called); ``iptonetworklist[i].networkid/ip`` place the NICs in that order (DeployVMCmd.getIpToNetworkMap),
  ``rootdisksize`` sizes the root volume in GB, ``details[0].cpuNumber/cpuSpeed/memory`` size a VM on a customized
  offering (UserVmManagerImpl.verifyCustomServiceOffering);
- a deploy job that fails after its create() leaves the VM row (state Error), which the job's ``jobinstanceid``
  names (AsyncJobManagerImpl: instance id of the create command);
- rebootVirtualMachine refuses a VM that is not Running (UserVmManagerImpl.rebootVirtualMachine: "is not running,
  unable to reboot it"), so a stopped VM is started instead;
- destroyVirtualMachine with ``expunge=true`` from an account without allow.user.expunge.recover.vm fails its job
  with a PermissionDeniedException, errorcode 530, the VM untouched (UserVmManagerImpl.destroyVm); an expunged VM is
  unknown afterwards (431: "unable to find a virtual machine with id");
- updateVirtualMachine is synchronous (UpdateVMCmd is a BaseCmd); user data longer than vm.userdata.max.length is an
  InvalidParameterValueException, 431 ("User data has exceeded configurable max length : <n>",
  UserVmManagerImpl.validateUserData);
- enableStaticNat is synchronous (EnableStaticNatCmd is a BaseCmd); disableStaticNat of an IP without static NAT
  fails its job ("Specified IP address id is not associated with any vm Id", RulesManagerImpl.disableStaticNat).
"""

from __future__ import annotations

import pytest

from cloudstack_cpi import config
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import Gateway
from cloudstack_cpi.cloudstack.vms import ComputeSize, Deployment, DeployNetworks, NicRequest, expunge_refused

EXPUNGE_REFUSED = "Parameter expunge can be passed by Admin only. Or when the allow.user.expunge.recover.vm key is set."


def deployment(arranged, name: str, **changes) -> Deployment:
    return Deployment(**{"name": name, "zone_id": arranged.zone, "template_id": arranged.template,
                         "offering_id": arranged.service_offering,
                         "networks": DeployNetworks(nics=(NicRequest(arranged.network),)), **changes})


def sent(sim, command: str) -> list[dict]:
    return [params for name, params in sim.request_log if name == command]


def test_a_deploy_asks_for_a_stopped_vm_with_its_nics_key_pair_root_disk_and_affinity(sim, gateway, arranged):
    group = gateway.affinity.create("vm-deploy-group", "host anti-affinity")
    wanted = deployment(arranged, "vm-deploy-params", key_pair="bosh", root_disk_gib=15,
                        networks=DeployNetworks(nics=(NicRequest(arranged.network, "10.1.0.77"),)),
                        affinity_group_ids=(group.id,))
    made: list[str] = []
    sim.clear_request_log()
    vm = gateway.vms.start_deploy(wanted, made=made.append).wait()
    (params,) = sent(sim, "deployvirtualmachine")
    assert params["startvm"] == "false" and params["keypair"] == "bosh" and params["rootdisksize"] == "15"
    assert params["iptonetworklist[0].networkid"] == arranged.network
    assert params["iptonetworklist[0].ip"] == "10.1.0.77" and params["affinitygroupids"] == group.id
    assert made == [vm.id] and vm.name == "vm-deploy-params" and vm.state == "Stopped"
    assert [(nic.network_id, nic.ip) for nic in vm.nics] == [(arranged.network, "10.1.0.77")]
    assert [volume.size_gib for volume in gateway.volumes.of_vm(vm.id)] == [15]
    assert gateway.affinity.get(group.id).vm_ids == (vm.id,)


def test_a_started_deploy_carries_user_data_chosen_macs_and_its_data_disk(sim, gateway, arranged):
    """One deploy job for create_vm (issue 17): ``startvm`` true with ``userdata`` (DeployVMCmd), the NIC's MAC
    chosen in ``iptonetworklist[0].mac`` (DeployVMCmd.getIpToNetworkMap, CloudStack 4.11's listApis), and
    ``diskofferingid``/``size`` making a DATADISK of a customized offering beside the root disk, at device 1
    (VolumeOrchestrator.allocateRawVolume) and listed with the VM as soon as the deploy is answered (allocated in
    DeployVMCmd.create, before the job)."""
    from cloudstack_cpi.cloudstack.vms import DataDisk

    wanted = deployment(arranged, "vm-deploy-started", user_data="eyJhZ2VudF9pZCI6ICJhIn0=",
                        networks=DeployNetworks(nics=(NicRequest(arranged.network, "10.1.0.78", "0e:11:22:33:44:55"),)),
                        data_disk=DataDisk(arranged.custom_offering, 3))
    sim.clear_request_log()
    deploying = gateway.vms.start_deploy(wanted, made=lambda vm_id: None)
    assert deploying.resource_id
    (data,) = gateway.volumes.of_vm(deploying.resource_id, data_only=True)
    vm = deploying.wait()
    (params,) = sent(sim, "deployvirtualmachine")
    assert params["startvm"] == "true" and params["userdata"] == "eyJhZ2VudF9pZCI6ICJhIn0="
    assert params["iptonetworklist[0].mac"] == "0e:11:22:33:44:55" and params["size"] == "3"
    assert vm.state == "Running" and [nic.mac for nic in vm.nics] == ["0e:11:22:33:44:55"]
    assert data.device_id == 1 and data.size_gib == 3 and data.disk_offering_id == arranged.custom_offering
    assert gateway.client.call("getVirtualMachineUserData", virtualmachineid=vm.id)["virtualmachineuserdata"][
        "userdata"] == "eyJhZ2VudF9pZCI6ICJhIn0="


def test_a_customized_offering_gets_the_size_as_details(sim, gateway, arranged):
    with sim.state.lock:
        custom = next(o["id"] for o in sim.state.service_offerings.values() if o["name"] == "custom")
    sim.clear_request_log()
    vm = gateway.vms.start_deploy(deployment(arranged, "vm-custom-size", offering_id=custom,
                                             size=ComputeSize(cpus=2, cpu_speed_mhz=2000, memory_mib=3072)),
                                  made=lambda vm_id: None).wait()
    (params,) = sent(sim, "deployvirtualmachine")
    assert (params["details[0].cpuNumber"], params["details[0].cpuSpeed"], params["details[0].memory"]) == \
        ("2", "2000", "3072")
    with sim.state.lock:
        assert (sim.state.vms[vm.id]["cpunumber"], sim.state.vms[vm.id]["memory"]) == (2, 3072)


def test_the_vm_id_comes_with_the_job_so_its_tags_go_on_beside_the_deploy(sim, gateway, arranged):
    sim.clear_request_log()
    deploying = gateway.vms.start_deploy(deployment(arranged, "vm-tags-beside"), made=lambda vm_id: None)
    assert deploying.resource_id  # known before the job is waited for
    tagging = gateway.tags.start("UserVm", deploying.resource_id, {"agent_id": "agent-1"})
    vm = deploying.wait()
    tagging.wait()
    assert [command for command, _ in sim.request_log][:2] == ["deployvirtualmachine", "createtags"]
    assert vm.id == deploying.resource_id and dict(gateway.vms.get(vm.id).tags) == {"agent_id": "agent-1"}


def test_a_lost_deploy_answer_reports_the_vm_found_by_its_name(sim, gateway, arranged):
    made: list[str] = []
    sim.script_fault("deployVirtualMachine", "drop_after_action")
    sim.clear_request_log()
    with pytest.raises(CloudStackError) as caught:
        gateway.vms.start_deploy(deployment(arranged, "vm-lost-answer"), made=made.append)
    assert caught.value.outcome_unknown and caught.value.is_transient
    assert made == [vm.id for vm in gateway.vms.named("vm-lost-answer")] and len(made) == 1
    assert [params["name"] for params in sent(sim, "deployvirtualmachine")] == ["vm-lost-answer"]  # not sent again
    assert gateway.vms.destroy(made[0], expunge=True) is True
    assert gateway.vms.get(made[0]) is None
    assert gateway.vms.destroy(made[0], expunge=True) is False  # expunged: gone, done


def test_a_failed_deploy_job_names_its_vm(sim, gateway, arranged):
    made: list[str] = []
    sim.script_fault("deployVirtualMachine", "job_failure")
    deploying = gateway.vms.start_deploy(deployment(arranged, "vm-job-fails"), made=made.append)
    assert made == [deploying.resource_id]
    with pytest.raises(CloudStackError) as caught:
        deploying.wait()
    assert caught.value.kind == "job" and caught.value.resource_id == made[0]
    assert gateway.vms.destroy(made[0], expunge=True) is True and gateway.vms.named("vm-job-fails") == []


def test_reboot_reboots_a_running_vm_and_starts_a_stopped_one(sim, gateway, arranged):
    vm_id = arranged.vm()
    sim.clear_request_log()
    assert gateway.vms.reboot(gateway.vms.get(vm_id)).state == "Running"
    gateway.client.run_job("stopVirtualMachine", timeout=30, what="stopping a test VM", id=vm_id)
    assert gateway.vms.reboot(gateway.vms.get(vm_id)).state == "Running"
    assert [command for command, _ in sim.request_log if command.endswith("virtualmachine")] == \
        ["rebootvirtualmachine", "stopvirtualmachine", "startvirtualmachine"]


def test_settled_waits_until_a_moving_vm_has_arrived_or_the_timeout(sim, gateway, arranged):
    vm_id = arranged.vm()

    def put(state: str) -> None:
        with sim.state.lock:
            sim.state.vms[vm_id]["state"] = state

    put("Stopping")
    gateway.client.sleep = lambda seconds: put("Stopped")  # it arrives while the gateway waits
    assert gateway.vms.settled(vm_id).state == "Stopped"

    now = [0.0]

    def pass_time(seconds: float) -> None:
        now[0] += seconds
    gateway.client.sleep, gateway.client.clock = pass_time, lambda: now[0]
    short = Gateway(gateway.client, config.parse({"cloudstack": {
        "endpoint": sim.endpoint, "api_key": "k", "secret_access_key": "s",
        "timeout": {"reboot_vm": 0.01}}}).cloudstack.timeout)
    put("Migrating")
    assert short.vms.settled(vm_id).state == "Migrating"  # as last seen, once reboot_vm's timeout has passed
    assert now[0] >= 0.01


def test_the_refusal_to_expunge_is_recognised_and_a_destroy_without_expunge_follows(sim, gateway, arranged):
    vm_id = arranged.vm()
    with sim.state.lock:
        sim.state.settings["allow.user.expunge.recover.vm"] = False
    try:
        with pytest.raises(CloudStackError) as caught:
            gateway.vms.destroy(vm_id, expunge=True)
    finally:
        with sim.state.lock:
            sim.state.settings["allow.user.expunge.recover.vm"] = True
    assert expunge_refused(caught.value)
    assert gateway.vms.get(vm_id).state == "Running"  # untouched
    assert gateway.vms.destroy(vm_id, expunge=False) is True
    assert gateway.vms.get(vm_id) is None  # destroyed counts as gone
    with sim.state.lock:
        assert sim.state.vms[vm_id]["state"] == "Destroyed"


@pytest.mark.parametrize("kind, errorcode, text, refused", [
    ("job", 530, EXPUNGE_REFUSED, True),                                            # 4.x
    ("job", 530, "Account does not have permission for expunging.", True),          # since apache/cloudstack#8689
    ("job", 530, "Failed to expunge vm VM instance {\"id\": 7}", False),
    ("job", 530, "Internal error executing command, please contact your system administrator", False),
    ("api", 531, EXPUNGE_REFUSED, False),
])
def test_only_the_refusal_to_expunge_is_recognised(kind, errorcode, text, refused):
    err = CloudStackError("destroyVirtualMachine", text, kind=kind, errorcode=errorcode)
    assert expunge_refused(err) is refused


def test_user_data_and_display_name_are_set_at_once_and_too_much_user_data_is_a_431(sim, gateway, arranged):
    vm_id = arranged.vm()
    sim.clear_request_log()
    gateway.vms.set_user_data(vm_id, "eyJhZ2VudF9pZCI6ICJhIn0=")
    gateway.vms.rename(vm_id, "router/0")
    assert [command for command, _ in sim.request_log] == ["updatevirtualmachine", "updatevirtualmachine"]  # no job
    assert gateway.vms.get(vm_id).display_name == "router/0"
    with sim.state.lock:
        limit = int(sim.state.settings["vm.userdata.max.length"])
        assert sim.state.vms[vm_id]["_userdata"] == "eyJhZ2VudF9pZCI6ICJhIn0="
    with pytest.raises(CloudStackError) as caught:
        gateway.vms.set_user_data(vm_id, "A" * (limit + 4))
    assert caught.value.errorcode == 431 and "user data" in caught.value.errortext.lower()


def test_static_nat_after_a_lost_answer_and_released_meanwhile(sim, gateway, arranged, log_stream):
    vm_id = arranged.vm()
    ip = next(ip for ip in gateway.addresses.allocated(arranged.zone) if ip.address == "203.0.113.10")
    sim.script_fault("enableStaticNat", "drop_after_action")
    sim.clear_request_log()
    gateway.addresses.enable_static_nat(ip, vm_id, arranged.network)  # looked at, not sent again
    assert len(sent(sim, "enablestaticnat")) == 1
    listed = gateway.addresses.get(ip.id)
    assert listed.static_nat and listed.vm_id == vm_id
    assert f"but it points to VM '{vm_id}' now" in log_stream.getvalue()
    assert gateway.addresses.disable_static_nat(listed) is True  # another call released it...
    assert gateway.addresses.disable_static_nat(listed) is False  # ...before this one: done
    assert "Static NAT of 203.0.113.10 went meanwhile" in log_stream.getvalue()
    assert not gateway.addresses.get(ip.id).static_nat
