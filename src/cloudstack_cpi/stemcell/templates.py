"""Stemcell templates: names, tags, waiting until a zone's copy is ready, copying to zones.

What CloudStack says about a template (its per-zone rows, which statuses mean ready or failed, how it is
created, copied and deleted) is the gateway's (``cloudstack.templates``); this module decides what a stemcell's
template is called and labelled, and how long and how visibly the CPI waits for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cloudstack.errors import CloudStackError
from ..errors import CloudError

if TYPE_CHECKING:
    from ..cloudstack.models import Zone
    from ..cloudstack.templates import Template, Templates

NAME_TAG = "stemcell_name"
VERSION_TAG = "stemcell_version"
MAX_NAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# CloudStack's hypervisor names for the stemcell's ``hypervisor`` property.
HYPERVISORS = {
    "xen": "XenServer", "xenserver": "XenServer", "xcp-ng": "XenServer", "xcpng": "XenServer",
    "kvm": "KVM", "vmware": "VMware", "vsphere": "VMware", "esxi": "VMware",
}


def cloudstack_hypervisor(value: str | None) -> str:
    key = (value or "").strip().lower()
    if key not in HYPERVISORS:
        raise CloudError(f"Stemcell hypervisor {value!r} is not supported: use xen (XenServer), kvm or vmware")
    return HYPERVISORS[key]


@dataclass(frozen=True)
class Naming:
    """What a new template is called and labelled."""

    name: str          # CloudStack template name: readable and unique
    displaytext: str   # "<stemcell name> <version>"
    stemcell_name: str
    version: str


def naming(stemcell_name: str | None, version: str | None, unique: str | None = None) -> Naming:
    """``bosh-...-go_agent-1.622-1a2b3c4d``: the stemcell's name and version plus a short unique part.

    The unique part tells apart re-uploads of the same stemcell (CloudStack
    allows duplicate names, people do not) and makes leftovers of a failed
    create recognisable.
    """
    stemcell_name = (stemcell_name or "stemcell").strip() or "stemcell"
    version = str(version if version is not None else "0").strip() or "0"
    unique = unique or os.urandom(4).hex()  # what uuid4().hex[:8] was, without importing uuid and platform
    base = _UNSAFE.sub("-", f"{stemcell_name}-{version}").strip("-") or "stemcell"
    base = base[: MAX_NAME - len(unique) - 1].rstrip("-")
    return Naming(f"{base}-{unique}", f"{stemcell_name} {version}", stemcell_name, version)


def template_tags(naming_: Naming, director_uuid: str | None, env: Mapping[str, Any] | None) -> dict[str, str]:
    """The template's tags: the director's tags (API v3 ``env.tags``) and the CPI's own keys, which win."""
    # Imported here: ``tags`` brings the gateway's models, which create_stemcell loads after its read-ahead started.
    from .. import tags as tags_module

    wanted: dict[str, Any] = {}
    extra = (env or {}).get("tags") if isinstance(env, Mapping) else None
    if isinstance(extra, Mapping):
        wanted.update(extra)
    wanted[NAME_TAG] = naming_.stemcell_name
    wanted[VERSION_TAG] = naming_.version
    if director_uuid:
        wanted[tags_module.DIRECTOR_KEY] = director_uuid
    return tags_module.sanitise(wanted)


@dataclass
class Waiter:
    """Polls a template's row in one zone until it is ready, failed, gone or out of time.

    It is ``Gateway.poll_until`` with intervals that grow (``first``, times ``factor``, capped at ``cap``) so short
    uploads finish promptly and long downloads cost few calls.  Status changes
    are logged, at most one line per ``log_every`` seconds (and always the last).
    """

    templates: Templates
    log: Any
    timeout: float
    first: float = 0.2
    factor: float = 1.5
    cap: float = 10.0
    log_every: float = 10.0

    def wait(self, template_id: str, zone_id: str, *, what: str, zone_name: str = "") -> Template:
        clock = self.templates.gateway.clock  # the gateway's waiter, its clock and pauses
        started = clock()
        where = zone_name or zone_id
        shown: dict[str, Any] = {"status": None, "at": None}  # the last status logged, and when

        def settled(row: Template | None) -> bool:
            if row is None or row.ready or row.failed:
                return True
            now = clock()
            if row.status != shown["status"] and (shown["at"] is None or now - shown["at"] >= self.log_every):
                self.log.info(f"{what}: template {template_id} in zone '{where}': {row.status or 'no status yet'}")
                shown.update(status=row.status, at=now)
            return False

        row, _ = self.templates.gateway.poll_until(lambda: self.templates.in_zone(template_id, zone_id),
                                                      settled, timeout=self.timeout, intervals=self._intervals())
        if row is None:
            raise CloudError(f"{what}: template {template_id} disappeared from zone '{where}' "
                             f"(last status: {shown['status'] or 'none'})")
        if row.ready:
            self.log.info(f"{what}: template {template_id} is ready in zone '{where}' "
                          f"after {clock() - started:.1f} s")
            return row
        if row.failed:
            raise CloudError(f"{what}: CloudStack reports for template {template_id} in zone '{where}': {row.status}")
        raise CloudError(f"{what}: template {template_id} not ready in zone '{where}' within "
                         f"{self.timeout:g} s (cloudstack.timeout.poll_template); last status: {row.status or 'none'}")

    def _intervals(self) -> Iterator[float]:
        interval = self.first
        while True:
            yield interval
            interval = min(self.cap, interval * self.factor)


def copy_to(waiter: Waiter, template_id: str, source_zone: Zone, zones: list[Zone]) -> None:
    """copyTemplate into every zone of ``zones`` at once, then wait until each copy is ready there.

    The copies are independent jobs (one per destination zone), so they run side by side: the wall time is the
    slowest copy's, not their sum (issue 17)."""
    started = []
    for zone in zones:
        what = f"Copying template to zone '{zone.name}'"
        waiter.log.info(f"{what}: from zone '{source_zone.name}'")
        try:
            started.append((zone, what, waiter.templates.start_copy(template_id, source_zone_id=source_zone.id,
                                                                    zone_id=zone.id, what=what)))
        except CloudStackError as err:
            raise CloudError(f"{what}: {err}", err.is_transient) from None
    for zone, what, pending in started:
        try:
            pending.wait()
        except CloudStackError as err:
            raise CloudError(f"{what}: {err}", err.is_transient) from None
        waiter.wait(template_id, zone.id, what=what, zone_name=zone.name)
