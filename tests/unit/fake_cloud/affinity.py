"""Affinity groups of the fake cloud (``cloud.affinity``)."""

from __future__ import annotations

import dataclasses

from cloudstack_cpi.cloudstack.models import AffinityGroup

from . import FakeService, recorded


class FakeAffinity(FakeService):
    service_name = "affinity"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.items: dict[str, AffinityGroup] = {}
        self.member_ids: dict[str, list[str]] = {}

    def add(self, name: str, kind: str = "host anti-affinity") -> str:
        group_id = self.cloud.new_id("ag")
        self.items[group_id] = AffinityGroup(group_id, name=name, type=kind)
        return group_id

    def join(self, group_ids, vm_id: str) -> None:
        for group_id in group_ids:
            self.member_ids.setdefault(group_id, []).append(vm_id)

    def _out(self, group: AffinityGroup) -> AffinityGroup:
        members = [vm for vm in self.member_ids.get(group.id, []) if vm in self.cloud.vms.items]
        return dataclasses.replace(group, vm_ids=tuple(members))

    @recorded
    def get(self, group_id: str) -> AffinityGroup | None:
        group = self.items.get(group_id)
        return None if group is None else self._out(group)

    @recorded
    def named(self, name: str) -> list[AffinityGroup]:
        return [self._out(group) for group in self.items.values() if group.name == name]

    @recorded
    def create(self, name: str, kind: str) -> AffinityGroup:
        return self._out(self.items[self.add(name, kind)])

    @recorded
    def delete_unused(self, group_id: str) -> bool:
        group = self.items.get(group_id)
        if group is None or self._out(group).vm_ids:
            return False
        del self.items[group_id]
        return True
