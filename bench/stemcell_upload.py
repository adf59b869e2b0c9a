"""Stemcell upload throughput and memory: create_stemcell (post strategy) through bin/cpi versus a plain upload.

Starts a simulator in this process, writes a sparse image (default 1 GiB), then

* runs ``create_stemcell`` through ``bin/cpi`` exactly as the director does,
  timing the whole call and reading the CPI process's peak RSS (``wait4``);
* uploads the same bytes with a minimal streaming client (``http.client``,
  one multipart part, exact Content-Length) to the same simulator endpoint,
  using fresh upload params asked for through the CPI's own ``Client``.

Prints both throughputs, their ratio (target >= 0.8) and the CPI's peak RSS
(target <= 100 MiB), next to the peak RSS of an ``info`` call for reference.

    .venv/bin/python bench/stemcell_upload.py [--size 1G] [--rounds 1]

The image is a sparse qcow2 file (a qcow2 header, holes, 1 MiB of random
data in the middle): KVM takes it as it is, so both clients upload every
byte of the file and the comparison is of the upload paths alone.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cloudstack_cpi.cloudstack.client import Client  # noqa: E402
from cloudstack_cpi.log import Logger  # noqa: E402
from cloudstack_simulator import Simulator  # noqa: E402

BIN_CPI = ROOT / "bin" / "cpi"
MIB = 1 << 20
CHUNK = MIB
PROPS = {"name": "bosh-cloudstack-kvm-ubuntu-jammy-go_agent", "version": "0.0.1-bench", "hypervisor": "kvm",
         "os_distro": "ubuntu", "architecture": "x86_64", "disk": 5120}


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("IB").rstrip("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def write_image(path: Path, size: int) -> Path:
    """A sparse file with a qcow2 header and 1 MiB of data in the middle."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        header = bytearray(512)
        header[:4] = b"QFI\xfb"
        header[4:8] = (3).to_bytes(4, "big")
        header[20:24] = (16).to_bytes(4, "big")
        header[24:32] = size.to_bytes(8, "big")
        header[100:104] = (104).to_bytes(4, "big")
        handle.write(header)
        handle.seek(size // 2)
        handle.write(os.urandom(MIB))
    return path


def run_cpi(config: Path, method: str, *arguments, tmp: str) -> tuple[dict, float, int, str]:
    """(response, seconds, peak RSS KiB, stderr) of one bin/cpi call, RSS from wait4 for this child only."""
    payload = json.dumps({"method": method, "arguments": list(arguments), "api_version": 2,
                          "context": {"director_uuid": "bench", "request_id": "cpi-200000"}}).encode()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp, "TMPDIR": tmp}
    started = time.perf_counter()
    process = subprocess.Popen([str(BIN_CPI), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    outputs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda name, stream: outputs.__setitem__(name, stream.read()),
                                args=(name, stream)) for name, stream in (("out", process.stdout),
                                                                          ("err", process.stderr))]
    for reader in readers:
        reader.start()
    process.stdin.write(payload)
    process.stdin.close()
    _, _status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = 0
    for reader in readers:
        reader.join()
    response = json.loads(outputs["out"])
    return response, elapsed, usage.ru_maxrss, outputs["err"].decode("utf-8", "replace")


