"""Load balancer rules and their members.

Rules owned here:
- timeouts: every job ``global``;
- create: the caller's ``description`` (a unique token) goes on the rule from its creation on.  After a lost
  answer the rule is the one on the IP with that name and description: CloudStack stores the rule before it
  answers (CreateLoadBalancerRuleCmd is a BaseAsyncCreateCmd: ``create()`` persists, the job then applies), and
  with ``openfirewall=false`` the job only reads it back, so there is nothing to wait for;
- commands on an existing rule (assign, remove, delete) are recovered from their job after a lost answer
  (``Gateway.run``);
- remove is idempotent: the rule or the membership gone meanwhile (431 before the job; the job's own refusal,
  errorcode 530 on CloudStack 4.11 to 4.19 and 431 later, once the VM is no member) is done; so is deleting a
  rule that is gone (431).
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import CloudStackError
from .gateway import Service
from .models import LoadBalancerRule


class LoadBalancers(Service):
    # -- reading

    def get(self, rule_id: str) -> LoadBalancerRule | None:
        return self._one("listLoadBalancerRules", LoadBalancerRule.from_api, rule_id)

    def on_ip(self, ip_id: str) -> list[LoadBalancerRule]:
        """The rules listening on the public IP."""
        rows = self.client.list_all("listLoadBalancerRules", publicipid=ip_id, listall=True)
        return [LoadBalancerRule.from_api(row) for row in rows]

    def of_vm(self, vm_id: str) -> list[LoadBalancerRule]:
        """The rules the VM is a member of."""
        rows = self.client.list_all("listLoadBalancerRules", virtualmachineid=vm_id, listall=True)
        return [LoadBalancerRule.from_api(row) for row in rows]

    def members(self, rule_id: str) -> list[str]:
        """The ids of the rule's member VMs; none when the rule is gone (431 for an id of no rule: another call
        deleted it after it was listed, as parallel delete_vm calls of its last members do)."""
        try:
            rows = self.client.list("listLoadBalancerRuleInstances", id=rule_id)
        except CloudStackError as err:
            if err.errorcode == 431:
                return []
            raise
        return [str(vm.get("id")) for vm in rows]

    # -- changing

    def create(self, *, name: str, description: str, ip_id: str, public_port: int, private_port: int,
               algorithm: str, network_id: str | None, made: Callable[[str], object]) -> LoadBalancerRule:
        """A new rule on the IP, without opening the IP's firewall (the caller opens it if it wants).  ``made``
        learns the id of every rule this call may have made as soon as it is known, also when it then fails (a
        failed job may leave its rule behind).  A lost answer is recovered by ``description``."""
        try:
            result = self.gateway.run(
                "createLoadBalancerRule", timeout=self.timeouts.global_, what=f"creating load balancer rule {name}",
                name=name, description=description, publicipid=ip_id, publicport=public_port,
                privateport=private_port, algorithm=algorithm, networkid=network_id, openfirewall=False)
        except CloudStackError as err:
            if err.resource_id:
                made(err.resource_id)
            if not err.outcome_unknown:
                raise
            mine = [rule for rule in self.on_ip(ip_id) if rule.name == name and rule.description == description]
            if not mine:
                raise
            rule = mine[0]
            self.gateway.log.info(f"The answer to createLoadBalancerRule was lost: rule {rule.id} on "
                                  f"{rule.public_ip or ip_id} carries this call's description, so this call made it")
            made(rule.id)
            return rule
        row = result.get("loadbalancer") or {}
        if not row.get("id"):
            raise CloudStackError("createLoadBalancerRule", f"answered without a rule for {name}", kind="transport")
        rule = LoadBalancerRule.from_api(row)
        made(rule.id)
        return rule

    def assign(self, rule: LoadBalancerRule, vm_id: str) -> None:
        """Make the VM a member of the rule."""
        self.gateway.run("assignToLoadBalancerRule", timeout=self.timeouts.global_,
                         what=f"adding VM {vm_id} to load balancer rule {rule.name}", id=rule.id,
                         virtualmachineids=vm_id, ours=lambda result: self._member(rule.id, vm_id))

    def remove(self, rule: LoadBalancerRule, vm_id: str) -> bool:
        """Take the VM out of the rule; False when it was no member any more (or the rule is gone)."""
        try:
            self.gateway.run("removeFromLoadBalancerRule", timeout=self.timeouts.global_,
                             what=f"removing VM {vm_id} from load balancer rule {rule.name}", id=rule.id,
                             virtualmachineids=vm_id, ours=lambda result: not self._member(rule.id, vm_id))
        except CloudStackError as err:
            if err.errorcode == 431 or (err.kind == "job" and not self._member(rule.id, vm_id)):
                return False
            raise
        return True

    def delete(self, rule: LoadBalancerRule) -> None:
        """Delete the rule (CloudStack revokes its members with it); one that is gone already (431) is done."""
        try:
            self.gateway.run("deleteLoadBalancerRule", timeout=self.timeouts.global_,
                             what=f"deleting load balancer rule {rule.name} {rule.id}", id=rule.id)
        except CloudStackError as err:
            if err.errorcode != 431:
                raise

    def _member(self, rule_id: str, vm_id: str) -> bool:
        """Whether the VM is (still) in the rule, as listed now."""
        if self.get(rule_id) is None:
            return False
        return vm_id in self.members(rule_id)
