"""The CPI's HTTP transport (cloudstack/transport.py) against real servers on 127.0.0.1: kept-alive connections,
a connection the server dropped, timeouts, whether a failed request may have left, TLS trust, proxies.

What the transport keeps from requests, which the CPI used before, is what requests documents and does:
proxies from ``http_proxy``/``https_proxy``/``all_proxy`` with ``no_proxy`` (requests.utils.should_bypass_proxies,
get_environ_proxies: lower case first, domains by suffix, ``*``, CIDR for IP hosts), an https origin reached
through a CONNECT tunnel and an http one by the absolute URL (urllib3's ProxyManager), a connect timeout and a read
timeout (requests' ``timeout=(connect, read)``), and a pooled connection the server closed while idle replaced
before use (urllib3's ``is_connection_dropped``).
"""

from __future__ import annotations

import base64
import http.server
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cloudstack_cpi.cloudstack.transport import HttpTransport, TransportError, _bypassed, _origin_of

TIMEOUT = (2.0, 2.0)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self._answer(self.rfile.read(length))

    def _answer(self, received: bytes) -> None:
        server = self.server
        server.seen.append((self.command, self.path, dict(self.headers), received))  # type: ignore[attr-defined]
        if self.path.startswith("/silent"):
            time.sleep(3)
            return
        body = b'{"echo": %d}' % len(received)
        self.send_response(418 if self.path.startswith("/teapot") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Description", "short and stout")
        self.end_headers()
        self.wfile.write(body)
        if self.path.startswith("/then-drop"):
            self.close_connection = True  # closes without saying Connection: close, as an idle timeout does

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list = []
        self.connections = 0

    def get_request(self):
        self.connections += 1
        return super().get_request()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that went away mid-request (the tests' broken bodies and timeouts) is expected here


@contextmanager
def _serving(server: http.server.HTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def web():
    instance = _Server()
    with _serving(instance) as address:
        instance.address = address  # type: ignore[attr-defined]
        yield instance


def _transport(**environ: str) -> HttpTransport:
    return HttpTransport(False, environ=environ)


def test_answers_of_any_status_come_back_whole_over_one_kept_alive_connection(web):
    transport = _transport()
    answer = transport.request("POST", f"http://{web.address}/api", body=b"a=1&b=2",
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=TIMEOUT)
    assert (answer.status, answer.json()) == (200, {"echo": 7})
    teapot = transport.request("GET", f"http://{web.address}/teapot?command=x", timeout=TIMEOUT)
    assert teapot.status == 418 and teapot.header("x-description") == "short and stout"
    assert web.connections == 1
    method, path, headers, _ = web.seen[-1]
    assert (method, path, headers["User-Agent"]) == ("GET", "/teapot?command=x", "cloudstack-cpi")
    transport.close()


def test_a_connection_the_server_dropped_while_idle_is_replaced_before_use(web):
    """A mutation must not be sent on a connection that is already closed: its failure would look like a request
    that may have reached the server (outcome unknown) when nothing was sent."""
    transport = _transport()
    assert transport.request("GET", f"http://{web.address}/then-drop", timeout=TIMEOUT).status == 200
    time.sleep(0.1)  # the server's close arrives
    assert transport.request("POST", f"http://{web.address}/api", body=b"x", timeout=TIMEOUT).status == 200
    assert web.connections == 2
    transport.close()


def test_nothing_listening_is_a_request_that_never_left():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        _transport().request("POST", f"http://127.0.0.1:{port}/api", body=b"x", timeout=TIMEOUT)
    assert caught.value.sent is False and caught.value.tls is False
    assert "refused" in caught.value.text.lower()


def test_a_server_that_never_answers_is_a_read_timeout_that_may_have_left(web):
    with pytest.raises(TransportError) as caught:
        _transport().request("POST", f"http://{web.address}/silent", body=b"x", timeout=(2.0, 0.3))
    assert caught.value.sent is True and caught.value.text == "read timed out (after 0.3 s)"


def test_a_body_that_fails_while_streaming_raises_as_it_is_and_the_next_request_gets_a_new_connection(web):
    def broken():
        yield b"x" * 10
        raise ValueError("the image is truncated")

    transport = _transport()
    with pytest.raises(ValueError, match="truncated"):
        transport.request("POST", f"http://{web.address}/upload", body=broken(),
                          headers={"Content-Length": "100"}, timeout=TIMEOUT)
    chunks = [b"a" * 1000, b"b" * 24]
    answer = transport.request("POST", f"http://{web.address}/upload", body=iter(chunks),
                               headers={"Content-Length": "1024"}, timeout=TIMEOUT)
    assert answer.json() == {"echo": 1024} and "Transfer-Encoding" not in web.seen[-1][2]
    transport.close()


# -- TLS -----------------------------------------------------------------------------------------------------------


@contextmanager
def _tls_serving(tmp_path, *names: str) -> Iterator[_Server]:
    """A server with a certificate for ``names`` from a CA of its own, whose file is ``ca_file``."""
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    instance = _Server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(context)
    instance.socket = context.wrap_socket(instance.socket, server_side=True)
    ca_file = tmp_path / f"ca-{'-'.join(names)}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with _serving(instance) as address:
        instance.address = address  # type: ignore[attr-defined]
        instance.ca_file = str(ca_file)  # type: ignore[attr-defined]
        yield instance


@pytest.fixture
def tls_web(tmp_path):
    with _tls_serving(tmp_path, "127.0.0.1", "localhost") as instance:
        yield instance


def test_tls_trusts_the_configured_ca_file_only(tls_web):
    import certifi

    trusted = HttpTransport(tls_web.ca_file, environ={})
    assert trusted.request("GET", f"https://{tls_web.address}/api", timeout=TIMEOUT).status == 200
    with pytest.raises(TransportError) as caught:
        HttpTransport(certifi.where(), environ={}).request("GET", f"https://{tls_web.address}/api", timeout=TIMEOUT)
    assert caught.value.tls and not caught.value.sent and "certificate verify failed" in caught.value.text.lower()
    assert HttpTransport(False, environ={}).request("GET", f"https://{tls_web.address}/api",
                                                   timeout=TIMEOUT).status == 200


def test_tls_checks_the_hostname(tmp_path):
    with _tls_serving(tmp_path, "cs.other.test") as elsewhere, pytest.raises(TransportError) as caught:
        HttpTransport(elsewhere.ca_file, environ={}).request("GET", f"https://{elsewhere.address}/api",
                                                             timeout=TIMEOUT)
    assert caught.value.tls and not caught.value.sent and "127.0.0.1" in caught.value.text


def test_environment_ca_variables_play_no_part(tls_web, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", tls_web.ca_file)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_web.ca_file)
    import certifi

    with pytest.raises(TransportError) as caught:
        HttpTransport(certifi.where()).request("GET", f"https://{tls_web.address}/api", timeout=TIMEOUT)
    assert caught.value.tls


# -- proxies -------------------------------------------------------------------------------------------------------


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """A forward proxy: CONNECT tunnels, absolute-form requests relayed; 407 without the expected credentials."""

    protocol_version = "HTTP/1.1"

    def _authorised(self) -> bool:
        self.server.seen.append(  # type: ignore[attr-defined]
            (self.command, self.path, self.headers.get("Proxy-Authorization")))
        expected = self.server.credentials  # type: ignore[attr-defined]
        if expected and self.headers.get("Proxy-Authorization") != expected:
            self.send_response(407)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        return True

    def do_CONNECT(self) -> None:
        if not self._authorised():
            return
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        self.send_response(200, "Connection established")
        self.end_headers()
        sockets = [self.connection, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], 5)
            if not readable:
                break
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    upstream.close()
                    return
                (upstream if sock is self.connection else self.connection).sendall(data)

    def do_GET(self) -> None:
        if not self._authorised():
            return
        body = b'{"via": "proxy"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def proxy():
    instance = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    instance.daemon_threads = True
    instance.seen = []  # type: ignore[attr-defined]
    instance.credentials = None  # type: ignore[attr-defined]
    with _serving(instance) as address:
        instance.address = address  # type: ignore[attr-defined]
        yield instance


def test_an_http_origin_goes_to_the_proxy_by_its_absolute_url(proxy):
    transport = _transport(http_proxy=f"http://{proxy.address}")
    answer = transport.request("GET", "http://cs.test:8080/client/api?command=listZones", timeout=TIMEOUT)
    assert answer.json() == {"via": "proxy"}
    assert proxy.seen == [("GET", "http://cs.test:8080/client/api?command=listZones", None)]


def test_an_https_origin_is_tunnelled_with_the_proxys_credentials(proxy, tls_web):
    proxy.credentials = "Basic " + base64.b64encode(b"op:s3cret/x").decode()
    transport = HttpTransport(tls_web.ca_file, environ={"HTTPS_PROXY": f"http://op:s3cret%2Fx@{proxy.address}"})
    assert transport.request("GET", f"https://{tls_web.address}/api", timeout=TIMEOUT).status == 200
    assert proxy.seen == [("CONNECT", tls_web.address, proxy.credentials)]
    assert tls_web.seen[-1][1] == "/api"  # the origin got the request, through the tunnel, with TLS to it


def test_a_proxy_refusing_the_tunnel_is_a_request_that_never_left(proxy, tls_web):
    proxy.credentials = "Basic expected"
    with pytest.raises(TransportError) as caught:
        HttpTransport(tls_web.ca_file, environ={"https_proxy": proxy.address}).request(
            "POST", f"https://{tls_web.address}/api", body=b"x", timeout=TIMEOUT)
    assert caught.value.sent is False and "407" in caught.value.text
    assert tls_web.seen == []


def test_no_proxy_reaches_the_origin_directly(proxy, web):
    transport = _transport(http_proxy=f"http://{proxy.address}", no_proxy="localhost, 127.0.0.0/8")
    assert transport.request("GET", f"http://{web.address}/api", timeout=TIMEOUT).json() == {"echo": 0}
    assert proxy.seen == []


@pytest.mark.parametrize("no_proxy, url, bypassed", [
    ("*", "https://cs.example.com/client/api", True),
    ("example.com", "https://cs.example.com/client/api", True),
    (".example.com", "https://cs.example.com/client/api", True),
    ("*.example.com", "https://cs.example.com/client/api", True),
    ("example.com", "https://cs.example.org/client/api", False),
    ("ample.com", "https://cs.example.com/client/api", False),
    ("cs.example.com:8443", "https://cs.example.com:8443/client/api", True),
    ("cs.example.com:8443", "https://cs.example.com/client/api", False),
    ("10.0.0.0/8", "http://10.1.2.3:8080/client/api", True),
    ("10.0.0.0/8", "http://192.168.1.1:8080/client/api", False),
    ("", "http://10.1.2.3:8080/client/api", False),
])
def test_no_proxy_entries(no_proxy, url, bypassed):
    assert _bypassed(_origin_of(url), no_proxy) is bypassed


def test_proxy_variables_lower_case_first_then_upper_then_all_proxy():
    origin = _origin_of("https://cs.test/client/api")
    both = _transport(https_proxy="http://lower:1", HTTPS_PROXY="http://upper:2").proxy_for(origin)
    assert both is not None and (both.host, both.port) == ("lower", 1)
    fallback = _transport(ALL_PROXY="proxy.test").proxy_for(origin)
    assert fallback is not None and (fallback.host, fallback.port, fallback.authorization) == ("proxy.test", 80, None)
    assert _transport(http_proxy="http://only-for-http:3128").proxy_for(origin) is None
    with pytest.raises(TransportError, match="only http:// proxies"):
        _transport(https_proxy="socks5://127.0.0.1:1080").proxy_for(origin)


# -- the volume strategy's one request outside the API -------------------------------------------------------------


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    """CloudStack's metadata service on the virtual router: ``GET /latest/meta-data/vm-id`` answers the VM's uuid
    as plain text (apache/cloudstack: the virtual router's VmDataCommand is filled with
    ``cmd.addVmData("metadata", "vm-id", vmUuid)``)."""

    answer = b"9d0ce1a6-2c3e-4b39-9f0c-5e4c1a7b1f21\n"

    def do_GET(self) -> None:
        found = self.path == "/latest/meta-data/vm-id"
        body = self.answer if found else b"not here"
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_the_volume_strategy_asks_the_metadata_service_for_its_vm_id_directly(proxy, monkeypatch):
    """upload_volume.own_vm_id: the metadata service is on the VM's own network, reached without the proxy the
    environment names for the API."""
    from cloudstack_cpi.errors import CloudError
    from cloudstack_cpi.stemcell.upload_volume import own_vm_id

    monkeypatch.setenv("http_proxy", f"http://{proxy.address}")
    metadata = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetadataHandler)
    with _serving(metadata) as address:
        assert own_vm_id(None, f"http://{address}/latest/meta-data/vm-id") == "9d0ce1a6-2c3e-4b39-9f0c-5e4c1a7b1f21"
        with pytest.raises(CloudError, match=r"did not answer a VM id \(HTTP 404\)"):
            own_vm_id(None, f"http://{address}/latest/meta-data/other")
    assert own_vm_id("configured-id", "http://127.0.0.1:9/never-asked") == "configured-id"
    assert proxy.seen == []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CloudError, match="set cloudstack.stemcell.volume.vm_id"):
        own_vm_id(None, f"http://127.0.0.1:{port}/latest/meta-data/vm-id", timeout=1)
