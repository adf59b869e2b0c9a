"""VM methods: create_vm, delete_vm, has_vm, reboot_vm, set_vm_metadata, calculate_vm_cloud_properties.

create_vm works in two halves.  ``_plan`` resolves and checks everything the
operator named (zone, offerings, template, networks, security groups, public
IP, key pair, the user data size) without creating anything, so configuration
mistakes cost nothing.  ``_Build`` then creates, remembering each resource so
that a failure removes them all before the error goes back to the director.

The VM comes from one deploy job (issue 17): the CPI chooses its NICs' MAC
addresses, writes them into the agent settings, and deploys it started with
those settings as user data and the ephemeral disk as the deploy's own data
disk; only the tags run beside the job.  A cloud that refuses the chosen MACs
(or the data disk) gets the VM the other way: deployed stopped, its user data
set once CloudStack chose the MACs and the ephemeral volume is attached, then
started (also in a basic zone with a static IP, where CloudStack drops a
requested MAC, and with an ephemeral disk on a KVM template whose root disk is
not virtio, where the deploy's data disk would not be the guest's ``vdb``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import cleanup, disk_hints, errors, leftovers, lookups, tags
from ..cloudstack.errors import CloudStackError
from ..cloudstack.gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE
from ..cloudstack.models import Vm
from ..cloudstack.vms import TRANSITIONAL_STATES, ComputeSize, DataDisk, Deployment, expunge_refused
from ..lazy import lazy_import

if TYPE_CHECKING:
    import uuid

    from .. import agent_settings, loadbalancers, models, networks as nets
    from ..cloudstack.gateway import Gateway, Pending
    from ..cloudstack.models import AffinityGroup, DiskOffering, Nic, PublicIp, ServiceOffering, Volume, Zone
    from ..cloudstack.templates import Template
    from ..context import CallContext
else:
    # Only create_vm (and delete_vm of a load balancer member) needs these: has_vm,
    # reboot_vm and the metadata calls must not pay for importing them.
    agent_settings = lazy_import("cloudstack_cpi.agent_settings")
    loadbalancers = lazy_import("cloudstack_cpi.loadbalancers")
    models = lazy_import("cloudstack_cpi.models")
    nets = lazy_import("cloudstack_cpi.networks")
    uuid = lazy_import("uuid")

DEFAULT_CPU_SPEED = 2000           # MHz, for customized offerings when cpu_speed is not given
MAC_TRIES = 3                      # deploys with newly chosen MACs after CloudStack refused the chosen ones as in use
DISPLAY_NAME_MAX = 255
_DISPLAY_NAME_BAD = re.compile(r"[^A-Za-z0-9 ._:/@+-]+")
_NOT_EXPUNGED = (
    "CloudStack refused to expunge VM '{vm}' ({why}): destroying it without expunging. It stays in state "
    "Destroyed and keeps its IP addresses, static ones included, until CloudStack expunges it after the cloud's "
    "expunge.delay; until then no other VM can have those IPs. To expunge at once, have the cloud's operator set "
    "allow.user.expunge.recover.vm to true for this account (or use an admin account); to stop asking, set "
    "cloudstack.expunge_vm: false."
)


# -- handlers --------------------------------------------------------------------------------------------------


def create_vm(ctx: CallContext, agent_id, stemcell_cid, cloud_properties, networks, disk_cids=None, env=None):
    """Create and start a VM running ``agent_id`` from the stemcell (a template id) on the given networks.

    The VM lands in ``availability_zone``, else the zone of ``disk_cids`` (disk
    locality), else ``cloudstack.default_zone``.  Its agent settings travel as
    user data.  Answers ``[vm_cid, networks]`` (the API v2 shape, dynamic networks
    filled in; rpc answers a v1 caller ``vm_cid``).  On failure nothing is left behind; capacity and
    transient failures are ``VMCreationFailed`` with ``ok_to_retry``.
    """
    with _breadcrumb(f"Creating VM for agent '{agent_id}'"):
        plan = _plan(ctx, agent_id, stemcell_cid, cloud_properties or {}, networks, disk_cids or [], env or {})
        vm_id, answered = _Build(ctx, plan).run()
    ctx.log.info(f"Created VM '{vm_id}' ({plan.vm_name}) for agent '{agent_id}' in zone '{plan.zone.name}'")
    return [vm_id, answered]  # v1 callers get vm_id: rpc.answer_for_version


def delete_vm(ctx: CallContext, vm_cid):
    """Delete the VM and its ephemeral disk; persistent disks survive (detached).

    Idempotent and resumable: a VM that is already gone is success, and the
    ephemeral disk an earlier attempt left is deleted then (found by its tag
    naming the VM).  Public IPs statically NATed to the VM are released and the
    VM leaves its load balancer rules first (a rule the CPI created goes with
    its last member).  A cloud that refuses to expunge gets the VM destroyed
    without expunging, and the log says what that means.
    """
    with _breadcrumb(f"Deleting VM '{vm_cid}'"):
        cloud = ctx.cloud
        vm = cloud.vms.get(vm_cid)
        untagged: list[Volume] = []
        if vm is None:
            ctx.log.info(f"VM '{vm_cid}' is already gone")
        else:
            volumes = cloud.volumes.of_vm(vm_cid, data_only=True)
            # Ephemeral disks made before they carried their VM's id can be found only while attached.
            untagged = [v for v in volumes if _is_ephemeral(v) and tags.VM_KEY not in v.tags]
            expunge = ctx.config.cloudstack.expunge_vm
            if not expunge:  # expunging releases the VM's static NAT itself (and _destroy does when it is refused)
                _release_static_nat(ctx, vm)
            if loadbalancers.is_member(vm):
                loadbalancers.leave(ctx, vm_cid)
            _destroy(ctx, vm_cid, expunge=expunge, volumes=volumes, vm=vm)
        # Listed after the destroy, so that what CloudStack detached on expunging shows as detached.
        for volume in _ephemeral_volumes(cloud, vm_cid):
            cloud.volumes.delete_detaching(volume)
        for volume in untagged:
            _delete_volume(ctx, volume.id)
    if vm is not None:
        ctx.log.info(f"Deleted VM '{vm_cid}'")
    return None


def has_vm(ctx: CallContext, vm_cid):
    """True when the VM exists and is not destroyed or being expunged; never an error for an unknown id."""
    with _breadcrumb(f"Looking for VM '{vm_cid}'"):
        return ctx.cloud.vms.get(vm_cid) is not None


def reboot_vm(ctx: CallContext, vm_cid):
    """Reboot a running VM, start a stopped one; wait until it runs.  A missing VM is ``VMNotFound``."""
    with _breadcrumb(f"Rebooting VM '{vm_cid}'"):
        vm = _existing_vm(ctx, vm_cid)
        if vm.state in TRANSITIONAL_STATES:
            vm = _wait_settled(ctx, vm_cid)
        _require_running(ctx, vm_cid, ctx.cloud.vms.reboot(vm), errors.CloudError)
    return None


def set_vm_metadata(ctx: CallContext, vm_cid, metadata):
    """Make the director's metadata the VM's tags (changing only what differs) and name it for humans.

    The display name is ``name`` (``<instance group>/<id>``) when given, else
    ``<job>/<index>``.  A missing VM is ``VMNotFound``.
    """
    with _breadcrumb(f"Setting metadata of VM '{vm_cid}'"):
        vm = _existing_vm(ctx, vm_cid)
        ctx.cloud.tags.apply("UserVm", vm_cid, metadata, existing=vm.tags)
        name = display_name(metadata)
        if name and name != vm.display_name:
            ctx.cloud.vms.rename(vm_cid, name)
    return None


def calculate_vm_cloud_properties(ctx: CallContext, vm_resources):
    """cloud_properties for ``vm_resources`` ({cpu, ram, ephemeral_disk_size}).

    The smallest fixed compute offering that is big enough, or the customized
    ``cloudstack.default_offer.custom_compute`` with exact ``cpu``/``ram``; the
    ephemeral disk from the default ephemeral (else custom) disk offering.
    """
    with _breadcrumb("Calculating VM cloud_properties"):
        cpu, ram, disk = _resources(vm_resources)
        catalogue, offers = ctx.cloud.catalogue, ctx.config.cloudstack.default_offer
        offerings = catalogue.service_offerings()
        if offers.custom_compute:
            offering = lookups.pick(offerings, offers.custom_compute, kind="Compute offering")
            if not offering.customized:
                raise errors.CloudError(f"cloudstack.default_offer.custom_compute names '{offers.custom_compute}', "
                                        "which is not a customized compute offering")
            props: dict[str, Any] = {"compute_offering": _reference(offering, offerings), "cpu": cpu, "ram": ram}
        else:
            props = {"compute_offering": _reference(choose_offering(offerings, cpu, ram), offerings)}
        if disk:
            name = offers.ephemeral_disk or offers.custom_disk
            _ephemeral_size(lookups.pick(catalogue.disk_offerings(), name, kind="Disk offering"), name, disk)
            props.update(ephemeral_disk_offering=name, disk=disk)
    return props


# -- pure helpers ------------------------------------------------------------------------------------------------


def choose_offering(offerings: list[ServiceOffering], cpu: int, ram: int) -> ServiceOffering:
    """The smallest fixed offering (by memory, then CPUs) with at least ``cpu`` CPUs and ``ram`` MiB."""
    fixed = [o for o in offerings if not o.customized and o.cpus and o.memory_mib]
    if not fixed:
        raise errors.CloudError("No fixed-size compute offering exists: set cloudstack.default_offer.custom_compute "
                                "to a customized offering")

    def size(offering: ServiceOffering) -> tuple[int, int]:
        return offering.memory_mib or 0, offering.cpus or 0

    fits = [o for o in fixed if size(o)[1] >= cpu and size(o)[0] >= ram]
    if not fits:
        largest = max(fixed, key=size)
        raise errors.CloudError(
            f"No compute offering has {cpu} CPUs and {ram} MiB: the largest is '{largest.name}' "
            f"({largest.cpus} CPUs, {largest.memory_mib} MiB)"
        )
    return min(fits, key=lambda o: (*size(o), o.name))


def display_name(metadata: dict) -> str | None:
    """A human name for the VM from the director's metadata, reduced to what CloudStack keeps."""
    name = metadata.get("name")
    if not name:
        job = metadata.get("job") or metadata.get("instance_group")
        index = metadata.get("index")
        if job is not None and index is not None:
            name = f"{job}/{index}"
        elif metadata.get("compiling"):
            name = f"compiling/{metadata['compiling']}"
    if not name:
        return None
    cleaned = _DISPLAY_NAME_BAD.sub("-", str(name)).strip()
    return cleaned[:DISPLAY_NAME_MAX] or None


