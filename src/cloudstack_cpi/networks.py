"""BOSH networks to CloudStack deploy parameters, per zone type.

The director hands create_vm a map of BOSH networks (``manual``, ``dynamic``,
``vip``).  Every manual or dynamic network becomes one NIC; at most one vip
network names a public IP bound to the VM with static NAT afterwards.

NIC order matters on CloudStack stemcells: the agent reads its settings
through mdproxy4cs, which finds the virtual router by DHCP on ``eth0``.  So the
first NIC must be on a network whose virtual router serves user data (not
marked ``undiscoverable``), and it is also the VM's default NIC (CloudStack
makes the first network of ``iptonetworklist`` the default one), so it must be
the BOSH network that carries the default gateway.

Zone types (cloudstack-api §6):

- Basic: one guest network per zone, never named in the call (``networkids``
  is refused); isolation by security groups; a static IP via ``ipaddress``.
- Advanced without security groups: networks named by ``iptonetworklist``;
  security groups are refused, so asking for them is an error here, before
  anything is created.
- Advanced with security groups: networks and security groups.

Everything here is pure except ``resolve``, which looks names up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import lookups, models
from .cloudstack.models import Nic
from .cloudstack.vms import DeployNetworks, NicRequest
from .errors import CloudError, CpiError, dotted, quote

if TYPE_CHECKING:
    from .cloudstack.gateway import Gateway
    from .cloudstack.models import Zone

MANUAL, DYNAMIC, VIP = "manual", "dynamic", "vip"
NIC_TYPES = (MANUAL, DYNAMIC)

# Long enough to stand for any real value when sizing the user data before the VM exists.
PLACEHOLDER_NIC = Nic(id="", mac="ff:ff:ff:ff:ff:ff", ip="255.255.255.255", netmask="255.255.255.255",
                      gateway="255.255.255.255")


@dataclass(frozen=True)
class BoshNetwork:
    name: str
    spec: dict                                  # as the director sent it
    props: models.NetworkCloudProperties

    @property
    def type(self) -> str:
        return self.spec.get("type") or MANUAL

    @property
    def ip(self) -> str | None:
        return self.spec.get("ip") or None

    @property
    def defaults(self) -> list[str]:
        value = self.spec.get("default") or []
        return list(value) if isinstance(value, (list, tuple)) else []

    @property
    def discoverable(self) -> bool:
        return not self.props.undiscoverable


@dataclass(frozen=True)
class Placement:
    """Networks and security groups resolved in one zone."""

    basic: bool
    network_ids: dict[str, str] = field(default_factory=dict)   # BOSH network name -> CloudStack network id
    security_group_ids: list[str] = field(default_factory=list)


def parse(networks: dict) -> list[BoshNetwork]:
    """Validate the director's networks map; order is kept.

    A malformed value (an ip, netmask, gateway, dns entry or route that is not
    one, a wrong JSON type) is a ``CpiError`` naming its path in the argument
    (``networks.default.netmask``); a well-formed request this CPI cannot serve
    is a ``CloudError``.  Nothing is looked up or created before this passes.
    """
    parsed: list[BoshNetwork] = []
    for name, spec in networks.items():
        if not isinstance(spec, dict):
            raise CpiError(f"{dotted(['networks', name])} must be an object")
        checked = models.parse_argument(models.NetworkSpec, spec, ["networks", name])
        kind = checked.type or MANUAL
        if kind not in (MANUAL, DYNAMIC, VIP):
            raise CloudError(f"Network {quote(name)} has type {quote(kind)}: this CPI supports manual, "
                             "dynamic and vip")
        if kind in (MANUAL, VIP) and not checked.ip:
            raise CloudError(f"Network {quote(name)} is {kind} but has no ip")
        props = checked.cloud_properties or models.NetworkCloudProperties()
        parsed.append(BoshNetwork(name, spec, props))
    vips = [n.name for n in parsed if n.type == VIP]
    if len(vips) > 1:
        raise CloudError(f"At most one vip network per VM, got {len(vips)}: {', '.join(vips)}")
    if not any(n.type in NIC_TYPES for n in parsed):
        raise CloudError("A VM needs at least one manual or dynamic network")
    return parsed


def vip(networks: list[BoshNetwork]) -> BoshNetwork | None:
    return next((n for n in networks if n.type == VIP), None)


def nic_order(networks: list[BoshNetwork]) -> list[BoshNetwork]:
    """The manual/dynamic networks in NIC order: eth0 first.

    eth0 is the default network (the one whose ``default`` holds "gateway",
    else the first discoverable one); the other discoverable networks follow in
    the director's order, then the undiscoverable ones.
    """
    nics = [n for n in networks if n.type in NIC_TYPES]
    default = next((n for n in nics if "gateway" in n.defaults), None)
    if default is not None and not default.discoverable:
        raise CloudError(
            f"Network '{default.name}' carries the default gateway but is marked undiscoverable: the default "
            "network becomes eth0, which must reach the metadata service (remove undiscoverable or move "
            "the default gateway to another network)"
        )
    if default is None:
        default = next((n for n in nics if n.discoverable), None)
        if default is None:
            raise CloudError("Every network is marked undiscoverable: one must carry eth0 and the metadata service")
    rest = [n for n in nics if n is not default]
    return [default] + [n for n in rest if n.discoverable] + [n for n in rest if not n.discoverable]


def dns_network(order: list[BoshNetwork]) -> BoshNetwork:
    """The network whose DNS servers the VM uses: the one whose ``default`` holds "dns", else eth0's."""
    return next((n for n in order if "dns" in n.defaults), order[0])


