"""Reading a stemcell image ahead of the POST that sends it.

A compressed image's upload is bound by decompression (zlib: ~150-200 MiB/s on one core).  ``ReadAhead`` produces
the chunks in a thread while the previous ones are sent: zlib and the socket both drop the GIL, so decompressing
and sending share the cores instead of taking turns, with at most ``QUEUE_CHUNKS`` chunks held once the POST reads
them, and up to a head start before (``upload_post.reading_ahead``: from before the requests that make the upload
slot).  ``payload`` decompresses a gzip image's payload with zlib directly (the gzip module makes 128 KiB steps
with Python between them, and tarfile's stream mode joins and slices 10 KiB records into every read).

Tried and dropped (bench/README.md, "Stemcell uploads"): starting detection and decompression at the start of the
call, spooled to a temporary file, so the POST finds most of the payload ready.  The POST got shorter (0.36 to
0.23 s at 45 MiB) but what came before it longer by as much or more: on two cores shared with the simulator and
other work, the decompressing thread took the CPU the imports and API calls needed.  The head start begins once
the API client is built instead.
"""

from __future__ import annotations

import collections
import tarfile
import threading
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .image import ImageInfo

CHUNK_SIZE = 1 << 20
QUEUE_CHUNKS = 2  # chunks (up to GZIP_STEP each) decompressed ahead of the socket


class ReadAhead:
    """Iterate the chunks ``produce()`` yields, in a thread, at most ``depth`` chunks ahead of the consumer; their
    exceptions come out of ``next`` after every chunk before them.

    Until the consumer asks for its first chunk the thread may get further ahead, up to ``head_start`` bytes: made
    before the upload slot exists, it decompresses while the main thread waits for CloudStack (``upload_post.
    reading_ahead``).  From the first ``next`` on the usual ``depth`` holds again, so a slow upload does not keep
    the head start's memory for its whole length.
    """

    _END = object()

    def __init__(self, produce: Callable[[], Iterable[bytes]], *, depth: int = QUEUE_CHUNKS, head_start: int = 0):
        self._items: collections.deque = collections.deque()
        self._held = 0          # bytes in ``_items``
        self._depth = depth
        self._head_start = head_start
        self._consuming = False
        self._stopped = False
        self._done = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._produce, args=(produce,), name="read-ahead", daemon=True)
        self._thread.start()

    def _produce(self, produce: Callable[[], Iterable[bytes]]) -> None:
        chunks: Iterable[bytes] = ()
        try:
            chunks = produce()
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failure(exc))
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()

    def _full(self) -> bool:
        if len(self._items) < self._depth:
            return False
        return self._consuming or self._held >= self._head_start

    def _put(self, item) -> bool:
        with self._ready:
            while self._full() and not self._stopped:
                self._ready.wait()
            if self._stopped:
                return False
            self._items.append(item)
            self._held += len(item) if isinstance(item, (bytes, bytearray, memoryview)) else 0
            self._ready.notify_all()
            return True

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        with self._ready:
            self._consuming = True
            while not self._items:
                self._ready.wait()
            item = self._items.popleft()
            self._held -= len(item) if isinstance(item, (bytes, bytearray, memoryview)) else 0
            self._ready.notify_all()
        if item is self._END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the thread and wait for it (it closes what it read from)."""
        self._done = True
        with self._ready:
            self._stopped = True
            self._items.clear()
            self._held = 0
            self._ready.notify_all()
        self._thread.join()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


# Compressed bytes per read, and decompressed bytes per zlib call at most: ~0.6 MiB chunks for a root disk (2.3x).
# Measured at 45 MiB (bench/README.md): 2 MiB reads in 4 MiB steps, which ask for the GIL less often, were no faster
# with the switch interval ``upload_post.reading_ahead`` sets, and held ~10 MiB more at the peak (58 MiB against
# 48 with a full head start; the target is 64).
GZIP_READ = 256 << 10
GZIP_STEP = 1 << 20


def payload(info: ImageInfo) -> Iterator[bytes]:
    """``image.iter_payload(info)``'s bytes, in chunks of up to ``GZIP_STEP``.

    A gzip image is decompressed here with zlib: through the gzip module (128 KiB reads, Python between each) the
    thread wanted the GIL every ~1 ms and slowed the main thread's imports and API calls as much as it helped.  The
    errors are the gzip module's (``Compressed file ended before the end-of-stream marker was reached``, zlib's own)
    and tarfile's (``unexpected end of data``), under ``image._image_errors``' wording; a member whose header block
    does not name it (a sparse or changed file) goes the usual way.
    """
    from . import image

    if info.compression != "gzip" or info.payload_size is None:
        yield from image.iter_payload(info, CHUNK_SIZE)
        return
    offset = info.member_offset if info.container == "tar" else 0
    if offset is None or (info.container == "tar" and offset < tarfile.BLOCKSIZE):
        yield from image.iter_payload(info, CHUNK_SIZE)
        return
    remaining = info.payload_size
    with image._image_errors(info.path, "reading"), open(info.path, "rb", buffering=0) as file:
        pieces = _gunzip(file)
        head = _take(pieces, offset)
        # The member's header block is the one just before it (``head`` runs on past the member's start).
        if info.container == "tar" and not image._header_names(head[offset - tarfile.BLOCKSIZE:offset],
                                                              info.member or "", remaining):
            pieces.close()
            yield from image.iter_payload(info, CHUNK_SIZE)
            return
        rest = head[offset:]
        while remaining > 0:
            if not rest:
                rest = next(pieces, b"")
                if not rest:
                    raise tarfile.ReadError("unexpected end of data") if info.container == "tar" else EOFError(
                        "Compressed file ended before the end-of-stream marker was reached")
            piece, rest = (rest, b"") if len(rest) <= remaining else (rest[:remaining], b"")
            remaining -= len(piece)
            yield piece


def _take(pieces: Iterator[bytes], size: int) -> bytes:
    """At least ``size`` bytes from ``pieces`` (less only at their end)."""
    parts, have = [], 0
    while have < size:
        piece = next(pieces, b"")
        if not piece:
            break
        parts.append(piece)
        have += len(piece)
    return b"".join(parts)


def _gunzip(file) -> Generator[bytes, None, None]:
    """A gzip file's decompressed bytes (every member, as gzip reads them), ``GZIP_STEP`` at most at a time."""
    decompressor = zlib.decompressobj(31)
    data = b""
    while True:
        if not data:
            data = file.read(GZIP_READ)
            if not data:
                if decompressor.eof:
                    return
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        out = decompressor.decompress(data, GZIP_STEP)
        data = decompressor.unconsumed_tail
        if decompressor.eof:
            data = decompressor.unused_data
            decompressor = zlib.decompressobj(31)
            if not data:
                data = file.read(GZIP_READ)
                if not data:
                    if out:
                        yield out
                    return
                decompressor = zlib.decompressobj(31)
        if out:
            yield out
