"""HTTP for the CPI on the standard library: one kept-alive connection per origin, TLS trust, proxies, timeouts.

Every byte the CPI sends to CloudStack goes through ``HttpTransport.request``: the API client's signed calls and a
stemcell's POST to its upload slot.  It is built on ``http.client`` rather than requests because BOSH starts one
process per CPI call: importing requests (urllib3, charset_normalizer, idna, cookies, email parsing) cost ~0.2 s
and ~0.15 CPU-seconds of every call, more than a short call's whole CloudStack work, while ``http.client`` with
``ssl`` costs ~0.05 s (issue 17; bench/README.md, "Per-call cost").  The CPI needs little of what requests adds:
its answers are JSON, it follows no redirects, sends no cookies and decodes no charsets.

What it keeps from requests, on purpose:

- **Trust**: a CA file (the configured ``ca_cert`` or the default bundle, certifi's, as requests had it) or none
  at all (``skip_verify_ssl``); hostnames are checked.  The environment's CA variables (REQUESTS_CA_BUNDLE,
  CURL_CA_BUNDLE, SSL_CERT_FILE) play no part: the configuration decides (tests/lifecycle/test_tls.py).
- **Proxies** from ``http_proxy``/``https_proxy``/``all_proxy`` and ``no_proxy`` (lower case first, then upper
  case), which the release's job exports (docs/release.md): an https origin is reached through a CONNECT tunnel,
  an http one by sending the absolute URL to the proxy; ``user:password@`` in the proxy's URL becomes
  Proxy-Authorization.
- **Timeouts**: ``(connect, read)``; the connect timeout bounds the TCP connect, the proxy's tunnel and the TLS
  handshake; the read timeout each wait for bytes after that.
- **Knowing whether a request left**: ``TransportError.sent`` is False only when nothing can have reached the
  server (no connection, refused certificate, proxy refused the tunnel), so the caller may repeat even a mutation.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

USER_AGENT = "cloudstack-cpi"


class TransportError(Exception):
    """No HTTP answer.  ``sent``: the request may have reached the server; ``tls``: its certificate was refused."""

    def __init__(self, text: str, *, sent: bool, tls: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.sent = sent
        self.tls = tls


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A header by name, whatever its case."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None = None   # the Proxy-Authorization header's value


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


class HttpTransport:
    """Requests over kept-alive connections, one per origin, with this transport's TLS trust and the environment's
    proxies.  Not thread-safe: one per thread that sends."""

    def __init__(self, verify: str | bool | None, *, environ: Mapping[str, str] | None = None) -> None:
        """``verify``: a CA file, False (trust anything), or None for the default bundle (certifi's)."""
        if verify is True:
            raise ValueError("verify is a CA file, False or None: the configuration names what is trusted")
        self._verify = verify
        self._environ = os.environ if environ is None else environ
        self._context: ssl.SSLContext | None = None
        self._connections: dict[tuple[_Origin, Proxy | None], http.client.HTTPConnection] = {}

    @property
    def verify(self) -> str | bool:
        """The CA file trusted, or False.  The default bundle is looked up here, on first use: a call to an http://
        endpoint never needs it, and finding it (importlib.resources) costs a few ms of every call."""
        if self._verify is None:
            import certifi

            self._verify = certifi.where()
        return self._verify

    def fresh(self) -> HttpTransport:
        """A transport of its own (its own connections) with the same trust and proxies."""
        return HttpTransport(self._verify, environ=self._environ)

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def request(self, method: str, url: str, *, body: bytes | Iterable[bytes] | None = None,
                headers: Mapping[str, str] | None = None, timeout: tuple[float, float]) -> HttpResponse:
        """Send one request and read its whole answer (any status); TransportError when there is no answer.

        A body that is not bytes is sent as it is iterated, with the caller's Content-Length; whatever it raises
        (an image found broken while streaming) goes on as it is, the connection closed."""
        origin = _origin_of(url)
        proxy = self.proxy_for(origin)
        key = (origin, proxy)
        connection = self._connections.get(key)
        if connection is not None and _dropped(connection):
            connection.close()
            connection = None
        if connection is None:
            connection = self._connect(origin, proxy, timeout[0])
            self._connections[key] = connection
        sock = connection.sock
        assert sock is not None  # connected above or kept alive
        sock.settimeout(timeout[1])
        target = url if proxy is not None and origin.scheme == "http" else _path_of(url)
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if proxy is not None and proxy.authorization and origin.scheme == "http":
            all_headers["Proxy-Authorization"] = proxy.authorization
        try:
            connection.request(method, target, body=body, headers=all_headers)
            answer = connection.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self._forget(key)
            raise TransportError(_describe(exc, timeout[1]), sent=True) from None
        except BaseException:
            self._forget(key)
            raise
        if answer.will_close:
            self._forget(key)
        return HttpResponse(answer.status, answer.reason, dict(answer.getheaders()), data)

    def proxy_for(self, origin: _Origin) -> Proxy | None:
        """The proxy the environment names for ``origin``, or None (no proxy, or the host is in no_proxy)."""
        value = (self._env(f"{origin.scheme}_proxy") or self._env("all_proxy") or "").strip()
        if not value or _bypassed(origin, self._env("no_proxy") or ""):
            return None
        if "://" not in value:
            value = f"http://{value}"
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname:
            raise TransportError(f"the proxy {parts.scheme}://{parts.hostname or ''} is not supported "
                                 "(only http:// proxies are)", sent=False)
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        return Proxy(parts.hostname, parts.port or 80, authorization)

    def _env(self, name: str) -> str | None:
        return self._environ.get(name) or self._environ.get(name.upper())

    def _connect(self, origin: _Origin, proxy: Proxy | None, timeout: float) -> http.client.HTTPConnection:
        """A connected connection (TCP, the proxy's tunnel, TLS) to ``origin``; nothing has been sent to it yet."""
        host, port = (proxy.host, proxy.port) if proxy is not None else (origin.host, origin.port)
        connection: http.client.HTTPConnection
        if origin.scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls())
            if proxy is not None:
                tunnel_headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                connection.set_tunnel(origin.host, origin.port, headers=tunnel_headers)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except ssl.SSLError as exc:
            connection.close()
            raise TransportError(_first_line(exc), sent=False, tls=True) from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise TransportError(_describe(exc, timeout, connecting=True), sent=False) from None
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            if self.verify is False:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no store read: nothing is checked
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:  # only this file: create_default_context loads no default store when given one
                context = ssl.create_default_context(cafile=str(self.verify))
            self._context = context
        return self._context

    def _forget(self, key: tuple[_Origin, Proxy | None]) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()


def _origin_of(url: str) -> _Origin:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}", sent=False)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TransportError(f"bad port in {parts.scheme}://{parts.netloc}: {exc}", sent=False) from None
    return _Origin(parts.scheme, parts.hostname, port)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _bypassed(origin: _Origin, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated hosts, domains, ``host:port``, IP networks or ``*``) names the origin."""
    host = origin.host.lower()
    for entry in (item.strip().lower() for item in no_proxy.replace(" ", ",").split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if port and port != str(origin.port):
            continue
        name = name.removeprefix("*").removeprefix(".").strip("[]")
        if host == name or host.endswith(f".{name}"):
            return True
        if "/" in name and _in_network(host, name):
            return True
    return False


def _in_network(host: str, network: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection was closed by the server (or never opened): readable while idle means the
    peer's EOF (or bytes nobody asked for), and sending on it would fail after the request may have left."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _describe(exc: BaseException, timeout: float, *, connecting: bool = False) -> str:
    if isinstance(exc, TimeoutError):
        what = "connect" if connecting else "read"
        return f"{what} timed out (after {timeout:g} s)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the answer was cut off ({len(exc.partial)} bytes read)"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
