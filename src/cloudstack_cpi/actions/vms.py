"""VM methods: create_vm, delete_vm, has_vm, reboot_vm, set_vm_metadata, calculate_vm_cloud_properties.

create_vm works in two halves.  ``_plan`` resolves and checks everything the
operator named (zone, offerings, template, networks, security groups, public
IP, key pair, the user data size) without creating anything, so configuration
mistakes cost nothing.  ``_Build`` then creates, remembering each resource so
that a failure removes them all before the error goes back to the director.

The VM is deployed stopped: its NICs' MAC addresses (and the addresses
CloudStack picked for dynamic networks) go into the agent settings, which are
set as user data before the first boot.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import cleanup, disk_hints, errors, lookups, tags
from ..cloudstack.errors import CloudStackError
from ..lazy import lazy_import

if TYPE_CHECKING:
    import uuid

    from .. import agent_settings, loadbalancers, models, networks as nets
    from ..cloudstack.client import Client
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
TRANSITIONAL_STATES = frozenset({"Starting", "Stopping", "Migrating"})
DISPLAY_NAME_MAX = 255
_DISPLAY_NAME_BAD = re.compile(r"[^A-Za-z0-9 ._:/@+-]+")
# How CloudStack refuses destroyVirtualMachine's expunge=true to an account that may not expunge (a user without
# allow.user.expunge.recover.vm): a PermissionDeniedException inside the job, so a failed job with errorcode 530.
# The wording of UserVmManagerImpl.destroyVm (4.x), then of checkExpungeVmPermission (apache/cloudstack PR #8689).
_EXPUNGE_REFUSALS = ("can be passed by Admin only", "does not have permission for expunging")
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
    ctx.log.info(f"Created VM '{vm_id}' ({plan.vm_name}) for agent '{agent_id}' in zone '{plan.zone.get('name')}'")
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
        client = ctx.client
        vm = lookups.vm(client, vm_cid)
        untagged: list[dict] = []
        if vm is None:
            ctx.log.info(f"VM '{vm_cid}' is already gone")
        else:
            volumes = client.list_all("listVolumes", virtualmachineid=vm_cid, type="DATADISK", listall=True)
            # Ephemeral disks made before they carried their VM's id can be found only while attached.
            untagged = [v for v in volumes if _is_ephemeral(v) and tags.VM_KEY not in tags.as_dict(v)]
            expunge = ctx.config.cloudstack.expunge_vm
            if not expunge:  # expunging releases the VM's static NAT itself (and _destroy does when it is refused)
                _release_static_nat(ctx, vm)
            if loadbalancers.is_member(vm):
                loadbalancers.leave(ctx, vm_cid)
            _destroy(ctx, vm_cid, expunge=expunge, volumes=volumes, vm=vm)
        # Listed after the destroy, so that what CloudStack detached on expunging shows as detached.
        for volume in _ephemeral_volumes(client, vm_cid):
            _delete_listed_volume(ctx, volume)
        for volume in untagged:
            _delete_volume(ctx, volume["id"])
    if vm is not None:
        ctx.log.info(f"Deleted VM '{vm_cid}'")
    return None


def has_vm(ctx: CallContext, vm_cid):
    """True when the VM exists and is not destroyed or being expunged; never an error for an unknown id."""
    with _breadcrumb(f"Looking for VM '{vm_cid}'"):
        return lookups.vm(ctx.client, vm_cid) is not None


def reboot_vm(ctx: CallContext, vm_cid):
    """Reboot a running VM, start a stopped one; wait until it runs.  A missing VM is ``VMNotFound``."""
    with _breadcrumb(f"Rebooting VM '{vm_cid}'"):
        client, timeout = ctx.client, ctx.config.cloudstack.timeout.reboot_vm
        vm = _existing_vm(ctx, vm_cid)
        if vm.get("state") in TRANSITIONAL_STATES:
            vm = _wait_settled(ctx, vm_cid, timeout)
        command = "rebootVirtualMachine" if vm.get("state") == "Running" else "startVirtualMachine"
        result = client.run_job(command, id=vm_cid, timeout=timeout, what=f"{command} {vm_cid}")
        _require_running(ctx, vm_cid, result, errors.CloudError)
    return None


def set_vm_metadata(ctx: CallContext, vm_cid, metadata):
    """Make the director's metadata the VM's tags (changing only what differs) and name it for humans.

    The display name is ``name`` (``<instance group>/<id>``) when given, else
    ``<job>/<index>``.  A missing VM is ``VMNotFound``.
    """
    with _breadcrumb(f"Setting metadata of VM '{vm_cid}'"):
        client = ctx.client
        vm = _existing_vm(ctx, vm_cid)
        ctx.cloud.tags.apply("UserVm", vm_cid, metadata, existing=tags.as_dict(vm))
        name = display_name(metadata)
        if name and name != vm.get("displayname"):
            client.call("updateVirtualMachine", id=vm_cid, displayname=name)
    return None


def calculate_vm_cloud_properties(ctx: CallContext, vm_resources):
    """cloud_properties for ``vm_resources`` ({cpu, ram, ephemeral_disk_size}).

    The smallest fixed compute offering that is big enough, or the customized
    ``cloudstack.default_offer.custom_compute`` with exact ``cpu``/``ram``; the
    ephemeral disk from the default ephemeral (else custom) disk offering.
    """
    with _breadcrumb("Calculating VM cloud_properties"):
        cpu, ram, disk = _resources(vm_resources)
        client, offers = ctx.client, ctx.config.cloudstack.default_offer
        offerings = client.list_all("listServiceOfferings")
        if offers.custom_compute:
            offering = lookups.pick(offerings, offers.custom_compute, kind="Compute offering")
            if not offering.get("iscustomized"):
                raise errors.CloudError(f"cloudstack.default_offer.custom_compute names '{offers.custom_compute}', "
                                        "which is not a customized compute offering")
            props: dict[str, Any] = {"compute_offering": _reference(offering, offerings), "cpu": cpu, "ram": ram}
        else:
            props = {"compute_offering": _reference(choose_offering(offerings, cpu, ram), offerings)}
        if disk:
            name = offers.ephemeral_disk or offers.custom_disk
            _ephemeral_size(lookups.disk_offering(client, name), name, disk)
            props.update(ephemeral_disk_offering=name, disk=disk)
    return props


# -- pure helpers ------------------------------------------------------------------------------------------------


def choose_offering(offerings: list[dict], cpu: int, ram: int) -> dict:
    """The smallest fixed offering (by memory, then CPUs) with at least ``cpu`` CPUs and ``ram`` MiB."""
    fixed = [o for o in offerings if not o.get("iscustomized") and o.get("cpunumber") and o.get("memory")]
    if not fixed:
        raise errors.CloudError("No fixed-size compute offering exists: set cloudstack.default_offer.custom_compute "
                                "to a customized offering")
    fits = [o for o in fixed if int(o["cpunumber"]) >= cpu and int(o["memory"]) >= ram]
    if not fits:
        largest = max(fixed, key=lambda o: (int(o["memory"]), int(o["cpunumber"])))
        raise errors.CloudError(
            f"No compute offering has {cpu} CPUs and {ram} MiB: the largest is '{largest.get('name')}' "
            f"({largest['cpunumber']} CPUs, {largest['memory']} MiB)"
        )
    return min(fits, key=lambda o: (int(o["memory"]), int(o["cpunumber"]), str(o.get("name"))))


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


def custom_details(offering: dict, props: models.VMCloudProperties) -> dict | None:
    """details[0].* for a customized compute offering; None for a fixed one."""
    if not offering.get("iscustomized"):
        return None
    missing = [key for key in ("cpu", "ram") if getattr(props, key) is None]
    if missing:
        raise errors.CloudError(f"Compute offering '{offering.get('name')}' is customized: set "
                                f"{' and '.join(missing)} in the VM's cloud_properties")
    return {"cpuNumber": props.cpu, "cpuSpeed": props.cpu_speed or DEFAULT_CPU_SPEED, "memory": props.ram}


def _ephemeral_size(offering: dict, name: str, size_mib: int) -> int | None:
    """The createVolume size (GiB) for a customized offering; None for a fixed one that is big enough."""
    if offering.get("iscustomized"):
        return lookups.gib(size_mib)
    have = int(offering.get("disksize") or 0)
    if have * 1024 < size_mib:
        raise errors.CloudError(f"Disk offering '{name}' has {have} GiB, less than the ephemeral disk of {size_mib} "
                                "MiB: choose a larger or a customized ephemeral_disk_offering")
    return None


def _reference(item: dict, catalogue: list[dict]) -> str:
    """The item's name when it is unique, else its id (what cloud_properties may name)."""
    name = item.get("name")
    if name and sum(1 for other in catalogue if other.get("name") == name) == 1:
        return name
    return item["id"]


