"""HTTP front of the simulator: ``/client/api`` (GET + form POST), ``/upload/<uuid>`` and ``/extract/<token>``."""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import signing
from .commands import REGISTRY, Ctx, parse_params, project_scope, response_name
from .errors import CS_CLOUD_RUNTIME, CS_REQUEST_LIMIT, ApiError
from .spec import load_spec

log = logging.getLogger("cloudstack_simulator")

AUTH_TEXT = "unable to verify user credentials and/or request signature"
MAX_FORM_BODY = 64 * 1024 * 1024


class _Drop(Exception):
    """Close the connection without answering."""


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, sim):
        self.sim = sim
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):  # keep stderr quiet on client disconnects
        # socketserver calls this inside its except block, where exc_info is the error
        log.debug("connection error from %s", client_address, exc_info=True)  # noqa: LOG014


class Handler(BaseHTTPRequestHandler):
    server: SimHTTPServer
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's own (typeshed leaves it out): headers sent in one write
    protocol_version = "HTTP/1.1"
    server_version = "CloudStackSimulator/1.0"
    sys_version = ""

    def setup(self):
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # request lines are logged by the API code, without secrets
        pass

    # ------------------------------------------------------------------ plumbing
    @property
    def sim(self):
        return self.server.sim

    def _send(self, status: int, body: bytes, ctype: str = "application/json; charset=UTF-8",
              headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        # headers and body in one write (avoids Nagle / delayed-ACK stalls)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _send_json(self, status: int, obj: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers=headers)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if path.rstrip("/") == "/client/api":
                self._api(method)
            elif path.startswith("/upload/"):
                self.sim._uploads.handle_upload(self, method, path[len("/upload/"):])
            elif path.startswith("/extract/"):
                self.sim._uploads.handle_extract(self, method, path[len("/extract/"):])
            else:
                self._send(404, b"not found", "text/plain")
        except _Drop:
            self._drop()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_HEAD(self):
        self._route("GET")

    # ------------------------------------------------------------------ API
    def _read_params(self, method: str) -> dict[str, str]:
        split = urlsplit(self.path)
        params: dict[str, str] = {}
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_FORM_BODY:
                raise ApiError(431, "request body too large")
            body = self.rfile.read(length) if length else b""
            ctype = (self.headers.get("Content-Type") or "").lower()
            if body and (not ctype or "application/x-www-form-urlencoded" in ctype):
                for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                    params.setdefault(k, v)          # body-only keys: the container's first value
        for k, v in parse_qsl(split.query, keep_blank_values=True):
            params[k] = v                            # query keys: utf8Fixup -> last occurrence wins
        return params

    def _error(self, lname: str | None, e: ApiError) -> None:
        rname = response_name(lname) if lname and lname in REGISTRY else "errorresponse"
        body = {"uuidList": [], "errorcode": e.code, "cserrorcode": e.cserrorcode, "errortext": e.text}
        self._send_json(e.code, {rname: body}, headers={"X-Description": _header_safe(e.text)})

    def _api(self, method: str) -> None:
        sim = self.sim
        started = time.monotonic()
        try:
            raw = self._read_params(method)
        except ApiError as e:
            return self._error(None, e)
        cmd_value = raw.get("command")
        if cmd_value is None:
            cmd_value = next((v for k, v in raw.items() if k.lower() == "command"), None)
        lname = (cmd_value or "").lower()
        sim._log_request(lname, {k: v for k, v in raw.items() if k.lower() != "signature"})
        status = self._api_inner(method, raw, lname)
        log.info("%s %s %s %s %.1fms", self.client_address[0], method, cmd_value, status,
                 (time.monotonic() - started) * 1000)

    def _api_inner(self, method: str, raw: dict, lname: str):
        sim = self.sim
        cmd = REGISTRY.get(lname)
        cmd_value = next((v for k, v in raw.items() if k.lower() == "command"), lname)
        if cmd is None:
            e = ApiError(401, AUTH_TEXT)
            self._send_json(401, {"errorresponse": {"uuidList": [], "errorcode": 401, "errortext": AUTH_TEXT}},
                            headers={"X-Description": AUTH_TEXT})
            return 401
        ok, reason = signing.verify(raw, {sim.api_key: sim.secret_key})
        if not ok:
            log.info("signature check failed for %s: %s", lname, reason)
            self._send_json(401, {response_name(lname): {"uuidList": [], "errorcode": 401, "errortext": AUTH_TEXT}},
                            headers={"X-Description": AUTH_TEXT})
            return 401
        if cmd.admin_only and not sim._state.is_admin:
            # ApiServer.commandAvailable: the role may not call it -> PermissionDeniedException -> 401
            text = f"The given command '{cmd_value}' either does not exist, is not available for user."
            self._send_json(401, {response_name(lname): {"uuidList": [], "errorcode": 401, "cserrorcode": 9999,
                                                         "errortext": text}}, headers={"X-Description": text})
            return 401
        faults = sim._injector.for_request(lname)
        if faults.drop:
            raise _Drop()
        if faults.error:
            if faults.error == 503:
                e = ApiError(503, "Service unavailable: the management server is not ready to process API "
                                  "requests, please retry later", CS_CLOUD_RUNTIME)
            else:
                e = ApiError(500, "Internal error executing command, please contact your system administrator",
                             CS_CLOUD_RUNTIME)
            self._error(lname, e)
            return e.code
        if faults.throttle:
            e = ApiError(429, "The given user has reached his/her account api limit, please retry after 218 ms.",
                         CS_REQUEST_LIMIT)
            self._error(lname, e)
            return 429
        if faults.slow:
            time.sleep(faults.slow)
        spec = load_spec().get(lname, {"params": []})
        state = sim._state
        status = 200
        if sim.numeric_ids is not None:
            raw = sim.numeric_ids.params_in(raw)
        try:
            params, maps = parse_params(raw)
            with state.lock:
                state.jobs.tick()
                ctx = Ctx(sim, state, spec, cmd, params, maps, method)
                ctx.validate()
                state.scope = project_scope(ctx)
                try:
                    result = cmd.handler(ctx)
                finally:
                    state.scope = None
            body = {response_name(lname): result}
            if sim.numeric_ids is not None:
                body = sim.numeric_ids.body_out(body)
        except ApiError as e:
            if faults.drop_after_action:
                raise _Drop() from None
            self._error(lname, e)
            return e.code
        except Exception as e:  # simulator bug: answer like the server does for unexpected exceptions
            log.exception("internal error in %s", lname)
            e2 = ApiError(530, f"Internal error executing command: {e!r}", CS_CLOUD_RUNTIME)
            self._error(lname, e2)
            return 530
        if faults.drop_after_action:
            raise _Drop()
        self._send_json(status, body)
        return status


def _header_safe(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")
