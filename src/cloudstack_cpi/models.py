"""cloud_properties of VM types, disk types and networks, as operators write them in BOSH manifests.

Names are those of the existing CloudStack CPIs and bosh-deployment's
``cloudstack/cpi.yml`` (``compute_offering``, ``disk``, ``ephemeral_disk_offering``,
``root_disk_size``, ``disk_offering``, network ``name``), so manifests move over
unchanged.  Units: sizes in MiB (as everywhere in BOSH), CPU speed in MHz.
Unknown keys are kept and reported as warnings rather than refused: the same
vm_extension may carry properties for another CPI.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import CloudError, CpiError, dotted, quote


class _Props(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, defer_build=True)

    def unknown_keys(self) -> list[str]:
        return sorted(self.model_extra or {})


# -- addresses: strings in the forms the agent writes into its network configuration ----------------------------


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise PydanticCustomError("ip_address", "must be an IP address such as 10.0.0.1") from None


def _check_ip(value: str) -> str:
    _address(value)
    return value


def _check_netmask(value: str) -> str:
    try:
        mask = ipaddress.ip_address(value)
    except ValueError:
        mask = None
    if mask is not None:
        inverted = ~int(mask) & ((1 << mask.max_prefixlen) - 1)
        if inverted & (inverted + 1) == 0:  # ones, then only zeros
            return value
    raise PydanticCustomError("netmask", "must be a netmask such as 255.255.255.0")


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


IPAddress = Annotated[str, AfterValidator(_check_ip)]
Netmask = Annotated[str, AfterValidator(_check_netmask)]
# In a network spec an empty string stands for a value the director left out (as Ruby's nil.to_s does).
OptionalIP = Annotated[IPAddress | None, BeforeValidator(_empty_is_none)]
OptionalNetmask = Annotated[Netmask | None, BeforeValidator(_empty_is_none)]


def _none_is_empty(value: Any) -> Any:
    return [] if value is None else value


class Route(_Props):
    """A static route the agent adds for a network."""

    destination: IPAddress = Field(description="Destination network address, e.g. 10.20.0.0.")
    netmask: Netmask = Field(description="Netmask of the destination, e.g. 255.255.0.0.")
    gateway: IPAddress = Field(description="Next hop.")

    @model_validator(mode="before")
    @classmethod
    def _cidr_form(cls, value: Any) -> Any:
        """The Go CPI's ``{cidr, gateway}`` form, as destination and netmask."""
        if not (isinstance(value, dict) and "cidr" in value and "destination" not in value):
            return value
        cidr = value["cidr"]
        try:
            network = ipaddress.ip_network(cidr, strict=False) if isinstance(cidr, str) else None
        except ValueError:
            network = None
        if network is None:
            raise PydanticCustomError("cidr", "cidr must be a network such as 10.20.0.0/16, got {value}",
                                      {"value": quote(cidr)})
        converted = {"destination": str(network.network_address), "netmask": str(network.netmask)}
        if "gateway" in value:
            converted["gateway"] = value["gateway"]
        return converted

    @classmethod
    def from_any(cls, value: Any) -> Route:
        """Accept the agent's form and the Go CPI's ``{cidr, gateway}`` form."""
        return cls.model_validate(value)


class LoadBalancer(_Props):
    """Membership of a CloudStack load balancer rule (Go CPI ``lbs``)."""

    name: str = Field(description="Rule name; found on the public IP, created when missing.")
    public_ip: str = Field(description="Public IP address (or its id) the rule listens on.")
    private_port: int = Field(ge=1, le=65535, description="Port on the VMs.")
    public_port: int = Field(ge=1, le=65535, description="Port on the public IP.")
    algorithm: Literal["roundrobin", "leastconn", "source"] = Field("roundrobin", description="Balancing algorithm.")
    open_firewall: bool = Field(False, description="Also open the public port in the IP's firewall.")