def _resources(vm_resources: dict) -> tuple[int, int, int]:
    values = []
    for key, minimum in (("cpu", 1), ("ram", 1), ("ephemeral_disk_size", 0)):
        value = vm_resources.get(key, 0 if minimum == 0 else None)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise errors.CloudError(f"vm_resources.{key} must be an integer of at least {minimum}")
        values.append(value)
    return values[0], values[1], values[2]


def _is_ephemeral(volume: dict) -> bool:
    return tags.as_dict(volume).get(tags.ROLE_KEY) == tags.ROLE_EPHEMERAL


def _expunge_refused(err: CloudStackError) -> bool:
    """True for CloudStack's refusal to let this account expunge, and for no other failure."""
    return err.kind == "job" and err.errorcode == 530 and any(text in err.errortext for text in _EXPUNGE_REFUSALS)


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


def _existing_vm(ctx: CallContext, vm_cid: str) -> dict:
    vm = lookups.vm(ctx.client, vm_cid)
    if vm is None:
        raise errors.VMNotFound(f"VM '{vm_cid}' not found")
    return vm


def _wait_settled(ctx: CallContext, vm_cid: str, timeout: float) -> dict:
    """Poll the VM until it leaves Starting/Stopping/Migrating."""
    client = ctx.client
    started = client.clock()
    while True:
        waited = client.clock() - started
        client.sleep(client.poll.interval(waited))
        vm = _existing_vm(ctx, vm_cid)
        if vm.get("state") not in TRANSITIONAL_STATES:
            return vm
        if client.clock() - started >= timeout:
            raise errors.CloudError(f"VM is still {vm.get('state')} after {timeout:g}s", ok_to_retry=True)


