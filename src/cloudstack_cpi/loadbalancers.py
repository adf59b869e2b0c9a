"""Load balancer rule membership: the VM cloud_properties ``lbs`` (the Go CPI's form).

A rule is named per public IP: create_vm finds the rule with that name on the
IP, creates it when it is missing, and assigns the VM to it; delete_vm removes
the VM from every rule it is in and deletes a rule the CPI created once its
last member is gone (with the firewall rule the CPI opened for it).

What the CPI created is marked with tags, so that any later call can tell:
``tags.CREATED_KEY=true`` on load balancer and firewall rules,
``LB_RULE_KEY=<rule id>`` on a firewall rule opened for a load balancer rule,
and ``MEMBER_KEY=true`` on VMs created with ``lbs`` (delete_vm of other VMs
makes no load balancer request).  Rules an operator made are used, never deleted.

Concurrency: several create_vm calls may want the same new rule at once.
CloudStack refuses a second rule on the same public IP and port, so the loser
of that race finds the winner's rule when it lists again.  Should a cloud
accept both, every creator lists again after joining and all converge on the
first rule by id (rules carry no creation time), the others moving over and
deleting their own duplicate.  A rule deleted by a leaving VM while a new VM
joins is created again once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import tags
from .cloudstack.errors import CloudStackError
from .errors import CloudError

if TYPE_CHECKING:  # delete_vm of a member leaves its rules without reading cloud_properties (pydantic)
    from .cloudstack.client import Client
    from .context import CallContext
    from .models import LoadBalancer

LB_RULE_KEY = "cpi_lb_rule"       # on a firewall rule the CPI opened: the id of its load balancer rule
MEMBER_KEY = "cpi_lb_member"      # on VMs created with lbs: delete_vm looks for their rules (others cost nothing)
CREATED_VALUE = "true"
CONFLICT = 537                    # NETWORK_RULE_CONFLICT_ERROR


@dataclass(frozen=True)
class Target:
    """One ``lbs`` entry resolved before the VM exists."""

    lb: LoadBalancer
    address: dict                 # the public IP (listPublicIpAddresses item)
    network_id: str | None        # the guest network the rule balances on


@dataclass
class Record:
    """What one create_vm did, so that a failure can undo it."""

    created_rules: list[str] = field(default_factory=list)
    opened_firewall: dict[str, str] = field(default_factory=dict)   # firewall rule id -> load balancer rule id


# -- pure rule matching --------------------------------------------------------------------------------------------


def find_address(addresses: list[dict], wanted: str) -> dict | None:
    """The public IP named by address or id."""
    return next((a for a in addresses if wanted in (a.get("id"), a.get("ipaddress"))), None)


def named(rules: list[dict], name: str) -> list[dict]:
    """The rules with this name, first (lowest id) first: the one every creator keeps."""
    return sorted((r for r in rules if r.get("name") == name), key=lambda r: str(r.get("id")))


def check_compatible(rule: dict, lb: LoadBalancer) -> None:
    """An existing rule of that name must balance the ports the manifest asks for."""
    have = (str(rule.get("publicport")), str(rule.get("privateport")))
    want = (str(lb.public_port), str(lb.private_port))
    if have != want:
        raise CloudError(
            f"Load balancer rule '{lb.name}' on {rule.get('publicip') or lb.public_ip} exists with ports "
            f"{have[0]}->{have[1]}, but the VM's lbs ask for {want[0]}->{want[1]}: rename one of them"
        )
    if rule.get("algorithm") and str(rule["algorithm"]).lower() != lb.algorithm:
        raise CloudError(f"Load balancer rule '{lb.name}' exists with algorithm '{rule['algorithm']}', "
                         f"but the VM's lbs ask for '{lb.algorithm}'")


def created_by_cpi(item: dict) -> bool:
    return tags.as_dict(item).get(tags.CREATED_KEY) == CREATED_VALUE


def is_member(vm: dict) -> bool:
    """Whether the VM was created with ``lbs`` (its tags say so)."""
    return tags.as_dict(vm).get(MEMBER_KEY) == CREATED_VALUE


def resolve(client: Client, lbs: list[LoadBalancer], zone: dict, vm_network_ids: set[str],
            default_network_id: str | None, vip_address: str | None) -> list[Target]:
    """Check each rule's public IP before the VM exists: owned, in the zone, without static NAT, reachable."""
    if not lbs:
        return []
    owned = client.list_all("listPublicIpAddresses", zoneid=zone["id"], allocatedonly=True)
    targets = []
    for lb in lbs:
        address = find_address(owned, lb.public_ip)
        if address is None:
            listing = ", ".join(sorted(a.get("ipaddress", "?") for a in owned)) or "none"
            raise CloudError(f"Load balancer '{lb.name}': public IP {lb.public_ip} is not allocated to this account "
                             f"in zone '{zone.get('name')}' (allocated: {listing})")
        if address.get("isstaticnat") or address.get("ipaddress") == vip_address:
            raise CloudError(f"Load balancer '{lb.name}': public IP {address.get('ipaddress')} is used for static NAT "
                             "(a vip network); CloudStack cannot also balance on it: use another IP")
        network_id = address.get("associatednetworkid") or default_network_id
        if vm_network_ids and network_id not in vm_network_ids:
            raise CloudError(f"Load balancer '{lb.name}': public IP {address.get('ipaddress')} belongs to network "
                             f"'{address.get('associatednetworkname') or network_id}', where the VM has no NIC")
        targets.append(Target(lb, address, network_id))
    return targets


