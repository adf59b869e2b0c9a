"""What CloudStack answers, parsed once at the edge into frozen models.

The gateway turns every row of a list or job result into one of these; nothing
above it reads a raw answer.  Each model keeps only the fields the CPI uses,
under names that say what they hold (``size_bytes``, ``vm_id``), and is built by
``from_api`` from one row as CloudStack 4.11+ answers it (ids already strings:
``client.string_ids``).  Missing fields take the value a CloudStack that leaves
them out means: no tags, not customized, no VM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

GIB = 1024 ** 3
NO_TAGS: Mapping[str, str] = MappingProxyType({})

GONE_VM_STATES = frozenset({"Destroyed", "Expunging", "Expunged"})
GONE_VOLUME_STATES = frozenset({"Destroy", "Destroying", "Expunging", "Expunged"})
GONE_SNAPSHOT_STATES = frozenset({"Destroying", "Destroyed"})


def text(value: Any) -> str:
    """A field as text, "" when absent (also for the models that live beside their services)."""
    return "" if value is None else str(value)


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def no_tags() -> Mapping[str, str]:
    """The default of a model's ``tags`` (a dataclass default must be made by a factory)."""
    return NO_TAGS


def details_of(row: Mapping[str, Any]) -> Mapping[str, str]:
    """The ``details`` map of a listed VM or template (``rootDiskController`` and the like) as a read-only mapping."""
    details = row.get("details")
    return MappingProxyType({str(k): text(v) for k, v in details.items()}) if isinstance(details, dict) else NO_TAGS


def tags_of(row: Mapping[str, Any]) -> Mapping[str, str]:
    """The ``tags`` list of a listed resource as a read-only mapping."""
    listed = row.get("tags") or []
    if not listed:
        return NO_TAGS
    return MappingProxyType({str(t["key"]): text(t.get("value")) for t in listed
                             if isinstance(t, dict) and "key" in t})


