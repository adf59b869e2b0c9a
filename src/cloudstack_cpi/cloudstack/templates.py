"""Templates: register, upload slots, create from a snapshot, copy to zones, per-zone rows, delete.

A template has one row per zone in ``listTemplates``; each row carries that zone's ``status`` ("Download
Complete" when usable, progress texts such as "45% Downloaded" or "Installing Template" meanwhile, and texts
naming an error when the secondary storage gave up) and ``isready``.

Rules owned here:
- gone: a template without rows (an unknown id answers 431) is gone; a delete of what is gone is done, also when
  the template goes while deleteTemplate's job runs (``_gone``);
- every create (``getUploadParamsForTemplate``, ``registerTemplate``, ``createTemplate``) carries the caller's
  unique name and goes through ``Gateway.create_recoverable``: after a lost answer, an answer naming no template,
  a failed job or an interruption, the record is found by that name and deleted before the error goes on.  None
  of them is sent twice (``getUploadParamsForTemplate`` creates a record on every call: not safe to repeat);
- timeouts: ``createTemplate`` and ``copyTemplate`` jobs ``poll_template``, ``deleteTemplate`` ``global``;
- ``copyTemplate`` is started, not waited for, so that the copies to several zones run side by side; a copy whose
  answer was lost is not recovered (the caller deletes the whole template, every zone's copy with it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CloudStackError
from .gateway import Creation, Service, no_result
from .models import details_of, no_tags, tags_of, text

if TYPE_CHECKING:
    from .gateway import Pending

READY_STATUS = "Download Complete"
# Status texts meaning the secondary storage stopped trying (CloudStack and its SSVM word these freely).
FAILED_STATUS = re.compile(r"error|fail|abandon|invalid|corrupt|not supported|unable", re.IGNORECASE)


def status_failed(status: str | None) -> bool:
    """Whether a template row's status says the secondary storage gave up."""
    return bool(status and status != READY_STATUS and FAILED_STATUS.search(status))


@dataclass(frozen=True, slots=True)
class Template:
    """One zone's row of a template (``listTemplates`` answers a row per zone the template is in)."""

    id: str
    name: str = ""
    display_text: str = ""
    zone_id: str = ""
    zone_name: str = ""
    status: str = ""                       # that zone's download/upload status
    is_ready: bool = False                 # isready
    hypervisor: str = ""
    format: str = ""
    created: str = ""
    os_type_name: str = ""                 # ostypename: the guest OS, which picks the KVM root disk's bus
    details: Mapping[str, str] = field(default_factory=no_tags, compare=False)   # rootDiskController and the like
    tags: Mapping[str, str] = field(default_factory=no_tags, compare=False)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Template:
        return cls(id=text(row.get("id")), name=text(row.get("name")), display_text=text(row.get("displaytext")),
                   zone_id=text(row.get("zoneid")), zone_name=text(row.get("zonename")) or text(row.get("zoneid")),
                   status=text(row.get("status")), is_ready=row.get("isready") is True,
                   hypervisor=text(row.get("hypervisor")), format=text(row.get("format")),
                   created=text(row.get("created")), os_type_name=text(row.get("ostypename")),
                   details=details_of(row),
                   tags=tags_of(row))

    @property
    def ready(self) -> bool:
        """Usable in this zone."""
        return self.is_ready or self.status == READY_STATUS

    @property
    def failed(self) -> bool:
        """The secondary storage gave up on it in this zone (its status names an error)."""
        return status_failed(self.status)


@dataclass(frozen=True, slots=True)
class TemplateUpload:
    """``getUploadParamsForTemplate``'s answer: the new template's id and a one-time signed slot on the secondary
    storage VM.  ``signature``, ``metadata`` and ``expires`` go back as the headers ``X-signature``, ``X-metadata``
    and ``X-expires``, spelt exactly so (some SSVM versions compare them case-sensitively)."""

    id: str                                # the template's
    post_url: str
    signature: str = field(repr=False)
    metadata: str = field(repr=False)
    expires: str = ""

    @classmethod
    def from_api(cls, answer: Mapping[str, Any]) -> TemplateUpload:
        params = answer.get("getuploadparams") or answer
        try:
            return cls(str(params["id"]), str(params["postURL"]), str(params["signature"]), str(params["metadata"]),
                       str(params["expires"]))
        except KeyError as missing:
            raise CloudStackError("getUploadParamsForTemplate", f"answered without {missing}",
                                  kind="transport") from None

    @property
    def headers(self) -> dict[str, str]:
        return {"X-signature": self.signature, "X-metadata": self.metadata, "X-expires": self.expires}