# -- joining ---------------------------------------------------------------------------------------------------------


def join(ctx: CallContext, vm_id: str, targets: list[Target], record: Record) -> None:
    """Put the VM into each target's rule, creating rules that are missing."""
    client, timeout = ctx.client, ctx.config.cloudstack.timeout.global_
    for target in targets:
        lb = target.lb
        for attempt in (1, 2):
            rule = _ensure_rule(ctx, target, record)
            try:
                client.run_job("assignToLoadBalancerRule", id=rule["id"], virtualmachineids=vm_id, timeout=timeout,
                               what=f"adding VM {vm_id} to load balancer rule {lb.name}")
                break
            except CloudStackError:
                if attempt == 1 and client.find("listLoadBalancerRules", id=rule["id"]) is None:
                    ctx.log.info(f"Load balancer rule '{lb.name}' was deleted meanwhile: creating it again")
                    continue
                raise
        ctx.log.info(f"VM '{vm_id}' joined load balancer rule '{lb.name}' on {target.address.get('ipaddress')}")
        _settle_duplicates(ctx, target, rule, vm_id, record)


def _rules_on(client: Client, target: Target) -> list[dict]:
    rules = client.list_all("listLoadBalancerRules", publicipid=target.address["id"], listall=True)
    return named(rules, target.lb.name)


def _ensure_rule(ctx: CallContext, target: Target, record: Record) -> dict:
    client, timeout = ctx.client, ctx.config.cloudstack.timeout.global_
    lb = target.lb
    existing = _rules_on(client, target)
    if existing:
        check_compatible(existing[0], lb)
        return existing[0]
    try:
        result = client.run_job(
            "createLoadBalancerRule", name=lb.name, publicipid=target.address["id"], publicport=lb.public_port,
            privateport=lb.private_port, algorithm=lb.algorithm, networkid=target.network_id, openfirewall=False,
            timeout=timeout, what=f"creating load balancer rule {lb.name}",
        )
    except CloudStackError as err:
        if err.resource_id:  # a failed job may leave the rule behind
            record.created_rules.append(err.resource_id)
        existing = _rules_on(client, target)  # another create_vm made it first
        if existing:
            ctx.log.info(f"Load balancer rule '{lb.name}' was created meanwhile by another call: using it")
            check_compatible(existing[0], lb)
            return existing[0]
        raise
    rule = result.get("loadbalancer") or {}
    record.created_rules.append(rule["id"])
    ctx.log.info(f"Created load balancer rule '{lb.name}' ({lb.public_port}->{lb.private_port}, {lb.algorithm}) "
                 f"on {target.address.get('ipaddress')}")
    _tag(ctx, "LoadBalancer", rule["id"], {})
    if lb.open_firewall:
        _open_firewall(ctx, target, rule["id"], record)
    return rule


def _open_firewall(ctx: CallContext, target: Target, rule_id: str, record: Record) -> None:
    client, lb = ctx.client, target.lb
    try:
        result = client.run_job(
            "createFirewallRule", ipaddressid=target.address["id"], protocol="tcp", startport=lb.public_port,
            endport=lb.public_port, cidrlist="0.0.0.0/0", timeout=ctx.config.cloudstack.timeout.global_,
            what=f"opening port {lb.public_port} on {target.address.get('ipaddress')}",
        )
    except CloudStackError as err:
        if err.errorcode == CONFLICT:
            ctx.log.info(f"Port {lb.public_port} on {target.address.get('ipaddress')} is already open")
            return
        if err.resource_id:  # a failed job may leave the rule behind
            record.opened_firewall[err.resource_id] = rule_id
        raise
    firewall_id = (result.get("firewallrule") or {}).get("id")
    if not firewall_id:
        raise CloudError(f"createFirewallRule answered without a rule for port {lb.public_port}")
    record.opened_firewall[firewall_id] = rule_id
    _tag(ctx, "FirewallRule", firewall_id, {LB_RULE_KEY: rule_id})


