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
never sent again.  CloudStack stores the rule before it answers (both creates
are BaseAsyncCreateCmds: ``create()`` persists, the job then applies), so the
load balancer rule is the one on the IP with this call's description, and the
firewall rule is the one for the port that was not there before (a second rule
for the same port, protocol and CIDR is refused: FirewallManagerImpl.
detectRulesConflict).  Commands on an existing rule are recovered by their job
(``Client.run_job``).  Leaving is resumable: the last member deletes a rule the
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
# The description of a load balancer rule the CPI creates, followed by ": <unique token of the creating call>".
CREATED_DESCRIPTION = "Created by the BOSH CPI"
OPEN_TO_ALL = "0.0.0.0/0"         # the CIDR of the firewall rules the CPI opens


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
    """Marked by the CPI's tag: only the tag, so that an operator who removes it keeps the rule
    (docs/load-balancers.md); the description is for the creating call to find its rule after a lost answer."""
    return tags.as_dict(item).get(tags.CREATED_KEY) == CREATED_VALUE


def covers(firewall: dict, port: int) -> bool:
    """Whether a firewall rule opens ``port`` for TCP."""
    if str(firewall.get("protocol", "")).lower() != "tcp":
        return False
    try:
        start = int(firewall["startport"])
        return start <= port <= int(firewall.get("endport") or start)
    except (KeyError, TypeError, ValueError):
        return False


def open_to_all(firewall: dict) -> bool:
    return OPEN_TO_ALL in str(firewall.get("cidrlist") or "").replace(" ", "").split(",")


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
    description = f"{CREATED_DESCRIPTION}: {uuid.uuid4()}"  # this call's, so that a lost answer is looked up
    try:
        result = client.run_job(
            "createLoadBalancerRule", name=lb.name, description=description, publicipid=target.address["id"],
            publicport=lb.public_port, privateport=lb.private_port, algorithm=lb.algorithm,
            networkid=target.network_id, openfirewall=False,
            timeout=timeout, what=f"creating load balancer rule {lb.name}",
        )
        rule = result.get("loadbalancer") or {}
    except CloudStackError as err:
        if err.resource_id:  # a failed job may leave the rule behind
            record.created_rules.append(err.resource_id)
        existing = _rules_on(client, target)
        mine = [r for r in existing if r.get("description") == description]
        if not (mine and err.outcome_unknown):
            record.created_rules.extend(r["id"] for r in mine if r["id"] not in record.created_rules)
            others = [r for r in existing if r.get("description") != description]
            if others:  # another create_vm made it first
                ctx.log.info(f"Load balancer rule '{lb.name}' was created meanwhile by another call: using it")
                check_compatible(others[0], lb)
                return others[0]
            raise
        # The answer was lost, not the rule: CreateLoadBalancerRuleCmd.create() stored it before the answer, and
        # with openfirewall=false its job only reads it back, so there is nothing to wait for.
        rule = mine[0]
        ctx.log.info(f"The answer to createLoadBalancerRule was lost: rule {rule['id']} on "
                     f"{target.address.get('ipaddress')} carries this call's description, so this call made it")
    record.created_rules.append(rule["id"])
    ctx.log.info(f"Created load balancer rule '{lb.name}' ({lb.public_port}->{lb.private_port}, {lb.algorithm}) "
                 f"on {target.address.get('ipaddress')}")
    _tag(ctx, "LoadBalancer", rule["id"], {})
    if lb.open_firewall:
        _open_firewall(ctx, target, rule["id"], record)
    return rule


def _port_rules(client: Client, target: Target) -> list[dict]:
    """The firewall rules on the target's IP that open its public port."""
    rules = client.list_all("listFirewallRules", ipaddressid=target.address["id"], listall=True)
    return [rule for rule in rules if covers(rule, target.lb.public_port)]


def _open_firewall(ctx: CallContext, target: Target, rule_id: str, record: Record) -> None:
    client, lb = ctx.client, target.lb
    where = f"port {lb.public_port} on {target.address.get('ipaddress')}"
    before = _port_rules(client, target)
    if any(open_to_all(rule) for rule in before):  # CloudStack would refuse ours as a conflict
        ctx.log.info(f"Port {lb.public_port} on {target.address.get('ipaddress')} is already open")
        return
    try:
        result = client.run_job(
            "createFirewallRule", ipaddressid=target.address["id"], protocol="tcp", startport=lb.public_port,
            endport=lb.public_port, cidrlist=OPEN_TO_ALL, timeout=ctx.config.cloudstack.timeout.global_,
            what=f"opening {where}",
        )
        firewall_id = (result.get("firewallrule") or {}).get("id")
    except CloudStackError as err:
        if err.errorcode == CONFLICT:
            ctx.log.info(f"Port {lb.public_port} on {target.address.get('ipaddress')} is already open")
            return
        if err.resource_id:  # a failed job may leave the rule behind
            record.opened_firewall[err.resource_id] = rule_id
        if not err.outcome_unknown:
            raise
        firewall_id = _lost_firewall(ctx, target, before, err)
        record.opened_firewall[firewall_id] = rule_id
        _await_creation(ctx, "createFirewallRule", firewall_id, f"opening {where}")
    if not firewall_id:
        raise CloudError(f"createFirewallRule answered without a rule for port {lb.public_port}")
    record.opened_firewall[firewall_id] = rule_id
    _tag(ctx, "FirewallRule", firewall_id, {LB_RULE_KEY: rule_id})


