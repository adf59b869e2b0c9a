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
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import quote, shorten

if TYPE_CHECKING:
    from .context import CallContext
    from .log import Logger

MAX_API_VERSION = 3  # v3: create_stemcell takes env {"tags": ...}; v2 shapes apply for >= 2

# Limits on what a request may hold, checked before anything else looks at it.  The largest real request is a
# create_vm whose env must fit in CloudStack's user data (at most 1 MiB): 16 MiB is absurd, and refused unread.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64                 # levels of nested objects/arrays (BOSH env nests a handful)
MAX_NUMBER_DIGITS = 30         # an integer literal longer than this is out of any range a CPI argument has
MAX_CID_CHARS = 255            # a CID is a CloudStack UUID (36), a light stemcell "<uuid> light" (42)
MAX_PATH_CHARS = 4096          # PATH_MAX
MAX_SIZE_MIB = 2**53 - 1       # the largest integer every JSON parser reads exactly
MAX_MESSAGE_CHARS = 4096       # an error message longer than this is cut (it is one line of a task log)
_READ_CHUNK = 1024 * 1024
# Calls the director scopes to a VM created from a stemcell (context.vm.stemcell).
STEMCELL_GATED = frozenset({"create_vm"})


# -- argument specs: (name, check) pairs; a check returns an error text or None ----------