def custom_size(offering: ServiceOffering, props: models.VMCloudProperties) -> ComputeSize | None:
    """The VM's size on a customized compute offering; None for a fixed one."""
    if not offering.customized:
        return None
    cpu, ram = props.cpu, props.ram
    if cpu is None or ram is None:
        missing = [key for key, value in (("cpu", cpu), ("ram", ram)) if value is None]
        raise errors.CloudError(f"Compute offering '{offering.name}' is customized: set "
                                f"{' and '.join(missing)} in the VM's cloud_properties")
    return ComputeSize(cpus=cpu, cpu_speed_mhz=props.cpu_speed or DEFAULT_CPU_SPEED, memory_mib=ram)


def _ephemeral_size(offering: DiskOffering, name: str, size_mib: int) -> int | None:
    """The createVolume size (GiB) for a customized offering; None for a fixed one that is big enough."""
    if offering.customized:
        return lookups.gib(size_mib)
    have = offering.size_gib
    if have * 1024 < size_mib:
        raise errors.CloudError(f"Disk offering '{name}' has {have} GiB, less than the ephemeral disk of {size_mib} "
                                "MiB: choose a larger or a customized ephemeral_disk_offering")
    return None


def _reference(item: ServiceOffering, catalogue: list[ServiceOffering]) -> str:
    """The item's name when it is unique, else its id (what cloud_properties may name)."""
    if item.name and sum(1 for other in catalogue if other.name == item.name) == 1:
        return item.name
    return item.id