def _require_running(ctx: CallContext, vm_id: str, job_result: dict,
                     error: type[errors.BoshError] = errors.VMCreationFailed) -> None:
    """The job's VM (or, failing that, the listed VM) must be Running; ``error`` (retryable) otherwise."""
    state = (job_result.get("virtualmachine") or {}).get("state")
    if state != "Running":
        vm = lookups.vm(ctx.client, vm_id) or {}
        state = vm.get("state", "gone")
    if state != "Running":
        raise error(f"VM '{vm_id}' did not reach Running (state {state})", ok_to_retry=True)


def _destroy(ctx: CallContext, vm_id: str, *, expunge: bool, volumes: list[dict] | None = None,
             vm: dict | None = None) -> None:
    """Destroy the VM, expunged when ``expunge`` and the account may; else destroyed only.

    Expunging disables the VM's static NAT itself (UserVmManagerImpl.cleanupVmResources: "Disabled 1-1 NAT for
    IP address ... as a part of ... expunge"), so no disableStaticNat job is waited for first.  A destroyed but
    unexpunged VM keeps its static NAT and its data volumes attached (and CloudStack refuses to detach them
    then), so when it is not expunged the static NAT of ``vm`` is disabled and ``volumes`` (the VM's data
    volumes) are detached first.
    """
    if expunge:
        try:
            _destroy_job(ctx, vm_id, expunge=True)
            return
        except CloudStackError as err:
            if not _expunge_refused(err):
                raise
            ctx.log.warning(_NOT_EXPUNGED.format(vm=vm_id, why=err.errortext))
            if vm is not None:
                _release_static_nat(ctx, vm)
    for volume in volumes or []:
        _detach_volume(ctx, volume["id"])
    _destroy_job(ctx, vm_id, expunge=False)


def _destroy_job(ctx: CallContext, vm_id: str, *, expunge: bool) -> None:
    client = ctx.client
    try:
        client.run_job("destroyVirtualMachine", id=vm_id, expunge=expunge,
                       timeout=ctx.config.cloudstack.timeout.delete_vm, what=f"destroying VM {vm_id}")
    except CloudStackError as err:
        # Gone meanwhile: 431 before the job, or the job's own refusal ("unable to find a virtual machine", errorcode
        # 530 on CloudStack 4.11 to 4.19, 431 later); a lost answer (outcome_unknown) may have been the destroy
        # itself: look.
        if (err.errorcode == 431 or err.kind == "job" or err.outcome_unknown) and lookups.vm(client, vm_id) is None:
            return
        raise


def _release_static_nat(ctx: CallContext, vm: dict) -> None:
    """Disable static NAT on every public IP bound to the VM."""
    client = ctx.client
    addresses = client.list_all("listPublicIpAddresses", zoneid=vm.get("zoneid"), isstaticnat=True, listall=True)
    for address in addresses:
        if address.get("isstaticnat") and address.get("virtualmachineid") == vm["id"]:
            ctx.log.info(f"Disabling static NAT of {address.get('ipaddress')} to VM '{vm['id']}'")
            client.run_job("disableStaticNat", ipaddressid=address["id"], timeout=ctx.config.cloudstack.timeout.global_,
                           what=f"disabling static NAT of {address.get('ipaddress')}")


def _detach_volume(ctx: CallContext, volume_id: str) -> None:
    volume = lookups.volume(ctx.client, volume_id)
    if volume is None or not volume.get("virtualmachineid"):
        return
    ctx.client.run_job("detachVolume", id=volume_id, timeout=ctx.config.cloudstack.timeout.detach_volume,
                       what=f"detaching volume {volume_id}")