def _tag(ctx: CallContext, resource_type: str, resource_id: str, extra: dict) -> None:
    marks = {tags.CREATED_KEY: CREATED_VALUE, **extra}
    if ctx.director_uuid:
        marks[tags.DIRECTOR_KEY] = ctx.director_uuid
    ctx.client.run_job("createTags", resourceids=resource_id, resourcetype=resource_type, tags=marks,
                       timeout=ctx.config.cloudstack.timeout.global_, what=f"tagging {resource_type} {resource_id}")


def _settle_duplicates(ctx: CallContext, target: Target, rule: dict, vm_id: str, record: Record) -> None:
    """If another call made a rule of the same name at the same time, move to the first one."""
    rules = _rules_on(ctx.client, target)
    if len(rules) < 2 or rules[0]["id"] == rule["id"]:
        return
    keep = rules[0]
    check_compatible(keep, target.lb)
    ctx.log.info(f"Load balancer rule '{target.lb.name}' exists twice: moving VM '{vm_id}' to rule {keep['id']}")
    timeout = ctx.config.cloudstack.timeout.global_
    ctx.client.run_job("assignToLoadBalancerRule", id=keep["id"], virtualmachineids=vm_id, timeout=timeout,
                       what=f"adding VM {vm_id} to load balancer rule {target.lb.name}")
    ctx.client.run_job("removeFromLoadBalancerRule", id=rule["id"], virtualmachineids=vm_id, timeout=timeout,
                       what=f"removing VM {vm_id} from duplicate rule {rule['id']}")
    delete_if_unused(ctx, rule["id"], owned=rule["id"] in record.created_rules)


# -- leaving ---------------------------------------------------------------------------------------------------------


def leave(ctx: CallContext, vm_id: str) -> None:
    """Remove the VM from every rule it is in; delete rules the CPI created that are left empty."""
    client, timeout = ctx.client, ctx.config.cloudstack.timeout.global_
    for rule in client.list_all("listLoadBalancerRules", virtualmachineid=vm_id, listall=True):
        try:
            client.run_job("removeFromLoadBalancerRule", id=rule["id"], virtualmachineids=vm_id, timeout=timeout,
                           what=f"removing VM {vm_id} from load balancer rule {rule.get('name')}")
            ctx.log.info(f"VM '{vm_id}' left load balancer rule '{rule.get('name')}'")
        except CloudStackError as err:
            # The rule or the membership went away meanwhile: 431 before the job; the job's own refusal is errorcode
            # 530 on CloudStack 4.11 to 4.19 (431 later), so a failed job counts when the VM is no member any more.
            if err.errorcode != 431 and not (err.kind == "job" and not _member(client, rule["id"], vm_id)):
                raise
        delete_if_unused(ctx, rule["id"])


def _member(client: Client, rule_id: str, vm_id: str) -> bool:
    """Whether the VM is (still) in the rule, as listed now."""
    if client.find("listLoadBalancerRules", id=rule_id) is None:
        return False
    return any(vm.get("id") == vm_id for vm in client.list("listLoadBalancerRuleInstances", id=rule_id))


def delete_if_unused(ctx: CallContext, rule_id: str, *, owned: bool = False) -> bool:
    """Delete a rule the CPI created (or ``owned`` by this call) when it has no member; True when gone."""
    client = ctx.client
    rule = client.find("listLoadBalancerRules", id=rule_id)
    if rule is None:
        return True
    if not (owned or created_by_cpi(rule)):
        return False
    if client.list("listLoadBalancerRuleInstances", id=rule_id):
        return False
    for firewall in client.list_all("listFirewallRules", ipaddressid=rule.get("publicipid"),
                                    tags={LB_RULE_KEY: rule_id}, listall=True):
        if tags.as_dict(firewall).get(LB_RULE_KEY) == rule_id:
            _delete(ctx, "deleteFirewallRule", firewall["id"], "firewall rule")
    _delete(ctx, "deleteLoadBalancerRule", rule_id, f"load balancer rule {rule.get('name')}")
    ctx.log.info(f"Deleted load balancer rule '{rule.get('name')}': no member left")
    return True


def undo(ctx: CallContext, record: Record) -> None:
    """After a failed create_vm (the VM already left its rules): remove the rules and ports this call opened."""
    for rule_id in record.created_rules:
        delete_if_unused(ctx, rule_id, owned=True)
    for firewall_id, rule_id in record.opened_firewall.items():
        if (ctx.client.find("listLoadBalancerRules", id=rule_id) is None
                and ctx.client.find("listFirewallRules", id=firewall_id) is not None):
            _delete(ctx, "deleteFirewallRule", firewall_id, "firewall rule")


def _delete(ctx: CallContext, command: str, resource_id: str, what: str) -> None:
    try:
        ctx.client.run_job(command, id=resource_id, timeout=ctx.config.cloudstack.timeout.global_,
                           what=f"deleting {what} {resource_id}")
    except CloudStackError as err:
        if err.errorcode != 431:
            raise