def requested_security_groups(networks: list[BoshNetwork], vm_groups: list[str]) -> list[str]:
    """Security groups asked for anywhere: the VM's, else those of its networks (in order, once each)."""
    if vm_groups:
        return _unique(vm_groups)
    return _unique(group for n in networks for group in n.props.security_groups)


def security_groups(zone: Zone, networks: list[BoshNetwork], vm_groups: list[str], defaults: list[str]) -> list[str]:
    """The security groups (names or ids) the VM gets in this zone.

    Precedence as in the other BOSH CPIs: the VM type's ``security_groups``,
    else its networks', else ``cloudstack.default_security_groups``.  Zones
    without security groups refuse any that were asked for in cloud_properties
    (the config's defaults are for zones that have them and are ignored there).
    """
    requested = requested_security_groups(networks, vm_groups)
    if not zone.security_groups_enabled:
        if requested:
            raise CloudError(
                f"Zone '{zone.name}' does not have security groups enabled, but security groups were "
                f"requested ({', '.join(requested)}): remove security_groups from the VM type and network "
                "cloud_properties for this zone"
            )
        return []
    return requested or _unique(defaults)


def check_zone(zone: Zone, order: list[BoshNetwork]) -> None:
    """Refuse what the zone type cannot do, before anything is created."""
    if zone.is_basic:
        if len(order) > 1:
            names = ", ".join(n.name for n in order)
            raise CloudError(
                f"Zone '{zone.name}' is a basic zone with one guest network: a VM can have only one "
                f"manual or dynamic network there, got {len(order)} ({names})"
            )
        return
    missing = [n.name for n in order if not n.props.name]
    if missing:
        raise CloudError(
            f"Zone '{zone.name}' is an advanced zone: network cloud_properties must name the CloudStack "
            f"network (cloud_properties.name) for {', '.join(missing)}"
        )


def deploy_networks(placement: Placement, order: list[BoshNetwork],
                    macs: Mapping[str, str] | None = None) -> DeployNetworks:
    """Where the deploy puts the NICs (in ``order``: eth0 first), with the MACs chosen for them (``macs`` by BOSH
    network name, if any), and which security groups it joins."""
    groups = tuple(placement.security_group_ids)
    chosen = macs or {}
    if placement.basic:
        only = order[0]
        return DeployNetworks(ip=only.ip if only.type == MANUAL else None, mac=chosen.get(only.name),
                              security_group_ids=groups)
    nics = tuple(NicRequest(placement.network_ids[n.name], n.ip if n.type == MANUAL else None, chosen.get(n.name))
                 for n in order)
    return DeployNetworks(nics=nics, security_group_ids=groups)


