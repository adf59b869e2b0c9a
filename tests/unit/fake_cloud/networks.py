"""Guest networks and security groups of the fake cloud (``cloud.networks``)."""

from __future__ import annotations

from cloudstack_cpi.cloudstack.models import Network, SecurityGroup

from . import FakeService, recorded


class FakeNetworks(FakeService):
    service_name = "networks"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.network_list = [Network("net-iso", "bosh-isolated", "z1"), Network("net-sh", "bosh-shared", "z1")]
        self.group_list = [SecurityGroup("sg-default", "default"), SecurityGroup("sg-bosh", "bosh")]

    def add(self, name: str, zone: str) -> str:
        network_id = self.cloud.new_id("net")
        self.network_list.append(Network(network_id, name, zone))
        return network_id

    @recorded
    def in_zone(self, zone_id: str) -> list[Network]:
        return [n for n in self.network_list if n.zone_id == zone_id]

    @recorded
    def security_groups(self) -> list[SecurityGroup]:
        return list(self.group_list)
