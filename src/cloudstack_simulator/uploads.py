"""Template bytes: register-from-URL downloads, the signed multipart POST upload endpoint (streaming to
disk) and the extractTemplate download endpoint."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import tarfile
import threading
import urllib.error
import urllib.request
import zipfile
from datetime import UTC, datetime

from .signing import parse_expires
from .util import CHUNK

log = logging.getLogger("cloudstack_simulator")

COMPULSORY = "signature, metadata and expires are compulsory fields."


def qcow2_virtual_size(path: str) -> int | None:
    with open(path, "rb") as f:
        head = f.read(32)
    if len(head) >= 32 and head[:4] == b"QFI\xfb":
        return int.from_bytes(head[24:32], "big")
    return None


def sniff_error(path: str, fmt: str) -> str | None:
    """None when the file looks like ``fmt``, else a reason. Mirrors the SSVM's post-upload checks."""
    fmt = fmt.upper()
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as f:
        head = f.read(512)
        f.seek(max(0, size - 512))
        tail = f.read(512)
    if fmt == "QCOW2":
        return None if head[:4] == b"QFI\xfb" else "the file is not a valid QCOW2 image (bad magic)"
    if fmt == "VHD":
        if b"conectix" in tail or head[:8] == b"conectix":
            return None
        if head[:3] == b"BZh" or head[:2] == b"\x1f\x8b" or zipfile.is_zipfile(path):
            return None  # compressed VHD, accepted for XenServer like CloudStack does
        return "the file is not a valid VHD image (no conectix footer)"
    if fmt == "VHDX":
        return None if head[:8] == b"vhdxfile" else "the file is not a valid VHDX image"
    if fmt == "OVA":
        try:
            with tarfile.open(path, "r:*") as tf:
                if any(m.name.lower().endswith(".ovf") for m in tf.getmembers()):
                    return None
            return "the OVA archive does not contain an .ovf descriptor"
        except (tarfile.TarError, OSError, EOFError):
            return "the file is not a valid OVA (tar) archive"
    return None  # RAW / TAR / ISO: anything goes


def virtual_size(path: str, fmt: str) -> int:
    if fmt.upper() == "QCOW2":
        v = qcow2_virtual_size(path)
        if v:
            return v
    return os.path.getsize(path)


