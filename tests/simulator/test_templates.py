"""Templates: register from a real local HTTP server, signed multipart upload, copy, delete, extract."""
import io
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from .helpers import ApiError

QCOW2 = b"QFI\xfb\x00\x00\x00\x03" + b"\x00" * 16 + (2 * 1024 ** 3).to_bytes(8, "big") + b"stemcell" * 5000


@pytest.fixture
def image_server():
    files = {"/good.qcow2": QCOW2, "/bad.qcow2": b"not an image at all" * 100}

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            data = files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def wait_template(api, tid, zoneid=None, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        rows = api.list("listTemplates", "template", templatefilter="self", id=tid)
        if zoneid:
            rows = [r for r in rows if r["zoneid"] == zoneid]
        row = rows[0]
        if row["isready"] or "Failed" in row["status"] or "error" in row["status"].lower():
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.02)


def register(api, url, fmt="QCOW2", zone="zone-1"):
    z = api.zone(zone)
    r = api.call("registerTemplate", name="stemcell", displaytext="stemcell", format=fmt, hypervisor="KVM", url=url,
                 zoneid=z["id"], ostypeid=api.ostype("Ubuntu 22.04 LTS")["id"])
    assert r["count"] == 1
    return r["template"][0]


def test_list_templates_filters(api):
    rows = api.list("listTemplates", "template", templatefilter="executable", name="bosh-stemcell-existing")
    assert sorted(r["zonename"] for r in rows) == ["zone-1", "zone-2"]
    assert all(r["isready"] and r["status"] == "Download Complete" for r in rows)
    assert api.call("listTemplates", templatefilter="self") == {}
    with pytest.raises(ApiError):
        api.call("listTemplates", templatefilter="bogus")


def test_register_from_url(api, sim, image_server):
    t = register(api, image_server + "/good.qcow2")
    assert t["isready"] is False
    row = wait_template(api, t["id"])
    assert row["isready"] and row["status"] == "Download Complete"
    assert row["size"] == 2 * 1024 ** 3           # qcow2 virtual size
    assert sim.template_bytes(t["id"]).read_bytes() == QCOW2
    assert sim.inventory()["templates"] == [t["id"]]
    vm = api.deploy(templateid=t["id"])
    assert vm["templateid"] == t["id"]


@pytest.mark.parametrize("path", ["/bad.qcow2", "/missing.qcow2"])
def test_register_failures(api, image_server, path):
    t = register(api, image_server + path)
    row = wait_template(api, t["id"])
    assert not row["isready"] and "Failed" in row["status"] and "error" in row["status"]


def test_register_rejects_non_http(api):
    with pytest.raises(ApiError) as e:
        register(api, "ftp://example/x.qcow2")
    assert e.value.status == 431


def test_register_slow_progress(api, sim, image_server):
    sim.set_job_seconds(0.3)
    t = register(api, image_server + "/good.qcow2")
    time.sleep(0.1)
    row = api.list("listTemplates", "template", templatefilter="self", id=t["id"])[0]
    assert (not row["isready"] and row["status"] in ("Installing Template", "Processing")) or row["status"].endswith("% Downloaded")
    assert wait_template(api, t["id"])["isready"]


def upload_params(api, fmt="QCOW2", hypervisor="KVM"):
    z = api.zone("zone-1")
    return api.call("getUploadParamsForTemplate", name="up", displaytext="up", format=fmt, hypervisor=hypervisor,
                    zoneid=z["id"], ostypeid=api.ostype("Ubuntu 22.04 LTS")["id"])["getuploadparams"]


def post(p, data: bytes, headers=None, field="file"):
    h = {"X-signature": p["signature"], "X-metadata": p["metadata"], "X-expires": p["expires"]}
    if headers is not None:
        h = headers
    return requests.post(p["postURL"], files={field: ("image.qcow2", data)}, headers=h)