def _lost_firewall(ctx: CallContext, target: Target, before: list[dict], err: CloudStackError) -> str:
    """After a lost createFirewallRule answer: the rule it made, or ``err`` again when it made none.

    A firewall rule has no name or description to carry a mark.  It is the rule exactly as asked (TCP, the one
    port, open to all) that was not on the IP before this call asked: FirewallManagerImpl.detectRulesConflict
    refuses a second rule with the same protocol, ports and CIDR, and none was there (``_open_firewall``), so
    no one else can have made it since unless this call's request made nothing.
    """
    known = {rule.get("id") for rule in before}
    port = target.lb.public_port
    made = [rule for rule in _port_rules(ctx.client, target) if rule.get("id") not in known and open_to_all(rule)
            and str(rule.get("startport")) == str(port) == str(rule.get("endport") or rule.get("startport"))]
    if len(made) != 1:
        raise err
    ctx.log.info(f"The answer to createFirewallRule was lost: firewall rule {made[0]['id']} for port {port} on "
                 f"{target.address.get('ipaddress')} is new, so this call made it")
    return str(made[0]["id"])


def _await_creation(ctx: CallContext, command: str, resource_id: str, what: str) -> None:
    """After a lost answer to a create, wait for its job as ``run_job`` would have: the job applies the rule, and
    CreateFirewallRuleCmd.execute revokes it when that fails.  A create job's instance is the new resource
    (ApiServer.queueCommand: ``instanceId = objectId``), so listAsyncJobs finds it; without that (a role without
    listAsyncJobs, a purged job) the rule is taken as it is listed."""
    job = ctx.client.pending_job(command, {}, instance=resource_id)
    if job is not None:
        ctx.client.wait_for_job(job["jobid"], command=command, timeout=ctx.config.cloudstack.timeout.global_,
                                what=what)


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
    """Remove the VM from every rule it is in; delete rules the CPI created that are left empty.

    Resumable: the last member of a rule the CPI created deletes the rule without removing itself first, so that
    a call that fails or dies half way leaves the VM in the rule, where the repeated delete_vm finds it again
    (removing it first left an empty rule that no later call of this VM could find).
    """
    client, timeout = ctx.client, ctx.config.cloudstack.timeout.global_
    for rule in client.list_all("listLoadBalancerRules", virtualmachineid=vm_id, listall=True):
        if created_by_cpi(rule) and _members(client, rule["id"]) == [vm_id]:
            _delete_rule(ctx, rule)
            ctx.log.info(f"Deleted load balancer rule '{rule.get('name')}' with its last member, VM '{vm_id}'")
            continue
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
    return vm_id in _members(client, rule_id)


def _members(client: Client, rule_id: str) -> list[str]:
    return [str(vm.get("id")) for vm in client.list("listLoadBalancerRuleInstances", id=rule_id)]


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
    _delete_rule(ctx, rule)
    ctx.log.info(f"Deleted load balancer rule '{rule.get('name')}': no member left")
    return True


def _delete_rule(ctx: CallContext, rule: dict) -> None:
    """Delete a rule the CPI created, its firewall rules first: until the rule itself is gone, a repeated call
    finds it (by its members or by its record) and deletes what is left."""
    for firewall in _firewall_of(ctx.client, rule):
        _delete(ctx, "deleteFirewallRule", firewall["id"], "firewall rule")
    _delete(ctx, "deleteLoadBalancerRule", rule["id"], f"load balancer rule {rule.get('name')}")


def _firewall_of(client: Client, rule: dict) -> list[dict]:
    """The firewall rules the CPI opened for ``rule``: those tagged with its id, and those the CPI opened for its
    port for a rule that is gone (deleted while the port's next rule was being made, which found the port open:
    ``_open_firewall``).  Only one load balancer rule can hold the IP and port (LoadBalancingRulesManagerImpl.
    createPublicLoadBalancer: detectRulesConflict), so such a rule opens the port for this one alone."""
    port = str(rule.get("publicport"))
    found = []
    for firewall in client.list_all("listFirewallRules", ipaddressid=rule.get("publicipid"), listall=True):
        owner = tags.as_dict(firewall).get(LB_RULE_KEY)
        if owner == rule["id"] or (
                owner and created_by_cpi(firewall) and str(firewall.get("startport")) == port
                and str(firewall.get("endport")) == port and client.find("listLoadBalancerRules", id=owner) is None):
            found.append(firewall)
    return found


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
