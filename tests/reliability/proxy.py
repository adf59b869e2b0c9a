"""A tiny lossy HTTP proxy for the reliability tests: forwards every API request to the simulator and, for the
commands it is told to, lets the server act and then closes the connection without answering.

The simulator's own ``drop_after_action_rate`` hits requests at random; this proxy loses the answer of exactly
the Nth request of one command, so a test can say which mutation had its outcome lost.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

PASSED_HEADERS = ("Content-Type", "X-Description", "Retry-After")


class _Rule:
    def __init__(self, command: str, nth: int, times: int) -> None:
        self.command = command.lower()
        self.nth = nth
        self.times = times
        self.seen = 0

    def hit(self, command: str) -> bool:
        if command != self.command:
            return False
        self.seen += 1
        return self.nth <= self.seen < self.nth + self.times


class LossyProxy:
    """``proxy.lose_answer("deployVirtualMachine")``: the next deploy is executed but its answer never arrives."""

    def __init__(self, upstream_endpoint: str) -> None:
        parts = urlsplit(upstream_endpoint)
        self._upstream = (parts.hostname, parts.port)
        self._path = parts.path
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.commands: list[str] = []        # every command forwarded, lower-cased, in order
        self.lost: list[str] = []            # commands whose answers were thrown away
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._handle(self, "GET")

            def do_POST(self):
                proxy._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self._path}"

    def start(self) -> LossyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LossyProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def lose_answer(self, command: str, nth: int = 1, times: int = 1) -> None:
        """Lose the answers of the ``nth`` .. ``nth + times - 1``-th requests of ``command`` from now on."""
        with self._lock:
            self._rules.append(_Rule(command, nth, times))

    def reset(self) -> None:
        """Forget the commands seen so far (rules keep their counts)."""
        with self._lock:
            self.commands.clear()
            self.lost.clear()

    def count(self, command: str) -> int:
        with self._lock:
            return self.commands.count(command.lower())

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        params = dict(parse_qsl(urlsplit(handler.path).query))
        if body:
            params.update(parse_qsl(body.decode("utf-8", "replace")))
        command = (params.get("command") or "").lower()
        with self._lock:
            self.commands.append(command)
            hits = [rule.hit(command) for rule in self._rules]  # every rule counts the request: no short cut
            lose = any(hits)
        upstream = http.client.HTTPConnection(*self._upstream, timeout=120)
        try:
            headers = {"Content-Type": handler.headers.get("Content-Type") or "application/x-www-form-urlencoded"}
            upstream.request(method, handler.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            answer = response.read()
            status, answer_headers = response.status, response.getheaders()
        except (OSError, http.client.HTTPException):
            lose = True  # the simulator dropped it itself: pass the drop on
            status, answer_headers, answer = 0, [], b""
        finally:
            upstream.close()
        if lose:
            with self._lock:
                self.lost.append(command)
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        # Status line, headers and body in one write: separate small writes stall 40 ms each (Nagle, delayed ACK).
        lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Unknown')}"]
        lines += [f"{name}: {value}" for name, value in answer_headers if name in PASSED_HEADERS]
        lines.append(f"Content-Length: {len(answer)}")
        handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer)
