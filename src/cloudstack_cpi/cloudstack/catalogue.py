"""What a cloud offers and operators name: zones, offerings, key pairs, OS types, hypervisors.

Reads only (safe to repeat).  Choosing one item by what an operator wrote is
``lookups.pick``'s job, above this layer.
"""

from __future__ import annotations

from .gateway import Service
from .models import DiskOffering, KeyPair, OsType, ServiceOffering, Zone


class Catalogue(Service):
    def zones(self) -> list[Zone]:
        return [Zone.from_api(row) for row in self.client.list("listZones")]

    def service_offerings(self) -> list[ServiceOffering]:
        return [ServiceOffering.from_api(row) for row in self.client.list_all("listServiceOfferings")]

    def disk_offerings(self) -> list[DiskOffering]:
        return [DiskOffering.from_api(row) for row in self.client.list_all("listDiskOfferings")]

    def key_pairs(self) -> list[KeyPair]:
        return [KeyPair.from_api(row) for row in self.client.list_all("listSSHKeyPairs")]

    def os_types(self) -> list[OsType]:
        return [OsType.from_api(row) for row in self.client.list_all("listOsTypes")]

    def hypervisors(self, zone_id: str) -> list[str]:
        """The hypervisor names a zone runs (``KVM``, ``XenServer``, ``VMware``)."""
        return [str(row.get("name")) for row in self.client.list("listHypervisors", zoneid=zone_id) if row.get("name")]
