"""The BOSH CPI wire protocol: one JSON request in, one JSON response out.

This module knows JSON and the contract's rules (argument shapes, API versions,
the ten error types) and nothing about CloudStack.  Handlers live in
``cloudstack_cpi.actions`` and are imported only when called, so a call pays
only for what it uses.  The request envelope is checked here by hand rather
than with pydantic: ``info`` must answer without importing it.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any, Callable

from . import errors
from .log import Logger

MAX_API_VERSION = 3  # v3: create_stemcell takes env {"tags": ...}; v2 shapes apply for >= 2
# Calls the director scopes to a VM created from a stemcell (context.vm.stemcell).
STEMCELL_GATED = frozenset({"create_vm"})


# -- argument specs: (name, check) pairs; a check returns an error text or None ----------


def _cid(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {_json_type(value)}"
    if not value.strip():
        return "must not be empty"
    return None


def _cid_or_null(value: Any) -> str | None:
    return None if value is None or value == "" else _cid(value)


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be an object, got {_json_type(value)}"


def _object_or_null(value: Any) -> str | None:
    return None if value is None else _object(value)


def _size(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer (MiB), got {_json_type(value)}"
    return None if value > 0 else "must be greater than 0"


def _cid_list(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return f"must be an array, got {_json_type(value)}"
    for item in value:
        if _cid(item):
            return f"must hold only non-empty strings, got {_json_type(item)}"
    return None


def _string(value: Any) -> str | None:
    return _cid(value)


class Method:
    """A CPI method: its handler ("module:function" under cloudstack_cpi.actions) and argument checks.

    Plain classes rather than dataclasses here: ``dataclasses`` imports
    ``inspect``, a cost every CPI call would pay.
    """

    __slots__ = ("target", "args", "required")

    def __init__(self, target: str, args: tuple[tuple[str, Callable[[Any], str | None]], ...], required: int) -> None:
        self.target = target
        self.args = args
        self.required = required  # trailing arguments beyond this many may be omitted


def _m(target: str, *args: tuple[str, Callable], required: int | None = None) -> Method:
    return Method(target, args, len(args) if required is None else required)


METHODS: dict[str, Method] = {
    "info": _m("info:info"),
    "ping": _m("info:ping"),
    "create_stemcell": _m("stemcells:create_stemcell", ("image_path", _string), ("cloud_properties", _object),
                          ("env", _object_or_null), required=2),
    "delete_stemcell": _m("stemcells:delete_stemcell", ("stemcell_cid", _cid)),
    "create_vm": _m("vms:create_vm", ("agent_id", _cid), ("stemcell_cid", _cid), ("cloud_properties", _object),
                    ("networks", _object), ("disk_cids", _cid_list), ("env", _object_or_null), required=4),
    "delete_vm": _m("vms:delete_vm", ("vm_cid", _cid)),
    "has_vm": _m("vms:has_vm", ("vm_cid", _cid)),
    "reboot_vm": _m("vms:reboot_vm", ("vm_cid", _cid)),
    "set_vm_metadata": _m("vms:set_vm_metadata", ("vm_cid", _cid), ("metadata", _object)),
    "calculate_vm_cloud_properties": _m("vms:calculate_vm_cloud_properties", ("vm_resources", _object)),
    "create_disk": _m("disks:create_disk", ("size", _size), ("cloud_properties", _object),
                      ("vm_cid", _cid_or_null), required=2),
    "delete_disk": _m("disks:delete_disk", ("disk_cid", _cid)),
    "has_disk": _m("disks:has_disk", ("disk_cid", _cid)),
    "attach_disk": _m("disks:attach_disk", ("vm_cid", _cid), ("disk_cid", _cid)),
    "detach_disk": _m("disks:detach_disk", ("vm_cid", _cid), ("disk_cid", _cid)),
    "set_disk_metadata": _m("disks:set_disk_metadata", ("disk_cid", _cid), ("metadata", _object)),
    "get_disks": _m("disks:get_disks", ("vm_cid", _cid)),
    "resize_disk": _m("disks:resize_disk", ("disk_cid", _cid), ("new_size", _size)),
    "update_disk": _m("disks:update_disk", ("disk_cid", _cid), ("new_size", _size), ("cloud_properties", _object)),
    "snapshot_disk": _m("snapshots:snapshot_disk", ("disk_cid", _cid), ("metadata", _object_or_null), required=1),
    "delete_snapshot": _m("snapshots:delete_snapshot", ("snapshot_cid", _cid)),
}


class Request:
    __slots__ = ("method", "arguments", "context", "api_version")

    def __init__(self, method: str, arguments: list, context: dict, api_version: int) -> None:
        self.method = method
        self.arguments = arguments
        self.context = context
        self.api_version = api_version  # 1 when the caller sent none

    @classmethod
    def parse(cls, raw: bytes) -> "Request":
        if not raw.strip():
            raise errors.CpiError("Empty request: expected one JSON object on stdin")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.CpiError(f"Request is not UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise errors.CpiError(f"Request is not valid JSON: {getattr(exc, 'msg', exc)} "
                                  f"(line {getattr(exc, 'lineno', '?')} column {getattr(exc, 'colno', '?')})") from None
        except RecursionError:
            raise errors.CpiError("Request is not valid JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise errors.CpiError(f"Request must be a JSON object, got {_json_type(data)}")
        if "method" not in data:
            raise errors.CpiError("Request has no 'method'")
        method = data["method"]
        if not isinstance(method, str) or not method:
            raise errors.CpiError(f"Request 'method' must be a non-empty string, got {_json_type(method)}")
        if "arguments" not in data:
            raise errors.CpiError("Request has no 'arguments'")
        arguments = data["arguments"]
        if not isinstance(arguments, list):
            raise errors.CpiError(f"Request 'arguments' must be an array, got {_json_type(arguments)}")
        context = data.get("context", {})
        if context is None:
            context = {}
        if not isinstance(context, dict):
            raise errors.CpiError(f"Request 'context' must be an object, got {_json_type(context)}")
        api_version = data.get("api_version", 1)
        if api_version is None:
            api_version = 1
        if isinstance(api_version, bool) or not isinstance(api_version, int):
            raise errors.CpiError(f"Request 'api_version' must be an integer, got {_json_type(api_version)}")
        return cls(method, arguments, context, api_version)


def check_arguments(method: str, spec: Method, arguments: list) -> None:
    count = len(arguments)
    if not spec.required <= count <= len(spec.args):
        expected = (
            str(len(spec.args)) if spec.required == len(spec.args) else f"{spec.required} to {len(spec.args)}"
        )
        names = ", ".join(name for name, _ in spec.args) or "none"
        raise errors.CpiError(f"{method} takes {expected} arguments ({names}), got {count}")
    for position, ((name, check), value) in enumerate(zip(spec.args, arguments), start=1):
        problem = check(value)
        if problem:
            raise errors.CpiError(f"{method}: argument {position} ({name}) {problem}")


def handle(raw: bytes, config_path: str | None, log: Logger) -> dict:
    """Answer one request; never raises."""
    method = "?"
    ctx = None
    try:
        request = Request.parse(raw)
        method = request.method
        log.method = method
        request_id = request.context.get("request_id")
        if isinstance(request_id, str) and request_id:
            log.request_id = request_id
        spec = METHODS.get(method)
        if spec is None:
            raise errors.NotImplemented_(f"Method is not known, got: '{method}'")
        if request.api_version > MAX_API_VERSION or request.api_version < 1:
            raise errors.NotImplemented_(
                f"CPI API version {request.api_version} is not supported (this CPI speaks 1 to {MAX_API_VERSION})"
            )
        check_arguments(method, spec, request.arguments)
        from .context import CallContext

        ctx = CallContext(
            method=method, api_version=request.api_version, context=request.context,
            config_path=config_path, log=log,
        )
        _check_stemcell_api(method, ctx)
        handler = _resolve(spec.target)
        result = handler(ctx, *request.arguments)
        return _response(result, None, log)
    except errors.BoshError as err:
        if not isinstance(err, errors.NotImplemented_):
            log.error(err.message)
        return _response(None, err.to_wire(), log)
    except _cloudstack_error() as err:
        # An action let a CloudStack error through: still a cloud failure, said plainly.
        log.error(str(err))
        return _response(None, errors.CloudError(str(err), getattr(err, "is_transient", False)).to_wire(), log)
    except Exception as exc:  # noqa: BLE001 - the contract: every failure is one JSON answer
        import traceback

        log.error(f"Unexpected error in {method}: {type(exc).__name__}: {exc}")
        for line in traceback.format_exc().rstrip().splitlines():
            log.error(line)
        message = f"Unexpected error in {method}: {type(exc).__name__}: {_one_line(exc)}"
        return _response(None, errors.CloudError(log.redact(message)).to_wire(), log)
    finally:
        if ctx is not None:
            ctx.close()


def _check_stemcell_api(method: str, ctx) -> None:
    version = ctx.stemcell_api_version
    if method in STEMCELL_GATED and version is not None and version < 2:
        raise errors.CloudError(
            f"Stemcell API version {version} is not supported: this CPI is registry-less and needs "
            "stemcells with api_version 2 or later (registry-based stemcells are not supported)"
        )


def _resolve(target: str):
    module_name, function = target.split(":")
    try:
        module = importlib.import_module(f"cloudstack_cpi.actions.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("cloudstack_cpi.actions"):
            raise errors.NotImplemented_(f"Method is not implemented: {target}") from None
        raise
    return getattr(module, function)


def _cloudstack_error():
    module = sys.modules.get("cloudstack_cpi.cloudstack.errors")
    return module.CloudStackError if module else _Never


class _Never(Exception):
    pass


def _response(result: Any, error: dict | None, log: Logger) -> dict:
    return {"result": result, "error": error, "log": "\n".join(log.unwritten)}


def encode(response: dict) -> bytes:
    try:
        return json.dumps(response).encode("utf-8")
    except (TypeError, ValueError) as exc:
        fallback = {"result": None, "log": response.get("log", ""),
                    "error": errors.CpiError(f"Result is not JSON-serialisable: {exc}").to_wire()}
        return json.dumps(fallback).encode("utf-8")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else ""
