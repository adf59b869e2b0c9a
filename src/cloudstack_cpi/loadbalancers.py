"""Load balancer rule membership: the VM cloud_properties ``lbs`` (the Go CPI's form).

A rule is named per public IP: create_vm finds the rule with that name on the
IP, creates it when it is missing, and assigns the VM to it; delete_vm removes
the VM from every rule it is in and deletes a rule the CPI created once its
last member is gone (with the firewall rule the CPI opened for it).

What the CPI created is marked with tags, so that any later call can tell:
``tags.CREATED_KEY=true`` on load balancer and firewall rules,
``LB_RULE_KEY=<rule id>`` on a firewall rule opened for a load balancer rule,
and ``MEMBER_KEY=true`` on VMs created with ``lbs`` (delete_vm of other VMs
makes no load balancer request).  Rules an operator made are used, never
deleted.  A load balancer rule also carries, from its creation on, a
``description`` naming the CPI and the creating call (``CREATED_DESCRIPTION``),
by which that call finds it after a lost answer; it is not a mark (an operator
keeps a rule by removing its tag).

Lost answers (issue 16): a create whose answer is lost is recovered by lookup,
never sent again, by the gateway (``cloud.load_balancers.create`` finds the
rule on the IP with this call's description, ``cloud.addresses.open_port`` the
firewall rule for the port that was not there before); commands on an existing
rule are recovered by their job.  Leaving is resumable: the last member deletes a rule the
CPI created (its firewall rules first) instead of removing itself, since
deleteLoadBalancerRule revokes the rule's VM mappings with it
(LoadBalancingRulesManagerImpl.deleteLoadBalancerRule); until the rule is gone
the VM is still in it, so a repeated delete_vm finds it again.

Concurrency: several create_vm calls may want the same new rule at once.
CloudStack refuses a second rule on the same public IP and port, so the loser
of that race finds the winner's rule when it lists again.  Should a cloud
accept both, every creator lists again after joining and all converge on the
first rule by id (rules carry no creation time), the others moving over and
deleting their own duplicate.  A rule deleted by a leaving VM while a new VM
joins is created again once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import tags
from .cloudstack.errors import CloudStackError
from .errors import CloudError

if TYPE_CHECKING:  # delete_vm of a member leaves its rules without reading cloud_properties (pydantic)
    from .cloudstack.gateway import Gateway
    from .cloudstack.models import FirewallRule, LoadBalancerRule, PublicIp, Vm, Zone
    from .context import CallContext
    from .models import LoadBalancer

LB_RULE_KEY = "cpi_lb_rule"       # on a firewall rule the CPI opened: the id of its load balancer rule
MEMBER_KEY = "cpi_lb_member"      # on VMs created with lbs: delete_vm looks for their rules (others cost nothing)
CREATED_VALUE = "true"
# The description of a load balancer rule the CPI creates, followed by ": <unique token of the creating call>".
CREATED_DESCRIPTION = "Created by the BOSH CPI"
OPEN_TO_ALL = "0.0.0.0/0"         # the CIDR of the firewall rules the CPI opens


@dataclass(frozen=True)
class Target:
    """One ``lbs`` entry resolved before the VM exists."""

    lb: LoadBalancer
    address: PublicIp             # the public IP the rule listens on
    network_id: str | None        # the guest network the rule balances on


@dataclass
class Record:
    """What one create_vm did, so that a failure can undo it."""

    created_rules: list[str] = field(default_factory=list)
    opened_firewall: dict[str, str] = field(default_factory=dict)   # firewall rule id -> load balancer rule id

    def rule_made(self, rule_id: str) -> None:
        if rule_id not in self.created_rules:
            self.created_rules.append(rule_id)


# -- pure rule matching --------------------------------------------------------------------------------------------


def find_address(addresses: Iterable[PublicIp], wanted: str) -> PublicIp | None:
    """The public IP named by address or id."""
    return next((a for a in addresses if wanted in (a.id, a.address)), None)


def named(rules: Iterable[LoadBalancerRule], name: str) -> list[LoadBalancerRule]:
    """The rules with this name, first (lowest id) first: the one every creator keeps."""
    return sorted((r for r in rules if r.name == name), key=lambda r: r.id)


def check_compatible(rule: LoadBalancerRule, lb: LoadBalancer) -> None:
    """An existing rule of that name must balance the ports the manifest asks for."""
    have = (str(rule.public_port), str(rule.private_port))
    want = (str(lb.public_port), str(lb.private_port))
    if have != want:
        raise CloudError(
            f"Load balancer rule '{lb.name}' on {rule.public_ip or lb.public_ip} exists with ports "
            f"{have[0]}->{have[1]}, but the VM's lbs ask for {want[0]}->{want[1]}: rename one of them"
        )
    if rule.algorithm and rule.algorithm.lower() != lb.algorithm:
        raise CloudError(f"Load balancer rule '{lb.name}' exists with algorithm '{rule.algorithm}', "
                         f"but the VM's lbs ask for '{lb.algorithm}'")


def created_by_cpi(item: LoadBalancerRule | FirewallRule) -> bool:
    """Marked by the CPI's tag: only the tag, so that an operator who removes it keeps the rule
    (docs/load-balancers.md); the description is for the creating call to find its rule after a lost answer."""
    return item.tags.get(tags.CREATED_KEY) == CREATED_VALUE


def is_member(vm: Vm) -> bool:
    """Whether the VM was created with ``lbs`` (its tags say so)."""
    return vm.tags.get(MEMBER_KEY) == CREATED_VALUE


def resolve(cloud: Gateway, lbs: list[LoadBalancer], zone: Zone, vm_network_ids: set[str],
            default_network_id: str | None, vip_address: str | None) -> list[Target]:
    """Check each rule's public IP before the VM exists: owned, in the zone, without static NAT, reachable."""
    if not lbs:
        return []
    owned = cloud.addresses.allocated(zone.id)
    targets = []
    for lb in lbs:
        address = find_address(owned, lb.public_ip)
        if address is None:
            listing = ", ".join(sorted(a.address or "?" for a in owned)) or "none"
            raise CloudError(f"Load balancer '{lb.name}': public IP {lb.public_ip} is not allocated to this account "
                             f"in zone '{zone.name}' (allocated: {listing})")
        if address.static_nat or address.address == vip_address:
            raise CloudError(f"Load balancer '{lb.name}': public IP {address.address} is used for static NAT "
                             "(a vip network); CloudStack cannot also balance on it: use another IP")
        network_id = address.network_id or default_network_id
        if vm_network_ids and network_id not in vm_network_ids:
            raise CloudError(f"Load balancer '{lb.name}': public IP {address.address} belongs to network "
                             f"'{address.network_name or network_id}', where the VM has no NIC")
        targets.append(Target(lb, address, network_id))
    return targets