def _resources(vm_resources: dict) -> tuple[int, int, int]:
    values = []
    for key, minimum in (("cpu", 1), ("ram", 1), ("ephemeral_disk_size", 0)):
        value = vm_resources.get(key, 0 if minimum == 0 else None)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise errors.CloudError(f"vm_resources.{key} must be an integer of at least {minimum}")
        values.append(value)
    return values[0], values[1], values[2]


def _mac_refused(err: CloudStackError) -> bool:
    """CloudStack's refusal of a chosen MAC address (in use, or not one it accepts), before any VM exists."""
    return "mac address" in err.errortext.lower()


def _data_disk_refused(err: CloudStackError) -> bool:
    """A refusal of the data disk a started deploy asks for (the disk offering or its size), before any VM exists:
    createVolume and attachVolume may still take it."""
    text = err.errortext.lower()
    return "root" not in text and ("disk offering" in text or "diskoffering" in text or "size" in text)


def _user_data_refused(err: CloudStackError) -> bool:
    return err.errorcode == 431 and "user data" in err.errortext.lower()


def _is_ephemeral(volume: Volume) -> bool:
    return volume.tags.get(tags.ROLE_KEY) == tags.ROLE_EPHEMERAL


@contextlib.contextmanager
def _breadcrumb(what: str):
    """Prefix errors with what the call was doing; CloudStack errors become CloudError."""
    try:
        yield
    except errors.BoshError as err:
        raise type(err)(f"{what}: {err.message}", err.ok_to_retry) from None
    except CloudStackError as err:
        raise errors.CloudError(f"{what}: {err}", err.is_transient) from None


# -- shared steps --------------------------------------------------------------------------------------------------


def _existing_vm(ctx: CallContext, vm_cid: str) -> Vm:
    vm = ctx.cloud.vms.get(vm_cid)
    if vm is None:
        raise errors.VMNotFound(f"VM '{vm_cid}' not found")
    return vm


def _wait_settled(ctx: CallContext, vm_cid: str) -> Vm:
    """The VM once it has left Starting/Stopping/Migrating (waited for up to reboot_vm's timeout)."""
    vm = ctx.cloud.vms.settled(vm_cid)
    if vm is None:
        raise errors.VMNotFound(f"VM '{vm_cid}' not found")
    if vm.state in TRANSITIONAL_STATES:
        raise errors.CloudError(f"VM is still {vm.state} after {ctx.config.cloudstack.timeout.reboot_vm:g}s",
                                ok_to_retry=True)
    return vm


def _require_running(ctx: CallContext, vm_id: str, answered: Vm | None,
                     error: type[errors.BoshError] = errors.VMCreationFailed) -> None:
    """The VM as its job answered it (or, failing that, as listed) must be Running; ``error`` (retryable)
    otherwise."""
    state = answered.state if answered is not None else None
    if state != "Running":
        vm = ctx.cloud.vms.get(vm_id)
        state = vm.state if vm is not None else "gone"
    if state != "Running":
        raise error(f"VM '{vm_id}' did not reach Running (state {state})", ok_to_retry=True)


def _destroy(ctx: CallContext, vm_id: str, *, expunge: bool, volumes: list[Volume] | None = None,
             vm: Vm | None = None) -> None:
    """Destroy the VM, expunged when ``expunge`` and the account may; else destroyed only.

    Expunging disables the VM's static NAT itself (UserVmManagerImpl.cleanupVmResources: "Disabled 1-1 NAT for
    IP address ... as a part of ... expunge"), so no disableStaticNat job is waited for first.  A destroyed but
    unexpunged VM keeps its static NAT and its data volumes attached (and CloudStack refuses to detach them
    then), so when it is not expunged the static NAT of ``vm`` is disabled and ``volumes`` (the VM's data
    volumes) are detached first.
    """
    vms = ctx.cloud.vms
    if expunge:
        try:
            vms.destroy(vm_id, expunge=True)
            return
        except CloudStackError as err:
            if not expunge_refused(err):
                raise
            ctx.log.warning(_NOT_EXPUNGED.format(vm=vm_id, why=err.errortext))
            if vm is not None:
                _release_static_nat(ctx, vm)
    for volume in volumes or []:
        _detach_volume(ctx, volume.id)
    vms.destroy(vm_id, expunge=False)


def _release_static_nat(ctx: CallContext, vm: Vm) -> None:
    """Disable static NAT on every public IP bound to the VM."""
    addresses = ctx.cloud.addresses
    for address in addresses.static_nat_to(vm.id, vm.zone_id):
        ctx.log.info(f"Disabling static NAT of {address.address} to VM '{vm.id}'")
        addresses.disable_static_nat(address)


def _detach_volume(ctx: CallContext, volume_id: str) -> None:
    volume = ctx.cloud.volumes.get(volume_id)
    if volume is not None and volume.vm_id:
        ctx.cloud.volumes.detach(volume)


def _ephemeral_volumes(cloud: Gateway, vm_id: str) -> list[Volume]:
    """The VM's ephemeral volumes by their tag, attached or not, even when the VM is gone."""
    return [v for v in cloud.volumes.tagged({tags.VM_KEY: vm_id}) if _is_ephemeral(v)]


def _remove_with_data_volumes(ctx: CallContext, vm_id: str, remove_vm: Callable[[], object]) -> None:
    """Remove a VM the director never learnt of (``remove_vm``) with every data volume attached to it.

    They are all create_vm's own, since create_vm attaches no persistent disk: the ephemeral disk, even one a
    started deploy made whose tags never went on.  Each goes before the VM where CloudStack lets it (a call killed
    in between leaves the VM, which still carries the unconfirmed mark and is removed by the next create_vm with
    what is attached to it, while a volume left alone would have nothing to find it by: the fault soak's
    create_vm@destroyvirtualmachine:after); one CloudStack refuses to detach (a VM left in state Error by a failed
    deploy) once the VM is gone, as destroying it detaches it.
    """
    kept: list[Volume] = []
    for volume in ctx.cloud.volumes.of_vm(vm_id, data_only=True):
        try:
            ctx.cloud.volumes.delete_detaching(volume)
        except CloudStackError as err:
            ctx.log.info(f"Volume '{volume.id}' of VM '{vm_id}' goes after the VM: {err}")
            kept.append(volume)
    remove_vm()
    for volume in kept:
        _delete_volume(ctx, volume.id)


