"""cloud_properties of VM types, disk types and networks, as operators write them in BOSH manifests.

Names are those of the existing CloudStack CPIs and bosh-deployment's
``cloudstack/cpi.yml`` (``compute_offering``, ``disk``, ``ephemeral_disk_offering``,
``root_disk_size``, ``disk_offering``, network ``name``), so manifests move over
unchanged.  Units: sizes in MiB (as everywhere in BOSH), CPU speed in MHz.
Unknown keys are kept and reported as warnings rather than refused: the same
vm_extension may carry properties for another CPI.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import CloudError


class _Props(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, defer_build=True)

    def unknown_keys(self) -> list[str]:
        return sorted(self.model_extra or {})


class Route(_Props):
    """A static route the agent adds for a network."""

    destination: str = Field(description="Destination network address, e.g. 10.20.0.0.")
    netmask: str = Field(description="Netmask of the destination, e.g. 255.255.0.0.")
    gateway: str = Field(description="Next hop.")

    @classmethod
    def from_any(cls, value: Any) -> "Route":
        """Accept the agent's form and the Go CPI's ``{cidr, gateway}`` form."""
        if isinstance(value, dict) and "cidr" in value and "destination" not in value:
            import ipaddress

            network = ipaddress.ip_network(str(value["cidr"]), strict=False)
            value = {"destination": str(network.network_address), "netmask": str(network.netmask),
                     "gateway": value.get("gateway")}
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
        None, alias="compute_offering", description="Compute (service) offering, name or id. Default: cloudstack.default_offer.compute."
    )
    instance_type: str | None = Field(None, description="Older name for compute_offering (Ruby CPI).")
    cpu: int | None = Field(None, ge=1, description="vCPUs, for a customized compute offering.")
    ram: int | None = Field(None, ge=1, description="Memory in MiB, for a customized compute offering.")
    cpu_speed: int | None = Field(None, ge=1, description="CPU speed in MHz, for a customized compute offering (default 2000).")
    root_disk_size: int | None = Field(None, ge=1, description="Root disk size in MiB (rounded up to GiB).")
    disk: int | None = Field(None, ge=1, description="Ephemeral disk size in MiB; without it the agent partitions the root disk.")
    ephemeral_disk_offering: str | None = Field(
        None, description="Disk offering for the ephemeral disk, name or id. Default: cloudstack.default_offer.ephemeral_disk, then custom_disk."
    )
    availability_zone: str | None = Field(None, description="Zone, name or id. Default: the zone of the VM's disks, then cloudstack.default_zone.")
    key_name: str | None = Field(None, description="SSH key pair. Default: cloudstack.default_key_name.")
    security_groups: list[str] = Field(default_factory=list, description="Security groups (names or ids), in zones with security groups.")
    affinity_group: str | None = Field(None, description="Affinity group name; created when missing.")
    affinity_group_type: str = Field("host anti-affinity", description="Type of an affinity group the CPI creates.")
    lbs: list[LoadBalancer] = Field(default_factory=list, description="Load balancer rules the VM joins.")
    routes: dict[str, list[Route]] = Field(
        default_factory=dict, description="Static routes per BOSH network name (Go CPI form: {network: [{cidr, gateway}]})."
    )

    @field_validator("routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: [Route.from_any(r) for r in (routes or [])] for name, routes in value.items()}
        return value

    @property
    def offering(self) -> str | None:
        return self.compute_offering or self.instance_type


class NetworkCloudProperties(_Props):
    """A network subnet's cloud_properties."""

    name: str | None = Field(None, description="CloudStack network, name or id (advanced zones).")
    security_groups: list[str] = Field(default_factory=list, description="Security groups (names or ids), in zones with security groups.")
    undiscoverable: bool = Field(False, description="Never make this network the first NIC (eth0 carries the metadata service).")
    routes: list[Route] = Field(default_factory=list, description="Static routes the agent adds for this network.")

    @field_validator("routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        return [Route.from_any(r) for r in value] if isinstance(value, list) else value


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
    """Validate cloud_properties; a mistake is the operator's, reported with the field path."""
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        from .config import describe_validation_error

        raise CloudError(f"Invalid {what}: {describe_validation_error(exc)}") from None