def _cid(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {_json_type(value)}"
    if len(value) > MAX_CID_CHARS:
        return f"is too long: {quote(value)} (a CID has at most {MAX_CID_CHARS} characters)"
    if not value.strip():
        return "must not be empty"
    if not value.isprintable():
        return f"must not contain control characters, got {quote(value)}"
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
    if value <= 0:
        return "must be greater than 0"
    return None if value <= MAX_SIZE_MIB else f"must be at most {MAX_SIZE_MIB} (MiB), got {quote(value)}"


def _cid_list(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return f"must be an array, got {_json_type(value)}"
    for position, item in enumerate(value):
        problem = _cid(item)
        if problem:
            return f"item {position} {problem}"
    return None


def _string(value: Any) -> str | None:
    """A file path (create_stemcell's image)."""
    if not isinstance(value, str):
        return f"must be a string, got {_json_type(value)}"
    if len(value) > MAX_PATH_CHARS:
        return f"is too long: {quote(value)} (a path has at most {MAX_PATH_CHARS} characters)"
    if not value.strip():
        return "must not be empty"
    if not value.isprintable():
        return f"must not contain control characters, got {quote(value)}"
    return None


class Method:
    """A CPI method: its handler ("module:function" under cloudstack_cpi.actions) and argument checks.

    Plain classes rather than dataclasses here: ``dataclasses`` imports
    ``inspect``, a cost every CPI call would pay.
    """

    __slots__ = ("args", "required", "target")

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


def read_request(stream, limit: int = MAX_REQUEST_BYTES) -> tuple[bytes, int]:
    """The request's bytes (at most ``limit + 1`` of them) and its whole size.

    A request over the limit is read to its end in small chunks and dropped, so
    the caller's write does not fail and memory stays flat however much arrives.
    """
    data = stream.read(limit + 1)
    size = len(data)
    if size > limit:
        while True:
            chunk = stream.read(_READ_CHUNK)
            if not chunk:
                break
            size += len(chunk)
    return data, size


class Request:
    __slots__ = ("api_version", "arguments", "context", "method")

    def __init__(self, method: str, arguments: list, context: dict, api_version: int) -> None:
        self.method = method
        self.arguments = arguments
        self.context = context
        self.api_version = api_version  # 1 when the caller sent none

    @classmethod
    def parse(cls, raw: bytes, size: int | None = None) -> Request:
        size = len(raw) if size is None else size
        if size > MAX_REQUEST_BYTES:
            raise errors.CpiError(f"Request is too large: {size} bytes (at most {MAX_REQUEST_BYTES})")
        if not raw.strip():
            raise errors.CpiError("Empty request: expected one JSON object on stdin")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.CpiError(f"Request is not UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text, parse_constant=_NonFinite, parse_float=_float, parse_int=_int)
        except ValueError as exc:
            raise errors.CpiError(f"Request is not valid JSON: {getattr(exc, 'msg', exc)} "
                                  f"(line {getattr(exc, 'lineno', '?')} column {getattr(exc, 'colno', '?')})") from None
        except RecursionError:
            raise errors.CpiError("Request is not valid JSON: nested too deeply") from None
        del text
        if not isinstance(data, dict):
            raise errors.CpiError(f"Request must be a JSON object, got {_json_type(data)}")
        bad = _scan(data)
        if bad is not None:
            raise errors.CpiError(_where(data, bad[0]) + " " + bad[1])
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


# -- values every request must hold: checked once, here, for the whole document ------------------------------------


class _NonFinite:
    """A number JSON cannot carry (NaN, Infinity, 1e400) or an integer of absurd length, kept to be refused by path."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def problem(self) -> str:
        if self.text.lstrip("-").isdigit():
            return f"is out of range: an integer of {len(self.text.lstrip('-'))} digits"
        return f"must be a finite number, got {shorten(self.text, 24)}"


def _float(text: str):
    value = float(text)
    return value if value - value == 0 else _NonFinite(text)  # inf - inf and nan - nan are nan


def _int(text: str):
    return int(text) if len(text) <= MAX_NUMBER_DIGITS else _NonFinite(text)


# NUL (C strings, file names, URLs cut short) and lone surrogates (not Unicode: nothing can encode them).
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def _scan(data: Any) -> tuple[list, str] | None:
    """The first value no request may hold, as (path, problem): NUL, a lone surrogate, a non-finite number, deep
    nesting.

    Iterative, so the depth of the document costs no stack; paths are linked
    (key, parent) pairs, built into a list only for the one value reported.
    """
    stack: list[tuple[Any, Any, int]] = [(data, None, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        value, node, depth = pop()
        kind = type(value)
        if kind is str:
            found = _BAD_CHAR.search(value)
            if found:
                return _path(node), _char_problem(found)
        elif kind is dict:
            if depth >= MAX_DEPTH:
                return _path(node), f"is nested more than {MAX_DEPTH} levels deep"
            for key, item in reversed(value.items()):
                found = _BAD_CHAR.search(key)
                if found:
                    return _path(node), f"has a key that {_char_problem(found)}: {quote(key)}"
                push((item, (key, node), depth + 1))
        elif kind is list:
            if depth >= MAX_DEPTH:
                return _path(node), f"is nested more than {MAX_DEPTH} levels deep"
            for index in range(len(value) - 1, -1, -1):
                push((value[index], (index, node), depth + 1))
        elif kind is _NonFinite:
            return _path(node), value.problem()
    return None


def _char_problem(found: re.Match) -> str:
    char, position = found.group(), found.start()
    if char == "\x00":
        return f"must not contain a NUL character (at character {position})"
    return f"must be valid Unicode: an unpaired surrogate \\u{ord(char):04x} at character {position}"


def _path(node) -> list:
    path = []
    while node is not None:
        path.append(node[0])
        node = node[1]
    path.reverse()
    return path


def _where(data: dict, path: list) -> str:
    """Where a value sits, for a message: "create_vm: argument 4 (networks.default.netmask)" or "Request context.x"."""
    method = data.get("method")
    spec = METHODS.get(method) if isinstance(method, str) else None
    if spec is not None and len(path) >= 2 and path[0] == "arguments" and path[1] < len(spec.args):
        index = path[1]
        return f"{method}: argument {index + 1} ({errors.dotted([spec.args[index][0], *path[2:]])})"
    return f"Request {errors.dotted(path)}" if path else "Request"


def check_arguments(method: str, spec: Method, arguments: list) -> None:
    count = len(arguments)
    if not spec.required <= count <= len(spec.args):
        expected = (
            str(len(spec.args)) if spec.required == len(spec.args) else f"{spec.required} to {len(spec.args)}"
        )
        names = ", ".join(name for name, _ in spec.args) or "none"
        raise errors.CpiError(f"{method} takes {expected} arguments ({names}), got {count}")
    # not strict: the trailing optional arguments may be left out
    for position, ((name, check), value) in enumerate(zip(spec.args, arguments, strict=False), start=1):
        problem = check(value)
        if problem:
            raise errors.CpiError(f"{method}: argument {position} ({name}) {problem}")


def handle(raw: bytes, config_path: str | None, log: Logger, size: int | None = None) -> dict:
    """Answer one request (``size``: its whole length when only a prefix was read); never raises."""
    method = "?"
    ctx = None
    arguments: list = []
    try:
        request = Request.parse(raw, size)
        arguments = request.arguments
        method = request.method
        spec = METHODS.get(method)
        log.method = method if spec is not None else shorten(method)
        request_id = request.context.get("request_id")
        if isinstance(request_id, str) and request_id:
            log.request_id = shorten(request_id)
        if spec is None:
            raise errors.NotImplemented_(f"Method is not known, got: {quote(method)}")
        if request.api_version > MAX_API_VERSION or request.api_version < 1:
            raise errors.NotImplemented_(
                f"CPI API version {quote(request.api_version)} is not supported "
                f"(this CPI speaks 1 to {MAX_API_VERSION})"
            )
        check_arguments(method, spec, request.arguments)
        from .context import CallContext

        ctx = CallContext(
            method=method, api_version=request.api_version, context=request.context,
            config_path=config_path, log=log,
        )
        _check_stemcell_api(method, ctx)
        handler = _resolve(spec.target)
        result = answer_for_version(method, handler(ctx, *request.arguments), request.api_version)
        return _response(result, None, log)
    except errors.BoshError as err:
        wire = err.to_wire()
        wire["message"] = _message(err.message, arguments, log)
        if not isinstance(err, errors.NotImplemented_):
            log.error(wire["message"])
            _say_transient(err, log)
        return _response(None, wire, log)
    except _cloudstack_error() as err:
        # An action let a CloudStack error through: still a cloud failure, said plainly.
        message = _message(str(err), arguments, log)
        log.error(message)
        failure = errors.CloudError(message, getattr(err, "is_transient", False))
        _say_transient(failure, log)
        return _response(None, failure.to_wire(), log)
    except (KeyboardInterrupt, errors.Interrupted) as exc:
        name = exc.signal_name if isinstance(exc, errors.Interrupted) else "SIGINT"
        message = _message(f"{method} interrupted by {name}: what it had created was removed "
                           "(see the log for anything that could not be)", arguments, log)
        log.error(message)
        return _response(None, errors.CloudError(message).to_wire(), log)
    except Exception as exc:  # noqa: BLE001 - the contract: every failure is one JSON answer
        import traceback

        log.error(_message(f"Unexpected error in {method}: {type(exc).__name__}: {exc}", arguments, log))
        for line in traceback.format_exc().rstrip().splitlines():
            log.error(errors.one_line(line, MAX_MESSAGE_CHARS))
        message = _message(f"Unexpected error in {method}: {type(exc).__name__}: {_one_line(exc)}", arguments, log)
        return _response(None, errors.CloudError(message).to_wire(), log)
    finally:
        if ctx is not None:
            ctx.close()


def _message(text: str, arguments: list, log: Logger) -> str:
    """An error message as it may leave the process: no secret, long argument values cut, one bounded line.

    Whichever layer wrote the message, a value from the request appears in it
    as at most a short prefix with its length.
    """
    text = log.redact(text)
    for value in sorted({value for value in _long_strings(arguments) if value in text}, key=len, reverse=True):
        text = text.replace(value, shorten(value))
    return errors.one_line(text, MAX_MESSAGE_CHARS)


def _long_strings(value: Any):
    """Strings (values and keys) longer than a message quotes, anywhere in ``value``."""
    limit = errors.QUOTE_CHARS
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if len(item) > limit:
                yield item
        elif isinstance(item, dict):
            for key, inner in item.items():
                if len(key) > limit:
                    yield key
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def _check_stemcell_api(method: str, ctx: CallContext) -> None:
    version = ctx.stemcell_api_version
    if method in STEMCELL_GATED and version is not None and version < 2:
        raise errors.CloudError(
            f"Stemcell API version {version} is not supported: this CPI is registry-less and needs "
            "stemcells with api_version 2 or later (registry-based stemcells are not supported)"
        )


def _say_transient(err: errors.BoshError, log) -> None:
    """A transient failure of a type whose ok_to_retry the director ignores: say so where the operator reads."""
    if err.ok_to_retry and not err.director_retries:
        log.warning("This failure looks transient (CloudStack busy, unreachable or throttled): re-running the task "
                    "may succeed. The director does not retry this error type by itself.")


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


# The actions answer in the v2 shape; what a v1 caller gets instead is decided here, in one place (bosh-cpi-go binds
# its apiv1 and apiv2 in one place too): create_vm's [vm_cid, networks] becomes vm_cid, and attach_disk's disk hint
# becomes nothing (v1 directors read the hint from the registry, which this CPI does not run).
_V1_ANSWERS = {
    "create_vm": lambda result: result[0],
    "attach_disk": lambda result: None,
}


def answer_for_version(method: str, result: Any, api_version: int) -> Any:
    """The action's (v2) answer as the caller's API version wants it."""
    shape = _V1_ANSWERS.get(method) if api_version < 2 else None
    return shape(result) if shape is not None else result


def _response(result: Any, error: dict | None, log: Logger) -> dict:
    return {"result": result, "error": error, "log": "\n".join(log.unwritten)}


def encode(response: dict) -> bytes:
    """The response as strict JSON (no NaN/Infinity) in ASCII: what Ruby's ``JSON.parse`` accepts.

    A lone surrogate (which no encoding can carry) becomes U+FFFD rather than an
    escape that strict parsers refuse.
    """
    try:
        text = json.dumps(response, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        problem = errors.one_line(f"{type(exc).__name__}: {exc}", 200)
        response = {"result": None, "log": response.get("log", ""),
                    "error": errors.CpiError(f"Result is not JSON-serialisable: {problem}").to_wire()}
        text = json.dumps(response, allow_nan=False)
    if "\\ud" in text:  # a surrogate escape: a pair for a character beyond U+FFFF, or a lone one
        text = json.dumps(_replace_surrogates(response), allow_nan=False)
    return text.encode("ascii")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(key): _replace_surrogates(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_surrogates(item) for item in value]
    return value


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
