"""Choosing what operators name (zones, offerings, networks, templates) among the gateway's models.

Operators may name things by name or by id; both are accepted.  A missing
catalogue item is a configuration mistake, reported as a CloudError that lists
what does exist.  A missing *resource* (a VM or volume named by a CID) is not
decided here: the gateway answers None and the action chooses the BOSH error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from .errors import CloudError


class _Named(Protocol):
    """What operators choose among: a gateway model with an id and a name."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)

def pick(items: Iterable[T], wanted: str, *, kind: str, where: str = "") -> T:
    """The item whose id is ``wanted``, else the one item with that name; a CloudError listing what exists."""
    items = list(items)
    for item in items:
        if item.id == wanted:
            return item
    matches = [item for item in items if item.name == wanted]
    if len(matches) == 1:
        return matches[0]
    location = f" in {where}" if where else ""
    if len(matches) > 1:
        ids = ", ".join(item.id for item in matches)
        raise CloudError(f"{kind} '{wanted}' is ambiguous{location}: several have that name ({ids}); use the id")
    available = sorted({item.name for item in items if item.name})
    listing = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "") if available else "none"
    raise CloudError(f"{kind} '{wanted}' not found{location} (available: {listing})")


def only_named(items: Iterable[T], name: str, *, kind: str) -> T | None:
    """The one item whose name is exactly ``name``, or None.

    A ``name=`` filter is not an equality test on every list command (listVirtualMachines and listSnapshots
    match substrings, and MySQL compares case-insensitively), so the answer is filtered again here; two
    exact matches mean the name does not say which resource is meant, which is an error, never a choice.
    """
    matches = [item for item in items if item.name == name]
    if len(matches) > 1:
        ids = ", ".join(sorted(item.id for item in matches))
        raise CloudError(f"{kind} name '{name}' is ambiguous: {len(matches)} have exactly that name ({ids})")
    return matches[0] if matches else None


LIGHT_SUFFIX = " light"


def stemcell_template_id(stemcell_cid: str) -> str:
    """The template behind a stemcell CID: light stemcells are ``"<template id> light"``."""
    return stemcell_cid[: -len(LIGHT_SUFFIX)] if stemcell_cid.endswith(LIGHT_SUFFIX) else stemcell_cid


def gib(size_mib: int) -> int:
    """BOSH counts MiB, CloudStack GiB: round up, never down (1 GiB at least)."""
    return max(1, -(-int(size_mib) // 1024))


def first(items: Iterable[T], **match: Any) -> T | None:
    for item in items:
        if all(getattr(item, k) == v for k, v in match.items()):
            return item
    return None


def older_than(created: str, seconds: float, now: float) -> bool:
    """Whether ``created`` (CloudStack's ``2026-11-30T08:00:00+0000``) lies more than ``seconds`` before ``now``;
    a missing or unreadable time is not old (what cannot be dated is never taken as abandoned)."""
    from datetime import datetime

    try:
        stamp = datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return False
    return now - stamp > seconds
