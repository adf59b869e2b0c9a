"""Affinity groups: find by name, create, delete when unused.

Rules owned here:
- timeouts: every job ``global``;
- a name filter is not trusted to be exact (``named`` filters again); choosing one is ``lookups.only_named``'s;
- delete is idempotent and careful: a group that is gone (before or during the delete), or that has members
  (another VM joined it meanwhile), is left alone; a lost answer is recovered from its job (``Gateway.run``).
"""

from __future__ import annotations

from .errors import CloudStackError
from .gateway import Service
from .models import AffinityGroup


class Affinity(Service):
    def get(self, group_id: str) -> AffinityGroup | None:
        return self._one("listAffinityGroups", AffinityGroup.from_api, group_id)

    def named(self, name: str) -> list[AffinityGroup]:
        """Every group named exactly ``name``."""
        return [group for group in map(AffinityGroup.from_api, self.client.list("listAffinityGroups", name=name))
                if group.name == name]

    def create(self, name: str, kind: str) -> AffinityGroup:
        """A new group of type ``kind`` ("host anti-affinity", ...).  After a failure (a lost answer too) a group
        of that name may exist: the caller looks (``named``)."""
        result = self.gateway.run("createAffinityGroup", timeout=self.timeouts.global_,
                                  what=f"creating affinity group {name}", name=name, type=kind)
        row = result.get("affinitygroup") or {}
        if not row.get("id"):
            raise CloudStackError("createAffinityGroup", f"answered no id for affinity group '{name}'",
                                  kind="transport")
        return AffinityGroup.from_api(row)

    def delete_unused(self, group_id: str) -> bool:
        """Delete the group unless it is gone or has members; True when this call deleted it."""
        group = self.get(group_id)
        if group is None or group.vm_ids:
            return False
        return self.gateway.delete("deleteAffinityGroup", timeout=self.timeouts.global_,
                                   what=f"deleting affinity group {group_id}", gone=lambda: self.get(group_id) is None,
                                   label=f"Affinity group {group_id}", id=group_id)
