"""Virtual machines: find, deploy, start, reboot, update, destroy.

Rules owned here:
- gone: an unknown id (431) or a VM destroyed or being expunged (``GONE_VM_STATES``) is None;
- deploy: the VM carries its unique name from its creation on, and the deploy is started without waiting for its
  job (create_vm runs the tags, and when it deploys stopped the ephemeral volume, beside it).  Every VM it may
  have made is reported as soon as it is known: the id its answer names; after a lost answer, or an interruption
  (SIGTERM, SIGINT) while asking, every VM with its name.  A job result naming no VM is recovered by the name
  (``Gateway.start_named``);
- timeouts: the deploy and a new VM's first start ``create_vm``; reboot, start of an existing VM and waiting for
  a VM to settle ``reboot_vm``; destroy ``delete_vm``;
- destroy is idempotent: a VM gone before the job (431), or seen gone after the job's refusal or a lost answer,
  is done; ``expunge_refused`` tells CloudStack's refusal to let the account expunge from any other failure;
- updateVirtualMachine answers at once (no job) and is sent once: a lost answer is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import CloudStackError
from .gateway import Creation, Service
from .models import Vm

if TYPE_CHECKING:
    from .gateway import Pending

T = TypeVar("T")

# A VM in one of these states is on its way to another: reboot_vm waits until it has arrived.
TRANSITIONAL_STATES = frozenset({"Starting", "Stopping", "Migrating"})
# How CloudStack refuses destroyVirtualMachine's expunge=true to an account that may not expunge (a user without
# allow.user.expunge.recover.vm): a PermissionDeniedException inside the job, so a failed job with errorcode 530.
# The wording of UserVmManagerImpl.destroyVm (4.x), then of checkExpungeVmPermission (apache/cloudstack PR #8689).
EXPUNGE_REFUSALS = ("can be passed by Admin only", "does not have permission for expunging")


def expunge_refused(err: CloudStackError) -> bool:
    """True for CloudStack's refusal to let this account expunge, and for no other failure."""
    return err.kind == "job" and err.errorcode == 530 and any(text in err.errortext for text in EXPUNGE_REFUSALS)


@dataclass(frozen=True)
class NicRequest:
    """One NIC of a deploy in an advanced zone: its guest network and, for a manual network, its fixed IP; ``mac``
    when the caller chose the NIC's MAC address."""

    network_id: str
    ip: str | None = None
    mac: str | None = None


@dataclass(frozen=True)
class DeployNetworks:
    """Where a deploy puts the VM's NICs: ``nics`` in advanced zones (eth0 first: the first is the default NIC),
    ``ip`` and ``mac`` (the one NIC's fixed IP and chosen MAC, if any) in basic zones, where the zone's one guest
    network is never named."""

    nics: tuple[NicRequest, ...] = ()
    ip: str | None = None
    mac: str | None = None
    security_group_ids: tuple[str, ...] = ()

    def macs(self) -> tuple[str, ...]:
        """The chosen MAC addresses, in NIC order (empty when CloudStack chooses them)."""
        chosen = [nic.mac for nic in self.nics] if self.nics else [self.mac]
        return tuple(mac for mac in chosen if mac)


@dataclass(frozen=True)
class DataDisk:
    """A data disk the deploy itself makes (``diskofferingid``): CloudStack creates it with the VM and attaches it
    as device 1.  ``size_gib`` for a customized offering only."""

    offering_id: str
    size_gib: int | None = None


@dataclass(frozen=True)
class ComputeSize:
    """The size of a VM on a customized compute offering."""

    cpus: int
    cpu_speed_mhz: int
    memory_mib: int


@dataclass(frozen=True)
class Deployment:
    """What a deploy asks for.

    Started (``user_data`` given): one job deploys and boots the VM with its user data, on NICs whose MACs the
    caller chose, with ``data_disk`` made beside its root disk.  Stopped (no ``user_data``): the VM is only
    allocated; the caller sets its user data and starts it.
    """

    name: str                              # unique: the handle after a lost answer
    zone_id: str
    template_id: str
    offering_id: str
    networks: DeployNetworks
    key_pair: str | None = None
    affinity_group_ids: tuple[str, ...] = ()
    size: ComputeSize | None = None        # customized offerings only
    root_disk_gib: int | None = None
    user_data: str | None = None           # base64; given: deployed started
    data_disk: DataDisk | None = None

    @property
    def started(self) -> bool:
        return self.user_data is not None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "name": self.name, "displayname": self.name, "zoneid": self.zone_id, "templateid": self.template_id,
            "serviceofferingid": self.offering_id, "startvm": self.started, "keypair": self.key_pair,
            "affinitygroupids": list(self.affinity_group_ids) or None, "rootdisksize": self.root_disk_gib,
            "details": {"cpuNumber": self.size.cpus, "cpuSpeed": self.size.cpu_speed_mhz,
                        "memory": self.size.memory_mib} if self.size else None,
            "userdata": self.user_data,
        }
        if self.data_disk is not None:
            params["diskofferingid"] = self.data_disk.offering_id
            params["size"] = self.data_disk.size_gib
        if self.networks.nics:
            params["iptonetworklist"] = [{"networkid": nic.network_id, "ip": nic.ip, "mac": nic.mac}
                                         for nic in self.networks.nics]
        if self.networks.ip:
            params["ipaddress"] = self.networks.ip
        if self.networks.mac:
            params["macaddress"] = self.networks.mac
        if self.networks.security_group_ids:
            params["securitygroupids"] = list(self.networks.security_group_ids)
        return params


