"""Command registry, request context and response helpers shared by the command modules."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CS_SERVER_API, ApiError, invalid_uuid, invalid_value, missing_param, param_error

REGISTRY: dict[str, Command] = {}

# response names that do not follow "<command>response"
RESPONSE_NAMES = {"getuploadparamsfortemplate": "postuploadtemplateresponse"}

_MAP_KEY = re.compile(r"^([A-Za-z0-9_]+)\[(\d+)\]\.([A-Za-z0-9_.\-]+)$")


@dataclass
class Command:
    name: str
    handler: Callable
    cmd_class: str
    admin_only: bool = False   # refused to a "user" account (the User role has no permission for it)


def command(name: str, cmd_class: str | None = None, admin_only: bool = False):
    def deco(fn):
        default_class = f"org.apache.cloudstack.api.command.user.{name[0].upper()}{name[1:]}Cmd"
        REGISTRY[name.lower()] = Command(name, fn, cmd_class or default_class, admin_only)
        return fn
    return deco


def response_name(cmd_lower: str) -> str:
    return RESPONSE_NAMES.get(cmd_lower, cmd_lower + "response")


def parse_params(raw: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[int, dict[str, str]]]]:
    """ParamUnpackWorker: names lower-cased; ``name[idx].field`` becomes a map entry keeping ``field``'s case."""
    params: dict[str, str] = {}
    maps: dict[str, dict[int, dict[str, str]]] = {}
    for key, value in raw.items():
        if "[" in key or "]" in key:
            m = _MAP_KEY.match(key)
            if not m:
                raise ApiError(430, f"Unable to decode parameter {key}; if specifying an object array, please use "
                                    f"parameter[index].field=XXX, e.g. userGroupList[0].group=httpGroup", CS_SERVER_API)
            name, idx, field = m.group(1).lower(), int(m.group(2)), m.group(3)
            maps.setdefault(name, {}).setdefault(idx, {})[field] = value
        else:
            params[key.lower()] = value
    return params, maps


