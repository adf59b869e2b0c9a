"""VMs of the fake cloud (``cloud.vms``)."""

from __future__ import annotations

import dataclasses

from cloudstack_cpi.cloudstack.models import Vm

from . import FakeService, recorded


class FakeVms(FakeService):
    service_name = "vms"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.items: dict[str, Vm] = {}

    # -- arranging

    def add(self, *, zone: str = "z1", hypervisor: str = "KVM", state: str = "Running", **fields) -> str:
        """A VM with its root volume (device 0), as a deploy leaves it."""
        vm_id = self.cloud.new_id("vm")
        zone_name = self.cloud.catalogue.zone(zone).name
        self.items[vm_id] = Vm(vm_id, name=f"vm-{len(self.items)}", state=state, zone_id=zone,
                               zone_name=zone_name, hypervisor=hypervisor, **fields)
        self.cloud.volumes.add(zone=zone, vm=vm_id, device_id=0, volume_type="ROOT", offering=None, gib=5)
        return vm_id

    def _with_tags(self, vm: Vm) -> Vm:
        return dataclasses.replace(vm, tags=self.cloud.tags.of("UserVm", vm.id))

    # -- the gateway's methods

    @recorded
    def get(self, vm_id: str) -> Vm | None:
        vm = self.items.get(vm_id)
        return None if vm is None or vm.gone else self._with_tags(vm)
