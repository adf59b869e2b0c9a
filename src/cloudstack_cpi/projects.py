"""``cloudstack.project``: the CloudStack project a CPI acts in, named by id or by name.

Projects let several accounts share resources and quotas; none of the earlier CloudStack CPIs supported them.
The client adds the project's id to every command that takes one (``client.PROJECT_SCOPED``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import CloudError

if TYPE_CHECKING:
    from .cloudstack.gateway import Gateway

# CloudStack ids are UUIDs; a value of that shape is taken as the project's id without asking.
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def resolve(cloud: Gateway, project: str) -> str:
    """The project's id: ``project`` itself when it is an id, else the one project of that name the account
    belongs to (listProjects lists only those, and matches names exactly)."""
    if _UUID.match(project):
        return project
    found = [p for p in cloud.account.projects(name=project) if p.name.lower() == project.lower()]
    if len(found) != 1:
        what = "no project" if not found else f"{len(found)} projects"
        raise CloudError(f"Finding project '{project}' (cloudstack.project): {what} of that name visible to this "
                         "account; name a project the account belongs to, or give its id")
    return found[0].id
