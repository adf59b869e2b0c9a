"""Public IPs, static NAT and firewall rules of the fake cloud (``cloud.addresses``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from cloudstack_cpi.cloudstack.models import FirewallRule, PublicIp

from . import FakeService, recorded


class FakeAddresses(FakeService):
    service_name = "addresses"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.items: dict[str, PublicIp] = {}
        self.rules: dict[str, FirewallRule] = {}

    # -- arranging and reading the fake's state

    def add(self, address: str, *, zone: str = "z1", network_id: str | None = "net-iso",
            vm_id: str | None = None) -> str:
        ip_id = self.cloud.new_id("ip")
        self.items[ip_id] = PublicIp(ip_id, address=address, zone_id=zone, network_id=network_id,
                                     static_nat=vm_id is not None, vm_id=vm_id)
        return ip_id

    def by_address(self, address: str) -> PublicIp:
        return next(ip for ip in self.items.values() if ip.address == address)

    def point(self, address: str, vm_id: str | None) -> None:
        """Statically NAT the IP to ``vm_id`` (None: release it), as another call would have."""
        ip = self.by_address(address)
        self.items[ip.id] = dataclasses.replace(ip, static_nat=vm_id is not None, vm_id=vm_id)

    def release_vm(self, vm_id: str) -> None:
        """What expunging a VM does to its static NAT."""
        for ip in list(self.items.values()):
            if ip.vm_id == vm_id:
                self.items[ip.id] = dataclasses.replace(ip, static_nat=False, vm_id=None)

    def _out(self, rule: FirewallRule) -> FirewallRule:
        return dataclasses.replace(rule, tags=self.cloud.tags.of("FirewallRule", rule.id))

    # -- the gateway's methods

    @recorded
    def allocated(self, zone_id: str) -> list[PublicIp]:
        return [ip for ip in self.items.values() if ip.zone_id == zone_id]

    @recorded
    def get(self, ip_id: str) -> PublicIp | None:
        return self.items.get(ip_id)

    @recorded
    def static_nat_to(self, vm_id: str, zone_id: str) -> list[PublicIp]:
        return [ip for ip in self.items.values() if ip.static_nat and ip.vm_id == vm_id and ip.zone_id == zone_id]

    @recorded
    def enable_static_nat(self, ip: PublicIp, vm_id: str, network_id: str | None) -> None:
        self.items[ip.id] = dataclasses.replace(self.items[ip.id], static_nat=True, vm_id=vm_id)

    @recorded
    def disable_static_nat(self, ip: PublicIp) -> bool:
        current = self.items.get(ip.id)
        if current is None or not current.static_nat or current.vm_id != ip.vm_id:
            return False
        self.items[ip.id] = dataclasses.replace(current, static_nat=False, vm_id=None)
        return True

    @recorded
    def firewall_rules(self, ip_id: str) -> list[FirewallRule]:
        return [self._out(rule) for rule in self.rules.values() if rule.ip_id == ip_id]

    @recorded
    def firewall_rule(self, rule_id: str) -> FirewallRule | None:
        rule = self.rules.get(rule_id)
        return None if rule is None else self._out(rule)

    @recorded
    def open_port(self, ip: PublicIp, port: int, cidr: str, *, made: Callable[[str], object]) -> str | None:
        if any(r.ip_id == ip.id and r.covers(port) and cidr in r.cidrs for r in self.rules.values()):
            return None
        rule_id = self.cloud.new_id("fw")
        self.rules[rule_id] = FirewallRule(rule_id, ip_id=ip.id, protocol="tcp", start_port=port, end_port=port,
                                           cidrs=(cidr,))
        made(rule_id)
        return rule_id

    @recorded
    def delete_firewall_rule(self, rule_id: str) -> None:
        self.rules.pop(rule_id, None)
        self.cloud.tags.forget("FirewallRule", rule_id)