def _job_vm(result: Mapping[str, Any]) -> Vm | None:
    row = result.get("virtualmachine") or {}
    return Vm.from_api(row) if row.get("id") else None


class Vms(Service):
    # -- reading

    def get(self, vm_id: str) -> Vm | None:
        """The VM unless it is gone (unknown id, destroyed, being expunged)."""
        return self._one("listVirtualMachines", Vm.from_api, vm_id)

    def named(self, name: str) -> list[Vm]:
        """Every VM named exactly ``name`` (the ``name=`` filter matches substrings)."""
        rows = self.client.list("listVirtualMachines", name=name, listall=True)
        return [vm for vm in map(Vm.from_api, rows) if vm.name == name]

    def holding(self, ips: Collection[str], *, network_ids: Iterable[str], zone_id: str) -> list[Vm]:
        """The VMs, in any state, with a NIC holding one of ``ips``: looked for on each of ``network_ids``, or in
        the zone when there are none (basic zones)."""
        scopes = [{"networkid": network_id} for network_id in dict.fromkeys(network_ids)] or [{"zoneid": zone_id}]
        wanted = set(ips)
        found: dict[str, Vm] = {}
        for scope in scopes:
            for vm in map(Vm.from_api, self.client.list_all("listVirtualMachines", listall=True, **scope)):
                if wanted & {nic.ip for nic in vm.nics}:
                    found[vm.id] = vm
        return list(found.values())

    def settled(self, vm_id: str) -> Vm | None:
        """Poll the VM until it leaves ``TRANSITIONAL_STATES`` or reboot_vm's timeout has passed: the VM as last
        seen (still transitional after the timeout), or None once it is gone."""
        vm, _ = self.gateway.poll_until(lambda: self.get(vm_id),
                                        lambda vm: vm is None or vm.state not in TRANSITIONAL_STATES,
                                        timeout=self.timeouts.reboot_vm, read_first=False)
        return vm

    def unconfirmed(self) -> list[Vm]:
        """VMs still marked as never handed over (``gateway.UNCONFIRMED_TAG``), not gone, checked here again (a
        server that ignored the tag filter must not make a caller act on other VMs)."""
        return self._unconfirmed("listVirtualMachines", Vm.from_api)

    # -- creating

    def start_deploy(self, deployment: Deployment, *, made: Callable[[str], object]) -> Pending[Vm]:
        """deployVirtualMachine, not waited for: ``made`` learns the id of every VM it may have made as soon as it
        is known (``Gateway.start_named``); waiting answers the deployed VM."""
        name = deployment.name
        return self.gateway.start_named(Creation(
            kind="VM", name=name, command="deployVirtualMachine", params=deployment.params(),
            timeout=self.timeouts.create_vm, what=f"deploying VM {name}", parse=_job_vm,
            find_named=lambda: self.named(name), remove=lambda vm_id: self.destroy(vm_id, expunge=True),
            gone=lambda vm_id: self.get(vm_id) is None, resource_type="UserVm", tags={}), made=made)

    def start(self, vm_id: str) -> Vm | None:
        """Boot a VM deployed stopped, waited for (create_vm's timeout: its first start creates its volumes); the VM
        as the job answered it."""
        result = self.gateway.run("startVirtualMachine", timeout=self.timeouts.create_vm,
                                  what=f"starting VM {vm_id}", id=vm_id)
        return _job_vm(result)

    # -- changing

    def reboot(self, vm: Vm) -> Vm | None:
        """Reboot the VM as just listed if it runs, else start it (rebootVirtualMachine refuses a VM that is not
        Running), waited for (reboot_vm); the VM as the job answered it."""
        command = "rebootVirtualMachine" if vm.state == "Running" else "startVirtualMachine"
        result = self.gateway.run(command, timeout=self.timeouts.reboot_vm, what=f"{command} {vm.id}", id=vm.id)
        return _job_vm(result)

    def set_user_data(self, vm_id: str, encoded: str) -> None:
        """The VM's user data (base64), read by the VM from its virtual router at boot."""
        self.client.call("updateVirtualMachine", id=vm_id, userdata=encoded)

    def rename(self, vm_id: str, display_name: str) -> None:
        self.client.call("updateVirtualMachine", id=vm_id, displayname=display_name)

    def destroy(self, vm_id: str, *, expunge: bool) -> bool:
        """Destroy the VM (and expunge it when ``expunge``), waited for (delete_vm); False when it was gone already
        or went meanwhile.  Expunging releases the VM's static NAT itself (UserVmManagerImpl.cleanupVmResources);
        without it the VM keeps its static NAT and its data volumes attached."""
        try:
            self.gateway.run("destroyVirtualMachine", timeout=self.timeouts.delete_vm,
                             what=f"destroying VM {vm_id}", id=vm_id, expunge=expunge)
        except CloudStackError as err:
            # Gone meanwhile: 431 before the job, or the job's own refusal ("unable to find a virtual machine",
            # errorcode 530 on CloudStack 4.11 to 4.19, 431 later); a lost answer (outcome_unknown) may have been
            # the destroy itself: look.
            if (err.errorcode == 431 or err.kind == "job" or err.outcome_unknown) and self.get(vm_id) is None:
                return False
            raise
        return True
