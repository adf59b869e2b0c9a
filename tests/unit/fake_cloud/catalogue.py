"""Zones, offerings, key pairs, OS types and hypervisors of the fake cloud (``cloud.catalogue``)."""

from __future__ import annotations

from cloudstack_cpi.cloudstack.models import DiskOffering, KeyPair, OsType, ServiceOffering, Zone

from . import FakeService, recorded

ZONES = [Zone("z1", "zone-1"), Zone("z2", "zone-2")]
DISK_OFFERINGS = [
    DiskOffering("off-10", "disk-10", size_gib=10),
    DiskOffering("off-50", "disk-50", size_gib=50),
    DiskOffering("off-custom", "shared.custom", customized=True),
    DiskOffering("off-custom2", "custom", customized=True),
    DiskOffering("off-local", "local-100", size_gib=100, storage_type="local"),
    DiskOffering("off-ssd", "ssd.custom", customized=True, storage_tags=frozenset({"ssd"})),
]
SERVICE_OFFERINGS = [
    ServiceOffering("so-small", "small", cpus=1, memory_mib=1024),
    ServiceOffering("so-medium", "medium", cpus=2, memory_mib=4096),
    ServiceOffering("so-custom", "custom", customized=True),
]


class FakeCatalogue(FakeService):
    service_name = "catalogue"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.zone_list = list(ZONES)
        self.disk_offering_list = list(DISK_OFFERINGS)
        self.service_offering_list = list(SERVICE_OFFERINGS)
        self.key_pair_list = [KeyPair("bosh")]
        self.os_type_list = [OsType("os-1", "Ubuntu 22.04 LTS"), OsType("os-2", "Other Linux (64-bit)")]
        self.zone_hypervisors = {"z1": ["KVM"], "z2": ["XenServer"]}

    def zone(self, zone_id: str) -> Zone:
        return next(z for z in self.zone_list if z.id == zone_id)

    def disk_offering(self, offering_id: str) -> DiskOffering:
        return next(o for o in self.disk_offering_list if o.id == offering_id)

    @recorded
    def zones(self) -> list[Zone]:
        return list(self.zone_list)

    @recorded
    def service_offerings(self) -> list[ServiceOffering]:
        return list(self.service_offering_list)

    @recorded
    def disk_offerings(self) -> list[DiskOffering]:
        return list(self.disk_offering_list)

    @recorded
    def key_pairs(self) -> list[KeyPair]:
        return list(self.key_pair_list)

    @recorded
    def os_types(self) -> list[OsType]:
        return list(self.os_type_list)

    @recorded
    def hypervisors(self, zone_id: str) -> list[str]:
        return list(self.zone_hypervisors.get(zone_id, []))
