"""Stemcell templates in CloudStack: names, tags, waiting until ready, copying to zones, deleting.

A template has one row per zone in ``listTemplates``; each row carries the
zone's ``status`` ("Download Complete" when usable, progress texts such as
"45% Downloaded" or "Installing Template" meanwhile, and texts naming an
error when the secondary storage gave up) and ``isready``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import tags as tags_module
from ..cloudstack.errors import CloudStackError
from ..errors import CloudError

if TYPE_CHECKING:
    from ..cloudstack.client import Client

READY_STATUS = "Download Complete"
# Status texts meaning the secondary storage stopped trying (CloudStack and its SSVM word these freely).
FAILED_STATUS = re.compile(r"error|fail|abandon|invalid|corrupt|not supported|unable", re.IGNORECASE)
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
    unique = unique or uuid.uuid4().hex[:8]
    base = _UNSAFE.sub("-", f"{stemcell_name}-{version}").strip("-") or "stemcell"
    base = base[: MAX_NAME - len(unique) - 1].rstrip("-")
    return Naming(f"{base}-{unique}", f"{stemcell_name} {version}", stemcell_name, version)


def template_tags(naming_: Naming, director_uuid: str | None, env: Mapping[str, Any] | None) -> dict[str, str]:
    """The template's tags: the director's tags (API v3 ``env.tags``) and the CPI's own keys, which win."""
    wanted: dict[str, Any] = {}
    extra = (env or {}).get("tags") if isinstance(env, Mapping) else None
    if isinstance(extra, Mapping):
        wanted.update(extra)
    wanted[NAME_TAG] = naming_.stemcell_name
    wanted[VERSION_TAG] = naming_.version
    if director_uuid:
        wanted[tags_module.DIRECTOR_KEY] = director_uuid
    return tags_module.sanitise(wanted)


def rows(client: Client, template_id: str) -> list[dict]:
    """The template's per-zone rows (empty when it does not exist)."""
    try:
        return client.list("listTemplates", templatefilter="self", id=template_id)
    except CloudStackError as err:
        if err.errorcode == 431:
            return []
        raise


def status_failed(status: str | None) -> bool:
    return bool(status and status != READY_STATUS and FAILED_STATUS.search(status))


@dataclass
class Waiter:
    """Polls a template's row in one zone until it is ready, failed, gone or out of time.

    Intervals grow (``first``, times ``factor``, capped at ``cap``) so short
    uploads finish promptly and long downloads cost few calls.  Status changes
    are logged, at most one line per ``log_every`` seconds (and always the last).
    """

    client: Any
    log: Any
    timeout: float
    first: float = 0.2
    factor: float = 1.5
    cap: float = 10.0
    log_every: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def wait(self, template_id: str, zone_id: str, *, what: str, zone_name: str = "") -> dict:
        started = self.clock()
        interval = self.first
        last_status, last_logged = None, None
        where = zone_name or zone_id
        while True:
            row = next((r for r in rows(self.client, template_id) if r.get("zoneid") == zone_id), None)
            now = self.clock()
            if row is None:
                raise CloudError(f"{what}: template {template_id} disappeared from zone '{where}' "
                                 f"(last status: {last_status or 'none'})")
            status = str(row.get("status") or "")
            if row.get("isready") is True or status == READY_STATUS:
                self.log.info(f"{what}: template {template_id} is ready in zone '{where}' "
                              f"after {now - started:.1f} s")
                return row
            if status_failed(status):
                raise CloudError(f"{what}: CloudStack reports for template {template_id} in zone '{where}': {status}")
            if status != last_status and (last_logged is None or now - last_logged >= self.log_every):
                self.log.info(f"{what}: template {template_id} in zone '{where}': {status or 'no status yet'}")
                last_logged = now
                last_status = status
            if now - started >= self.timeout:
                raise CloudError(f"{what}: template {template_id} not ready in zone '{where}' within "
                                 f"{self.timeout:g} s (cloudstack.timeout.poll_template); "
                                 f"last status: {status or 'none'}")
            self.sleep(max(0.0, min(interval, self.timeout - (now - started))))
            interval = min(self.cap, interval * self.factor)


def copy_to(client: Client, waiter: Waiter, template_id: str, source_zone: dict, zones: list[dict], *,
            timeout: float) -> None:
    """copyTemplate into every zone of ``zones`` at once, then wait until each copy is ready there.

    The copies are independent jobs (one per destination zone), so they run side by side: the wall time is the
    slowest copy's, not their sum (issue 17)."""
    started = []
    for zone in zones:
        what = f"Copying template to zone '{zone['name']}'"
        client.log.info(f"{what}: from zone '{source_zone['name']}'")
        try:
            started.append((zone, what, client.call("copyTemplate", id=template_id, sourcezoneid=source_zone["id"],
                                                    destzoneid=zone["id"])))
        except CloudStackError as err:
            raise CloudError(f"{what}: {err}", err.is_transient) from None
    for zone, what, answer in started:
        try:
            client.finish_job(answer, command="copyTemplate", timeout=timeout, what=what)
        except CloudStackError as err:
            raise CloudError(f"{what}: {err}", err.is_transient) from None
        waiter.wait(template_id, zone["id"], what=what, zone_name=zone["name"])


def delete(client: Client, template_id: str, *, timeout: float, log) -> bool:
    """Delete the template in every zone and wait; False when it was already gone.

    ``deleteTemplate`` without a zone removes every zone's copy; if the cloud
    refuses that, the template is deleted zone by zone from the rows listed
    first.
    """
    existing = rows(client, template_id)
    if not existing:
        return False
    what = f"deleting template {template_id}"
    try:
        client.run_job("deleteTemplate", timeout=timeout, what=what, id=template_id)
    except CloudStackError as err:
        if _gone(err):
            return True
        if err.kind == "timeout":
            raise
        log.warning(f"Deleting template {template_id} in all zones failed ({err}); deleting it zone by zone")
        for row in existing:
            try:
                client.run_job("deleteTemplate", timeout=timeout, what=what, id=template_id,
                               zoneid=row.get("zoneid"))
            except CloudStackError as zone_err:
                if not _gone(zone_err):
                    raise
    log.info(f"Deleted template {template_id}")
    return True


def delete_quietly(client: Client, template_id: str, *, timeout: float, log) -> None:
    """Cleanup after a failed create: never hides the original error."""
    try:
        delete(client, template_id, timeout=timeout, log=log)
    except Exception as exc:  # noqa: BLE001 - the create's own error is what the director must see
        log.warning(f"Could not remove half-made template {template_id}: {exc}")


def _gone(err: CloudStackError) -> bool:
    """The template (or its copy in a zone) is not there: refused before the job (431), or by deleteTemplate's job,
    whose InvalidParameterValueException is errorcode 530 on CloudStack 4.11 to 4.19 and 431 later."""
    text = (err.errortext or "").lower()
    return (err.errorcode == 431 or err.kind == "job") and (
        "unable to find" in text or "does not exist" in text or "not available" in text)