# -- joining ---------------------------------------------------------------------------------------------------------


def join(ctx: CallContext, vm_id: str, targets: list[Target], record: Record) -> None:
    """Put the VM into each target's rule, creating rules that are missing."""
    rules = ctx.cloud.load_balancers
    for target in targets:
        lb = target.lb
        for attempt in (1, 2):
            rule = _ensure_rule(ctx, target, record)
            if lb.open_firewall:
                # Also for a rule that exists: a create_vm killed between making the rule and opening the port
                # left a rule whose port is closed, and every later member would answer success without it.
                _open_firewall(ctx, target, rule.id, record)
            try:
                rules.assign(rule, vm_id)
                break
            except CloudStackError:
                if attempt == 1 and rules.get(rule.id) is None:
                    ctx.log.info(f"Load balancer rule '{lb.name}' was deleted meanwhile: creating it again")
                    continue
                raise
        ctx.log.info(f"VM '{vm_id}' joined load balancer rule '{lb.name}' on {target.address.address}")
        _settle_duplicates(ctx, target, rule, vm_id, record)


def _rules_on(cloud: Gateway, target: Target) -> list[LoadBalancerRule]:
    return named(cloud.load_balancers.on_ip(target.address.id), target.lb.name)


def _ensure_rule(ctx: CallContext, target: Target, record: Record) -> LoadBalancerRule:
    cloud, lb = ctx.cloud, target.lb
    existing = _rules_on(cloud, target)
    if existing:
        check_compatible(existing[0], lb)
        return existing[0]
    description = f"{CREATED_DESCRIPTION}: {uuid.uuid4()}"  # this call's, so that a lost answer is looked up
    try:
        rule = cloud.load_balancers.create(
            name=lb.name, description=description, ip_id=target.address.id, public_port=lb.public_port,
            private_port=lb.private_port, algorithm=lb.algorithm, network_id=target.network_id,
            made=record.rule_made)
    except CloudStackError:
        existing = _rules_on(cloud, target)
        for mine in existing:
            if mine.description == description:  # a failed job may leave the rule behind
                record.rule_made(mine.id)
        others = [r for r in existing if r.description != description]
        if others:  # another create_vm made it first
            ctx.log.info(f"Load balancer rule '{lb.name}' was created meanwhile by another call: using it")
            check_compatible(others[0], lb)
            return others[0]
        raise
    ctx.log.info(f"Created load balancer rule '{lb.name}' ({lb.public_port}->{lb.private_port}, {lb.algorithm}) "
                 f"on {target.address.address}")
    _tag(ctx, "LoadBalancer", rule.id, {})
    return rule


