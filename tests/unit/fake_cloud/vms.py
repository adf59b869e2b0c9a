"""VMs of the fake cloud (``cloud.vms``).

A VM the fake starts or reboots is ``boot_state`` (Running unless a test says otherwise); one in a moving state
(Starting, Stopping, Migrating) stays there unless ``arrives_at`` says where ``settled`` finds it.  A deploy can be
made to fail after its VM exists (``fail_after_deploy``), as a deploy whose answer was lost or whose job failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable

from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE
from cloudstack_cpi.cloudstack.models import Nic, Vm

from . import FakeService, api_error, recorded


class _Deploying:
    """What ``start_deploy`` answers: the new id at once, the VM when waited for (or the job's failure)."""

    def __init__(self, vm: Vm, failure: CloudStackError | None = None) -> None:
        self.resource_id = vm.id
        self._vm = vm
        self._failure = failure

    def wait(self, recover=None) -> Vm:
        if self._failure is not None:
            raise self._failure
        return self._vm


class FakeVms(FakeService):
    service_name = "vms"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.items: dict[str, Vm] = {}
        self.user_data: dict[str, str] = {}
        self.boot_state = "Running"                # the state start and reboot leave a VM in
        self.arrives_at: dict[str, str] = {}       # VM id -> the state ``settled`` finds a moving VM in
        self._after_deploy: list[CloudStackError] = []
        self._mac_refusals: list[str] = []
        self.ignores_macs = False                   # a cloud whose deploy takes chosen MACs without using them
        self.refuse_data_disk = ""                  # refuse a deploy's data disk with this text (431), before any VM

    # -- arranging

    def add(self, *, zone: str = "z1", hypervisor: str = "KVM", state: str = "Running", **fields) -> str:
        """A VM with its root volume (device 0), as a deploy leaves it."""
        vm_id = self.cloud.new_id("vm")
        zone_name = self.cloud.catalogue.zone(zone).name
        self.items[vm_id] = Vm(vm_id, name=f"vm-{len(self.items)}", state=state, zone_id=zone,
                               zone_name=zone_name, hypervisor=hypervisor, **fields)
        self.cloud.volumes.add(zone=zone, vm=vm_id, device_id=0, volume_type="ROOT", offering=None, gib=5)
        return vm_id

    def fail_after_deploy(self, error: CloudStackError) -> None:
        """The next deploy makes its VM and reports it (``made``), then fails with ``error``: at once when
        ``error.outcome_unknown`` (a lost answer: the gateway has found the VM by its name), else when waited for,
        as a failed job naming the VM (``error.resource_id``), which it leaves in state Error."""
        self._after_deploy.append(error)

    def _with_tags(self, vm: Vm) -> Vm:
        return dataclasses.replace(vm, tags=self.cloud.tags.of("UserVm", vm.id))

    def _known(self, vm_id: str, command: str) -> Vm:
        vm = self.items.get(vm_id)
        if vm is None or vm.gone:
            raise api_error(command, f"Unable to find a virtual machine with id {vm_id}")
        return vm

    def _set(self, vm_id: str, **changes) -> Vm:
        self.items[vm_id] = dataclasses.replace(self.items[vm_id], **changes)
        return self._with_tags(self.items[vm_id])

    # -- the gateway's methods

    @recorded
    def get(self, vm_id: str) -> Vm | None:
        vm = self.items.get(vm_id)
        return None if vm is None or vm.gone else self._with_tags(vm)

    @recorded
    def named(self, name: str) -> list[Vm]:
        return [self._with_tags(vm) for vm in self.items.values() if vm.name == name]

    @recorded
    def holding(self, ips: Collection[str], *, network_ids: Iterable[str], zone_id: str) -> list[Vm]:
        networks = set(network_ids)
        return [self._with_tags(vm) for vm in self.items.values()
                if any(nic.ip in ips and (nic.network_id in networks if networks else vm.zone_id == zone_id)
                       for nic in vm.nics)]

    @recorded
    def settled(self, vm_id: str) -> Vm | None:
        if vm_id in self.arrives_at and vm_id in self.items:
            self._set(vm_id, state=self.arrives_at.pop(vm_id))
        return self.get.__wrapped__(self, vm_id)  # type: ignore[attr-defined]

    def refuse_macs(self, times: int, text: str = "The requested Mac address is already taken! {mac}") -> None:
        """The next ``times`` deploys with chosen MACs are refused before any VM exists, as CloudStack refuses a MAC
        another NIC of the network has (NetworkModelImpl.checkRequestedIpAddresses: 431, in DeployVMCmd.create)."""
        self._mac_refusals = [text] * times

    @recorded
    def start_deploy(self, deployment, *, made: Callable[[str], object]) -> _Deploying:
        chosen = deployment.networks.macs()
        if chosen and self._mac_refusals:
            raise api_error("deployVirtualMachine", self._mac_refusals.pop(0).format(mac=chosen[0]))
        if deployment.data_disk is not None and self.refuse_data_disk:
            raise api_error("deployVirtualMachine", self.refuse_data_disk)
        vm_id = self.cloud.new_id("vm")
        requested = deployment.networks.nics or (None,)
        nics = tuple(
            Nic(f"nic-{vm_id[:7]}-{i}", network_id=nic.network_id if nic else "guest",
                ip=(nic.ip if nic else deployment.networks.ip) or f"10.0.{i}.50", netmask="255.255.255.0",
                gateway=f"10.0.{i}.1",
                mac=(None if self.ignores_macs else (nic.mac if nic else deployment.networks.mac))
                or f"02:00:00:00:{len(self.items):02x}:{i:02x}",
                device_id=i, is_default=i == 0)
            for i, nic in enumerate(requested))
        state = self.boot_state if deployment.started else "Stopped"
        self.items[vm_id] = Vm(vm_id, name=deployment.name, display_name=deployment.name, state=state,
                               zone_id=deployment.zone_id, zone_name=self.cloud.catalogue.zone(deployment.zone_id).name,
                               hypervisor="KVM", template_id=deployment.template_id, nics=nics)
        if deployment.started:
            self.user_data[vm_id] = deployment.user_data
        self.cloud.volumes.add(zone=deployment.zone_id, vm=vm_id, device_id=0, volume_type="ROOT", offering=None,
                               gib=deployment.root_disk_gib or 5)
        if deployment.data_disk is not None:  # named as CloudStack names it: DATA-<the VM's internal number>
            self.cloud.volumes.add(zone=deployment.zone_id, vm=vm_id, device_id=1, name=f"DATA-{len(self.items)}",
                                   offering=deployment.data_disk.offering_id, gib=deployment.data_disk.size_gib or 10)
        self.cloud.affinity.join(deployment.affinity_group_ids, vm_id)
        made(vm_id)
        if self._after_deploy:
            failure = self._after_deploy.pop(0)
            if failure.outcome_unknown:
                raise failure
            failure.resource_id = vm_id
            return _Deploying(self._set(vm_id, state="Error"), failure)
        return _Deploying(self._with_tags(self.items[vm_id]))

    @recorded
    def start(self, vm_id: str) -> Vm | None:
        self._known(vm_id, "startVirtualMachine")
        return self._set(vm_id, state=self.boot_state)

    @recorded
    def reboot(self, vm: Vm) -> Vm | None:
        self._known(vm.id, "rebootVirtualMachine")
        return self._set(vm.id, state=self.boot_state)

    @recorded
    def set_user_data(self, vm_id: str, encoded: str) -> None:
        self._known(vm_id, "updateVirtualMachine")
        self.user_data[vm_id] = encoded

    @recorded
    def rename(self, vm_id: str, display_name: str) -> None:
        self._known(vm_id, "updateVirtualMachine")
        self._set(vm_id, display_name=display_name)

    @recorded
    def destroy(self, vm_id: str, *, expunge: bool) -> bool:
        vm = self.items.get(vm_id)
        if vm is None or vm.gone:
            return False
        if not expunge:
            self._set(vm_id, state="Destroyed")
            return True
        del self.items[vm_id]
        volumes = self.cloud.volumes
        for volume in list(volumes.items.values()):
            if volume.vm_id == vm_id and volume.type == "ROOT":
                del volumes.items[volume.id]
            elif volume.vm_id == vm_id:
                volumes.items[volume.id] = dataclasses.replace(volume, vm_id=None, device_id=None)
        self.cloud.addresses.release_vm(vm_id)
        self.cloud.load_balancers.forget_vm(vm_id)
        self.cloud.tags.forget("UserVm", vm_id)
        return True

    @recorded
    def unconfirmed(self) -> list[Vm]:
        return [self._with_tags(vm) for vm in self.items.values()
                if not vm.gone and self.cloud.tags.of("UserVm", vm.id).get(UNCONFIRMED_TAG) == UNCONFIRMED_VALUE]
