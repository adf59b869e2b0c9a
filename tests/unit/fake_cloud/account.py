"""The account behind the fake cloud's keys (``cloud.account``)."""

from __future__ import annotations

from cloudstack_cpi.cloudstack.account import Capabilities, Project

from . import FakeService, recorded


class FakeAccount(FakeService):
    service_name = "account"

    def __init__(self, cloud) -> None:
        super().__init__(cloud)
        self.caps = Capabilities(version="4.18.0.0", user_may_expunge=True, users_see_all_accounts=False)
        self.admin = False
        self.project_list: list[Project] = []
        self.apis = {"getUploadParamsForTemplate"}

    @recorded
    def capabilities(self) -> Capabilities:
        return self.caps

    @recorded
    def is_admin(self) -> bool:
        return self.admin

    @recorded
    def projects(self, *, name: str | None = None, project_id: str | None = None) -> list[Project]:
        return [p for p in self.project_list if name in (None, p.name) and project_id in (None, p.id)]

    @recorded
    def offers_api(self, name: str) -> bool | None:
        return name in self.apis
