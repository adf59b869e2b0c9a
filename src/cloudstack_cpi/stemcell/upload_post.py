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
from collections.abc import Callable
from typing import TYPE_CHECKING

import requests

from ..errors import CloudError
from . import convert, readahead
from .multipart import MultipartBody
from .progress import ProgressMeter
from .readahead import ReadAhead

if TYPE_CHECKING:
    from ..cloudstack.templates import TemplateUpload

CONTENT_TYPES = {"gzip": "application/x-gzip", "bzip2": "application/x-bzip"}


def content_type(plan: convert.UploadPlan) -> str:
    if plan.compressed:
        return CONTENT_TYPES.get(plan.info.compression or "", "application/octet-stream")
    return "application/octet-stream"


def post(upload: TemplateUpload, plan: convert.UploadPlan, image_path: str, filename: str, *,
         session: requests.Session, log, timeout: tuple[float, float], tmpdir: str | None = None,
         progress_interval: float = 5.0, clock: Callable[[], float] | None = None) -> None:
    """Stream the planned bytes to ``postURL``; raise CloudError with the server's answer on failure."""
    with _upload_stream(image_path, plan, tmpdir) as (stream, length):
        meter_args = {"clock": clock} if clock else {}
        meter = ProgressMeter(length, f"Uploading {filename}", log.info, interval=progress_interval, **meter_args)
        consumed = [False]

        def once():
            # The stream can be read one time only; requests iterates the body once.
            if consumed[0]:
                raise CloudError("upload body requested twice (the HTTP client retried a streamed upload)")
            consumed[0] = True
            return stream

        body = MultipartBody("file", filename, content_type(plan), once, length, progress=meter.update)
        headers = {**upload.headers, "Content-Type": body.content_type, "Content-Length": str(body.content_length)}
        log.info(f"Uploading {filename} ({length} bytes, {plan.format}, steps: {', '.join(plan.steps)}) "
                 f"to {_origin(upload.post_url)}")
        try:
            response = session.post(upload.post_url, data=body, headers=headers, timeout=timeout)
        except requests.exceptions.SSLError as exc:
            raise CloudError(f"Uploading {filename} to {_origin(upload.post_url)}: TLS error: {_first_line(exc)} "
                             "(cloudstack.ca_cert must also trust the secondary storage VM's certificate)") from None
        except requests.exceptions.RequestException as exc:
            raise CloudError(f"Uploading {filename} to {_origin(upload.post_url)}: {_first_line(exc)}", True) from None
        except ValueError as exc:  # the image (ImageError) or the body length, found while streaming
            raise CloudError(f"Uploading {filename}: {exc}") from None
        meter.finish()
    if response.status_code != 200:
        text = " ".join(response.text.split())[:300] or response.reason
        raise CloudError(f"Uploading {filename}: the secondary storage answered HTTP {response.status_code}: {text}")


@contextlib.contextmanager
def _upload_stream(image_path: str, plan: convert.UploadPlan, tmpdir: str | None):
    """``(stream, length)`` of the planned bytes, produced by a thread while the previous ones are sent
    (``readahead``); a pass-through file is sent as it is.  The thread is stopped and joined before what it reads is
    closed.  A payload sent as it is (``decompress[, untar]``) comes from ``readahead.payload``, the same bytes."""
    with convert.open_upload_stream(image_path, plan, tmpdir=tmpdir) as (opened, length):
        if plan.passes_through:
            yield opened, length
            return
        info = plan.info
        unwrapped = (info.payload_size is not None
                     and plan.steps == ("decompress",) + (("untar",) if info.container == "tar" else ()))
        ahead = ReadAhead((lambda: readahead.payload(info)) if unwrapped else (lambda: opened))
        try:
            yield ahead, length
        finally:
            ahead.close()


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def tmpdir_for(image_path: str) -> str:
    return os.path.dirname(os.path.abspath(image_path))
