"""A streamed ``multipart/form-data`` body with one file part and an exact length.

CloudStack's direct template upload (getUploadParamsForTemplate) takes a
multipart POST.  This class yields the body in ~1 MiB chunks and knows its
total length up front, so the POST carries a ``Content-Length`` instead of
chunked transfer encoding, which the upload endpoint may reject.
The part headers follow the encoding urllib3 uses (HTML5 style escaping).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

CHUNK_SIZE = 1 << 20

StreamSource = BinaryIO | Iterable[bytes]


class MultipartBody:
    """Iterable of bytes: boundary + part headers, the file's bytes, closing boundary.

    ``stream_factory`` is called at each iteration and returns a readable
    binary stream or an iterable of bytes holding exactly ``length`` bytes.
    ``progress(bytes_sent)`` is called after every file chunk with the number
    of *file* bytes handed out so far.
    """

    def __init__(self, field_name: str, filename: str, content_type: str,
                 stream_factory: Callable[[], StreamSource], length: int,
                 chunk_size: int = CHUNK_SIZE, progress: Callable[[int], None] | None = None,
                 boundary: str | None = None):
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.boundary = boundary or secrets.token_hex(16)
        self._stream_factory = stream_factory
        self._length = length
        self._chunk_size = chunk_size
        self._progress = progress
        self._head = self._part_head(field_name, filename, content_type)
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        return len(self._head) + self._length + len(self._tail)

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type, "Content-Length": str(self.content_length)}

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        sent = 0
        for chunk in _chunks_of(self._stream_factory(), self._chunk_size):
            sent += len(chunk)
            if sent > self._length:
                raise ValueError(f"upload stream is longer than the announced {self._length} bytes")
            yield bytes(chunk)
            if self._progress:
                self._progress(sent)
        if sent != self._length:
            # Sending fewer bytes than Content-Length would hang or corrupt the upload.
            raise ValueError(f"upload stream ended after {sent} of {self._length} bytes")
        yield self._tail

    def _part_head(self, field_name: str, filename: str, content_type: str) -> bytes:
        disposition = (f"form-data; {_param('name', field_name)}; {_param('filename', filename)}")
        return (f"--{self.boundary}\r\n"
                f"Content-Disposition: {disposition}\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode()


def _param(name: str, value: str) -> str:
    """``name="value"`` escaped the HTML5 way (as browsers and urllib3 do)."""
    escaped = value.translate({10: "%0A", 13: "%0D", 34: "%22"})
    return f'{name}="{escaped}"'


def _chunks_of(source: StreamSource, chunk_size: int) -> Iterator[bytes]:
    """Chunks from a readable stream or an iterable, closing it afterwards."""
    try:
        if hasattr(source, "read"):
            while chunk := source.read(chunk_size):
                yield chunk
        else:
            yield from source
    finally:
        close = getattr(source, "close", None)
        if close:
            close()