def _ephemeral_volumes(client: Client, vm_id: str) -> list[dict]:
    """The VM's ephemeral volumes by their tag, attached or not, even when the VM is gone."""
    found = client.list_all("listVolumes", tags={tags.VM_KEY: vm_id}, listall=True)
    # Checked again: a server that ignored the tag filter must not make this delete other volumes.
    return [v for v in found if _is_ephemeral(v) and tags.as_dict(v).get(tags.VM_KEY) == vm_id
            and v.get("state") not in lookups.GONE_VOLUME_STATES]


def _delete_volume(ctx: CallContext, volume_id: str) -> None:
    """Delete a data volume, detaching it first if it is still attached; gone is fine."""
    volume = lookups.volume(ctx.client, volume_id)
    if volume is not None:
        _delete_listed_volume(ctx, volume)


def _delete_listed_volume(ctx: CallContext, volume: dict) -> None:
    """Delete a volume as just listed (its attachment is current), detaching it first when attached."""
    volume_id = volume["id"]
    if volume.get("virtualmachineid"):
        _detach_volume(ctx, volume_id)
    try:
        ctx.client.call("deleteVolume", id=volume_id)
    except CloudStackError as err:
        if err.errorcode == 431 and lookups.volume(ctx.client, volume_id) is None:
            return
        raise


# -- create_vm: plan ----------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    agent_id: str
    env: dict
    vm_name: str
    props: models.VMCloudProperties
    zone: dict
    offering: dict
    details: dict | None
    template: dict
    networks: list[nets.BoshNetwork]
    order: list[nets.BoshNetwork]
    placement: nets.Placement
    public_ip: dict | None
    nat_network_id: str | None
    keypair: str | None
    ephemeral_offering: dict | None
    ephemeral_size_gib: int | None
    lb_targets: list[loadbalancers.Target] = field(default_factory=list)
    affinity: list[tuple[str, str, str | None]] = field(default_factory=list)  # (name, type, existing id)

    @property
    def hypervisor(self) -> str | None:
        return self.template.get("hypervisor")


def _plan(ctx: CallContext, agent_id, stemcell_cid, cloud_properties, networks, disk_cids, env) -> _Plan:
    client, cs = ctx.client, ctx.config.cloudstack
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
    offering = lookups.service_offering(client, offering_name)
    details = custom_details(offering, props)
    if details is None and (props.cpu or props.ram):
        ctx.log.warning(f"cpu/ram ignored: compute offering '{offering.get('name')}' has a fixed size")
    template = _template(client, stemcell_cid, zone)
    placement = nets.resolve(client, zone, bosh_networks, order, props.security_groups,
                             cs.default_security_groups, ctx.log)
    vip = nets.vip(bosh_networks)
    public_ip, nat_network_id = _public_ip(client, vip, zone, placement, order)
    lb_targets = loadbalancers.resolve(client, props.lbs, zone, set(placement.network_ids.values()),
                                       placement.network_ids.get(order[0].name), vip.ip if vip else None)
    keypair = props.key_name or cs.default_key_name
    if keypair:
        lookups.pick(client.list_all("listSSHKeyPairs"), keypair, kind="Key pair")
    ephemeral_offering, ephemeral_size = None, None
    if props.disk:
        name = props.ephemeral_disk_offering or cs.default_offer.ephemeral_disk or cs.default_offer.custom_disk
        ephemeral_offering = lookups.disk_offering(client, name)
        ephemeral_size = _ephemeral_size(ephemeral_offering, name, props.disk)
    plan = _Plan(
        agent_id=agent_id, env=env, vm_name=f"vm-{uuid.uuid4()}", props=props, zone=zone, offering=offering,
        details=details, template=template, networks=bosh_networks, order=order, placement=placement,
        public_ip=public_ip, nat_network_id=nat_network_id, keypair=keypair,
        ephemeral_offering=ephemeral_offering, ephemeral_size_gib=ephemeral_size, lb_targets=lb_targets,
        affinity=_affinity(ctx, props, env),
    )
    # The real settings exist only after deploy (MACs, dynamic IPs): size a draft with longest-possible stand-ins.
    draft_ephemeral = disk_hints.longest_hint(plan.hypervisor) if props.disk else None
    draft = _settings(ctx, plan, nets.placeholder_nics(order), draft_ephemeral)
    agent_settings.check_size(agent_settings.encode(draft), cs.user_data_limit)
    return plan