@dataclass(frozen=True)
class NewTemplate:
    """What a new template is called and how it boots, whichever command makes it."""

    name: str                              # unique: the handle after a lost answer
    display_text: str
    os_type_id: str
    requires_hvm: bool
    public: bool
    bits: int = 64
    password_enabled: bool = False
    # What it is tagged with beside its create, with the mark of a template not yet handed over
    # (gateway.UNCONFIRMED_TAG), which the caller takes off once the template is ready everywhere.
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "displaytext": self.display_text, "ostypeid": self.os_type_id, "bits": self.bits,
                "requireshvm": self.requires_hvm, "ispublic": self.public, "passwordenabled": self.password_enabled}


def _registered(answer: dict) -> Template | None:
    """registerTemplate answers its rows (a list, or one row); None when they name no template."""
    rows = answer.get("template") or []
    if isinstance(rows, dict):
        rows = [rows]
    first = next((row for row in rows if isinstance(row, dict) and row.get("id")), None)
    return Template.from_api(first) if first else None


def _job_template(result: dict) -> Template | None:
    row = result.get("template") or {}
    if isinstance(row, list):
        row = row[0] if row else {}
    return Template.from_api(row) if isinstance(row, dict) and row.get("id") else None


def _gone(err: CloudStackError) -> bool:
    """The template (or its copy in a zone) is not there: refused before the job (431), or by deleteTemplate's job,
    whose InvalidParameterValueException is errorcode 530 on CloudStack 4.11 to 4.19 and 431 later."""
    text = (err.errortext or "").lower()
    return (err.errorcode == 431 or err.kind == "job") and (
        "unable to find" in text or "does not exist" in text or "not available" in text)


