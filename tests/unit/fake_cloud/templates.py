"""Templates of the fake cloud (``cloud.templates``): one row per zone a template is in, as the real service answers.

A new template's row shows ``new_statuses`` (``("Download Complete",)`` unless a test says otherwise), one per read
of its rows (``rows``, ``in_zone``: what a waiter polls), the last one staying; ``show`` scripts an existing
template the same way, and ``GONE`` in a script takes the template's rows away (deleted behind the waiter's back).
A copy appears in its zone ready.  Executable templates are the fake's own and those added with ``add(owned=False)``.
An upload slot (``request_upload``) points under ``UPLOAD_URL``; the secondary storage VM behind it is the fake
client's FakeHttp (``cloud.http``, tests/fake_http.py), where ``request_upload`` registers ``ssvm``, the answer a
test chose, for the new slot's URL (each slot's URL holds the template's id, unknown before the call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from cloudstack_cpi.cloudstack.gateway import UNCONFIRMED_TAG, UNCONFIRMED_VALUE
from cloudstack_cpi.cloudstack.templates import READY_STATUS, NewTemplate, Template, TemplateUpload
from tests.fake_http import Request

from . import FakeService, recorded

UPLOAD_URL = "https://ssvm.test/upload/"
GONE = None  # in a status script: the template's rows are gone from then on


class _Done:
    def wait(self, recover=None) -> None:
        return None


class FakeTemplates(FakeService):
    service_name = "templates"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.rows_by_id: dict[str, dict[str, Template]] = {}   # template id -> zone id -> row
        self.owned: set[str] = set()
        self.new_statuses: tuple[str | None, ...] = (READY_STATUS,)
        # How the secondary storage VM answers the POST to each new upload slot (a FakeHttp callback, registered on
        # cloud.http for the slot's URL); None: nothing answers it (the POST fails with a TransportError).
        self.ssvm: Callable[[Request], Any] | None = None
        self._scripts: dict[str, tuple[str, list[str | None]]] = {}   # template id -> (zone id, statuses to come)

    # -- arranging and reading the fake's state

    def add(self, name: str, *, zones: tuple[str, ...] = ("z1",), status: str = READY_STATUS,
            owned: bool = True, os_type_name: str = "Ubuntu 22.04 LTS", details: dict | None = None) -> str:
        template_id = self.cloud.new_id("tpl")
        for zone in zones:
            self._put(Template(template_id, name=name, zone_id=zone, zone_name=self.cloud.catalogue.zone(zone).name,
                               status=status, is_ready=status == READY_STATUS, os_type_name=os_type_name,
                               details=details or {}))
        if owned:
            self.owned.add(template_id)
        return template_id

    def set_status(self, template_id: str, zone_id: str, status: str) -> None:
        row = self.rows_by_id[template_id][zone_id]
        self._put(dataclasses.replace(row, status=status, is_ready=status == READY_STATUS))

    def show(self, template_id: str, *statuses: str | None, zone: str = "z1") -> None:
        """The template's row in ``zone`` shows ``statuses`` one per read (the last one staying); ``GONE``: its
        rows are gone from that read on."""
        self._scripts[template_id] = (zone, list(statuses))

    def made(self) -> list[str]:
        """Ids of the templates that exist (in any zone)."""
        return sorted(template_id for template_id, rows in self.rows_by_id.items() if rows)

    def _advance(self, template_id: str) -> None:
        zone_id, script = self._scripts.get(template_id, ("", []))
        if not script or template_id not in self.rows_by_id:
            return
        status = script.pop(0) if len(script) > 1 else script[0]
        if status is GONE:
            self.rows_by_id.pop(template_id, None)
        elif zone_id in self.rows_by_id[template_id]:
            self.set_status(template_id, zone_id, status)

    def _put(self, row: Template) -> None:
        self.rows_by_id.setdefault(row.id, {})[row.zone_id] = row

    def _out(self, row: Template) -> Template:
        return dataclasses.replace(row, tags=self.cloud.tags.of("Template", row.id))

    def _new(self, new: NewTemplate, zone_id: str) -> Template:
        template_id = self.cloud.new_id("tpl")
        self.owned.add(template_id)
        first = self.new_statuses[0] or ""
        self._put(Template(template_id, name=new.name, display_text=new.display_text, zone_id=zone_id,
                           zone_name=self.cloud.catalogue.zone(zone_id).name, status=first,
                           is_ready=first == READY_STATUS))
        if len(self.new_statuses) > 1:
            self.show(template_id, *self.new_statuses, zone=zone_id)
        # tagged beside its create, marked as not handed over until the caller confirms it (Gateway.create_recoverable)
        self.cloud.tags.put("Template", template_id, {**new.tags, UNCONFIRMED_TAG: UNCONFIRMED_VALUE})
        return self._out(self.rows_by_id[template_id][zone_id])

    # -- the service

    @recorded
    def rows(self, template_id: str) -> list[Template]:
        self._advance(template_id)
        return [self._out(row) for row in self.rows_by_id.get(template_id, {}).values()]

    @recorded
    def in_zone(self, template_id: str, zone_id: str) -> Template | None:
        self._advance(template_id)
        row = self.rows_by_id.get(template_id, {}).get(zone_id)
        return self._out(row) if row else None

    @recorded
    def named(self, name: str) -> list[Template]:
        return [self._out(next(iter(rows.values()))) for template_id, rows in self.rows_by_id.items()
                if template_id in self.owned and rows and next(iter(rows.values())).name == name]

    @recorded
    def executable_by_id(self, template_id: str, zone_id: str | None = None) -> Template | None:
        rows = self.rows_by_id.get(template_id, {})
        row = rows.get(zone_id) if zone_id else next(iter(rows.values()), None)
        return self._out(row) if row else None

    @recorded
    def executable_named(self, name: str, zone_id: str | None = None) -> list[Template]:
        found = []
        for rows in self.rows_by_id.values():
            row = rows.get(zone_id) if zone_id else next(iter(rows.values()), None)
            if row is not None and row.name == name:
                found.append(self._out(row))
        return found

    @recorded
    def request_upload(self, new: NewTemplate, *, image_format: str, hypervisor: str, zone_id: str,
                       send: Callable[[TemplateUpload], object] | None = None) -> TemplateUpload:
        created = self._new(new, zone_id)
        upload = TemplateUpload(created.id, f"{UPLOAD_URL}{created.id}", f"signature-of-{created.id}",
                                f"metadata-of-{created.id}", "2030-01-01T00:00:00.000Z")
        if self.ssvm is not None:
            self.cloud.http.add_callback("POST", upload.post_url, self.ssvm)
        if send is not None:
            send(upload)  # as the real one does, before the tags are waited for (the action removes it after a failure)
        return upload

    @recorded
    def register(self, new: NewTemplate, *, image_format: str, hypervisor: str, zone_id: str, url: str) -> Template:
        return self._new(new, zone_id)

    @recorded
    def create_from_snapshot(self, snapshot_id: str, new: NewTemplate) -> Template:
        """In the zone of the snapshot's volume (the fake's first zone when the fake does not know it)."""
        snapshot = self.cloud.snapshots.items.get(snapshot_id)
        volume = self.cloud.volumes.items.get(snapshot.volume_id) if snapshot else None
        return self._new(new, volume.zone_id if volume else self.cloud.catalogue.zone_list[0].id)

    @recorded
    def start_copy(self, template_id: str, *, source_zone_id: str, zone_id: str, what: str) -> _Done:
        source = self.rows_by_id[template_id][source_zone_id]
        self._put(dataclasses.replace(source, zone_id=zone_id, zone_name=self.cloud.catalogue.zone(zone_id).name,
                                      status=READY_STATUS, is_ready=True))
        return _Done()

    @recorded
    def delete(self, template_id: str) -> bool:
        rows = self.rows_by_id.pop(template_id, None)
        self.owned.discard(template_id)
        self._scripts.pop(template_id, None)
        self.cloud.tags.forget("Template", template_id)
        return bool(rows)

    @recorded
    def discard(self, template_id: str) -> bool:
        """As the real one: ``delete`` through the gateway's ``discard`` (tried again on transient failures, never
        raising); True when the template is gone."""
        return self.cloud.discard(f"half-made template '{template_id}'", lambda: self.delete(template_id),
                                  lambda: not self.rows_by_id.get(template_id))

    @recorded
    def unconfirmed(self) -> list[Template]:
        return [self._out(next(iter(rows.values()))) for template_id, rows in self.rows_by_id.items()
                if rows and self.cloud.tags.of("Template", template_id).get(UNCONFIRMED_TAG) == UNCONFIRMED_VALUE]
