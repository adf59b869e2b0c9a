"""The tags this CPI sets on what it creates, so that a later call (any process) can tell what it made.

What CloudStack accepts as tags, and changing only what differs, belong to the
gateway (``cloudstack/tagging.py``); ``sanitise`` and ``plan`` are its rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .cloudstack.tagging import EMPTY_VALUE, MAX_LENGTH, plan, sanitise

__all__ = ["EMPTY_VALUE", "MAX_LENGTH", "as_dict", "plan", "sanitise"]

DIRECTOR_KEY = "director_uuid"     # the director that owns the resource
AGENT_KEY = "agent_id"             # on VMs
ROLE_KEY = "cpi_role"              # on volumes: "ephemeral" (removed with its VM) or "persistent"
ROLE_EPHEMERAL = "ephemeral"
ROLE_PERSISTENT = "persistent"
VM_KEY = "cpi_vm_id"               # on ephemeral volumes: their VM, so a repeated delete_vm finds them when it is gone
CREATED_KEY = "cpi_created"        # "true" on rules/groups the CPI created and may remove when unused


def as_dict(resource: Mapping[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag.get("value", "") for tag in resource.get("tags") or []}
