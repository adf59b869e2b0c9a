"""Resource tags: createTags / deleteTags / listTags."""
from __future__ import annotations

from ..errors import CS_SERVER_API, ApiError, param_error
from ..state import NOT_TAGGABLE, TAGGABLE
from ..util import public
from . import command, list_response

TAGCMD = "org.apache.cloudstack.api.command.user.tag."


def resolve_type(ctx) -> tuple[str, str]:
    rt = ctx.p["resourcetype"]
    key = rt.lower()
    if key in TAGGABLE:
        return TAGGABLE[key]
    if key in NOT_TAGGABLE:
        raise param_error(f"The resource type {NOT_TAGGABLE[key]} doesn't support resource tags")
    raise param_error(f"Invalid resource type {rt}")


def _hidden(rtype, obj) -> bool:
    if rtype == "UserVm":
        return obj["state"] in ("Destroyed", "Expunging")
    if rtype == "Volume":
        return bool(obj.get("_hidden"))
    if rtype == "PublicIpAddress":
        return obj["state"] == "Free"
    return False


@command("createTags", TAGCMD + "CreateTagsCmd")
def create_tags(ctx):
    """CreateTagsCmd.execute parses the resource type and the tags and TaggedResourceManagerImpl.createTags finds
    each resource: all inside the job (getEntityOwnerId answers 1 without looking)."""
    st = ctx.state
    ids = ctx.lst("resourceids")
    if not ids:
        raise param_error("Unable to execute API command createtags due to missing parameter resourceids")
    entries = ctx.map_entries("tags")
    return ctx.submit_checked(lambda: _create_tags_job(ctx, st, ids, entries), instancetype=None, instanceid=None)


def _create_tags_job(ctx, st, ids, entries):
    rtype, table = resolve_type(ctx)
    objs = getattr(st, table)
    for e in entries:
        if not e.get("key"):
            raise param_error("Unable to execute API command createtags due to invalid value. Tag key is missing")
    for rid in ids:
        obj = objs.get(rid)
        if obj is None or _hidden(rtype, obj):
            raise param_error(f"Unable to find resource by id {rid} and type {rtype}")

    def complete():
        new: list[dict] = []
        for rid in ids:
            for e in entries:
                k, v = e["key"], e.get("value")
                if v is None or v == "":
                    raise param_error(f"Value for the key {k} is either null or empty")
                if any(t["resourcetype"] == rtype and t["resourceid"] == rid and t["key"] == k for t in st.tags + new):
                    raise ApiError(530, f"tag {k} already on {rtype} with id {rid}")
                new.append({"key": k, "value": v, "resourcetype": rtype, "resourceid": rid,
                            "customer": ctx.s("customer"), **st.owner_of(rid)})
        for t in new:
            if t["customer"] is None:
                del t["customer"]
        st.tags.extend(new)
        return {"success": True}
    return complete, None, None


@command("deleteTags", TAGCMD + "DeleteTagsCmd")
def delete_tags(ctx):
    """DeleteTagsCmd.execute parses the resource type inside the job, like createTags."""
    return ctx.submit_checked(lambda: _delete_tags_job(ctx, ctx.state), instancetype=None, instanceid=None)


def _delete_tags_job(ctx, st):
    rtype, _table = resolve_type(ctx)
    ids = ctx.lst("resourceids")
    wanted = [(e.get("key"), e.get("value")) for e in ctx.map_entries("tags") if e.get("key")]

    def match(t):
        if t["resourcetype"] != rtype or t["resourceid"] not in ids:
            return False
        if not wanted:
            return True
        return any(t["key"].lower() == k.lower() and (v is None or t["value"].lower() == v.lower()) for k, v in wanted)

    def complete():
        hit = [t for t in st.tags if match(t)]
        if not hit:  # TaggedResourceManagerImpl.deleteTags answers false; DeleteTagsCmd.execute: INTERNAL_ERROR
            raise ApiError(530, "Failed to delete tags", CS_SERVER_API)
        st.tags = [t for t in st.tags if not match(t)]
        return {"success": True}
    return complete, None, None


@command("listTags")
def list_tags(ctx):
    st = ctx.state
    items = [public(t) for t in st.tags]
    if ctx.has("resourcetype"):
        rl = ctx.p["resourcetype"].lower()
        items = [t for t in items if t["resourcetype"].lower() == rl]
    for f in ("resourceid", "key", "value", "customer"):
        if ctx.has(f):
            items = [t for t in items if t.get(f) == ctx.p[f]]
    # QueryManagerImpl.listTagsInternal reads no keyword: ListTagsCmd accepts one and the search ignores it
    return list_response(ctx, "tag", items, keyword_fields=())