def _zone(ctx: CallContext, props: models.VMCloudProperties, disk_cids: list[str]) -> dict:
    """availability_zone, else the persistent disks' zone, else cloudstack.default_zone."""
    client, cs = ctx.client, ctx.config.cloudstack
    disk_zones: dict[str, tuple[str, str]] = {}
    for cid in disk_cids:
        volume = lookups.volume(client, cid)
        if volume is None:
            raise errors.CloudError(f"Persistent disk '{cid}' not found")
        disk_zones[cid] = (volume["zoneid"], volume.get("zonename") or volume["zoneid"])
    zone_ids = {zone_id for zone_id, _ in disk_zones.values()}
    if len(zone_ids) > 1:
        where = ", ".join(f"{cid} in {name}" for cid, (_, name) in disk_zones.items())
        raise errors.CloudError(f"Persistent disks are in different zones ({where}): a VM and its disks share one zone")
    if props.availability_zone:
        zone = lookups.zone(client, props.availability_zone)
        if zone_ids and zone["id"] not in zone_ids:
            cid, (_, name) = next(iter(disk_zones.items()))
            raise errors.CloudError(f"availability_zone is '{props.availability_zone}' but persistent disk '{cid}' "
                                    f"is in zone '{name}'")
        return zone
    if zone_ids:
        return lookups.zone(client, next(iter(zone_ids)))
    if cs.default_zone:
        return lookups.zone(client, cs.default_zone)
    raise errors.CloudError("No zone: set availability_zone in cloud_properties or cloudstack.default_zone")


def _template(client: Client, stemcell_cid: str, zone: dict) -> dict:
    template = lookups.template(client, stemcell_cid, zone["id"])
    if template is None:
        raise errors.CloudError(f"Stemcell '{stemcell_cid}' (a template) not found in zone '{zone.get('name')}'")
    if not template.get("isready"):
        raise errors.CloudError(f"Stemcell '{stemcell_cid}' is not ready in zone '{zone.get('name')}' "
                                f"(status: {template.get('status') or 'unknown'})")
    return template


def _public_ip(client: Client, vip: nets.BoshNetwork | None, zone: dict, placement: nets.Placement,
               order: list[nets.BoshNetwork]) -> tuple[dict | None, str | None]:
    """The vip network's public IP (owned by the account, in the zone) and the network to NAT it to."""
    if vip is None:
        return None, None
    owned = client.list_all("listPublicIpAddresses", zoneid=zone["id"], allocatedonly=True)
    address = next((ip for ip in owned if ip.get("ipaddress") == vip.ip), None)
    if address is None:
        listing = ", ".join(sorted(ip.get("ipaddress", "?") for ip in owned)) or "none"
        raise errors.CloudError(f"Public IP {vip.ip} of vip network '{vip.name}' is not allocated to this account in "
                                f"zone '{zone.get('name')}' (allocated: {listing})")
    network_id = address.get("associatednetworkid")
    vm_networks = set(placement.network_ids.values())
    if network_id and vm_networks and network_id not in vm_networks:
        owner = address.get("associatednetworkname") or network_id
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
        found = _affinity_group(ctx.client, name)
        if found and found.get("type") != kind:
            ctx.log.warning(f"Affinity group '{name}' exists with type '{found.get('type')}', not '{kind}': using it")
        result.append((name, kind, found["id"] if found else None))
    return result


def _affinity_group(client: Client, name: str) -> dict | None:
    return lookups.only_named(client.list("listAffinityGroups", name=name), name, kind="Affinity group")


def _settings(ctx: CallContext, plan: _Plan, nics: dict[str, dict], ephemeral: dict | None) -> dict:
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
_CREATE_VM_TAGS = frozenset({tags.DIRECTOR_KEY, tags.AGENT_KEY, "cpi_lb_member"})  # the last: loadbalancers.MEMBER_KEY


def abandoned_by_create_vm(vm: dict, director_uuid: str | None, create_timeout: float, now: float) -> bool:
    """Whether ``vm`` was left by a create_vm of this director that never finished (killed, so no cleanup ran).

    All must hold, and together they cannot describe a VM the director uses or a create_vm still running:
    * named vm-<uuid4>, as only this CPI names VMs;
    * tagged with no director, or with this one, and with nothing but create_vm's own tags: a VM the director
      registered gets its metadata from set_vm_metadata right after create_vm answers;
    * not Running: create_vm answers only once its VM runs, so a VM the director ever learned of was Running
      (an operator who stops one by hand leaves its metadata, which the previous rule sees);
    * created longer ago than the create_vm timeout, so no create_vm can still be working on it.
    """
    if not _CPI_VM_NAME.match(str(vm.get("name", ""))) or vm.get("state") in ("Running", "Destroyed", "Expunging"):
        return False
    marks = tags.as_dict(vm)
    if set(marks) - _CREATE_VM_TAGS or marks.get(tags.DIRECTOR_KEY, director_uuid) != director_uuid:
        return False
    return lookups.older_than(vm, create_timeout, now)


