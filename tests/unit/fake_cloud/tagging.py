"""Tags of the fake cloud's resources (``cloud.tags``): kept per (resource type, id)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudstack_cpi.cloudstack.gateway import UNCONFIRMED_TAG
from cloudstack_cpi.cloudstack.tagging import sanitise

from . import FakeService, recorded


class _Done:
    def wait(self) -> None:
        return None


class FakeTagging(FakeService):
    service_name = "tags"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.by_resource: dict[tuple[str, str], dict[str, str]] = {}

    def of(self, resource_type: str, resource_id: str) -> dict[str, str]:
        return dict(self.by_resource.get((resource_type, resource_id), {}))

    def put(self, resource_type: str, resource_id: str, tags: Mapping[str, str]) -> None:
        self.by_resource.setdefault((resource_type, resource_id), {}).update(tags)

    def forget(self, resource_type: str, resource_id: str) -> None:
        self.by_resource.pop((resource_type, resource_id), None)

    @recorded
    def start(self, resource_type: str, resource_id: str | None, tags: Mapping[str, str]) -> _Done:
        if resource_id is not None:
            self.put(resource_type, resource_id, tags)
        return _Done()

    @recorded
    def listed(self, resource_type: str, resource_id: str) -> dict[str, str]:
        return self.of(resource_type, resource_id)

    @recorded
    def apply(self, resource_type: str, resource_id: str, metadata: Mapping[str, Any], *,
              existing: Mapping[str, str] | None = None) -> None:
        current = self.by_resource.setdefault((resource_type, resource_id), {})
        for key, value in sanitise(metadata).items():
            for old in [k for k in current if k.lower() == key.lower()]:
                del current[old]
            current[key] = value

    @recorded
    def confirm(self, resource_type: str, resource_id: str) -> None:
        self.by_resource.get((resource_type, resource_id), {}).pop(UNCONFIRMED_TAG, None)