class Templates(Service):
    # -- reading

    def rows(self, template_id: str) -> list[Template]:
        """The template's rows, one per zone it is in; empty when it does not exist (gone)."""
        try:
            found = self.client.list("listTemplates", templatefilter="self", id=template_id)
        except CloudStackError as err:
            if err.errorcode == 431:
                return []
            raise
        return [Template.from_api(row) for row in found]

    def in_zone(self, template_id: str, zone_id: str) -> Template | None:
        """The template's row in one zone (one ``listTemplates``), or None when it is not (or no longer) there."""
        return next((row for row in self.rows(template_id) if row.zone_id == zone_id), None)

    def named(self, name: str) -> list[Template]:
        """The account's templates named exactly ``name``, one row each (a name filter is not trusted to be exact,
        and without a zone a template answers a row per zone)."""
        rows = self.client.list_all("listTemplates", templatefilter="self", name=name, listall=True)
        distinct = {row.id: row for row in map(Template.from_api, rows) if row.name == name}
        return list(distinct.values())

    def unconfirmed(self) -> list[Template]:
        """The account's templates still marked as never handed over (``gateway.UNCONFIRMED_TAG``), one row each,
        checked here again (a server that ignored the tag filter must not make a caller act on other templates)."""
        rows = self._unconfirmed("listTemplates", Template.from_api, templatefilter="self")
        return list({row.id: row for row in rows}.values())

    def executable_by_id(self, template_id: str, zone_id: str | None = None) -> Template | None:
        """A template the account may deploy from (its own, shared, featured, public) with this id, usable in the
        zone's listing; None when there is none."""
        row = self.client.find("listTemplates", templatefilter="executable", id=template_id, zoneid=zone_id)
        return Template.from_api(row) if row else None

    def executable_named(self, name: str, zone_id: str | None = None) -> list[Template]:
        """Templates the account may deploy from named exactly ``name``, one row each (choosing among them is the
        caller's: ``lookups.only_named``)."""
        rows = self.client.list("listTemplates", templatefilter="executable", name=name, zoneid=zone_id)
        distinct = {row.id: row for row in map(Template.from_api, rows) if row.name == name}
        return list(distinct.values())

    # -- creating: every create is found by its unique name after a lost answer, and leaves nothing when it fails

    def request_upload(self, new: NewTemplate, *, image_format: str, hypervisor: str, zone_id: str,
                       send: Callable[[TemplateUpload], object] | None = None) -> TemplateUpload:
        """getUploadParamsForTemplate: the template record and a signed slot to POST its bytes to.  The slot's
        signature and metadata are kept out of every log line from the moment they are read.  ``send`` gets the
        slot while the template's tags job runs (the POST need not wait for it: ``with_made``); when it raises,
        the template is deleted."""
        upload: TemplateUpload = self.gateway.create_recoverable(self._creation(
            new, "getUploadParamsForTemplate", what=f"asking to upload template {new.name}", parse=self._upload,
            format=image_format, hypervisor=hypervisor, zoneid=zone_id, isextractable=True), with_made=send)
        return upload

    def register(self, new: NewTemplate, *, image_format: str, hypervisor: str, zone_id: str, url: str) -> Template:
        """registerTemplate: the template record, which the secondary storage then downloads from ``url``; its row
        in the zone."""
        registered: Template = self.gateway.create_recoverable(self._creation(
            new, "registerTemplate", what=f"registering template {new.name}", parse=_registered,
            format=image_format, hypervisor=hypervisor, zoneid=zone_id, isextractable=True, url=url))
        return registered

    def create_from_snapshot(self, snapshot_id: str, new: NewTemplate) -> Template:
        """createTemplate from a volume snapshot, waited for (``poll_template``); the template's row."""
        created: Template = self.gateway.create_recoverable(self._creation(
            new, "createTemplate", what="creating the template", parse=_job_template,
            timeout=self.timeouts.poll_template, snapshotid=snapshot_id))
        return created

    def _creation(self, new: NewTemplate, command: str, *, what: str, parse: Any, timeout: float | None = None,
                  **params: Any) -> Creation[Any]:
        return Creation(
            kind="template", name=new.name, command=command, params={**new.params(), **params},
            timeout=self.timeouts.global_ if timeout is None else timeout, what=what, parse=parse,
            find_named=lambda: self.named(new.name), remove=self.delete, gone=lambda i: not self.rows(i),
            resource_type="Template", tags=dict(new.tags))

    def _upload(self, answer: dict) -> TemplateUpload:
        upload = TemplateUpload.from_api(answer)
        self.gateway.log.add_secret(upload.signature)
        self.gateway.log.add_secret(upload.metadata)
        return upload

    # -- zones

    def start_copy(self, template_id: str, *, source_zone_id: str, zone_id: str, what: str) -> Pending[None]:
        """copyTemplate into one zone, not waited for (copies to several zones run side by side); the copy is
        usable once the zone's row is ready, which ``in_zone`` shows."""
        return self.gateway.start("copyTemplate", timeout=self.timeouts.poll_template, what=what, parse=no_result,
                                  id=template_id, sourcezoneid=source_zone_id, destzoneid=zone_id)

    # -- deleting

    def delete(self, template_id: str) -> bool:
        """Delete the template in every zone and wait; False when it was gone already.

        ``deleteTemplate`` without a zone removes every zone's copy; if the cloud refuses that, the template is
        deleted zone by zone from the rows listed first.  A template that goes meanwhile is deleted.
        """
        existing = self.rows(template_id)
        if not existing:
            return False
        log = self.gateway.log
        what = f"deleting template {template_id}"
        timeout = self.timeouts.global_
        try:
            self.gateway.run("deleteTemplate", timeout=timeout, what=what, id=template_id)
        except CloudStackError as err:
            if _gone(err):
                return True
            if err.kind == "timeout":
                raise
            log.warning(f"Deleting template {template_id} in all zones failed ({err}); deleting it zone by zone")
            for row in existing:
                try:
                    self.gateway.run("deleteTemplate", timeout=timeout, what=what, id=template_id, zoneid=row.zone_id)
                except CloudStackError as zone_err:
                    if not _gone(zone_err):
                        raise
        log.info(f"Deleted template {template_id}")
        return True

    def discard(self, template_id: str) -> bool:
        """Best-effort removal of a template a failed call made (every zone); never raises, True when it is gone."""
        return self.gateway.discard(f"half-made template '{template_id}'", lambda: self.delete(template_id),
                                    lambda: not self.rows(template_id))