def _tag_words(value: Any) -> frozenset[str]:
    """An offering's storage tags (``"ssd,fast"``), lower-cased, as CloudStack compares them."""
    return frozenset(part.strip().lower() for part in text(value).split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    name: str
    network_type: str = "Advanced"          # "Basic" or "Advanced"
    security_groups_enabled: bool = False

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Zone:
        return cls(id=text(row.get("id")), name=text(row.get("name")) or text(row.get("id")),
                   network_type=text(row.get("networktype")) or "Advanced",
                   security_groups_enabled=_flag(row.get("securitygroupsenabled")))

    @property
    def is_basic(self) -> bool:
        return self.network_type.lower() == "basic"


@dataclass(frozen=True, slots=True)
class ServiceOffering:
    """A compute offering: fixed (CPUs and memory set) or customized (the deploy names them)."""

    id: str
    name: str
    customized: bool = False
    cpus: int | None = None
    memory_mib: int | None = None

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> ServiceOffering:
        return cls(id=text(row.get("id")), name=text(row.get("name")), customized=_flag(row.get("iscustomized")),
                   cpus=_number(row.get("cpunumber")), memory_mib=_number(row.get("memory")))


@dataclass(frozen=True, slots=True)
class DiskOffering:
    """A disk offering: fixed (``size_gib`` > 0) or customized (the create names the size)."""

    id: str
    name: str
    customized: bool = False
    size_gib: int = 0                      # disksize: whole GB, 0 for customized offerings
    storage_type: str = "shared"           # "shared" or "local"
    storage_tags: frozenset[str] = frozenset()

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> DiskOffering:
        return cls(id=text(row.get("id")), name=text(row.get("name")), customized=_flag(row.get("iscustomized")),
                   size_gib=_number(row.get("disksize")) or 0,
                   storage_type=(text(row.get("storagetype")).strip().lower() or "shared"),
                   storage_tags=_tag_words(row.get("tags")))

    def moves_in_place_to(self, other: DiskOffering) -> bool:
        """Whether CloudStack moves a volume from this offering to ``other`` without copying: same storage type
        and storage tags (VolumeApiServiceImpl.validateVolumeResizeWithNewDiskOffering's checks)."""
        return self.storage_type == other.storage_type and self.storage_tags == other.storage_tags

    def describe_storage(self) -> str:
        return f"{self.storage_type} storage, {','.join(sorted(self.storage_tags)) or 'no tags'}"


@dataclass(frozen=True, slots=True)
class Volume:
    id: str
    name: str = ""
    type: str = "DATADISK"                 # "ROOT" or "DATADISK"
    state: str = ""
    zone_id: str = ""
    zone_name: str = ""
    size_bytes: int = 0
    disk_offering_id: str | None = None
    vm_id: str | None = None               # the VM it is attached to
    device_id: int | None = None
    created: str = ""
    tags: Mapping[str, str] = field(default_factory=no_tags, compare=False)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Volume:
        return cls(id=text(row.get("id")), name=text(row.get("name")), type=text(row.get("type")) or "DATADISK",
                   state=text(row.get("state")), zone_id=text(row.get("zoneid")),
                   zone_name=text(row.get("zonename")) or text(row.get("zoneid")),
                   size_bytes=_number(row.get("size")) or 0, disk_offering_id=_opt(row.get("diskofferingid")),
                   vm_id=_opt(row.get("virtualmachineid")), device_id=_number(row.get("deviceid")),
                   created=text(row.get("created")), tags=tags_of(row))

    @property
    def size_gib(self) -> int:
        """Whole GiB, rounded up."""
        return math.ceil(self.size_bytes / GIB)

    @property
    def gone(self) -> bool:
        return self.state in GONE_VOLUME_STATES


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    name: str = ""
    state: str = ""
    volume_id: str = ""
    created: str = ""
    tags: Mapping[str, str] = field(default_factory=no_tags, compare=False)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Snapshot:
        return cls(id=text(row.get("id")), name=text(row.get("name")), state=text(row.get("state")),
                   volume_id=text(row.get("volumeid")), created=text(row.get("created")), tags=tags_of(row))

    @property
    def gone(self) -> bool:
        return self.state in GONE_SNAPSHOT_STATES


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Tag:
        return cls(key=text(row.get("key")), value=text(row.get("value")))


@dataclass(frozen=True, slots=True)
class KeyPair:
    name: str
    fingerprint: str = ""

    @property
    def id(self) -> str:  # key pairs have no id: their name is what a deploy names
        return self.name

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> KeyPair:
        return cls(name=text(row.get("name")), fingerprint=text(row.get("fingerprint")))


@dataclass(frozen=True, slots=True)
class OsType:
    id: str
    description: str

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> OsType:
        return cls(id=text(row.get("id")), description=text(row.get("description")))


@dataclass(frozen=True, slots=True)
class Nic:
    id: str
    network_id: str = ""
    ip: str = ""
    netmask: str = ""
    gateway: str = ""
    mac: str = ""
    device_id: int = 0
    is_default: bool = False

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Nic:
        return cls(id=text(row.get("id")), network_id=text(row.get("networkid")), ip=text(row.get("ipaddress")),
                   netmask=text(row.get("netmask")), gateway=text(row.get("gateway")),
                   mac=text(row.get("macaddress")), device_id=_number(row.get("deviceid")) or 0,
                   is_default=_flag(row.get("isdefault")))


@dataclass(frozen=True, slots=True)
class Vm:
    id: str
    name: str = ""
    display_name: str = ""
    state: str = ""
    zone_id: str = ""
    zone_name: str = ""
    hypervisor: str | None = None
    template_id: str = ""
    created: str = ""
    # VM settings such as rootDiskController
    details: Mapping[str, str] = field(default_factory=no_tags, compare=False)
    nics: tuple[Nic, ...] = ()
    tags: Mapping[str, str] = field(default_factory=no_tags, compare=False)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Vm:
        return cls(id=text(row.get("id")), name=text(row.get("name")), display_name=text(row.get("displayname")),
                   state=text(row.get("state")), zone_id=text(row.get("zoneid")),
                   zone_name=text(row.get("zonename")) or text(row.get("zoneid")),
                   hypervisor=_opt(row.get("hypervisor")), template_id=text(row.get("templateid")),
                   created=text(row.get("created")),
                   details=details_of(row),
                   nics=tuple(Nic.from_api(nic) for nic in row.get("nic") or [] if isinstance(nic, dict)),
                   tags=tags_of(row))

    @property
    def gone(self) -> bool:
        return self.state in GONE_VM_STATES


def _words(value: Any) -> tuple[str, ...]:
    """A comma-separated answer field (``cidrlist``) as its parts, blanks dropped."""
    return tuple(part.strip() for part in text(value).split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str = ""
    zone_id: str = ""
    can_deploy: bool = True      # canusefordeploy: false once the network has no free addresses left

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Network:
        return cls(id=text(row.get("id")), name=text(row.get("name")), zone_id=text(row.get("zoneid")),
                   can_deploy=row.get("canusefordeploy", True) is not False
                   and str(row.get("canusefordeploy", "true")).lower() != "false")


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    id: str
    name: str = ""

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> SecurityGroup:
        return cls(id=text(row.get("id")), name=text(row.get("name")))


@dataclass(frozen=True, slots=True)
class PublicIp:
    """A public IP address the account holds, and where it points (static NAT to a VM, or nothing)."""

    id: str
    address: str = ""                      # ipaddress
    zone_id: str = ""
    network_id: str | None = None          # associatednetworkid: the guest network it belongs to
    network_name: str = ""
    static_nat: bool = False               # isstaticnat
    vm_id: str | None = None               # virtualmachineid: the VM it is statically NATed to

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> PublicIp:
        return cls(id=text(row.get("id")), address=text(row.get("ipaddress")), zone_id=text(row.get("zoneid")),
                   network_id=_opt(row.get("associatednetworkid")),
                   network_name=text(row.get("associatednetworkname")),
                   static_nat=_flag(row.get("isstaticnat")), vm_id=_opt(row.get("virtualmachineid")))


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """An ingress firewall rule of a public IP."""

    id: str
    ip_id: str = ""                        # ipaddressid
    protocol: str = ""
    start_port: int | None = None
    end_port: int | None = None
    cidrs: tuple[str, ...] = ()            # cidrlist
    tags: Mapping[str, str] = field(default_factory=no_tags, compare=False)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> FirewallRule:
        return cls(id=text(row.get("id")), ip_id=text(row.get("ipaddressid")),
                   protocol=text(row.get("protocol")).lower(), start_port=_number(row.get("startport")),
                   end_port=_number(row.get("endport")), cidrs=_words(row.get("cidrlist")), tags=tags_of(row))

    def covers(self, port: int) -> bool:
        """Whether the rule opens ``port`` for TCP."""
        if self.protocol != "tcp" or self.start_port is None:
            return False
        return self.start_port <= port <= (self.end_port or self.start_port)

    def opens_exactly(self, port: int, cidr: str) -> bool:
        """Whether the rule is one port (``port``, TCP) open to ``cidr``: the rule the CPI asks for."""
        return (self.protocol == "tcp" and self.start_port == port and (self.end_port or self.start_port) == port
                and cidr in self.cidrs)


@dataclass(frozen=True, slots=True)
class LoadBalancerRule:
    id: str
    name: str = ""
    description: str = ""
    public_ip_id: str = ""                 # publicipid
    public_ip: str = ""                    # publicip: the address
    public_port: int | None = None
    private_port: int | None = None
    algorithm: str = ""
    network_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=no_tags, compare=False)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> LoadBalancerRule:
        return cls(id=text(row.get("id")), name=text(row.get("name")), description=text(row.get("description")),
                   public_ip_id=text(row.get("publicipid")), public_ip=text(row.get("publicip")),
                   public_port=_number(row.get("publicport")), private_port=_number(row.get("privateport")),
                   algorithm=text(row.get("algorithm")), network_id=_opt(row.get("networkid")), tags=tags_of(row))


@dataclass(frozen=True, slots=True)
class AffinityGroup:
    id: str
    name: str = ""
    type: str = ""                         # "host anti-affinity", "host affinity", ...
    vm_ids: tuple[str, ...] = ()           # virtualmachineIds: its members

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> AffinityGroup:
        members = row.get("virtualmachineIds") or ()
        return cls(id=text(row.get("id")), name=text(row.get("name")), type=text(row.get("type")),
                   vm_ids=tuple(str(vm) for vm in members) if isinstance(members, (list, tuple)) else _words(members))
