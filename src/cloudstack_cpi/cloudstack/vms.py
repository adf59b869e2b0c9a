"""Virtual machines: find, deploy, start, reboot, update, destroy.

Gone: an unknown id (431) or a VM destroyed or being expunged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import Vm

if TYPE_CHECKING:
    from .gateway import Gateway


class Vms:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.client = gateway.client
        self.timeouts = gateway.timeouts

    def get(self, vm_id: str) -> Vm | None:
        """The VM unless it is gone (unknown id, destroyed, being expunged)."""
        row = self.client.find("listVirtualMachines", id=vm_id)
        vm = Vm.from_api(row) if row else None
        return None if vm is None or vm.gone else vm