def choose_macs(order: list[BoshNetwork], random_bytes: Callable[[int], bytes]) -> dict[str, str]:
    """A MAC address for each NIC-bearing network, by name: unicast and locally administered (the first octet's two
    low bits 1 and 0), so no vendor's address, and outside CloudStack's own ``02:00:..`` guest range (the first
    octet is never 02), so no address CloudStack hands out by itself later."""
    macs: dict[str, str] = {}
    for network in order:
        raw = bytearray(random_bytes(6))
        raw[0] = (raw[0] & 0xFC) | 0x02
        if raw[0] == 0x02:
            raw[0] = 0x06
        macs[network.name] = ":".join(f"{octet:02x}" for octet in raw)
    return macs


def chosen_nics(order: list[BoshNetwork], macs: Mapping[str, str]) -> dict[str, Nic]:
    """The NICs a started deploy will give the VM, as far as they are known before it: their chosen MACs (a manual
    network's address is the director's; a dynamic one's is CloudStack's, learnt by the agent over DHCP)."""
    return {n.name: Nic(f"chosen-{n.name}", mac=macs[n.name]) for n in order}


def match_nics(placement: Placement, order: list[BoshNetwork], vm_nics: Iterable[Nic]) -> dict[str, Nic]:
    """Each NIC-bearing BOSH network's CloudStack NIC (by network id, in order; by position in basic zones)."""
    nics = sorted(vm_nics, key=lambda nic: nic.device_id)
    matched: dict[str, Nic] = {}
    used: set[int] = set()
    for position, network in enumerate(order):
        wanted = None if placement.basic else placement.network_ids[network.name]
        index = next((i for i, nic in enumerate(nics) if i not in used
                      and (wanted is None or nic.network_id == wanted)), None)
        if index is None and placement.basic and position < len(nics):
            index = position
        if index is None:
            raise CloudError(f"The new VM has no NIC on the CloudStack network of BOSH network '{network.name}'")
        used.add(index)
        matched[network.name] = nics[index]
    return matched


def placeholder_nics(order: list[BoshNetwork]) -> dict[str, Nic]:
    return {n.name: PLACEHOLDER_NIC for n in order}


def _chosen(nic: Nic) -> dict[str, str]:
    """What CloudStack chose for a NIC, under the names of BOSH's network spec."""
    return {key: value for key, value in (("ip", nic.ip), ("netmask", nic.netmask), ("gateway", nic.gateway))
            if value}


def result_networks(networks: list[BoshNetwork], nics: Mapping[str, Nic]) -> dict[str, dict]:
    """The networks create_vm answers (v2): as given, with what CloudStack chose for dynamic ones."""
    result: dict[str, dict] = {}
    for network in networks:
        spec = dict(network.spec)
        nic = nics.get(network.name)
        if network.type == DYNAMIC and nic:
            spec.update(_chosen(nic))
        result[network.name] = spec
    return result


def resolve(cloud: Gateway, zone: Zone, networks: list[BoshNetwork], order: list[BoshNetwork], vm_groups: list[str],
            default_groups: list[str], log) -> Placement:
    """Look up the CloudStack networks and security groups for this zone (errors list what exists)."""
    check_zone(zone, order)
    groups = security_groups(zone, networks, vm_groups, default_groups)
    network_ids: dict[str, str] = {}
    if zone.is_basic:
        named = [n.name for n in order if n.props.name]
        if named:
            log.warning(f"Basic zone '{zone.name}': cloud_properties.name of network(s) "
                        f"{', '.join(named)} ignored (the zone has one guest network)")
    else:
        catalogue = cloud.networks.in_zone(zone.id)
        for network in order:
            wanted = network.props.name
            assert wanted  # check_zone refused an advanced-zone network without one
            network_ids[network.name] = lookups.pick(catalogue, wanted, kind="Network", where=f"zone '{zone.name}'").id
    group_ids: list[str] = []
    if groups:
        existing = cloud.networks.security_groups()
        group_ids = [lookups.pick(existing, group, kind="Security group").id for group in groups]
    return Placement(basic=zone.is_basic, network_ids=network_ids, security_group_ids=_unique(group_ids))


def _unique(items) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
