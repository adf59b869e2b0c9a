"""MultipartBody: same bytes as a reference encoder, exact Content-Length, real POST."""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import io
import os
import threading
from typing import ClassVar

import pytest
from urllib3.filepost import encode_multipart_formdata

from cloudstack_cpi.cloudstack.transport import HttpTransport
from cloudstack_cpi.stemcell.multipart import MultipartBody

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)


def body_for(data: bytes, **kwargs) -> MultipartBody:
    return MultipartBody("file", kwargs.pop("filename", "root.qcow2"), "application/octet-stream",
                         lambda: io.BytesIO(data), len(data), **kwargs)


@pytest.mark.parametrize("filename", ["root.qcow2", 'we"ird\nname.vhd.bz2'])
def test_body_equals_urllib3_reference_encoding(filename):
    body = body_for(PAYLOAD, filename=filename, boundary="b0undary")
    expected, content_type = encode_multipart_formdata(
        {"file": (filename, PAYLOAD, "application/octet-stream")}, boundary="b0undary")
    produced = b"".join(body)
    assert produced == expected
    assert body.content_type == content_type
    assert body.content_length == len(expected)


def test_chunks_are_about_a_mebibyte_and_progress_counts_file_bytes():
    seen: list[int] = []
    chunks = list(body_for(PAYLOAD, progress=seen.append))
    assert max(len(chunk) for chunk in chunks) == 1 << 20
    assert seen == [1 << 20, 2 << 20, 3 << 20, len(PAYLOAD)]


def test_iterable_sources_are_accepted():
    parts = [PAYLOAD[:1000], memoryview(PAYLOAD)[1000:]]
    body = MultipartBody("file", "x", "application/octet-stream", lambda: iter(parts), len(PAYLOAD))
    assert PAYLOAD in b"".join(body)


def test_short_source_fails_instead_of_lying_about_length():
    body = MultipartBody("file", "x", "application/octet-stream", lambda: io.BytesIO(b"abc"), 4)
    with pytest.raises(ValueError, match="ended after 3 of 4"):
        b"".join(body)


def test_long_source_fails():
    body = MultipartBody("file", "x", "application/octet-stream", lambda: io.BytesIO(b"abcde"), 4)
    with pytest.raises(ValueError, match="longer than the announced 4"):
        b"".join(body)


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: ClassVar[dict] = {}  # what the last request carried, read by the test

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        _Recorder.received = {"headers": dict(self.headers), "body": self.rfile.read(length)}
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/upload"
    httpd.shutdown()
    httpd.server_close()


def test_the_transport_posts_it_with_content_length_not_chunked(server):
    """As upload_post sends it: the CPI's HttpTransport, the body's own headers."""
    body = body_for(PAYLOAD)
    response = HttpTransport(False, environ={}).request("POST", server, body=body, headers=body.headers,
                                                         timeout=(30, 30))
    assert response.status == 200
    headers, raw = _Recorder.received["headers"], _Recorder.received["body"]
    assert "Transfer-Encoding" not in headers
    assert int(headers["Content-Length"]) == body.content_length == len(raw)
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + raw)
    (part,) = list(parsed.iter_parts())
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "root.qcow2"
    assert part.get_payload(decode=True) == PAYLOAD