class VMCloudProperties(_Props):
    """A vm_type's (or resource pool's) cloud_properties."""

    compute_offering: str | None = Field(
        None, alias="compute_offering",
        description="Compute (service) offering, name or id. Default: cloudstack.default_offer.compute.",
    )
    instance_type: str | None = Field(None, description="Older name for compute_offering (Ruby CPI).")
    cpu: int | None = Field(None, ge=1, description="vCPUs, for a customized compute offering.")
    ram: int | None = Field(None, ge=1, description="Memory in MiB, for a customized compute offering.")
    cpu_speed: int | None = Field(
        None, ge=1, description="CPU speed in MHz, for a customized compute offering (default 2000)."
    )
    root_disk_size: int | None = Field(None, ge=1, description="Root disk size in MiB (rounded up to GiB).")
    disk: int | None = Field(
        None, ge=1, description="Ephemeral disk size in MiB; without it the agent partitions the root disk."
    )
    ephemeral_disk_offering: str | None = Field(
        None, description=("Disk offering for the ephemeral disk, name or id. "
                           "Default: cloudstack.default_offer.ephemeral_disk, then custom_disk."),
    )
    availability_zone: str | None = Field(
        None, description="Zone, name or id. Default: the zone of the VM's disks, then cloudstack.default_zone."
    )
    key_name: str | None = Field(None, description="SSH key pair. Default: cloudstack.default_key_name.")
    security_groups: list[str] = Field(
        default_factory=list, description="Security groups (names or ids), in zones with security groups."
    )
    affinity_group: str | None = Field(None, description="Affinity group name; created when missing.")
    affinity_group_type: str = Field("host anti-affinity", description="Type of an affinity group the CPI creates.")
    lbs: list[LoadBalancer] = Field(default_factory=list, description="Load balancer rules the VM joins.")
    routes: dict[str, list[Route]] = Field(
        default_factory=dict,
        description="Static routes per BOSH network name (Go CPI form: {network: [{cidr, gateway}]}).",
    )

    @field_validator("routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        """null for no routes, at either level; the shapes themselves are pydantic's to check."""
        if value is None:
            return {}
        if isinstance(value, dict):
            return {name: [] if routes is None else routes for name, routes in value.items()}
        return value

    @property
    def offering(self) -> str | None:
        return self.compute_offering or self.instance_type


class NetworkCloudProperties(_Props):
    """A network subnet's cloud_properties."""

    name: str | None = Field(None, description="CloudStack network, name or id (advanced zones).")
    security_groups: list[str] = Field(
        default_factory=list, description="Security groups (names or ids), in zones with security groups."
    )
    undiscoverable: bool = Field(
        False, description="Never make this network the first NIC (eth0 carries the metadata service)."
    )
    routes: Annotated[list[Route], BeforeValidator(_none_is_empty)] = Field(
        default_factory=list, description="Static routes the agent adds for this network.")


class NetworkSpec(_Props):
    """One network of create_vm's ``networks`` argument, as the director sends it (not operator-written).

    Only the shape is checked here; which types this CPI supports is decided in
    ``networks.parse``.  Other keys (``mac``, ``alias``, ``preconfigured``, ...)
    are kept.
    """

    type: str | None = None
    ip: OptionalIP = None
    netmask: OptionalNetmask = None
    gateway: OptionalIP = None
    dns: list[IPAddress] | None = None
    default: list[str] | None = None
    cloud_properties: NetworkCloudProperties | None = None

    @model_validator(mode="after")
    def _one_family(self) -> NetworkSpec:
        if self.ip:
            version = _address(self.ip).version
            for key in ("netmask", "gateway"):
                other = getattr(self, key)
                if other and _address(other).version != version:
                    raise PydanticCustomError(
                        "ip_family", "{key} {other} is not an IPv{version} address like ip {ip}",
                        {"key": key, "other": quote(other), "version": version, "ip": quote(self.ip)})
        return self


class DiskCloudProperties(_Props):
    """A disk_type's (or disk pool's) cloud_properties."""

    disk_offering: str | None = Field(
        None, description="Disk offering, name or id. Default: cloudstack.default_offer.disk, then custom_disk."
    )


class StemcellCloudProperties(_Props):
    """The stemcell manifest's cloud_properties (written by the stemcell builder, not the operator)."""

    name: str | None = None
    version: str | None = None
    infrastructure: str | None = None
    hypervisor: str | None = Field(None, description="xen, kvm or vmware (also XenServer, KVM, VMware).")
    disk: int | None = Field(None, description="Root disk size in MiB.")
    disk_format: str | None = Field(None, description="vhdx, vhd, qcow2, raw or ova.")
    os_type: str | None = None
    os_distro: str | None = None
    architecture: str | None = None
    template_id: str | None = Field(None, description="Light stemcell: an existing template's id.")
    template_name: str | None = Field(None, description="Light stemcell: an existing template's name.")
    light_template: str | None = Field(None, description="Light stemcell (Java CPI name): an existing template's name.")


def parse(model: type[BaseModel], raw: dict | None, what: str):
    """Validate cloud_properties; a mistake is the operator's, reported with the field path (never the value)."""
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise CloudError(f"Invalid {what}: {describe(exc)}") from None


def parse_argument(model: type[BaseModel], raw: Any, path: list):
    """Validate a part of a request argument; a mistake is a ``CpiError`` naming the path and quoting the value."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise CpiError(describe(exc, path, values=True)) from None


# Problems pydantic reports where the value adds nothing ("Field required") or is not the culprit.
_NO_VALUE = frozenset({"missing", "ip_family", "cidr"})
_MAX_PROBLEMS = 5


def describe(exc: ValidationError, path: list | None = None, *, values: bool = False) -> str:
    """Each problem as ``path: reason`` (with ``got <value>``, shortened, when ``values``); at most a few."""
    problems = []
    errors = exc.errors(include_url=False, include_context=False, include_input=values)
    for error in errors[:_MAX_PROBLEMS]:
        where = dotted([*(path or []), *error["loc"]]) or "(top level)"
        text = f"{where}: {error['msg']}"
        if values and error["type"] not in _NO_VALUE and "input" in error:
            text += f", got {quote(error['input'])}"
        problems.append(text)
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return "; ".join(problems)
