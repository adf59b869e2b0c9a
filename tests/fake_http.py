"""One in-process fake of ``cloudstack_cpi.cloudstack.transport.HttpTransport`` for unit tests.

It answers what a test registered, in the manner of the ``responses`` library the tests used while the CPI sent
through requests: ``add``/``get``/``post`` register an answer (a status with a JSON or text body, or a
``TransportError`` to raise) for a method and a URL (its query ignored); ``add_callback`` registers a function of
the request.  Of several registrations that match, the first is used and dropped, the last one stays; one that has
answered already gives way to those registered after it.  ``calls``
records every request with the answer given.  A streamed body is read whole, as the real transport sends it.

The real transport (sockets, TLS, proxies, kept-alive connections) is tested against real local servers in
tests/unit/cloudstack/test_transport.py; this fake stands in for it where the test is about what the CPI sends and
how it reads the answers.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cloudstack_cpi.cloudstack.transport import HttpResponse, TransportError

GET, POST = "GET", "POST"


@dataclass
class Request:
    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]
    timeout: tuple[float, float]

    @property
    def text(self) -> str:
        return (self.body or b"").decode()


@dataclass
class Call:
    request: Request
    response: HttpResponse | None
    error: BaseException | None = None


Answer = HttpResponse | BaseException | Callable[[Request], Any]


@dataclass
class _Registration:
    method: str
    url: str
    answer: Answer
    used: bool = False


@dataclass
class FakeHttp:
    verify: str | bool = False
    calls: list[Call] = field(default_factory=list)
    _registered: list[_Registration] = field(default_factory=list)

    # -- registering answers ------------------------------------------------------------------------------------

    def add(self, method: str, url: str, *, json: Any = None, body: str | bytes | BaseException | None = None,
            status: int = 200, headers: Mapping[str, str] | None = None, reason: str = "") -> None:
        if isinstance(body, BaseException):
            self._registered.append(_Registration(method, _bare(url), body))
            return
        data = jsonlib.dumps(json).encode() if json is not None else (body.encode() if isinstance(body, str)
                                                                         else body or b"")
        answer = HttpResponse(status, reason or _REASONS.get(status, ""), dict(headers or {}), data)
        self._registered.append(_Registration(method, _bare(url), answer))

    def get(self, url: str, **kwargs: Any) -> None:
        self.add(GET, url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> None:
        self.add(POST, url, **kwargs)

    def add_callback(self, method: str, url: str, callback: Callable[[Request], Any]) -> None:
        """``callback(request)`` returns ``(status, headers, body)`` or an HttpResponse, or raises."""
        self._registered.append(_Registration(method, _bare(url), callback))

    def reset(self) -> None:
        self._registered.clear()
        self.calls.clear()

    # -- what the CPI calls -------------------------------------------------------------------------------------

    def request(self, method: str, url: str, *, body: bytes | Iterable[bytes] | None = None,
                headers: Mapping[str, str] | None = None, timeout: tuple[float, float]) -> HttpResponse:
        data = body if body is None or isinstance(body, bytes) else b"".join(body)
        request = Request(method, url, data, dict(headers or {}), timeout)
        matching = [r for r in self._registered if r.method == method and r.url == _bare(url)]
        if not matching:
            error = TransportError(f"nothing registered for {method} {_bare(url)}", sent=False)
            self.calls.append(Call(request, None, error))
            raise error
        registration = matching[0]
        if len(matching) > 1:
            self._registered.remove(registration)
            if registration.used:  # registered before the test's later ones and answered already: they win
                registration = matching[1]
        registration.used = True
        try:
            answer = _answer(registration.answer, request)
        except BaseException as exc:
            self.calls.append(Call(request, None, exc))
            raise
        self.calls.append(Call(request, answer))
        return answer

    def fresh(self) -> FakeHttp:
        return self  # one registry: a test registers the upload slot's answers where the client's are

    def close(self) -> None:
        pass


def _answer(answer: Answer, request: Request) -> HttpResponse:
    if isinstance(answer, BaseException):
        raise answer
    if isinstance(answer, HttpResponse):
        return answer
    produced = answer(request)
    if isinstance(produced, HttpResponse):
        return produced
    status, headers, body = produced
    data = body.encode() if isinstance(body, str) else body
    return HttpResponse(status, _REASONS.get(status, ""), dict(headers), data)


def _bare(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def not_sent(text: str = "[Errno 111] Connection refused") -> TransportError:
    """A failure before anything left this machine (refused, unresolvable, connect timeout)."""
    return TransportError(text, sent=False)


def no_answer(text: str = "the server closed the connection without an answer") -> TransportError:
    """A failure after the request may have reached the server (reset, read timeout)."""
    return TransportError(text, sent=True)


def tls_refused(text: str = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed") -> TransportError:
    return TransportError(text, sent=False, tls=True)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            431: "", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
