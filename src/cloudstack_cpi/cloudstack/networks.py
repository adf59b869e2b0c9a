"""Guest networks and security groups: what a deploy names for a VM's NICs and isolation.

Reads only (safe to repeat).  Choosing one by what an operator wrote is ``lookups.pick``'s job, above this layer;
which network a BOSH network becomes is ``cloudstack_cpi.networks``'.
"""

from __future__ import annotations

from .gateway import Service
from .models import Network, SecurityGroup


class Networks(Service):
    def in_zone(self, zone_id: str) -> list[Network]:
        """The guest networks the account may deploy to in the zone."""
        return [Network.from_api(row) for row in self.client.list_all("listNetworks", zoneid=zone_id)]

    def security_groups(self) -> list[SecurityGroup]:
        return [SecurityGroup.from_api(row) for row in self.client.list_all("listSecurityGroups")]