def plain_upload(sim: Simulator, path: Path, size: int) -> float:
    """Fresh upload params through the CPI's Client, then the bytes with http.client; returns seconds."""
    client = Client(sim.endpoint, sim.api_key, sim.secret_key, log=Logger(stream=io.StringIO()))
    try:
        zone = next(z for z in client.list("listZones") if z["name"] == "zone-1")
        ostype = next(o for o in client.list_all("listOsTypes") if o["description"] == "Ubuntu 22.04 LTS")
        params = client.call("getUploadParamsForTemplate", name=f"plain-{secrets.token_hex(4)}", displaytext="plain",
                             format="QCOW2", hypervisor="KVM", zoneid=zone["id"], ostypeid=ostype["id"], bits=64)
        params = params["getuploadparams"]
        boundary = secrets.token_hex(16)
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"plain.qcow2\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        url = urlsplit(params["postURL"])
        started = time.perf_counter()
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        connection.putrequest("POST", url.path)
        for name, value in (("X-signature", params["signature"]), ("X-metadata", params["metadata"]),
                            ("X-expires", params["expires"]),
                            ("Content-Type", f"multipart/form-data; boundary={boundary}"),
                            ("Content-Length", str(len(head) + size + len(tail)))):
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(head)
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                connection.send(chunk)
        connection.send(tail)
        answer = connection.getresponse()
        body = answer.read()
        elapsed = time.perf_counter() - started
        connection.close()
        if answer.status != 200:
            raise RuntimeError(f"plain upload: HTTP {answer.status}: {body[:200]!r}")
        for _ in range(200):
            row = client.list("listTemplates", templatefilter="self", id=params["id"])[0]
            if row["isready"]:
                break
            time.sleep(0.05)
        client.run_job("deleteTemplate", timeout=60, what="bench cleanup", id=params["id"])
        return elapsed
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="image size (e.g. 512M, 1G, 2G)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each kind (medians are shown)")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="bench-stemcell-") as tmp, Simulator("advanced") as sim:
        tmp_path = Path(tmp)
        image = write_image(tmp_path / "image", size)
        config = tmp_path / "cpi.json"
        config.write_text(json.dumps({"cloudstack": {
            "endpoint": sim.endpoint, "api_key": sim.api_key, "secret_access_key": sim.secret_key,
            "default_zone": "zone-1", "stemcell": {"upload_strategy": "post"}}}))
        _, _, info_rss, _ = run_cpi(config, "info", tmp=tmp)
        cpi_times, upload_times, plain_times, peaks = [], [], [], []
        for _ in range(args.rounds):
            plain_times.append(plain_upload(sim, image, size))
            response, elapsed, rss, stderr = run_cpi(config, "create_stemcell", str(image), PROPS, tmp=tmp)
            if response["error"]:
                print(stderr, file=sys.stderr)
                raise SystemExit(f"create_stemcell failed: {response['error']}")
            cpi_times.append(elapsed)
            peaks.append(rss)
            phase = UPLOAD_LINE.search(stderr)  # the CPI's own last progress line: "... in 1.2 s, ..."
            if phase:
                upload_times.append(max(float(phase.group(1)), 0.05))
            run_cpi(config, "delete_stemcell", response["result"], tmp=tmp)
        cpi_time, plain_time = median(cpi_times), median(plain_times)
        peak = max(peaks)
        ratio = plain_time / cpi_time
        print(f"machine:        {os.cpu_count()} cores, {_cpu()}, Python {sys.version.split()[0]}")
        print(f"image:          qcow2, {size / MIB:.0f} MiB (sparse), rounds: {args.rounds}")
        print(f"plain upload:   {plain_time:7.2f} s  {size / MIB / plain_time:8.1f} MiB/s  (upload only)")
        print(f"create_stemcell:{cpi_time:7.2f} s  {size / MIB / cpi_time:8.1f} MiB/s  (whole bin/cpi call)")
        print(f"ratio:          {ratio:.2f}x  (target >= 0.8x)")
        if upload_times:
            upload_time = median(upload_times)
            print(f"  upload phase inside create_stemcell: {upload_time:.1f} s, {size / MIB / upload_time:.1f} MiB/s, "
                  f"{plain_time / upload_time:.2f}x the plain client; the rest ({cpi_time - upload_time:.2f} s) is "
                  "process start, imports and API calls, paid once per call")
        print(f"peak RSS:       {peak / 1024:.1f} MiB create_stemcell, {info_rss / 1024:.1f} MiB info  "
              f"(+{(peak - info_rss) / 1024:.1f} MiB; target <= 100 MiB)")
        ok = ratio >= 0.8 and peak <= 100 * 1024
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


UPLOAD_LINE = re.compile(r"INFO create_stemcell: Uploading [^:]+: [^\n]* in ([0-9.]+) s")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
