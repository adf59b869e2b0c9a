"""Public IP addresses: the account's allocated IPs, static NAT to a VM, and the ingress firewall rules on an IP.

Rules owned here:
- timeouts: disableStaticNat, createFirewallRule and deleteFirewallRule jobs ``global``; enableStaticNat answers
  at once (no job);
- static NAT: enabling after a lost answer looks at the IP (pointing to the VM: it happened); disabling is
  idempotent (an IP no longer NATed to that VM is done), and a lost answer is recovered from its job;
- firewall rules: opening a port that is open already (a rule open to the CIDR covers it, or CloudStack refuses
  ours as a conflict) is no new rule; a lost createFirewallRule answer is recovered by looking: CloudStack stores
  the rule before it answers (a BaseAsyncCreateCmd), and it is the rule for exactly that port and CIDR that was
  not there before (a second one is refused: FirewallManagerImpl.detectRulesConflict), whose job is then waited
  for (its instance is the new rule: ApiServer.queueCommand); deleting a rule that is gone (431) is done.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import CloudStackError
from .gateway import Service
from .models import FirewallRule, PublicIp

CONFLICT = 537                    # NETWORK_RULE_CONFLICT_ERROR: a rule for that port and CIDR exists


class Addresses(Service):
    # -- public IPs

    def allocated(self, zone_id: str) -> list[PublicIp]:
        """The public IPs allocated to the account (or project) in the zone."""
        rows = self.client.list_all("listPublicIpAddresses", zoneid=zone_id, allocatedonly=True)
        return [PublicIp.from_api(row) for row in rows]

    def get(self, ip_id: str) -> PublicIp | None:
        """The public IP as it is now; None when it is not (any more) the account's."""
        row = self.client.find("listPublicIpAddresses", id=ip_id)
        return PublicIp.from_api(row) if row else None

    def static_nat_to(self, vm_id: str, zone_id: str) -> list[PublicIp]:
        """The public IPs of the zone statically NATed to the VM."""
        rows = self.client.list_all("listPublicIpAddresses", zoneid=zone_id or None, isstaticnat=True, listall=True)
        return [ip for ip in map(PublicIp.from_api, rows) if ip.static_nat and ip.vm_id == vm_id]

    # -- static NAT

    def enable_static_nat(self, ip: PublicIp, vm_id: str, network_id: str | None) -> None:
        """Point the IP at the VM (on ``network_id``, the VM's NIC network; None in basic zones).  After a lost
        answer the IP is looked at: NATed to this VM, the request did it."""
        try:
            self.client.call("enableStaticNat", ipaddressid=ip.id, virtualmachineid=vm_id, networkid=network_id)
        except CloudStackError as err:
            if err.outcome_unknown:
                now = self.get(ip.id)
                if now is not None and now.static_nat and now.vm_id == vm_id:
                    self.gateway.log.warning(f"Enabling static NAT of {ip.address}: {err}; but it points to VM "
                                             f"'{vm_id}' now")
                    return
            raise

    def disable_static_nat(self, ip: PublicIp) -> bool:
        """Release the IP's static NAT to the VM it points to as listed in ``ip``; False when it no longer did
        (released meanwhile, or the IP is gone)."""
        try:
            self.gateway.run("disableStaticNat", timeout=self.timeouts.global_,
                             what=f"disabling static NAT of {ip.address}", ipaddressid=ip.id)
        except CloudStackError as err:
            now = self.get(ip.id)
            if now is None or not now.static_nat or now.vm_id != ip.vm_id:
                self.gateway.log.info(f"Static NAT of {ip.address} went meanwhile ({err.errortext})")
                return False
            raise
        return True

    # -- firewall rules

    def firewall_rules(self, ip_id: str) -> list[FirewallRule]:
        """The ingress firewall rules of the public IP (without an IP: every one the account sees)."""
        rows = self.client.list_all("listFirewallRules", ipaddressid=ip_id or None, listall=True)
        return [FirewallRule.from_api(row) for row in rows]

    def firewall_rule(self, rule_id: str) -> FirewallRule | None:
        row = self.client.find("listFirewallRules", id=rule_id)
        return FirewallRule.from_api(row) if row else None

    def open_port(self, ip: PublicIp, port: int, cidr: str, *, made: Callable[[str], object]) -> str | None:
        """Open TCP ``port`` of the IP to ``cidr`` with a new firewall rule; its id, or None when the port is open
        to ``cidr`` already (then no rule is made).  ``made`` learns the id of every rule this call may have
        made as soon as it is known, also when it then fails (a failed job may leave its rule behind)."""
        where = f"port {port} on {ip.address}"
        before = [rule for rule in self.firewall_rules(ip.id) if rule.covers(port)]
        if any(cidr in rule.cidrs for rule in before):  # CloudStack would refuse ours as a conflict
            return None
        try:
            result = self.gateway.run("createFirewallRule", timeout=self.timeouts.global_, what=f"opening {where}",
                                      ipaddressid=ip.id, protocol="tcp", startport=port, endport=port, cidrlist=cidr)
            rule_id = (result.get("firewallrule") or {}).get("id")
        except CloudStackError as err:
            if err.errorcode == CONFLICT:
                return None
            if err.resource_id:
                made(err.resource_id)
            if not err.outcome_unknown:
                raise
            rule_id = self._lost_rule(ip, port, cidr, before, err)
            made(rule_id)
            self._await_creation("createFirewallRule", rule_id, f"opening {where}")
        if not rule_id:
            raise CloudStackError("createFirewallRule", f"answered without a rule for port {port}", kind="transport")
        made(str(rule_id))
        return str(rule_id)

    def delete_firewall_rule(self, rule_id: str) -> None:
        """Delete the rule; one that is gone already (431) is done."""
        try:
            self.gateway.run("deleteFirewallRule", timeout=self.timeouts.global_,
                             what=f"deleting firewall rule {rule_id}", id=rule_id)
        except CloudStackError as err:
            if err.errorcode != 431:
                raise

    def _lost_rule(self, ip: PublicIp, port: int, cidr: str, before: list[FirewallRule],
                   err: CloudStackError) -> str:
        """After a lost createFirewallRule answer: the rule it made, or ``err`` again when it made none.

        A firewall rule has no name or description to carry a mark.  It is the rule exactly as asked (TCP, the one
        port, open to ``cidr``) that was not on the IP before: CloudStack refuses a second rule with the same
        protocol, ports and CIDR, and none was there (``open_port``), so no one else can have made it since unless
        this call's request made nothing.
        """
        known = {rule.id for rule in before}
        made = [rule for rule in self.firewall_rules(ip.id) if rule.id not in known and rule.opens_exactly(port, cidr)]
        if len(made) != 1:
            raise err
        self.gateway.log.info(f"The answer to createFirewallRule was lost: firewall rule {made[0].id} for port "
                              f"{port} on {ip.address} is new, so this call made it")
        return made[0].id

    def _await_creation(self, command: str, resource_id: str, what: str) -> None:
        """After a lost answer to a create, wait for its job as ``run`` would have: the job applies the rule, and
        CreateFirewallRuleCmd.execute revokes it when that fails.  A create job's instance is the new resource, so
        listAsyncJobs finds it; without that (a role without listAsyncJobs, a purged job) the rule is taken as it
        is listed."""
        job = self.client.pending_job(command, {}, instance=resource_id)
        if job is not None:
            self.client.wait_for_job(job["jobid"], command=command, timeout=self.timeouts.global_, what=what)