class Ctx:
    def __init__(self, sim, state, spec: dict, cmd: Command, params: dict, maps: dict, method: str):
        self.sim = sim
        self.state = state
        self.spec = spec
        self.command = cmd
        self.name = cmd.name
        self.lname = cmd.name.lower()
        self.p = params
        self.maps = maps
        self.method = method

    # ---------------------------------------------------------------- validation before dispatch
    def validate(self) -> None:
        for prm in self.spec.get("params", []):
            n = prm["name"]
            if prm["required"]:
                present = n in self.maps if prm["type"] == "map" else (n in self.p and self.p[n] != "")
                if not present:
                    raise missing_param(self.lname, n)
        for prm in self.spec.get("params", []):
            n, t = prm["name"], prm["type"]
            if n not in self.p or self.p[n] == "":
                continue
            v = self.p[n]
            if t in ("integer", "long", "short"):
                try:
                    int(v)
                except ValueError:
                    raise invalid_value(self.lname, n, v) from None
            elif t == "uuid" and v != "-1" and v not in self.state.known:
                raise invalid_uuid(self.lname, n, v)

    # ---------------------------------------------------------------- accessors
    def has(self, name: str) -> bool:
        return name in self.p and self.p[name] != ""

    def s(self, name: str, default: str | None = None) -> str | None:
        v = self.p.get(name)
        return default if v is None or v == "" else v

    def b(self, name: str, default: bool = False) -> bool:
        v = self.p.get(name)
        if v is None or v == "":
            return default
        return v.strip().lower() == "true"

    def i(self, name: str, default: int | None = None) -> int | None:
        v = self.p.get(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise invalid_value(self.lname, name, v) from None

    def lst(self, name: str) -> list[str]:
        v = self.p.get(name)
        if not v:
            return []
        return [x.strip() for x in v.split(",") if x.strip()]

    def map_entries(self, name: str) -> list[dict[str, str]]:
        m = self.maps.get(name, {})
        return [m[i] for i in sorted(m)]

    def merged_map(self, name: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.map_entries(name):
            out.update(e)
        return out

    def tag_filter(self) -> list[tuple[str, str | None]]:
        return [(e["key"], e.get("value")) for e in self.map_entries("tags") if e.get("key")]

    def find(self, table: dict, param: str, notfound: str, required: bool = True, value: str | None = None):
        v = value if value is not None else self.s(param)
        if v is None:
            if required:
                raise missing_param(self.lname, param)
            return None
        obj = table.get(v)
        if obj is None:
            if v not in self.state.known:
                raise invalid_uuid(self.lname, param, v)
            raise param_error(notfound.format(id=v))
        return obj

    # ---------------------------------------------------------------- async
    def submit(self, *, instancetype: str | None, instanceid: str | None, complete, rollback=None,
               create: bool = False, variant: str | None = None, seconds: float | None = None) -> dict:
        """Queue the command's job; ``variant`` picks its duration in the timing profile (timing.py)."""
        job = self.state.submit_job(command=self.name, cmd_class=self.command.cmd_class, instancetype=instancetype,
                                    instanceid=instanceid, complete=complete, rollback=rollback, variant=variant,
                                    seconds=seconds)
        if create:
            return {"id": instanceid, "jobid": job.id}
        return {"jobid": job.id}

    def submit_checked(self, checks, *, instancetype: str | None, instanceid: str | None,
                       create: bool = False) -> dict:
        """An async command whose own checks run inside the job, as the real server runs the command's execute()
        (and the manager's checks in it) in the job, after ParamProcessWorker passed the request.

        ``checks()`` runs now, under the state lock: the job's first step.  It returns ``(complete, rollback,
        variant)`` and may reserve what the job will use.  An ApiError it raises is not the request's answer but
        the job's: the job fails (jobstatus 2, jobresultcode = errorcode, as ApiAsyncJobDispatcher.runJob records
        it) after the timing's ``rejected`` duration, and nothing was changed."""
        try:
            complete, rollback, variant = checks()
        except ApiError as refused:
            error = refused  # ``refused`` is unbound once the except clause ends; the job raises it later

            def fail():
                raise error
            return self.submit(instancetype=instancetype, instanceid=instanceid, complete=fail, create=create,
                               seconds=self.state.jobs.duration("rejected"))
        return self.submit(instancetype=instancetype, instanceid=instanceid, complete=complete, rollback=rollback,
                           create=create, variant=variant)


def project_scope(ctx: Ctx):
    """The project a request acts in: its ``projectid`` when the command takes one (else the parameter is ignored,
    as ApiDispatcher ignores unknown parameters), checked as AccountManagerImpl.buildACLSearchParameters (lists) and
    finalyzeAccountId (creates) do: a project the caller does not belong to is refused with PermissionDenied."""
    if not any(prm["name"] == "projectid" for prm in ctx.spec.get("params", [])) or not ctx.has("projectid"):
        return None
    st, pid = ctx.state, ctx.p["projectid"]
    if pid == "-1":  # every project the caller belongs to: only lists take it
        if ctx.lname.startswith("list"):
            return "-1"
        raise param_error("Unable to find project by id -1")
    project = st.projects.get(pid)
    if project is None:  # a known id of something else
        raise invalid_uuid(ctx.lname, "projectid", pid)
    if not (project["_member"] or st.is_admin):
        raise ApiError(531, f"Account Acct[{st.account['id']}-{st.account['name']}] can't access project id={pid}")
    return project


def paginate(ctx: Ctx, items: list) -> list:
    page = ctx.i("page")
    pagesize = ctx.i("pagesize")
    maxsize = int(ctx.state.settings.get("default_page_size", 500))
    if pagesize == -1:
        if page is not None:
            raise ApiError(431, "Can't specify page parameter when pagesize is -1 (Unlimited)", CS_SERVER_API)
        return items
    if page is not None and pagesize is None:
        raise ApiError(431, '"pagesize" parameter is required when "page" is specified', CS_SERVER_API)
    if pagesize is None:
        return items[:maxsize] if maxsize > 0 else items
    if page is None:
        raise ApiError(431, '"page" parameter is required when "pagesize" is specified', CS_SERVER_API)
    if maxsize > 0 and pagesize > maxsize:
        raise ApiError(431, f"Page size can't exceed max allowed page size value: {maxsize}", CS_SERVER_API)
    if pagesize < 1:
        raise invalid_value(ctx.lname, "pagesize", str(pagesize))
    if page < 1:
        raise invalid_value(ctx.lname, "page", str(page))
    start = pagesize * (page - 1)
    return items[start:start + pagesize]


def list_response(ctx: Ctx, key: str, items: list[dict], keyword_fields=("name",)) -> dict:
    by_id = ctx.has("id") or ctx.has("ids")
    items = [it for it in items if ctx.state.visible(it, by_id=by_id)]  # the request's project scope
    kw = ctx.s("keyword")
    if kw and keyword_fields:  # the list commands OR ``field LIKE '%keyword%'`` over these fields
        items = [it for it in items if any(name_like(it.get(f), kw) for f in keyword_fields)]
    total = len(items)
    page = paginate(ctx, items)
    if total == 0:
        return {}
    if not page:
        return {"count": total}
    return {"count": total, key: page}


def name_like(value: object, wanted: str) -> bool:
    """``value LIKE '%wanted%'`` as MySQL evaluates it for the list commands whose search criteria use
    SearchCriteria.Op.LIKE on the name: a substring, case-insensitive (the cloud schema's utf8 tables collate
    case-insensitively), and a ``%`` or ``_`` in the wanted name is a wildcard, not a literal."""
    pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in wanted)
    return re.search(pattern, str(value or ""), re.IGNORECASE | re.DOTALL) is not None


def name_matches(ctx: Ctx, value: object, wanted: str) -> bool:
    """``name=`` of the list commands that changed operator in 4.17 (apache/cloudstack PR #6032):
    listVirtualMachines, listSnapshots, listVPCs and listLoadBalancerRules compared ``LIKE '%name%'`` through
    4.16 and ``=`` since.  The scenario setting ``list.name.operator`` chooses: ``EQ`` (default, 4.17+) or ``LIKE``
    (4.11-4.16, what 4.11's listApis documents as "a substring match").  A client must be correct under both."""
    if str(ctx.state.settings.get("list.name.operator", "EQ")).upper() == "LIKE":
        return name_like(value, wanted)
    return name_equals(value, wanted)


def name_equals(value: object, wanted: str) -> bool:
    """``value = 'wanted'`` as MySQL evaluates it for the list commands whose search criteria use
    SearchCriteria.Op.EQ on the name: the cloud schema's utf8 tables collate case-insensitively
    (utf8_general_ci) and pad with spaces, so case and trailing blanks do not count.  Accent folding, which
    that collation also does, is not modelled."""
    return str(value or "").rstrip(" ").casefold() == str(wanted).rstrip(" ").casefold()


def by_ids(ctx: Ctx, items: list[dict], field: str = "id") -> list[dict]:
    """Apply the common ``id`` / ``ids`` filters."""
    if ctx.has("id"):
        items = [x for x in items if x[field] == ctx.p["id"]]
    ids = ctx.lst("ids")
    if ids:
        items = [x for x in items if x[field] in ids]
    return items


def load_all() -> None:
    from . import admin, catalog, forwarding, netrules, tags, templates, vms, volumes  # noqa: F401
