"""Who the CPI's keys belong to and what they may do: the cloud's capabilities, accounts, projects, APIs.

Reads only; ``validate`` and ``cloudstack.project`` use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import CloudStackError
from .gateway import Service

# listAccounts' accounttype of root (1), domain (2) and resource domain (4) admins: AccountManager.isAdmin.
ADMIN_ACCOUNT_TYPES = frozenset({"1", "2", "4"})


@dataclass(frozen=True, slots=True)
class Capabilities:
    version: str
    user_may_expunge: bool          # allowuserexpungerecovervm: this account's value of allow.user.expunge.recover.vm
    users_see_all_accounts: bool    # allowuserviewalldomainaccounts

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> Capabilities:
        return cls(version=str(row.get("cloudstackversion") or "unknown"),
                   user_may_expunge=row.get("allowuserexpungerecovervm") is True,
                   users_see_all_accounts=bool(row.get("allowuserviewalldomainaccounts")))


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    state: str = "Active"

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> Project:
        return cls(id=str(row.get("id")), name=str(row.get("name") or ""), state=str(row.get("state") or "Active"))


class Account(Service):
    def capabilities(self) -> Capabilities:
        return Capabilities.from_api(self.client.call("listCapabilities").get("capability") or {})

    def is_admin(self) -> bool:
        """Whether the keys are an admin's: a user lists only its own account (unless the cloud lets users see
        all of their domain's, in which case this cannot tell and answers False)."""
        types = {str(row.get("accounttype")) for row in self.client.list("listAccounts")}
        return bool(types & ADMIN_ACCOUNT_TYPES)

    def projects(self, *, name: str | None = None, project_id: str | None = None) -> list[Project]:
        """The projects this account belongs to (listProjects shows no others), by name or id."""
        rows = self.client.list("listProjects", name=name, id=project_id, listall=True)
        return [Project.from_api(row) for row in rows]

    def offers_api(self, name: str) -> bool | None:
        """Whether this cloud offers the API ``name`` to these keys; None when it cannot be told.

        ListApisCmd answers a name it does not know, or the caller's role may not call, with a 530 ("... unable to
        find an api by that name ..."), never with an empty list.
        """
        try:
            return bool(self.client.list("listApis", name=name))
        except CloudStackError as err:
            if "unable to find an api by that name" in err.errortext.lower():
                return False
            return None