def _delete_volume(ctx: CallContext, volume_id: str) -> None:
    """Delete a data volume, detaching it first if it is still attached; gone is fine."""
    volume = ctx.cloud.volumes.get(volume_id)
    if volume is not None:
        ctx.cloud.volumes.delete_detaching(volume)


# -- create_vm: plan ----------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    agent_id: str
    env: dict
    vm_name: str
    props: models.VMCloudProperties
    zone: Zone
    offering: ServiceOffering
    size: ComputeSize | None
    template: Template
    networks: list[nets.BoshNetwork]
    order: list[nets.BoshNetwork]
    placement: nets.Placement
    public_ip: PublicIp | None
    nat_network_id: str | None
    keypair: str | None
    ephemeral_offering: DiskOffering | None
    ephemeral_size_gib: int | None
    lb_targets: list[loadbalancers.Target] = field(default_factory=list)
    affinity: list[tuple[str, str, str | None]] = field(default_factory=list)  # (name, type, existing id)

    @property
    def hypervisor(self) -> str | None:
        return self.template.hypervisor or None


def _plan(ctx: CallContext, agent_id, stemcell_cid, cloud_properties, networks, disk_cids, env) -> _Plan:
    cloud, cs = ctx.cloud, ctx.config.cloudstack
    props = models.parse(models.VMCloudProperties, cloud_properties, "VM cloud_properties")
    if props.unknown_keys():
        ctx.log.warning(f"Ignoring unknown VM cloud_properties: {', '.join(props.unknown_keys())}")
    bosh_networks = nets.parse(networks)
    order = nets.nic_order(bosh_networks)
    zone = _zone(ctx, props, disk_cids)
    offering_name = props.offering or cs.default_offer.compute
    if not offering_name:
        raise errors.CloudError("No compute offering: set compute_offering in the VM type's cloud_properties "
                                "or cloudstack.default_offer.compute")
    offering = lookups.pick(cloud.catalogue.service_offerings(), offering_name, kind="Compute offering")
    size = custom_size(offering, props)
    if size is None and (props.cpu or props.ram):
        ctx.log.warning(f"cpu/ram ignored: compute offering '{offering.name}' has a fixed size")
    template = _template(cloud, stemcell_cid, zone)
    placement = nets.resolve(cloud, zone, bosh_networks, order, props.security_groups,
                             cs.default_security_groups, ctx.log)
    vip = nets.vip(bosh_networks)
    public_ip, nat_network_id = _public_ip(cloud, vip, zone, placement, order)
    lb_targets = loadbalancers.resolve(cloud, props.lbs, zone, set(placement.network_ids.values()),
                                       placement.network_ids.get(order[0].name), vip.ip if vip else None)
    keypair = props.key_name or cs.default_key_name
    if keypair:
        lookups.pick(cloud.catalogue.key_pairs(), keypair, kind="Key pair")
    ephemeral_offering, ephemeral_size = None, None
    if props.disk:
        name = props.ephemeral_disk_offering or cs.default_offer.ephemeral_disk or cs.default_offer.custom_disk
        ephemeral_offering = lookups.pick(cloud.catalogue.disk_offerings(), name, kind="Disk offering")
        ephemeral_size = _ephemeral_size(ephemeral_offering, name, props.disk)
    plan = _Plan(
        agent_id=agent_id, env=env, vm_name=f"vm-{uuid.uuid4()}", props=props, zone=zone, offering=offering,
        size=size, template=template, networks=bosh_networks, order=order, placement=placement,
        public_ip=public_ip, nat_network_id=nat_network_id, keypair=keypair,
        ephemeral_offering=ephemeral_offering, ephemeral_size_gib=ephemeral_size, lb_targets=lb_targets,
        affinity=_affinity(ctx, props, env),
    )
    # The real settings exist only after deploy (MACs, dynamic IPs): size a draft with longest-possible stand-ins.
    draft_ephemeral = disk_hints.longest_hint(plan.hypervisor) if props.disk else None
    draft = _settings(ctx, plan, nets.placeholder_nics(order), draft_ephemeral)
    agent_settings.check_size(agent_settings.encode(draft), cs.user_data_limit)
    return plan


def _zone(ctx: CallContext, props: models.VMCloudProperties, disk_cids: list[str]) -> Zone:
    """availability_zone, else the persistent disks' zone, else cloudstack.default_zone."""
    cloud, cs = ctx.cloud, ctx.config.cloudstack
    disk_zones: dict[str, tuple[str, str]] = {}
    for cid in disk_cids:
        volume = cloud.volumes.get(cid)
        if volume is None:
            raise errors.CloudError(f"Persistent disk '{cid}' not found")
        disk_zones[cid] = (volume.zone_id, volume.zone_name)
    zone_ids = {zone_id for zone_id, _ in disk_zones.values()}
    if len(zone_ids) > 1:
        where = ", ".join(f"{cid} in {name}" for cid, (_, name) in disk_zones.items())
        raise errors.CloudError(f"Persistent disks are in different zones ({where}): a VM and its disks share one zone")

    def zone_named(wanted: str) -> Zone:
        return lookups.pick(cloud.catalogue.zones(), wanted, kind="Zone")

    if props.availability_zone:
        zone = zone_named(props.availability_zone)
        if zone_ids and zone.id not in zone_ids:
            cid, (_, name) = next(iter(disk_zones.items()))
            raise errors.CloudError(f"availability_zone is '{props.availability_zone}' but persistent disk '{cid}' "
                                    f"is in zone '{name}'")
        return zone
    if zone_ids:
        return zone_named(next(iter(zone_ids)))
    if cs.default_zone:
        return zone_named(cs.default_zone)
    raise errors.CloudError("No zone: set availability_zone in cloud_properties or cloudstack.default_zone")


def _template(cloud: Gateway, stemcell_cid: str, zone: Zone) -> Template:
    """The stemcell's template (by id, else by its one exact name; light stemcell CIDs too) usable in the zone."""
    wanted = lookups.stemcell_template_id(stemcell_cid)
    template = cloud.templates.executable_by_id(wanted, zone.id) or lookups.only_named(
        cloud.templates.executable_named(wanted, zone.id), wanted, kind="Template")
    if template is None:
        raise errors.CloudError(f"Stemcell '{stemcell_cid}' (a template) not found in zone '{zone.name}'")
    if not template.is_ready:
        raise errors.CloudError(f"Stemcell '{stemcell_cid}' is not ready in zone '{zone.name}' "
                                f"(status: {template.status or 'unknown'})")
    return template