def _open_firewall(ctx: CallContext, target: Target, rule_id: str, record: Record) -> None:
    lb = target.lb

    def made(firewall_id: str) -> None:
        record.opened_firewall[firewall_id] = rule_id

    firewall_id = ctx.cloud.addresses.open_port(target.address, lb.public_port, OPEN_TO_ALL, made=made)
    if firewall_id is None:
        ctx.log.info(f"Port {lb.public_port} on {target.address.address} is already open")
        return
    _tag(ctx, "FirewallRule", firewall_id, {LB_RULE_KEY: rule_id})


def _tag(ctx: CallContext, resource_type: str, resource_id: str, extra: dict[str, str]) -> None:
    marks = {tags.CREATED_KEY: CREATED_VALUE, **extra}
    if ctx.director_uuid:
        marks[tags.DIRECTOR_KEY] = ctx.director_uuid
    ctx.cloud.tags.start(resource_type, resource_id, marks).wait()


def _settle_duplicates(ctx: CallContext, target: Target, rule: LoadBalancerRule, vm_id: str, record: Record) -> None:
    """If another call made a rule of the same name at the same time, move to the first one."""
    rules = _rules_on(ctx.cloud, target)
    if len(rules) < 2 or rules[0].id == rule.id:
        return
    keep = rules[0]
    check_compatible(keep, target.lb)
    ctx.log.info(f"Load balancer rule '{target.lb.name}' exists twice: moving VM '{vm_id}' to rule {keep.id}")
    ctx.cloud.load_balancers.assign(keep, vm_id)
    ctx.cloud.load_balancers.remove(rule, vm_id)
    delete_if_unused(ctx, rule.id, owned=rule.id in record.created_rules)


# -- leaving ---------------------------------------------------------------------------------------------------------


def leave(ctx: CallContext, vm_id: str) -> None:
    """Remove the VM from every rule it is in; delete rules the CPI created that are left empty.

    Resumable: the last member of a rule the CPI created deletes the rule without removing itself first, so that
    a call that fails or dies half way leaves the VM in the rule, where the repeated delete_vm finds it again
    (removing it first left an empty rule that no later call of this VM could find).
    """
    rules = ctx.cloud.load_balancers
    for rule in rules.of_vm(vm_id):
        if created_by_cpi(rule) and rules.members(rule.id) == [vm_id]:
            _delete_rule(ctx, rule)
            ctx.log.info(f"Deleted load balancer rule '{rule.name}' with its last member, VM '{vm_id}'")
            continue
        if rules.remove(rule, vm_id):  # False: the rule or the membership went away meanwhile
            ctx.log.info(f"VM '{vm_id}' left load balancer rule '{rule.name}'")
        delete_if_unused(ctx, rule.id)


def delete_if_unused(ctx: CallContext, rule_id: str, *, owned: bool = False) -> bool:
    """Delete a rule the CPI created (or ``owned`` by this call) when it has no member; True when gone."""
    rules = ctx.cloud.load_balancers
    rule = rules.get(rule_id)
    if rule is None:
        return True
    if not (owned or created_by_cpi(rule)):
        return False
    if rules.members(rule_id):
        return False
    _delete_rule(ctx, rule)
    ctx.log.info(f"Deleted load balancer rule '{rule.name}': no member left")
    return True


def _delete_rule(ctx: CallContext, rule: LoadBalancerRule) -> None:
    """Delete a rule the CPI created, its firewall rules first: until the rule itself is gone, a repeated call
    finds it (by its members or by its record) and deletes what is left."""
    for firewall in _firewall_of(ctx.cloud, rule):
        ctx.cloud.addresses.delete_firewall_rule(firewall.id)
    ctx.cloud.load_balancers.delete(rule)


def _firewall_of(cloud: Gateway, rule: LoadBalancerRule) -> list[FirewallRule]:
    """The firewall rules the CPI opened for ``rule``: those tagged with its id, and those the CPI opened for its
    port for a rule that is gone (deleted while the port's next rule was being made, which found the port open:
    ``_open_firewall``).  Only one load balancer rule can hold the IP and port (LoadBalancingRulesManagerImpl.
    createPublicLoadBalancer: detectRulesConflict), so such a rule opens the port for this one alone."""
    port = rule.public_port
    found = []
    for firewall in cloud.addresses.firewall_rules(rule.public_ip_id):
        owner = firewall.tags.get(LB_RULE_KEY)
        if owner == rule.id or (
                owner and created_by_cpi(firewall) and firewall.start_port == port and firewall.end_port == port
                and cloud.load_balancers.get(owner) is None):
            found.append(firewall)
    return found


def undo(ctx: CallContext, record: Record) -> None:
    """After a failed create_vm (the VM already left its rules): remove the rules and ports this call opened."""
    for rule_id in record.created_rules:
        delete_if_unused(ctx, rule_id, owned=True)
    for firewall_id, rule_id in record.opened_firewall.items():
        if (ctx.cloud.load_balancers.get(rule_id) is None
                and ctx.cloud.addresses.firewall_rule(firewall_id) is not None):
            ctx.cloud.addresses.delete_firewall_rule(firewall_id)
