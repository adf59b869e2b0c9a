"""Templates of the fake cloud (``cloud.templates``): one row per zone a template is in, as the real service answers.

A new template's row starts as ``start_status`` (``"Download Complete"`` unless a test says otherwise); a copy
appears in its zone ready.  Executable templates are the fake's own and those added with ``add(owned=False)``.
"""

from __future__ import annotations

import dataclasses

from cloudstack_cpi.cloudstack.templates import NewTemplate, Template, TemplateUpload

from . import FakeService, recorded


class _Done:
    def wait(self, recover=None) -> None:
        return None


class FakeTemplates(FakeService):
    service_name = "templates"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.rows_by_id: dict[str, dict[str, Template]] = {}   # template id -> zone id -> row
        self.owned: set[str] = set()
        self.start_status = "Download Complete"

    # -- arranging and reading the fake's state

    def add(self, name: str, *, zones: tuple[str, ...] = ("z1",), status: str = "Download Complete",
            owned: bool = True) -> str:
        template_id = self.cloud.new_id("tpl")
        for zone in zones:
            self._put(Template(template_id, name=name, zone_id=zone, zone_name=self.cloud.catalogue.zone(zone).name,
                               status=status, is_ready=status == "Download Complete"))
        if owned:
            self.owned.add(template_id)
        return template_id

    def set_status(self, template_id: str, zone_id: str, status: str) -> None:
        row = self.rows_by_id[template_id][zone_id]
        self._put(dataclasses.replace(row, status=status, is_ready=status == "Download Complete"))

    def _put(self, row: Template) -> None:
        self.rows_by_id.setdefault(row.id, {})[row.zone_id] = row

    def _out(self, row: Template) -> Template:
        return dataclasses.replace(row, tags=self.cloud.tags.of("Template", row.id))

    def _new(self, new: NewTemplate, zone_id: str) -> Template:
        template_id = self.cloud.new_id("tpl")
        self.owned.add(template_id)
        self._put(Template(template_id, name=new.name, display_text=new.display_text, zone_id=zone_id,
                           zone_name=self.cloud.catalogue.zone(zone_id).name, status=self.start_status,
                           is_ready=self.start_status == "Download Complete"))
        return self._out(self.rows_by_id[template_id][zone_id])

    # -- the service

    @recorded
    def rows(self, template_id: str) -> list[Template]:
        return [self._out(row) for row in self.rows_by_id.get(template_id, {}).values()]

    @recorded
    def in_zone(self, template_id: str, zone_id: str) -> Template | None:
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
    def request_upload(self, new: NewTemplate, *, image_format: str, hypervisor: str, zone_id: str
                       ) -> TemplateUpload:
        created = self._new(new, zone_id)
        return TemplateUpload(created.id, f"https://ssvm.test/upload/{created.id}", "signature", "metadata",
                              "2030-01-01T00:00:00.000Z")

    @recorded
    def register(self, new: NewTemplate, *, image_format: str, hypervisor: str, zone_id: str, url: str) -> Template:
        return self._new(new, zone_id)

    @recorded
    def create_from_snapshot(self, snapshot_id: str, new: NewTemplate) -> Template:
        return self._new(new, self.cloud.catalogue.zone_list[0].id)  # the snapshot's zone: the fake's first

    @recorded
    def start_copy(self, template_id: str, *, source_zone_id: str, zone_id: str, what: str) -> _Done:
        source = self.rows_by_id[template_id][source_zone_id]
        self._put(dataclasses.replace(source, zone_id=zone_id, zone_name=self.cloud.catalogue.zone(zone_id).name,
                                      status="Download Complete", is_ready=True))
        return _Done()

    @recorded
    def delete(self, template_id: str) -> bool:
        rows = self.rows_by_id.pop(template_id, None)
        self.owned.discard(template_id)
        self.cloud.tags.forget("Template", template_id)
        return bool(rows)

    @recorded
    def discard(self, template_id: str) -> bool:
        self.delete(template_id)
        return True