class Uploads:
    def __init__(self, sim):
        self.sim = sim
        self.stop_event = threading.Event()

    @property
    def state(self):
        return self.sim._state

    # ------------------------------------------------------------------ helpers
    def _set_status(self, tid: str, zone_ids, status: str, isready: bool) -> dict | None:
        st = self.state
        with st.lock:
            tpl = st.templates.get(tid)
            if tpl is None:
                return None
            for zid in zone_ids:
                if zid in tpl["_zones"]:
                    tpl["_zones"][zid].update(status=status, isready=isready)
            return tpl

    def _finish_later(self, tid: str, zone_ids, path: str, fmt: str, step: str = "registerTemplate") -> None:
        """Template bytes are in place: 'Installing Template', then 'Download Complete' once the timing's
        ``<step>:install`` duration (or the job_seconds override) has passed."""
        st = self.state
        with st.lock:
            tpl = st.templates.get(tid)
            if tpl is None:
                os.unlink(path)
                return
            tpl["_file"] = path
            tpl["_physicalsize"] = os.path.getsize(path)
            tpl["size"] = virtual_size(path, fmt)
            delay = st.jobs.duration(step, "install")
        if delay > 0:
            self._set_status(tid, zone_ids, "Installing Template", False)
            if self.stop_event.wait(delay):
                return
        self._set_status(tid, zone_ids, "Download Complete", True)

    # ------------------------------------------------------------------ registerTemplate
    def start_download(self, tid: str, zone_ids: list[str], url: str, fmt: str) -> None:
        t = threading.Thread(target=self._download, args=(tid, list(zone_ids), url, fmt),
                             name=f"sim-download-{tid[:8]}", daemon=True)
        t.start()

    def _download(self, tid: str, zone_ids: list[str], url: str, fmt: str) -> None:
        final = str(self.state.datadir / "templates" / f"{tid}.img")
        part = final + ".part"
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "CloudStack-SSVM-Simulator"})
            with urllib.request.urlopen(req, timeout=60) as resp, open(part, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                last = -1
                while True:
                    if self.stop_event.is_set():
                        return
                    buf = resp.read(CHUNK)
                    if not buf:
                        break
                    out.write(buf)
                    done += len(buf)
                    pct = int(done * 100 / total) if total else 0
                    if pct != last and pct < 100:
                        last = pct
                        if self._set_status(tid, zone_ids, f"{pct}% Downloaded", False) is None:
                            return
                if total and done != total:
                    raise OSError(f"connection closed after {done} of {total} bytes")
            reason = sniff_error(part, fmt)
            if reason:
                raise ValueError(reason)
            os.replace(part, final)
        except urllib.error.HTTPError as e:
            self._fail_download(tid, zone_ids, part, f"HTTP Server returned {e.code} (expected 200 OK)")
            return
        except Exception as e:  # noqa: BLE001 - whatever stops the download is the template's download error
            self._fail_download(tid, zone_ids, part, str(getattr(e, "reason", None) or e))
            return
        self._finish_later(tid, zone_ids, final, fmt)

    def _fail_download(self, tid, zone_ids, part, reason):
        with contextlib.suppress(OSError):
            os.unlink(part)
        self._set_status(tid, zone_ids, f"Failed to download template, error: {reason}", False)

    # ------------------------------------------------------------------ getUploadParamsForTemplate
    def sign(self, metadata: str, post_url: str, expires: str) -> str:
        mac = hmac.new(self.state.upload_key, (metadata + post_url + expires).encode(), hashlib.sha1)
        return base64.b64encode(mac.digest()).decode()

    @staticmethod
    def make_metadata(info: dict) -> str:
        return base64.b64encode(json.dumps(info, sort_keys=True).encode()).decode()

    # ------------------------------------------------------------------ POST /upload/<uuid>
    def _reply(self, h, status: int, text: str, body_left: int = 0) -> None:
        if body_left:
            if body_left <= 8 * CHUNK:
                _drain(h.rfile, body_left)
            else:
                h.close_connection = True
        h._send(status, text.encode(), "text/plain; charset=UTF-8")

    def handle_upload(self, h, method: str, rest: str) -> None:
        if method != "POST":
            return self._reply(h, 400, "only post requests are allowed")
        tid = rest.strip("/").split("/")[0]
        length_hdr = h.headers.get("Content-Length")
        length = int(length_hdr) if length_hdr and length_hdr.isdigit() else 0
        sig, meta, exp = h.headers.get("X-signature"), h.headers.get("X-metadata"), h.headers.get("X-expires")
        if not sig or not meta or not exp:
            return self._reply(h, 400, COMPULSORY, length)
        if length <= 0:
            h.close_connection = True
            return self._reply(h, 400, "content length is not set")
        ts = parse_expires(exp)
        if ts is None or ts < datetime.now(UTC):
            return self._reply(h, 400, "request not valid anymore.", length)
        st = self.state
        with st.lock:
            tpl = st.templates.get(tid)
            post_url = tpl.get("_post_url") if tpl else None
        if tpl is None or not post_url:
            return self._reply(h, 400, "invalid upload request, unknown entity", length)
        if not hmac.compare_digest(sig.encode(), self.sign(meta, post_url, exp).encode()):
            return self._reply(h, 400, "signature validation failed.", length)
        try:
            info = json.loads(base64.b64decode(meta))
        except Exception:  # noqa: BLE001 - metadata that does not decode, however, is refused as such
            return self._reply(h, 400, "invalid metadata.", length)
        if info.get("id") != tid:
            return self._reply(h, 400, "invalid upload request, metadata does not match the url", length)
        zone_ids = [info.get("zoneid")]
        with st.lock:
            zr = tpl["_zones"].get(info.get("zoneid"))
            if zr is None or zr["status"] not in ("NotUploaded", "UploadAbandoned"):
                busy = True
            else:
                busy = False
                zr.update(status="UploadInProgress", isready=False)
        if busy:
            return self._reply(h, 400, "upload request for this entity is already in progress or completed", length)
        ctype = h.headers.get("Content-Type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        final = str(st.datadir / "templates" / f"{tid}.img")
        part = final + ".part"
        fmt = tpl["format"]
        if "multipart/form-data" not in ctype.lower() or not m:
            self._set_status(tid, zone_ids, "NotUploaded", False)
            return self._reply(h, 422, "received entity is not a file", length)
        try:
            got = parse_multipart_to_file(h.rfile, length, m.group(1).encode(), part)
        except Exception as e:  # noqa: BLE001 - whatever breaks the upload is the upload's failure
            h.close_connection = True
            self._set_status(tid, zone_ids, f"Upload failed: {e}", False)
            with contextlib.suppress(OSError):
                os.unlink(part)
            return self._reply(h, 500, f"upload failed: {e}")
        if not got:
            self._set_status(tid, zone_ids, "NotUploaded", False)
            return self._reply(h, 422, "received entity is not a file")
        reason = sniff_error(part, fmt)
        if reason:
            os.unlink(part)
            self._set_status(tid, zone_ids, f"Upload failed: format mismatch, declared {fmt} but {reason}", False)
            return self._reply(h, 500, f"Upload failed: format mismatch, declared {fmt} but {reason}")
        os.replace(part, final)
        if st.jobs.duration("upload", "install") > 0:
            threading.Thread(target=self._finish_later, args=(tid, zone_ids, final, fmt, "upload"),
                             daemon=True).start()
        else:
            self._finish_later(tid, zone_ids, final, fmt, "upload")
        return self._reply(h, 200, "upload successful.")

    # ------------------------------------------------------------------ GET /extract/<token>
    def handle_extract(self, h, method: str, rest: str) -> None:
        token = rest.split("/")[0]
        with self.state.lock:
            ex = self.state.extracts.get(token)
        if method != "GET" or ex is None:
            return h._send(404, b"Not Found", "text/plain")
        path = ex.get("path")
        size = os.path.getsize(path) if path and os.path.exists(path) else 0
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(size))
        h.end_headers()
        if h.command == "HEAD" or not size:
            return
        with open(path, "rb") as f:
            shutil.copyfileobj(f, h.wfile, CHUNK)


def _drain(rfile, n: int) -> None:
    while n > 0:
        b = rfile.read(min(CHUNK, n))
        if not b:
            return
        n -= len(b)


def parse_multipart_to_file(rfile, length: int, boundary: bytes, out_path: str) -> bool:
    """Stream a multipart/form-data body (``length`` bytes) and write the FIRST file part to ``out_path``.
    Reads in 1 MiB chunks and never holds more than ~2 chunks in memory. Returns whether a file part was found."""
    remaining = length
    buf = bytearray()

    def fill() -> bool:
        nonlocal remaining
        if remaining <= 0:
            return False
        chunk = rfile.read(min(CHUNK, remaining))
        if not chunk:
            raise OSError("client closed the connection before the end of the body")
        remaining -= len(chunk)
        buf.extend(chunk)
        return True

    delim = b"--" + boundary
    # preamble
    while True:
        idx = buf.find(delim)
        if idx >= 0:
            del buf[:idx + len(delim)]
            break
        if len(buf) > len(delim):
            del buf[:len(buf) - len(delim)]
        if not fill():
            return False
    got_file = False
    sep = b"\r\n" + delim
    while True:
        while len(buf) < 2:
            if not fill():
                return got_file
        if buf[:2] == b"--":
            break
        # skip the line end after the delimiter (transport padding allowed)
        while b"\r\n" not in buf:
            if not fill():
                return got_file
        del buf[:buf.index(b"\r\n") + 2]
        while b"\r\n\r\n" not in buf:
            if len(buf) > 65536 or not fill():
                raise ValueError("malformed multipart headers")
        hend = buf.index(b"\r\n\r\n")
        headers = bytes(buf[:hend]).decode("latin-1")
        del buf[:hend + 4]
        is_file = bool(re.search(r'(?im)^content-disposition:.*\bfilename\*?=', headers))
        out = open(out_path, "wb") if (is_file and not got_file) else None  # noqa: SIM115 - closed in the finally
        try:
            keep = len(sep) - 1
            while True:
                idx = buf.find(sep)
                if idx >= 0:
                    if out:
                        out.write(buf[:idx])
                    del buf[:idx + len(sep)]
                    break
                if len(buf) > keep:
                    if out:
                        out.write(buf[:len(buf) - keep])
                    del buf[:len(buf) - keep]
                if not fill():
                    raise ValueError("multipart body ended before the closing boundary")
        finally:
            if out:
                out.close()
        if out:
            got_file = True
    _drain(rfile, remaining)
    return got_file
