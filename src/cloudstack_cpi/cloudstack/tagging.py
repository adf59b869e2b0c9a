"""Tags of CloudStack resources: what the server accepts, and changing only what differs.

CloudStack rejects empty values (431) and a key already set on a resource (the
job fails), and keeps keys and values to 255 characters.  Setting tags therefore
replaces only the tags whose values changed, and sanitises what the server would
refuse instead of failing a deploy over a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import CloudStackError
from .gateway import Service
from .models import Tag

if TYPE_CHECKING:
    from .gateway import Gateway, Pending

MAX_LENGTH = 255
EMPTY_VALUE = "-"


def sanitise(metadata: Mapping[str, Any]) -> dict[str, str]:
    """String keys and values CloudStack accepts; keys differing only in case collapse to the last."""
    tags: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key, value in metadata.items():
        name = str(key).strip()[:MAX_LENGTH]
        if not name:
            continue
        text = "" if value is None else (value if isinstance(value, str) else _json_text(value))
        text = text.strip()[:MAX_LENGTH] or EMPTY_VALUE
        previous = seen.get(name.lower())
        if previous is not None:
            tags.pop(previous, None)
        seen[name.lower()] = name
        tags[name] = text
    return tags


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    import json

    return json.dumps(value, sort_keys=True)


def plan(existing: Mapping[str, str], wanted: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(tags to delete, tags to create) so that ``wanted`` holds afterwards; other tags stay."""
    current = {key.lower(): (key, value) for key, value in existing.items()}
    to_delete: dict[str, str] = {}
    to_create: dict[str, str] = {}
    for key, value in wanted.items():
        found = current.get(key.lower())
        if found is None:
            to_create[key] = value
        elif found[1] != value or found[0] != key:
            to_delete[found[0]] = found[1]
            to_create[key] = value
    return to_delete, to_create


class Tagging(Service):
    """createTags, deleteTags and listTags, for every resource type (``UserVm``, ``Volume``, ``Snapshot``, ...)."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.timeout = gateway.timeouts.global_

    def start(self, resource_type: str, resource_id: str | None, tags: Mapping[str, str]) -> Pending[None]:
        """createTags not waited for (so that it runs beside another job); nothing is sent for no tags."""
        from .gateway import Pending, no_result

        what = f"tagging {resource_type} {resource_id}"
        if not tags:
            return Pending(self.client, "createTags", {}, self.timeout, what, no_result)
        return self.gateway.start("createTags", timeout=self.timeout, what=what, parse=no_result,
                                  resourceids=resource_id, resourcetype=resource_type, tags=dict(tags))

    def listed(self, resource_type: str, resource_id: str) -> dict[str, str]:
        rows = self.client.list("listTags", resourcetype=resource_type, resourceid=resource_id, listall=True)
        return {tag.key: tag.value for tag in map(Tag.from_api, rows)}

    def apply(self, resource_type: str, resource_id: str, metadata: Mapping[str, Any], *,
              existing: Mapping[str, str] | None = None) -> None:
        """Make ``metadata`` the resource's tags (for those keys), touching only what changed.

        ``existing`` is the resource's tags when the caller already has them (list answers embed them), saving a
        listTags call.
        """
        wanted = sanitise(metadata)
        current = dict(existing) if existing is not None else self.listed(resource_type, resource_id)
        what = f"tagging {resource_type} {resource_id}"
        for attempt in (1, 2):
            to_delete, to_create = plan(current, wanted)
            try:
                if to_delete:
                    self.gateway.run("deleteTags", timeout=self.timeout, what=what, resourceids=resource_id,
                                     resourcetype=resource_type, tags=to_delete)
                if to_create:
                    self.gateway.run("createTags", timeout=self.timeout, what=what, resourceids=resource_id,
                                     resourcetype=resource_type, tags=to_create)
                return
            except CloudStackError as err:
                # A job refused ("tag K already on ..."): the tags may have changed meanwhile, e.g. by the
                # still-running job of an earlier attempt whose answer was lost.  Plan once more from what is there
                # now; a refusal of the same plan stands.
                if err.kind != "job" or attempt == 2:
                    raise
                current = self.listed(resource_type, resource_id)
                if plan(current, wanted) == (to_delete, to_create):
                    raise

    def confirm(self, resource_type: str, resource_id: str) -> None:
        """Take the mark of a resource not yet handed over (``gateway.UNCONFIRMED_TAG``) off, just before the call
        answers.  deleteTags refuses a tag that is not there (TaggedResourceManagerImpl.deleteTags: "Unable to find
        any tags which conform to specified delete parameters"), so after a failure or a lost answer the tags are
        read: the mark gone is done."""
        from .gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE

        try:
            self.gateway.run("deleteTags", timeout=self.timeout, what=f"confirming {resource_type} {resource_id}",
                             resourceids=resource_id, resourcetype=resource_type,
                             tags={UNCONFIRMED_TAG: UNCONFIRMED_VALUE})
        except CloudStackError as err:
            if (err.kind == "job" or err.outcome_unknown) and UNCONFIRMED_TAG not in self.listed(resource_type,
                                                                                                  resource_id):
                return
            raise