def _public_ip(cloud: Gateway, vip: nets.BoshNetwork | None, zone: Zone, placement: nets.Placement,
               order: list[nets.BoshNetwork]) -> tuple[PublicIp | None, str | None]:
    """The vip network's public IP (owned by the account, in the zone) and the network to NAT it to."""
    if vip is None:
        return None, None
    owned = cloud.addresses.allocated(zone.id)
    address = next((ip for ip in owned if ip.address == vip.ip), None)
    if address is None:
        listing = ", ".join(sorted(ip.address or "?" for ip in owned)) or "none"
        raise errors.CloudError(f"Public IP {vip.ip} of vip network '{vip.name}' is not allocated to this account in "
                                f"zone '{zone.name}' (allocated: {listing})")
    network_id = address.network_id
    vm_networks = set(placement.network_ids.values())
    if network_id and vm_networks and network_id not in vm_networks:
        owner = address.network_name or network_id
        raise errors.CloudError(f"Public IP {vip.ip} belongs to network '{owner}', "
                                "where the VM has no NIC: add that network to the VM or use another IP")
    if not network_id and not placement.basic:
        network_id = placement.network_ids[order[0].name]
    return address, network_id


def _affinity(ctx: CallContext, props: models.VMCloudProperties, env: dict) -> list[tuple[str, str, str | None]]:
    """(name, type, existing id) of the affinity groups the VM joins; missing ones are created by _Build."""
    cs = ctx.config.cloudstack
    wanted: list[tuple[str, str]] = []
    if props.affinity_group:
        wanted.append((props.affinity_group, props.affinity_group_type))
    if cs.enable_auto_anti_affinity:
        bosh = env.get("bosh")
        group = bosh.get("group") if isinstance(bosh, dict) else None
        if group and ctx.director_uuid:
            wanted.append((f"{ctx.director_uuid}-{group}", cs.auto_anti_affinity_type))
        else:
            ctx.log.warning("enable_auto_anti_affinity is on but env.bosh.group or the director uuid is missing: "
                            "no automatic anti-affinity group")
    result = []
    for name, kind in wanted:
        found = _affinity_group(ctx.cloud, name)
        if found and found.type != kind:
            ctx.log.warning(f"Affinity group '{name}' exists with type '{found.type}', not '{kind}': using it")
        result.append((name, kind, found.id if found else None))
    return result


def _affinity_group(cloud: Gateway, name: str) -> AffinityGroup | None:
    return lookups.only_named(cloud.affinity.named(name), name, kind="Affinity group")


def _settings(ctx: CallContext, plan: _Plan, nics: Mapping[str, Nic], ephemeral: dict | None) -> dict:
    network_settings = agent_settings.network_settings(plan.networks, nics, plan.props.routes)
    return agent_settings.build(
        agent_id=plan.agent_id, vm_name=plan.vm_name, networks=network_settings,
        dns=agent_settings.default_dns(plan.order), hypervisor=plan.hypervisor, ephemeral=ephemeral,
        env=plan.env, config=ctx.config,
    )


# -- create_vm: what a killed create_vm left ------------------------------------------------------------------------

