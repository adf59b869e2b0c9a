"""The ``url`` strategy: CloudStack downloads the image from an HTTP URL (registerTemplate).

Two ways to have a URL:

* ``stemcell.url.base_url`` + ``serve_directory``: an existing web server
  serves a directory; the CPI copies the upload bytes there (streaming) and
  removes the file once CloudStack has its copy.
* the built-in server: a small threaded stdlib HTTP server serving exactly
  one file under an unguessable path, for as long as CloudStack needs to
  download it.  It answers HEAD and single ``Range`` requests (the secondary
  storage VM may look at the size first or resume).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

from ..errors import CloudError
from . import convert
from .image import CHUNK_SIZE
from .progress import ProgressMeter

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@contextlib.contextmanager
def staged_file(image_path: str, plan: convert.UploadPlan, directory: str, filename: str,
                log) -> Iterator[str]:
    """A file ``directory/filename`` holding exactly the planned upload bytes, removed afterwards.

    Written under a temporary name and renamed when complete, so a web server
    never serves a partial file.
    """
    target = os.path.join(directory, filename)
    # Entered in the try below, whose finally removes the file by name whatever happens.
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".cpi-upload-", delete=False)  # noqa: SIM115
    try:
        with handle, convert.open_upload_stream(image_path, plan, tmpdir=directory) as (stream, length):
            meter = ProgressMeter(length, f"Writing {filename}", log.info)
            written = 0
            if hasattr(stream, "read"):
                while chunk := stream.read(CHUNK_SIZE):
                    handle.write(chunk)
                    written += len(chunk)
                    meter.update(written)
            else:
                for chunk in stream:
                    handle.write(chunk)
                    written += len(chunk)
                    meter.update(written)
            meter.finish()
        os.chmod(handle.name, 0o644)  # the web server's user must be able to read it
        os.replace(handle.name, target)
        yield target
    finally:
        for path in (handle.name, target):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class OneFileServer:
    """Serve one file at ``/<token>/<name>`` until stopped; counts bytes sent for progress."""

    def __init__(self, path: str, name: str, *, listen_host: str, listen_port: int, advertise_host: str | None,
                 endpoint: str, log) -> None:
        self.path = path
        self.name = name
        self.size = os.path.getsize(path)
        self.route = f"/{secrets.token_urlsafe(16)}/{quote(name)}"
        self.log = log
        self.sent = 0
        self.requests = 0
        self._lock = threading.Lock()
        self.meter = ProgressMeter(self.size, f"Serving {name}", log.info)
        try:
            self._server = _Server((listen_host, listen_port), _handler_for(self))
        except OSError as exc:
            raise CloudError(f"Starting the stemcell HTTP server on {listen_host}:{listen_port} "
                             f"(cloudstack.stemcell.url.listen_host/listen_port): {exc.strerror or exc}") from None
        self.port = self._server.server_address[1]
        host = advertise_host or _advertised(listen_host, endpoint)
        self.url = f"http://{_bracket(host)}:{self.port}{self.route}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="stemcell-http", daemon=True)

    def __enter__(self) -> OneFileServer:
        self._thread.start()
        self.log.info(f"Serving {self.name} ({self.size} bytes) at {self.url}")
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self.sent:
            self.meter.finish()

    def add_sent(self, count: int) -> None:
        with self._lock:
            self.sent += count
            self.meter.update(min(self.sent, self.size))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:  # a client hanging up is not our error
        pass


def _handler_for(server: OneFileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "cloudstack-cpi"
        sys_version = ""

        def log_message(self, fmt, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            if urlsplit(self.path).path != server.route:
                self._plain(404, b"not found\n", body)
                return
            with server._lock:
                server.requests += 1
            size = server.size
            start, end = 0, size - 1
            spec = self.headers.get("Range")
            status = 200
            if spec:
                wanted = _parse_range(spec, size)
                if wanted is None:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = wanted
                status = 206
            length = max(0, end - start + 1)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if not body or not length:
                return
            self.wfile.flush()
            with open(server.path, "rb") as handle:
                offset, remaining = start, length
                while remaining > 0:
                    count = min(remaining, 8 * CHUNK_SIZE)
                    try:
                        sent = self.connection.sendfile(handle, offset, count)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True
                        return
                    if not sent:
                        break
                    offset += sent
                    remaining -= sent
                    server.add_sent(sent)

        def _plain(self, status: int, text: bytes, body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if body:
                self.wfile.write(text)

    return Handler


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range as inclusive (start, end); None if unsatisfiable."""
    match = _RANGE.match(spec.strip())
    if not match or size == 0:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


def _advertised(listen_host: str, endpoint: str) -> str:
    """The address CloudStack should use: the listen address, or the one this host reaches the API from."""
    if listen_host not in ("", "0.0.0.0", "::"):
        return listen_host
    parts = urlsplit(endpoint)
    target = parts.hostname or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, parts.port or 443))  # UDP: no packet is sent
            return probe.getsockname()[0]
    except OSError:
        return socket.gethostname()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def url_join(base_url: str, filename: str) -> str:
    return base_url.rstrip("/") + "/" + quote(filename)


def check_directory(directory: str) -> None:
    if not os.path.isdir(directory):
        raise CloudError(f"cloudstack.stemcell.url.serve_directory '{directory}' is not a directory")
    if not os.access(directory, os.W_OK):
        raise CloudError(f"cloudstack.stemcell.url.serve_directory '{directory}' is not writable")