def _remove_abandoned_holders(ctx: CallContext, plan) -> bool:
    """Remove the abandoned VMs (``abandoned_by_create_vm``) that hold one of the plan's manual IPs; True if any."""
    import time

    wanted = {n.ip for n in plan.order if n.type == nets.MANUAL and n.ip}
    if not wanted:
        return False
    client, timeout = ctx.client, ctx.config.cloudstack.timeout.create_vm
    scopes = [{"networkid": net_id} for net_id in dict.fromkeys(plan.placement.network_ids.values())] or \
        [{"zoneid": plan.zone["id"]}]
    holders: dict[str, dict] = {}
    try:
        for scope in scopes:
            for vm in client.list_all("listVirtualMachines", listall=True, **scope):
                if wanted & {nic.get("ipaddress") for nic in vm.get("nic") or []}:
                    holders[vm["id"]] = vm
    except CloudStackError as err:
        ctx.log.warning(f"Looking for VMs holding {', '.join(sorted(wanted))} after a refused deploy: {err}")
        return False
    removed = False
    for vm in holders.values():
        held = sorted(wanted & {nic.get("ipaddress") for nic in vm.get("nic") or []})
        if not abandoned_by_create_vm(vm, ctx.director_uuid, timeout, time.time()):
            ctx.log.info(f"IP {', '.join(held)} is held by VM '{vm['id']}' ({vm.get('name')}, {vm.get('state')}), "
                         "which is not one a killed create_vm left: it stays")
            continue
        ctx.log.warning(f"IP {', '.join(held)} is held by VM '{vm['id']}' ({vm.get('name')}, {vm.get('state')}, "
                        f"created {vm.get('created')}), left by a create_vm that did not finish: removing it")
        delete_vm(ctx, vm["id"])
        removed = True
    return removed


# -- create_vm: build ---------------------------------------------------------------------------------------------


