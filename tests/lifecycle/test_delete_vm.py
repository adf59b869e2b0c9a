"""delete_vm through bin/cpi against the simulator: accounts that may not expunge, and deletes a repeat finishes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloudstack_simulator.commands import REGISTRY
from cloudstack_simulator.errors import CS_CLOUD_RUNTIME, ApiError
from cloudstack_simulator.state import load_scenario
from tests.conftest import Cpi, _start_simulator, cpi_for, write_config
from tests.simulator.helpers import Api

CLOUDSTACK_CPI = Path(sys.executable).with_name("cloudstack-cpi")
# What CloudStack (4.11 to 4.18 at least) answers a user without allow.user.expunge.recover.vm (UserVmManagerImpl).
REFUSAL = "Parameter expunge can be passed by Admin only. Or when the allow.user.expunge.recover.vm key is set."


def manual(ip: str) -> dict:
    return {"type": "manual", "ip": ip, "netmask": "255.255.255.0", "gateway": "10.1.0.1", "dns": ["10.1.0.1"],
            "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}


def fail_once(monkeypatch, command: str) -> None:
    """The simulator answers the next ``command`` as its injected error fault does (faults.py / server.py: HTTP 500,
    "Internal error executing command, ...", before acting); the ones after it succeed."""
    entry = REGISTRY[command.lower()]
    handler, failed = entry.handler, []

    def once(ctx):
        if not failed:
            failed.append(command)
            raise ApiError(500, "Internal error executing command, please contact your system administrator",
                           CS_CLOUD_RUNTIME)
        return handler(ctx)

    monkeypatch.setattr(entry, "handler", once)


def create_vm_with_disks(cpi: Cpi, simulator, ip: str) -> tuple[str, str, str]:
    """A VM with an ephemeral disk and an attached persistent disk: (vm, ephemeral volume, persistent disk)."""
    stemcell = Api(simulator).template("bosh-stemcell-existing")["id"]
    vm_id, _ = cpi.ok("create_vm", "agent-d", stemcell, {"compute_offering": "small", "disk": 2048},
                      {"private": manual(ip)}, [], {})
    disk = cpi.ok("create_disk", 1024, {}, vm_id)
    cpi.ok("attach_disk", vm_id, disk)
    volumes = Api(simulator).list("listVolumes", "volume", virtualmachineid=vm_id, type="DATADISK")
    ephemeral = next(v["id"] for v in volumes if {"key": "cpi_role", "value": "ephemeral"} in
                     [{"key": t["key"], "value": t["value"]} for t in v["tags"]])
    return vm_id, ephemeral, disk


def vm_state(simulator, vm_id: str) -> str:
    with simulator.state.lock:
        vm = simulator.state.vms.get(vm_id)
        return vm["state"] if vm else "expunged"


def tags_of(simulator, *resource_ids: str) -> list[dict]:
    """Tags on these resources, or naming them."""
    with simulator.state.lock:
        return [t for t in simulator.state.tags if t["resourceid"] in resource_ids or t["value"] in resource_ids]


def persistent_disk(simulator, disk: str) -> dict:
    return Api(simulator).list("listVolumes", "volume", id=disk)[0]


# -- an account that may not expunge -------------------------------------------------------------------------


def test_delete_vm_destroys_without_expunging_when_the_account_may_not_expunge(user_cpi, user_simulator):
    """CloudStack refuses destroyVirtualMachine(expunge=true) from a non-admin account unless the account-scoped
    setting allow.user.expunge.recover.vm (default false, UserVmManager.AllowUserExpungeRecoverVm) is true: the
    check is the first thing UserVmManagerImpl.destroyVm(DestroyVMCmd) does, inside the job, throwing
    PermissionDeniedException("Parameter expunge can be passed by Admin only. Or when the
    allow.user.expunge.recover.vm key is set.") (apache/cloudstack@00114e8
    server/src/main/java/com/cloud/vm/UserVmManagerImpl.java; since PR #8689 "Account does not have permission for
    expunging."), which ApiAsyncJobDispatcher.runJob turns into a failed job with errorcode 530, as in
    hashicorp/packer#5097.  The VM is untouched; a destroyed, unexpunged VM keeps its NICs and IPs until the expunge
    thread removes it after expunge.delay (UserVmManagerImpl.ExpungeTask)."""
    sim, cpi = user_simulator, user_cpi
    vm_id, ephemeral, disk = create_vm_with_disks(cpi, sim, "10.1.0.70")

    result = cpi.call("delete_vm", vm_id)
    assert result.ok() is None
    assert result.stderr.count("refused to expunge") == 1
    for words in (REFUSAL, "stays in state Destroyed", "keeps its IP addresses, static ones included",
                  "expunge.delay", "allow.user.expunge.recover.vm to true", "cloudstack.expunge_vm: false"):
        assert words in result.stderr
    assert vm_state(sim, vm_id) == "Destroyed"
    assert sim.inventory()["volumes"] == [disk]                   # the ephemeral disk is gone...
    assert "virtualmachineid" not in persistent_disk(sim, disk)   # ...the persistent one detached
    assert cpi.ok("has_vm", vm_id) is False

    # The destroyed VM still holds its static IP: another VM cannot have it yet.
    stemcell = Api(sim).template("bosh-stemcell-existing")["id"]
    taken = cpi.call("create_vm", "agent-e", stemcell, {"compute_offering": "small"}, {"private": manual("10.1.0.70")},
                     [], {})
    assert taken.error["type"] == "Bosh::Clouds::CloudError" and "already in use" in taken.error["message"]

    repeated = cpi.call("delete_vm", vm_id)
    assert repeated.ok() is None and "refused to expunge" not in repeated.stderr
    assert sim.inventory()["virtualmachines"] == [vm_id] and sim.inventory()["volumes"] == [disk]


def test_a_vip_is_released_before_a_destroy_that_may_not_expunge(user_cpi, user_simulator):
    """delete_vm sends no disableStaticNat when it expunges, because the expunge disables the VM's static NAT
    itself (UserVmManagerImpl.cleanupVmResources: "Disabled 1-1 NAT for IP address ... as a part of ... expunge").
    A destroy without expunging keeps it, so when the expunge is refused the CPI disables it first: the vip must be
    free for the VM that replaces this one (the director's recreate)."""
    sim, cpi = user_simulator, user_cpi
    stemcell = Api(sim).template("bosh-stemcell-existing")["id"]
    networks = {"private": manual("10.1.0.71"), "public": {"type": "vip", "ip": "203.0.113.10", "cloud_properties": {}}}
    vm_id, _ = cpi.ok("create_vm", "agent-v", stemcell, {"compute_offering": "small"}, networks, [], {})
    sim.clear_request_log()
    assert cpi.ok("delete_vm", vm_id) is None
    commands = [name for name, _ in sim.request_log]
    assert commands.index("disablestaticnat") > commands.index("destroyvirtualmachine")  # after the refused expunge
    assert vm_state(sim, vm_id) == "Destroyed"
    networks["private"] = manual("10.1.0.72")
    again, _ = cpi.ok("create_vm", "agent-w", stemcell, {"compute_offering": "small"}, networks, [], {})
    assert again != vm_id


def test_delete_vm_without_expunge_configured_never_asks(user_simulator, tmp_path):
    """cloudstack.expunge_vm: false: one destroy without expunge, data volumes detached first."""
    sim = user_simulator
    cpi = cpi_for(sim, tmp_path, expunge_vm=False)
    vm_id, _, disk = create_vm_with_disks(cpi, sim, "10.1.0.71")
    sim.clear_request_log()
    result = cpi.call("delete_vm", vm_id)
    assert result.ok() is None and "refused to expunge" not in result.stderr
    destroys = [params for command, params in sim.request_log if command == "destroyvirtualmachine"]
    assert [params["expunge"] for params in destroys] == ["false"]
    assert vm_state(sim, vm_id) == "Destroyed" and sim.inventory()["volumes"] == [disk]


# -- deletes a repeat finishes -------------------------------------------------------------------------------


def test_a_repeated_delete_vm_deletes_the_ephemeral_disk_a_failed_one_left(cpi, simulator, monkeypatch):
    """One HTTP 500 on deleteVolume after the VM was expunged: the director's repeat finds the VM gone, and must
    still delete the ephemeral disk and its tags (found by the tag naming the VM)."""
    vm_id, ephemeral, disk = create_vm_with_disks(cpi, simulator, "10.1.0.72")
    fail_once(monkeypatch, "deleteVolume")

    first = cpi.call("delete_vm", vm_id)
    assert first.error["type"] == "Bosh::Clouds::CloudError" and "looks transient" in first.stderr
    assert first.error["message"].startswith(f"Deleting VM '{vm_id}': deleteVolume failed")
    assert vm_state(simulator, vm_id) == "expunged" and ephemeral in simulator.inventory()["volumes"]

    assert cpi.ok("delete_vm", vm_id) is None
    assert simulator.inventory()["volumes"] == [disk]
    assert tags_of(simulator, vm_id, ephemeral) == []
    assert "virtualmachineid" not in persistent_disk(simulator, disk)


def test_a_repeated_delete_vm_finishes_after_a_destroy_without_expunge(user_cpi, user_simulator, monkeypatch):
    """The same on a cloud that refuses to expunge: the first attempt destroyed the VM (Destroyed, hidden from a
    user's listVirtualMachines as QueryManagerImpl hides it without allow.user.view.destroyed.vm) and failed on
    deleteVolume; the repeat deletes the detached ephemeral disk."""
    sim, cpi = user_simulator, user_cpi
    vm_id, ephemeral, disk = create_vm_with_disks(cpi, sim, "10.1.0.73")
    fail_once(monkeypatch, "deleteVolume")

    first = cpi.call("delete_vm", vm_id)
    assert "looks transient" in first.stderr and "deleteVolume" in first.error["message"]
    assert vm_state(sim, vm_id) == "Destroyed"

    assert cpi.ok("delete_vm", vm_id) is None
    assert sim.inventory()["volumes"] == [disk]
    assert tags_of(sim, ephemeral) == []
    assert "virtualmachineid" not in persistent_disk(sim, disk)


# -- cloudstack-cpi validate ---------------------------------------------------------------------------------


def validate(simulator, tmp_path, **cloudstack) -> subprocess.CompletedProcess:
    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, simulator.secret_key,
                          default_offer={"disk": "disk-10", "compute": "small"}, **cloudstack)
    simulator.clear_request_log()
    completed = subprocess.run([str(CLOUDSTACK_CPI), "validate", str(config)], capture_output=True, text=True,
                               timeout=120)
    assert [c for c, _ in simulator.request_log if not c.startswith("list")] == []   # it only looks
    return completed


def finding(completed: subprocess.CompletedProcess) -> str:
    found = re.search(r"^(ok|FAIL)\s+expunge permission: (.*)$", completed.stdout, re.MULTILINE)
    assert found, completed.stdout
    return f"{found.group(1)} {found.group(2)}"


def test_validate_reports_a_user_account_that_may_not_expunge(user_simulator, tmp_path):
    """listCapabilities' allowuserexpungerecovervm is the setting's value for the caller (ManagementServerImpl;
    4.11 listApis: "true if the user can recover and expunge virtualmachines"); listAccounts shows a user only its
    own account, with accounttype 0 / roletype User."""
    completed = validate(user_simulator, tmp_path)
    assert completed.returncode == 1
    assert finding(completed).startswith("FAIL this account may not expunge VMs (a user account, and "
                                         "allow.user.expunge.recover.vm is false)")
    assert "fix: Ask the cloud's operator to set allow.user.expunge.recover.vm to true" in completed.stdout
    assert completed.stdout.rstrip().endswith("1 problem(s) found")

    accepted = validate(user_simulator, tmp_path, expunge_vm=False)
    assert accepted.returncode == 0 and finding(accepted).startswith("ok this account may not expunge VMs")


def test_validate_reports_accounts_that_may_expunge(simulator, tmp_path):
    completed = validate(simulator, tmp_path)
    assert completed.returncode == 0, completed.stdout
    assert finding(completed) == ("ok this account may expunge VMs "
                                  "(allow.user.expunge.recover.vm is true for this account)")


@pytest.mark.parametrize("role", ["root-admin", "domain-admin"])
def test_validate_reports_an_admin_account_may_expunge(tmp_path, role):
    """Admins may always expunge (AccountManager.isAdmin: root, domain and resource domain admins)."""
    scenario = load_scenario("advanced-user")
    scenario["account"]["role"] = role
    sim = _start_simulator(scenario)
    try:
        completed = validate(sim, tmp_path)
    finally:
        sim.stop()
    assert completed.returncode == 0, completed.stdout
    assert finding(completed) == "ok this account may expunge VMs (an admin account)"
