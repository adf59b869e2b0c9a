"""The ``post`` strategy: CloudStack's direct upload (getUploadParamsForTemplate + a multipart POST).

The gateway's ``Templates.request_upload`` creates the template record and
answers a one-time ``postURL`` on the secondary storage VM plus the headers
that authorise the POST (``TemplateUpload.headers``).  The body is
``multipart/form-data`` with one file part and an exact ``Content-Length``; it
is streamed from the image in 1 MiB chunks, never read whole into memory.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..cloudstack.transport import HttpTransport, TransportError
from ..errors import CloudError
from . import convert, readahead
from .multipart import MultipartBody
from .progress import ProgressMeter
from .readahead import ReadAhead

if TYPE_CHECKING:
    from ..cloudstack.templates import TemplateUpload

# Bytes of a payload decompressed ahead of its POST at most (``reading_ahead``), held in memory.  At 45 MiB on 2 cores
# shared with the simulator the thread had made 13-18 MiB when the POST started (~0.15 s later); with 16 MiB held
# the process peaks at ~48 MiB, where the target is 64 (issue 17; bench/stemcell_upload.py).
HEAD_START = 16 << 20
SWITCH_INTERVAL = 0.001  # seconds: the GIL's switch interval while the head start runs (``reading_ahead``)
CONTENT_TYPES = {"gzip": "application/x-gzip", "bzip2": "application/x-bzip"}


def content_type(plan: convert.UploadPlan) -> str:
    if plan.compressed:
        return CONTENT_TYPES.get(plan.info.compression or "", "application/octet-stream")
    return "application/octet-stream"


def post(upload: TemplateUpload, plan: convert.UploadPlan, image_path: str, filename: str, *,
         transport: HttpTransport, log, timeout: tuple[float, float], tmpdir: str | None = None,
         progress_interval: float = 5.0, clock: Callable[[], float] | None = None,
         ahead: ReadAhead | None = None) -> None:
    """Stream the planned bytes to ``postURL``; raise CloudError with the server's answer on failure.

    ``ahead``: the payload already being read (``reading_ahead``), closed by its owner."""
    with _upload_stream(image_path, plan, tmpdir, ahead) as (stream, length):
        meter_args = {"clock": clock} if clock else {}
        meter = ProgressMeter(length, f"Uploading {filename}", log.info, interval=progress_interval, **meter_args)
        consumed = [False]

        def once():
            # The stream can be read one time only; the transport iterates the body once and never resends it.
            if consumed[0]:
                raise CloudError("upload body requested twice (the HTTP client retried a streamed upload)")
            consumed[0] = True
            return stream

        body = MultipartBody("file", filename, content_type(plan), once, length, progress=meter.update)
        headers = {**upload.headers, "Content-Type": body.content_type, "Content-Length": str(body.content_length)}
        log.info(f"Uploading {filename} ({length} bytes, {plan.format}, steps: {', '.join(plan.steps)}) "
                 f"to {_origin(upload.post_url)}")
        try:
            response = transport.request("POST", upload.post_url, body=body, headers=headers, timeout=timeout)
        except TransportError as exc:
            where = f"Uploading {filename} to {_origin(upload.post_url)}"
            if exc.tls:
                raise CloudError(f"{where}: TLS error: {exc.text} (cloudstack.ca_cert must also trust the secondary "
                                 "storage VM's certificate)") from None
            raise CloudError(f"{where}: {exc.text}", True) from None
        except ValueError as exc:  # the image (ImageError) or the body length, found while streaming
            raise CloudError(f"Uploading {filename}: {exc}") from None
        meter.finish()
    if response.status != 200:
        text = " ".join(response.text.split())[:300] or response.reason
        raise CloudError(f"Uploading {filename}: the secondary storage answered HTTP {response.status}: {text}")


@contextlib.contextmanager
def reading_ahead(plan: convert.UploadPlan) -> Iterator[ReadAhead | None]:
    """For a payload sent as it is (``decompress[, untar]``): its bytes, decompressed from now on in a thread, up to
    ``HEAD_START`` bytes ahead of a POST that has not started yet; None for other plans (they are read once the POST
    starts).  Closed on leaving (the thread stopped and joined), whether a POST read it or not.

    The caller starts it after the imports (a thread started with the call took the CPU they needed) and before the
    API calls that make the upload slot: those mostly wait for CloudStack (the createTags job beside the create is
    polled 50 ms after it starts), and a compressed image's POST is bound by zlib, so every byte decompressed
    meanwhile is time the POST does not take (bench/README.md, "Stemcell uploads").

    Meanwhile the main thread runs Python (imports, answers), and the thread needs the GIL between two zlib calls:
    with the default switch interval it waited up to 5 ms for it each time.  At 1 ms it had ~10% more ready at the
    POST's start (45 MiB, 2 cores); the interval is put back on leaving.
    """
    if not _sent_as_payload(plan):
        yield None
        return
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    ahead = ReadAhead(lambda: readahead.payload(plan.info), head_start=HEAD_START)
    try:
        yield ahead
    finally:
        ahead.close()
        sys.setswitchinterval(interval)


def _sent_as_payload(plan: convert.UploadPlan) -> bool:
    """Whether the plan sends the image's payload as it is: what ``readahead.payload`` reads, the same bytes."""
    info = plan.info
    return (info.payload_size is not None
            and plan.steps == ("decompress",) + (("untar",) if info.container == "tar" else ()))


@contextlib.contextmanager
def _upload_stream(image_path: str, plan: convert.UploadPlan, tmpdir: str | None, ahead: ReadAhead | None = None):
    """``(stream, length)`` of the planned bytes, produced by a thread while the previous ones are sent
    (``readahead``); a pass-through file is sent as it is.  The thread is stopped and joined before what it reads is
    closed.  A payload sent as it is (``decompress[, untar]``) comes from ``readahead.payload``, the same bytes, or
    from ``ahead`` when the caller started reading it early."""
    if ahead is not None and _sent_as_payload(plan):
        assert plan.info.payload_size is not None  # _sent_as_payload
        yield ahead, plan.info.payload_size
        return
    with convert.open_upload_stream(image_path, plan, tmpdir=tmpdir) as (opened, length):
        if plan.passes_through:
            yield opened, length
            return
        own = ReadAhead((lambda: readahead.payload(plan.info)) if _sent_as_payload(plan) else (lambda: opened))
        try:
            yield own, length
        finally:
            own.close()


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def tmpdir_for(image_path: str) -> str:
    return os.path.dirname(os.path.abspath(image_path))
