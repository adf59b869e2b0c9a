"""BOSH metadata as CloudStack tags.

CloudStack rejects empty values (431) and a key already set on a resource (the
job fails), and keeps keys and values to 255 characters.  Setting metadata
therefore replaces only the tags whose values changed, and sanitises what the
server would refuse instead of failing the deploy over a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .cloudstack.errors import CloudStackError

if TYPE_CHECKING:
    from .cloudstack.client import Client

MAX_LENGTH = 255
EMPTY_VALUE = "-"

# Tags the CPI itself sets, so that a later call (any process) can tell what it made.
DIRECTOR_KEY = "director_uuid"     # the director that owns the resource
AGENT_KEY = "agent_id"             # on VMs
ROLE_KEY = "cpi_role"              # on volumes: "ephemeral" (removed with its VM) or "persistent"
ROLE_EPHEMERAL = "ephemeral"
ROLE_PERSISTENT = "persistent"
VM_KEY = "cpi_vm_id"               # on ephemeral volumes: their VM, so a repeated delete_vm finds them when it is gone
CREATED_KEY = "cpi_created"        # "true" on rules/groups the CPI created and may remove when unused


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


def apply(client: Client, resource_type: str, resource_id: str, metadata: Mapping[str, Any], *, timeout: float,
          existing: list[dict] | None = None) -> None:
    """Make ``metadata`` the resource's tags (for those keys), touching only what changed.

    ``existing`` is the resource's ``tags`` list when the caller already has it
    (list responses embed it), saving a listTags call.
    """
    wanted = sanitise(metadata)
    if existing is None:
        existing = _listed(client, resource_type, resource_id)
    current = {tag["key"]: tag.get("value", "") for tag in existing}
    what = f"tagging {resource_type} {resource_id}"
    for attempt in (1, 2):
        to_delete, to_create = plan(current, wanted)
        try:
            if to_delete:
                client.run_job("deleteTags", timeout=timeout, what=what, resourceids=resource_id,
                               resourcetype=resource_type, tags=to_delete)
            if to_create:
                client.run_job("createTags", timeout=timeout, what=what, resourceids=resource_id,
                               resourcetype=resource_type, tags=to_create)
            return
        except CloudStackError as err:
            # A job refused ("tag K already on ..."): the tags may have changed meanwhile, e.g. by the still-running
            # job of an earlier attempt whose answer was lost.  Plan once more from what is there now; a refusal
            # of the same plan stands.
            if err.kind != "job" or attempt == 2:
                raise
            current = {tag["key"]: tag.get("value", "") for tag in _listed(client, resource_type, resource_id)}
            if plan(current, wanted) == (to_delete, to_create):
                raise


def _listed(client: Client, resource_type: str, resource_id: str) -> list[dict]:
    return client.list("listTags", resourcetype=resource_type, resourceid=resource_id, listall=True)


def as_dict(resource: Mapping[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag.get("value", "") for tag in resource.get("tags") or []}