# Every VM this CPI deploys is named vm-<uuid4> from the moment it exists.
_CPI_VM_NAME = re.compile(r"^vm-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
# The tags create_vm itself puts on a VM; anything else (set_vm_metadata's) means the director knows the VM.
# create_vm's own tags; "cpi_lb_member" is loadbalancers.MEMBER_KEY, "cpi_unconfirmed" gateway.UNCONFIRMED_TAG
_CREATE_VM_TAGS = frozenset({tags.DIRECTOR_KEY, tags.AGENT_KEY, "cpi_lb_member", "cpi_unconfirmed"})


def create_vm_bound(timeout) -> float:
    """The longest a create_vm can take: the deploy and the first boot (each bounded by create_vm), and the jobs
    around them (tags, the ephemeral disk, static NAT, load balancer rules, taking the unconfirmed mark off)."""
    return 2 * timeout.create_vm + 4 * timeout.global_ + timeout.create_volume + timeout.attach_volume + \
        leftovers.MARGIN


def abandoned_by_create_vm(vm: Vm | Mapping[str, Any], director_uuid: str | None, create_timeout: float,
                           now: float) -> bool:
    """Whether ``vm`` (a listed VM, or its row as CloudStack answers it) was left by a create_vm of this director
    that never finished (killed, so no cleanup ran).

    All must hold, and together they cannot describe a VM the director uses or a create_vm still running:
    * named vm-<uuid4>, as only this CPI names VMs;
    * tagged with no director, or with this one, and with nothing but create_vm's own tags: a VM the director
      registered gets its metadata from set_vm_metadata right after create_vm answers;
    * not Running, unless it carries no tags at all or still the unconfirmed mark: create_vm answers only once its
      VM runs, so a VM the director ever learned of was Running (an operator who stops one by hand leaves its
      metadata, which the previous rule sees); a VM deployed started runs before its call answers, but its first
      tags go on at once, and the mark comes off only as the call's last step, leaving the others;
    * created longer ago than the create_vm timeout, so no create_vm can still be working on it.
    """
    if not isinstance(vm, Vm):
        vm = Vm.from_api(vm)
    marks = vm.tags
    if not _CPI_VM_NAME.match(vm.name) or vm.state in ("Destroyed", "Expunging") or \
            (vm.state == "Running" and marks and marks.get(UNCONFIRMED_TAG) != UNCONFIRMED_VALUE):
        return False
    if set(marks) - _CREATE_VM_TAGS or marks.get(tags.DIRECTOR_KEY, director_uuid) != director_uuid:
        return False
    return lookups.older_than(vm.created, create_timeout, now)


def _sweep_killed_calls(ctx: CallContext) -> None:
    """Remove the VMs of create_vm calls killed before they answered (the director never learned of them): run while
    this call's deploy job runs, so that neither the listing nor a removal's jobs come before it."""
    leftovers.sweep(ctx.log, "VM", ctx.cloud.vms.unconfirmed, create_vm_bound(ctx.config.cloudstack.timeout),
                    lambda vm: cleanup.remove(ctx, f"VM {vm.id}", partial(_remove_leftover, ctx, vm.id)))


def _remove_leftover(ctx: CallContext, vm_id: str) -> None:
    """Remove the VM of a create_vm that never answered, as delete_vm does, with its data volumes."""
    _remove_with_data_volumes(ctx, vm_id, partial(delete_vm, ctx, vm_id))


def _remove_abandoned_holders(ctx: CallContext, plan: _Plan) -> bool:
    """Remove the abandoned VMs (``abandoned_by_create_vm``) that hold one of the plan's manual IPs; True if any."""
    import time

    wanted = {n.ip for n in plan.order if n.type == nets.MANUAL and n.ip}
    if not wanted:
        return False
    timeout = ctx.config.cloudstack.timeout.create_vm
    try:
        holders = ctx.cloud.vms.holding(wanted, network_ids=plan.placement.network_ids.values(), zone_id=plan.zone.id)
    except CloudStackError as err:
        ctx.log.warning(f"Looking for VMs holding {', '.join(sorted(wanted))} after a refused deploy: {err}")
        return False
    removed = False
    for vm in holders:
        held = sorted(wanted & {nic.ip for nic in vm.nics})
        if not abandoned_by_create_vm(vm, ctx.director_uuid, timeout, time.time()):
            ctx.log.info(f"IP {', '.join(held)} is held by VM '{vm.id}' ({vm.name}, {vm.state}), "
                         "which is not one a killed create_vm left: it stays")
            continue
        ctx.log.warning(f"IP {', '.join(held)} is held by VM '{vm.id}' ({vm.name}, {vm.state}, "
                        f"created {vm.created}), left by a create_vm that did not finish: removing it")
        _remove_leftover(ctx, vm.id)
        removed = True
    return removed


# -- create_vm: build ---------------------------------------------------------------------------------------------


class _Build:
    """Creates what the plan describes; on any failure removes what it created, then raises."""

    def __init__(self, ctx: CallContext, plan: _Plan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.cloud = ctx.cloud
        self.cs = ctx.config.cloudstack
        self.created_groups: list[str] = []
        self.vm_ids: list[str] = []
        self.volume_ids: list[str] = []     # the ephemeral volume (after a lost answer: every one of its name)
        self.nat_attempted = False
        self.lb_record = loadbalancers.Record()
        self.lb_attempted = False

    def run(self) -> tuple[str, dict]:
        try:
            return self._create()
        except (errors.BoshError, CloudStackError) as err:
            raise self._failed(err) from None
        except BaseException:  # anything else, a signal included: nothing may be left behind
            self._cleanup()
            raise

    def _create(self) -> tuple[str, dict]:
        group_ids = [self._affinity_group(name, kind, existing) for name, kind, existing in self.plan.affinity]
        started = self._create_started(group_ids)
        return started if started is not None else self._create_stopped(group_ids)

    def _create_started(self, group_ids: list[str]) -> tuple[str, dict] | None:
        """The VM in one job (issue 17): deployed started, with its user data, on NICs whose MACs this call chose
        and wrote into the agent settings, with the ephemeral disk made by the deploy (device 1).  The tags go on
        beside the job.  None, having made nothing, when the cloud refuses what only this way asks for (chosen
        MACs, a data disk with the deploy): the caller takes the stopped way then."""
        plan, cloud = self.plan, self.cloud
        if plan.placement.basic and plan.order[0].type == nets.MANUAL:
            # A basic zone's one NIC takes its static IP as ``ipaddress``, and UserVmManagerImpl drops a
            # ``macaddress`` given beside it (the NicProfile is rebuilt from the addresses alone).
            return None
        template = plan.template
        if plan.ephemeral_offering and not disk_hints.deployed_data_disk_is_second(
                plan.hypervisor, template.os_type_name, template.details):
            self.ctx.log.info(f"Template '{template.name}' (OS type '{template.os_type_name or 'unknown'}') does not "
                              "boot from a virtio disk on KVM: attaching the ephemeral disk after the deploy, where "
                              "its by-id link names it")
            return None
        deploying = None
        for attempt in range(1, MAC_TRIES + 1):
            macs = nets.choose_macs(plan.order, os.urandom)
            encoded = self._encoded(nets.chosen_nics(plan.order, macs), self._deployed_disk_hint())
            try:
                deploying = self._start_deploy(self._deployment(group_ids, macs=macs, user_data=encoded))
                break
            except CloudStackError as err:
                if err.resource_id or err.outcome_unknown or err.errorcode != 431:
                    raise
                if _mac_refused(err) and attempt < MAC_TRIES:
                    self.ctx.log.info(f"CloudStack refused the chosen MAC addresses ({err.errortext}): choosing others")
                    continue
                if _mac_refused(err) or _data_disk_refused(err):
                    self.ctx.log.warning(f"CloudStack refused a VM deployed in one job ({err.errortext}): deploying "
                                         "it stopped, then setting its user data and starting it")
                    return None
                raise
        assert deploying is not None  # the loop either broke with it or left the method
        vm_id = deploying.resource_id or self._deployed(deploying).id
        tagging = [cloud.tags.start("UserVm", vm_id, self._vm_tags())]
        if plan.ephemeral_offering:
            volume_id = self._deployed_data_disk(vm_id)
            tagging.append(cloud.tags.start("Volume", volume_id, self._volume_tags(vm_id)))
        _sweep_killed_calls(self.ctx)
        vm = self._deployed(deploying)
        for tags_job in tagging:
            tags_job.wait()
        nics = nets.match_nics(plan.placement, plan.order, vm.nics)
        if any(nics[name].mac.lower() != mac for name, mac in macs.items()):
            vm = self._fix_macs(vm, nics)
        _require_running(self.ctx, vm_id, vm)
        return self._finish(vm_id, nics)

    def _create_stopped(self, group_ids: list[str]) -> tuple[str, dict]:
        """The VM deployed stopped, its user data set once its NICs (and the ephemeral volume) exist, then started:
        for clouds that refuse the one-job way."""
        plan, cloud = self.plan, self.cloud
        # The deploy, the ephemeral volume and the tags of both are independent jobs once the VM's id is known
        # (deployVirtualMachine answers it with its job id): they run side by side, and only attaching the
        # volume waits for both (issue 17: they were waited for one after another).
        deploying = self._start_deploy(self._deployment(group_ids))
        # A server that answered no id at once: the VM comes with the job's result.
        vm_id = deploying.resource_id or self._deployed(deploying).id
        creating = self._start_ephemeral(plan.ephemeral_offering) if plan.ephemeral_offering else None
        tagging = [cloud.tags.start("UserVm", vm_id, self._vm_tags())]
        if creating is not None:
            tagging.append(cloud.tags.start("Volume", self.volume_id, self._volume_tags(vm_id)))
        _sweep_killed_calls(self.ctx)
        vm = self._deployed(deploying)
        if creating is not None:
            creating.wait()
        for started in tagging:
            started.wait()
        nics = nets.match_nics(plan.placement, plan.order, vm.nics)
        ephemeral = self._attach_ephemeral(vm) if creating is not None else None
        self._set_user_data(vm_id, self._encoded(nics, ephemeral))
        _require_running(self.ctx, vm_id, cloud.vms.start(vm_id))
        return self._finish(vm_id, nics)

    def _finish(self, vm_id: str, nics: Mapping[str, Nic]) -> tuple[str, dict]:
        """What comes after the VM runs: its public IP, its load balancers, then taking the unconfirmed mark off."""
        plan, cloud = self.plan, self.cloud
        if plan.public_ip:
            self._static_nat(vm_id, plan.public_ip)
        if plan.lb_targets:
            self.lb_attempted = True
            loadbalancers.join(self.ctx, vm_id, plan.lb_targets, self.lb_record)
        cloud.tags.confirm("UserVm", vm_id)  # the last step: the VM runs and is handed over now
        return vm_id, nets.result_networks(plan.networks, nics)

    # -- what this call made

    def _vm_made(self, vm_id: str) -> None:
        if vm_id not in self.vm_ids:
            self.vm_ids.append(vm_id)

    def _volume_made(self, volume_id: str) -> None:
        if volume_id not in self.volume_ids:
            self.volume_ids.append(volume_id)

    @property
    def volume_id(self) -> str | None:
        """The ephemeral volume."""
        return self.volume_ids[0] if self.volume_ids else None

    # -- steps

    def _affinity_group(self, name: str, kind: str, existing: str | None) -> str:
        if existing:
            return existing
        try:
            group = self.cloud.affinity.create(name, kind)
        except CloudStackError:
            found = _affinity_group(self.cloud, name)  # another create_vm may have made it meanwhile
            if found:
                return found.id
            raise
        self.created_groups.append(group.id)
        self.ctx.log.info(f"Created affinity group '{name}' ({kind})")
        return group.id

    def _deployment(self, group_ids: list[str], *, macs: Mapping[str, str] | None = None,
                    user_data: str | None = None) -> Deployment:
        """The deploy: stopped, or (with ``user_data``) started on NICs with the chosen ``macs`` and with the
        ephemeral disk made beside the root disk."""
        plan = self.plan
        data_disk = None
        if user_data is not None and plan.ephemeral_offering is not None:
            data_disk = DataDisk(plan.ephemeral_offering.id, plan.ephemeral_size_gib)
        return Deployment(
            name=plan.vm_name, zone_id=plan.zone.id, template_id=plan.template.id, offering_id=plan.offering.id,
            networks=nets.deploy_networks(plan.placement, plan.order, macs), key_pair=plan.keypair,
            affinity_group_ids=tuple(group_ids), size=plan.size,
            root_disk_gib=lookups.gib(plan.props.root_disk_size) if plan.props.root_disk_size else None,
            user_data=user_data, data_disk=data_disk)

    def _start_deploy(self, deployment: Deployment) -> Pending[Vm]:
        """The deploy, not waited for; every VM it may have made is recorded for cleanup."""
        plan = self.plan
        how = "started" if deployment.started else "stopped"
        self.ctx.log.info(f"Deploying VM {plan.vm_name} {how} (offering '{plan.offering.name}', "
                          f"template '{plan.template.name}', zone '{plan.zone.name}')")
        try:
            try:
                return self.cloud.vms.start_deploy(deployment, made=self._vm_made)
            except CloudStackError as err:
                # A refusal before any VM exists may be a manual IP still held by the VM of a create_vm that was
                # killed (kill -9: no cleanup ran).  Such a VM is removed and the deploy made once more.
                if err.resource_id or err.outcome_unknown or not _remove_abandoned_holders(self.ctx, plan):
                    raise
                return self.cloud.vms.start_deploy(deployment, made=self._vm_made)
        except CloudStackError as err:
            if deployment.user_data is not None and _user_data_refused(err):
                raise self._user_data_error(deployment.user_data, err) from None
            raise

    def _encoded(self, nics: Mapping[str, Nic], ephemeral: dict | None) -> str:
        """The agent settings as user data, checked against the configured limit."""
        encoded = agent_settings.encode(_settings(self.ctx, self.plan, nics, ephemeral))
        agent_settings.check_size(encoded, self.cs.user_data_limit)
        return encoded

    def _deployed_disk_hint(self) -> dict | None:
        """Where the agent finds the ephemeral disk a started deploy makes (device 1), before it exists."""
        if self.plan.ephemeral_offering is None:
            return None
        return disk_hints.deployed_data_disk_hint(self.plan.hypervisor)

    def _deployed_data_disk(self, vm_id: str) -> str:
        """The data disk the deploy made for the ephemeral disk: allocated with the VM, before the deploy's job runs
        (DeployVMCmd.create), so it is listed at once; recorded for cleanup."""
        volumes = self.cloud.volumes.of_vm(vm_id, data_only=True)
        if len(volumes) != 1:
            raise errors.CloudError(f"VM '{vm_id}' was deployed with a disk offering for its ephemeral disk but has "
                                    f"{len(volumes)} data volumes")
        self._volume_made(volumes[0].id)
        return volumes[0].id

    def _fix_macs(self, vm: Vm, nics: Mapping[str, Nic]) -> Vm:
        """A cloud that took the deploy but not the chosen MACs (one whose deployVirtualMachine ignores them) booted
        the VM with agent settings naming MACs it does not have: the settings are set again with the real ones and
        the VM rebooted, so the agent reads them."""
        self.ctx.log.warning(f"VM '{vm.id}' did not get the MAC addresses chosen for it: setting its agent settings "
                             "again with the ones CloudStack gave and rebooting it")
        self._set_user_data(vm.id, self._encoded(nics, self._deployed_disk_hint()))
        rebooted = self.cloud.vms.reboot(vm)
        return rebooted if rebooted is not None else vm

    def _deployed(self, deploying: Pending[Vm]) -> Vm:
        """The deployed VM, once the deploy's job is done (waited for once; later calls answer the same VM)."""
        try:
            vm = deploying.wait()
        except CloudStackError as err:
            if err.resource_id:  # a failed job names the VM it made
                self._vm_made(err.resource_id)
            raise
        self._vm_made(vm.id)
        return vm

    def _vm_tags(self) -> dict[str, str]:
        wanted = {tags.AGENT_KEY: self.plan.agent_id, UNCONFIRMED_TAG: UNCONFIRMED_VALUE}
        if self.plan.lb_targets:
            wanted[loadbalancers.MEMBER_KEY] = loadbalancers.CREATED_VALUE
        if self.ctx.director_uuid:
            wanted[tags.DIRECTOR_KEY] = self.ctx.director_uuid
        return wanted

    def _start_ephemeral(self, offering: DiskOffering) -> Pending[Volume]:
        """The ephemeral volume's create, not waited for; every volume it may have made is recorded for cleanup."""
        creating = self.cloud.volumes.start_create(
            name=f"{self.plan.vm_name}-ephemeral", zone_id=self.plan.zone.id, offering_id=offering.id,
            size_gib=self.plan.ephemeral_size_gib, made=self._volume_made)
        if not creating.resource_id:  # a server that answered no id at once: the volume comes with the job's result
            self._volume_made(creating.wait().id)
        return creating

    def _volume_tags(self, vm_id: str) -> dict[str, str]:
        marks = {tags.ROLE_KEY: tags.ROLE_EPHEMERAL, tags.VM_KEY: vm_id}
        if self.ctx.director_uuid:
            marks[tags.DIRECTOR_KEY] = self.ctx.director_uuid
        return marks

    def _attach_ephemeral(self, vm: Vm) -> dict:
        volume_id = self.volume_id
        assert volume_id is not None  # _start_ephemeral recorded it
        attached = self.cloud.volumes.attach(volume_id, vm.id)
        return disk_hints.disk_hint(volume_id, int(attached.device_id or 0), vm.hypervisor or self.plan.hypervisor,
                                    vm.details)

    def _set_user_data(self, vm_id: str, encoded: str) -> None:
        try:
            self.cloud.vms.set_user_data(vm_id, encoded)
        except CloudStackError as err:
            if _user_data_refused(err):
                raise self._user_data_error(encoded, err) from None
            raise

    def _user_data_error(self, encoded: str, err: CloudStackError) -> errors.CloudError:
        return errors.CloudError(
            f"CloudStack refused the agent settings ({len(encoded)} bytes of base64): {err.errortext}; "
            f"cloudstack.user_data_limit ({self.cs.user_data_limit}) must not exceed the cloud's "
            "vm.userdata.max.length")

    def _static_nat(self, vm_id: str, public_ip: PublicIp) -> None:
        addresses = self.cloud.addresses
        address = addresses.get(public_ip.id) or public_ip
        if address.static_nat and address.vm_id != vm_id:
            self.ctx.log.info(f"Public IP {address.address} is statically NATed to VM '{address.vm_id}': moving it")
            addresses.disable_static_nat(address)
        self.nat_attempted = True
        addresses.enable_static_nat(address, vm_id, self.plan.nat_network_id)

    # -- failure

    def _failed(self, err: errors.BoshError | CloudStackError) -> errors.BoshError:
        leftovers = self._cleanup()
        note = f" (could not remove: {', '.join(leftovers)})" if leftovers else ""
        if isinstance(err, errors.BoshError):
            return type(err)(f"{err.message}{note}", err.ok_to_retry)
        if err.is_transient:
            return errors.VMCreationFailed(f"{err}{note}", ok_to_retry=True)
        return errors.CloudError(f"{err}{note}")

    def _cleanup(self) -> list[str]:
        """Remove what this call created, newest first; answer what could not be removed."""
        ctx, cloud = self.ctx, self.cloud
        steps: list[tuple[str, Callable[[], object]]] = []
        if self.lb_attempted:
            for vm_id in self.vm_ids:
                steps.append((f"load balancer membership of VM {vm_id}", partial(loadbalancers.leave, ctx, vm_id)))
            steps.append(("load balancer rules created for the VM", partial(loadbalancers.undo, ctx, self.lb_record)))
        public_ip = self.plan.public_ip
        if self.nat_attempted and self.vm_ids and public_ip:  # (nat_attempted: there is a public IP)
            steps.append((f"static NAT of {public_ip.address}", partial(self._undo_static_nat, public_ip)))
        # Each VM with its data volumes, all of them this call's (_remove_with_data_volumes: the volumes first), then
        # an ephemeral volume that was never attached.
        for vm_id in reversed(self.vm_ids):
            steps.append((f"VM {vm_id}", partial(_remove_with_data_volumes, ctx, vm_id,
                                                 partial(_destroy, ctx, vm_id, expunge=True))))
        for volume_id in self.volume_ids:
            steps.append((f"volume {volume_id}", partial(_delete_volume, ctx, volume_id)))
        for group_id in self.created_groups:
            steps.append((f"affinity group {group_id}", partial(cloud.affinity.delete_unused, group_id)))
        # Each step looks before it acts, so repeating one after a failed or lost mutation is safe.
        return [label for label, step in steps if not cloud.discard(label, step, refusals=(errors.BoshError,))]

    def _undo_static_nat(self, public_ip: PublicIp) -> None:
        address = self.cloud.addresses.get(public_ip.id)
        if address and address.static_nat and address.vm_id in self.vm_ids:
            self.cloud.addresses.disable_static_nat(address)
