"""Load balancer rules and their members in the fake cloud (``cloud.load_balancers``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from cloudstack_cpi.cloudstack.models import LoadBalancerRule

from . import FakeService, api_error, recorded


class FakeLoadBalancers(FakeService):
    service_name = "load_balancers"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.items: dict[str, LoadBalancerRule] = {}
        self.member_ids: dict[str, list[str]] = {}

    def _out(self, rule: LoadBalancerRule) -> LoadBalancerRule:
        return dataclasses.replace(rule, tags=self.cloud.tags.of("LoadBalancer", rule.id))

    def add(self, name: str, ip_id: str, *, public_port: int = 80, private_port: int = 8080,
            algorithm: str = "roundrobin", members: tuple[str, ...] = (), rule_id: str | None = None,
            tags: dict[str, str] | None = None) -> str:
        """A rule on the public IP ``ip_id`` (an operator's unless ``tags`` say otherwise)."""
        rule_id = rule_id or self.cloud.new_id("lb")
        address = self.cloud.addresses.items.get(ip_id)
        self.items[rule_id] = LoadBalancerRule(
            rule_id, name=name, public_ip_id=ip_id, public_ip=address.address if address else "",
            public_port=public_port, private_port=private_port, algorithm=algorithm,
            network_id=address.network_id if address else None)
        self.member_ids[rule_id] = list(members)
        if tags:
            self.cloud.tags.put("LoadBalancer", rule_id, tags)
        return rule_id

    def forget_vm(self, vm_id: str) -> None:
        """What expunging a VM does to its memberships."""
        for members in self.member_ids.values():
            if vm_id in members:
                members.remove(vm_id)

    @recorded
    def get(self, rule_id: str) -> LoadBalancerRule | None:
        rule = self.items.get(rule_id)
        return None if rule is None else self._out(rule)

    @recorded
    def on_ip(self, ip_id: str) -> list[LoadBalancerRule]:
        return [self._out(rule) for rule in self.items.values() if rule.public_ip_id == ip_id]

    @recorded
    def of_vm(self, vm_id: str) -> list[LoadBalancerRule]:
        return [self._out(self.items[rule_id]) for rule_id, members in self.member_ids.items() if vm_id in members]

    @recorded
    def members(self, rule_id: str) -> list[str]:
        return list(self.member_ids.get(rule_id, []))

    @recorded
    def create(self, *, name: str, description: str, ip_id: str, public_port: int, private_port: int,
               algorithm: str, network_id: str | None, made: Callable[[str], object]) -> LoadBalancerRule:
        if any(r.public_ip_id == ip_id and r.public_port == public_port for r in self.items.values()):
            raise api_error("createLoadBalancerRule", f"The range specified, {public_port}, conflicts with an "
                                                      "existing rule", 537)
        rule_id = self.cloud.new_id("lb")
        address = self.cloud.addresses.items.get(ip_id)
        self.items[rule_id] = LoadBalancerRule(
            rule_id, name=name, description=description, public_ip_id=ip_id,
            public_ip=address.address if address else "", public_port=public_port, private_port=private_port,
            algorithm=algorithm, network_id=network_id)
        self.member_ids[rule_id] = []
        made(rule_id)
        return self._out(self.items[rule_id])

    @recorded
    def assign(self, rule: LoadBalancerRule, vm_id: str) -> None:
        if rule.id not in self.items:
            raise api_error("assignToLoadBalancerRule", f"Unable to find load balancer rule {rule.id}")
        self.member_ids[rule.id].append(vm_id)

    @recorded
    def remove(self, rule: LoadBalancerRule, vm_id: str) -> bool:
        members = self.member_ids.get(rule.id, [])
        if vm_id not in members:
            return False
        members.remove(vm_id)
        return True

    @recorded
    def delete(self, rule: LoadBalancerRule) -> None:
        self.items.pop(rule.id, None)
        self.member_ids.pop(rule.id, None)
        self.cloud.tags.forget("LoadBalancer", rule.id)