class _Build:
    """Creates what the plan describes; on any failure removes what it created, then raises."""

    def __init__(self, ctx: CallContext, plan: _Plan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.client = ctx.client
        self.cs = ctx.config.cloudstack
        self.created_groups: list[str] = []
        self.vm_ids: list[str] = []
        self.volume_id: str | None = None
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
        plan = self.plan
        group_ids = [self._affinity_group(name, kind, existing) for name, kind, existing in plan.affinity]
        # The deploy, the ephemeral volume and the tags of both are independent jobs once the VM's id is known
        # (deployVirtualMachine answers it with its job id): they run side by side, and only attaching the
        # volume waits for both (issue 17: they were waited for one after another).
        deploying = self._start_deploy(group_ids)
        vm_id = deploying.get("id")
        if not vm_id:  # a server that answered no id at once: the VM comes with the job's result
            vm_id = self._deployed(deploying, plan.vm_name)["id"]
        creating = self._start_ephemeral(plan.ephemeral_offering) if plan.ephemeral_offering else None
        tagging = [("VM", vm_id, self._start_vm_tags(vm_id))]
        if creating is not None:
            tagging.append(("volume", self.volume_id, self._start_volume_tags(self.volume_id, vm_id)))
        vm = self._deployed(deploying, plan.vm_name)
        if creating is not None:
            self._wait(creating, "createVolume", self.cs.timeout.create_volume, "creating the ephemeral disk")
        for kind, resource_id, started in tagging:
            self._wait(started, "createTags", self.cs.timeout.global_, f"tagging {kind} {resource_id}")
        nics = nets.match_nics(plan.placement, plan.order, vm.get("nic") or [])
        ephemeral = self._attach_ephemeral(vm) if creating is not None else None
        encoded = agent_settings.encode(_settings(self.ctx, plan, nics, ephemeral))
        agent_settings.check_size(encoded, self.cs.user_data_limit)
        self._set_user_data(vm_id, encoded)
        started = self.client.run_job("startVirtualMachine", id=vm_id, timeout=self.cs.timeout.create_vm,
                                      what=f"starting VM {vm_id}")
        _require_running(self.ctx, vm_id, started)
        if plan.public_ip:
            self._static_nat(vm_id, plan.public_ip)
        if plan.lb_targets:
            self.lb_attempted = True
            loadbalancers.join(self.ctx, vm_id, plan.lb_targets, self.lb_record)
        return vm_id, nets.result_networks(plan.networks, nics)

    # -- steps

    def _affinity_group(self, name: str, kind: str, existing: str | None) -> str:
        if existing:
            return existing
        try:
            result = self.client.run_job("createAffinityGroup", name=name, type=kind,
                                         timeout=self.cs.timeout.global_, what=f"creating affinity group {name}")
        except CloudStackError:
            found = _affinity_group(self.client, name)  # another create_vm may have made it meanwhile
            if found:
                return found["id"]
            raise
        group_id = (result.get("affinitygroup") or {}).get("id")
        if not group_id:
            raise errors.CloudError(f"createAffinityGroup answered no id for affinity group '{name}'")
        self.created_groups.append(group_id)
        self.ctx.log.info(f"Created affinity group '{name}' ({kind})")
        return group_id

    def _start_deploy(self, group_ids: list[str]) -> dict:
        """deployVirtualMachine, not waited for: its answer (``id``, ``jobid``); the VM is recorded for cleanup."""
        plan = self.plan
        params: dict[str, Any] = {
            "name": plan.vm_name, "displayname": plan.vm_name, "zoneid": plan.zone["id"],
            "templateid": plan.template["id"], "serviceofferingid": plan.offering["id"], "startvm": False,
            "keypair": plan.keypair, "affinitygroupids": group_ids or None, "details": plan.details,
            "rootdisksize": lookups.gib(plan.props.root_disk_size) if plan.props.root_disk_size else None,
            **nets.deploy_params(plan.placement, plan.order),
        }
        self.ctx.log.info(f"Deploying VM {plan.vm_name} (offering '{plan.offering.get('name')}', "
                          f"template '{plan.template.get('name')}', zone '{plan.zone.get('name')}')")
        try:
            try:
                started = self.client.call("deployVirtualMachine", **params)
            except CloudStackError as err:
                # A refusal before any VM exists may be a manual IP still held by the VM of a create_vm that was
                # killed (kill -9: no cleanup ran).  Such a VM is removed and the deploy made once more.
                if err.resource_id or err.outcome_unknown or not _remove_abandoned_holders(self.ctx, plan):
                    raise
                started = self.client.call("deployVirtualMachine", **params)
        except CloudStackError as err:
            if err.outcome_unknown:  # the answer was lost: the VM may exist anyway
                self.vm_ids.extend(self._vms_named(plan.vm_name))
            raise
        except BaseException:  # interrupted (SIGTERM/SIGINT) while asking: the VM may exist
            self.vm_ids.extend(self._vms_named(plan.vm_name))
            raise
        if started.get("id"):
            self.vm_ids.append(started["id"])
        return started

    def _deployed(self, started: dict, name: str) -> dict:
        """The deployed VM, once the deploy's job is done (waited for once; later calls answer the same VM)."""
        if "_vm" not in started:
            result = self._wait(started, "deployVirtualMachine", self.cs.timeout.create_vm, f"deploying VM {name}")
            vm = result.get("virtualmachine") or {}
            if not vm.get("id"):
                raise errors.VMCreationFailed(f"deployVirtualMachine answered no VM for {name}", ok_to_retry=True)
            if vm["id"] not in self.vm_ids:
                self.vm_ids.append(vm["id"])
            started["_vm"] = vm
        return started["_vm"]

    def _wait(self, started: dict, command: str, timeout: float, what: str) -> dict:
        return self.client.finish_job(started, command=command, timeout=timeout, what=what)

    def _vms_named(self, name: str) -> list[str]:
        """After a lost answer: the VMs that deploy may have made anyway."""
        found = self.client.list("listVirtualMachines", name=name, listall=True)
        return [vm["id"] for vm in found if vm.get("name") == name]

    def _volume_named(self, name: str) -> str | None:
        """After a lost createVolume answer: the volume it may have made anyway."""
        found = lookups.only_named(self.client.list("listVolumes", name=name, listall=True), name, kind="Volume")
        return found["id"] if found else None

    def _start_vm_tags(self, vm_id: str) -> dict:
        wanted = {tags.AGENT_KEY: self.plan.agent_id}
        if self.plan.lb_targets:
            wanted[loadbalancers.MEMBER_KEY] = loadbalancers.CREATED_VALUE
        if self.ctx.director_uuid:
            wanted[tags.DIRECTOR_KEY] = self.ctx.director_uuid
        return self.client.call("createTags", resourceids=vm_id, resourcetype="UserVm", tags=wanted)

    def _start_ephemeral(self, offering: dict) -> dict:
        """createVolume for the ephemeral disk, not waited for; the volume is recorded for cleanup."""
        name = f"{self.plan.vm_name}-ephemeral"
        try:
            started = self.client.call("createVolume", name=name, zoneid=self.plan.zone["id"],
                                       diskofferingid=offering["id"], size=self.plan.ephemeral_size_gib)
        except CloudStackError as err:
            if err.outcome_unknown:  # the answer was lost: the volume may exist anyway
                self.volume_id = self._volume_named(name)
            raise
        except BaseException:  # interrupted while asking: the volume may exist anyway
            self.volume_id = self._volume_named(name)
            raise
        self.volume_id = started.get("id")
        if not self.volume_id:
            result = self._wait(started, "createVolume", self.cs.timeout.create_volume, "creating the ephemeral disk")
            self.volume_id = (result.get("volume") or {}).get("id") or self._volume_named(name)
        if not self.volume_id:
            raise errors.CloudError("createVolume answered no volume id for the ephemeral disk")
        return started

    def _start_volume_tags(self, volume_id: str | None, vm_id: str) -> dict:
        marks = {tags.ROLE_KEY: tags.ROLE_EPHEMERAL, tags.VM_KEY: vm_id}
        if self.ctx.director_uuid:
            marks[tags.DIRECTOR_KEY] = self.ctx.director_uuid
        return self.client.call("createTags", resourceids=volume_id, resourcetype="Volume", tags=marks)

    def _attach_ephemeral(self, vm: dict) -> dict:
        volume_id = self.volume_id
        attached = self.client.run_job("attachVolume", id=volume_id, virtualmachineid=vm["id"],
                                       timeout=self.cs.timeout.attach_volume, what="attaching the ephemeral disk")
        device_id = (attached.get("volume") or {}).get("deviceid")
        if device_id is None:
            raise errors.CloudError(f"attachVolume answered no device id for the ephemeral disk {volume_id}")
        return disk_hints.disk_hint(str(volume_id), int(device_id), vm.get("hypervisor") or self.plan.hypervisor,
                                    vm.get("details"))

    def _set_user_data(self, vm_id: str, encoded: str) -> None:
        try:
            self.client.call("updateVirtualMachine", id=vm_id, userdata=encoded)
        except CloudStackError as err:
            if err.errorcode == 431 and "user data" in err.errortext.lower():
                raise errors.CloudError(
                    f"CloudStack refused the agent settings ({len(encoded)} bytes of base64): {err.errortext}; "
                    f"cloudstack.user_data_limit ({self.cs.user_data_limit}) must not exceed the cloud's "
                    "vm.userdata.max.length"
                ) from None
            raise

    def _static_nat(self, vm_id: str, public_ip: dict) -> None:
        address = self.client.find("listPublicIpAddresses", id=public_ip["id"]) or public_ip
        other = address.get("virtualmachineid")
        if address.get("isstaticnat") and other != vm_id:
            self.ctx.log.info(f"Public IP {address.get('ipaddress')} is statically NATed to VM '{other}': moving it")
            self.client.run_job("disableStaticNat", ipaddressid=address["id"], timeout=self.cs.timeout.global_,
                                what=f"disabling static NAT of {address.get('ipaddress')}")
        self.nat_attempted = True
        self.client.call("enableStaticNat", ipaddressid=address["id"], virtualmachineid=vm_id,
                         networkid=self.plan.nat_network_id)

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
        leftovers: list[str] = []
        steps: list[tuple[str, Any]] = []
        if self.lb_attempted:
            for vm_id in self.vm_ids:
                steps.append((f"load balancer membership of VM {vm_id}",
                               lambda vm_id=vm_id: loadbalancers.leave(self.ctx, vm_id)))
            steps.append(("load balancer rules created for the VM",
                          lambda: loadbalancers.undo(self.ctx, self.lb_record)))
        public_ip = self.plan.public_ip
        if self.nat_attempted and self.vm_ids and public_ip:  # (nat_attempted: there is a public IP)
            steps.append((f"static NAT of {public_ip.get('ipaddress')}", lambda: self._undo_static_nat(public_ip)))
        for vm_id in reversed(self.vm_ids):
            steps.append((f"VM {vm_id}", lambda vm_id=vm_id: _destroy(self.ctx, vm_id, expunge=True)))
        volume_id = self.volume_id
        if volume_id:
            steps.append((f"volume {volume_id}", lambda: _delete_volume(self.ctx, volume_id)))
        for group_id in self.created_groups:
            steps.append((f"affinity group {group_id}", lambda group_id=group_id: self._delete_group(group_id)))
        for label, step in steps:
            # Each step looks before it acts, so repeating one after a failed or lost mutation is safe.
            if not cleanup.remove(self.ctx, label, step):
                leftovers.append(label)
        return leftovers

    def _undo_static_nat(self, public_ip: dict) -> None:
        address = self.client.find("listPublicIpAddresses", id=public_ip["id"])
        if address and address.get("isstaticnat") and address.get("virtualmachineid") in self.vm_ids:
            self.client.run_job("disableStaticNat", ipaddressid=address["id"], timeout=self.cs.timeout.global_,
                                what=f"disabling static NAT of {address.get('ipaddress')}")

    def _delete_group(self, group_id: str) -> None:
        group = self.client.find("listAffinityGroups", id=group_id)
        if group is None or group.get("virtualmachineIds"):
            return  # gone, or another VM joined it meanwhile
        self.client.run_job("deleteAffinityGroup", id=group_id, timeout=self.cs.timeout.global_,
                            what=f"deleting affinity group {group_id}")