def test_upload_ok(api, sim):
    p = upload_params(api)
    assert p["postURL"] == f"{sim.endpoint.rsplit('/client', 1)[0]}/upload/{p['id']}"
    assert datetime.strptime(p["expires"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) > \
        datetime.now(UTC) + timedelta(minutes=50)
    assert requests.get(p["postURL"]).text == "only post requests are allowed"
    # header names are case-insensitive
    r = post(p, QCOW2, headers={"x-SIGNATURE": p["signature"], "x-metadata": p["metadata"], "X-EXPIRES": p["expires"]})
    assert r.status_code == 200 and r.text == "upload successful."
    row = wait_template(api, p["id"])
    assert row["status"] == "Download Complete" and row["isready"]
    assert sim.template_bytes(p["id"]).read_bytes() == QCOW2
    ex = api.acall("extractTemplate", id=p["id"], mode="HTTP_DOWNLOAD")["template"]
    assert requests.get(ex["url"]).content == QCOW2


def test_upload_bad_headers(api):
    p = upload_params(api)
    r = post(p, QCOW2, headers={"X-signature": p["signature"]})
    assert r.status_code == 400 and r.text == "signature, metadata and expires are compulsory fields."
    r = post(p, QCOW2, headers={"X-signature": "AAAA" + p["signature"][4:], "X-metadata": p["metadata"],
                                "X-expires": p["expires"]})
    assert r.status_code == 400 and "signature" in r.text
    r = post(p, QCOW2, headers={"X-signature": p["signature"], "X-metadata": p["metadata"],
                                "X-expires": "2001-01-01T00:00:00.000Z"})
    assert r.status_code == 400 and r.text == "request not valid anymore."
    assert api.list("listTemplates", "template", templatefilter="self", id=p["id"])[0]["status"] == "NotUploaded"


def test_upload_format_mismatch(api):
    p = upload_params(api)
    r = post(p, b"\x00" * 4096)
    assert r.status_code == 500
    row = api.list("listTemplates", "template", templatefilter="self", id=p["id"])[0]
    assert not row["isready"] and row["status"].startswith("Upload failed")


def test_upload_vhd_variants(basic_api):
    api = basic_api
    z = api.zone("basic-zone")
    osid = api.ostype("Ubuntu 22.04 LTS")["id"]
    for data in (b"\x00" * 1024 + b"conectix" + b"\x00" * 504, b"BZh91AY&SY" + b"\x00" * 100, b"\x1f\x8b\x08" + b"\x00" * 50):
        p = api.call("getUploadParamsForTemplate", name="vhd", displaytext="vhd", format="VHD", hypervisor="XenServer",
                     zoneid=z["id"], ostypeid=osid)["getuploadparams"]
        assert post(p, data).status_code == 200


def test_upload_ova(api):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("vm.ovf")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"<ovf>"))
    p = upload_params(api, fmt="OVA")
    assert post(p, buf.getvalue()).status_code == 200
    p2 = upload_params(api, fmt="OVA")
    assert post(p2, QCOW2).status_code == 500


def test_upload_large_streams(api, sim, tmp_path):
    """64 MiB body, generated on the fly: the server must stream it to disk."""
    p = upload_params(api)
    size = 64 * 1024 * 1024
    boundary = "simboundary1234"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.qcow2\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def gen():
        yield head
        yield QCOW2[:1024]
        chunk = (b"\r\n--simboundary123" + b"x" * 1000) * 1000
        left = size - 1024
        while left > 0:
            piece = chunk[:left]
            left -= len(piece)
            yield piece
        yield tail

    r = requests.post(p["postURL"], data=gen(), headers={
        "X-signature": p["signature"], "X-metadata": p["metadata"], "X-expires": p["expires"],
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail))})
    assert r.status_code == 200, r.text
    assert sim.template_bytes(p["id"]).stat().st_size == size


def test_copy_and_delete_per_zone(api, sim, image_server):
    t = register(api, image_server + "/good.qcow2")
    wait_template(api, t["id"])
    z1, z2 = api.zone("zone-1"), api.zone("zone-2")
    c = api.acall("copyTemplate", id=t["id"], sourcezoneid=z1["id"], destzoneid=z2["id"])["template"]
    assert c["zoneid"] == z2["id"] and c["isready"]
    rows = api.list("listTemplates", "template", templatefilter="self", id=t["id"])
    assert sorted(r["zonename"] for r in rows) == ["zone-1", "zone-2"]
    api.acall("deleteTemplate", id=t["id"], zoneid=z1["id"])
    rows = api.list("listTemplates", "template", templatefilter="self", id=t["id"])
    assert [r["zonename"] for r in rows] == ["zone-2"]
    api.acall("deleteTemplate", id=t["id"])
    assert api.call("listTemplates", templatefilter="self", id=t["id"]) == {}
    assert sim.inventory()["templates"] == []
