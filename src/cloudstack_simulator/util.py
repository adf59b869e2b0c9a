"""Small helpers shared by the simulator modules."""
from __future__ import annotations

import errno
import os
import time
from datetime import UTC, datetime


def now_str() -> str:
    """CloudStack response date format, e.g. 2021-10-04T09:24:38+0000."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def public(obj: dict) -> dict:
    """Copy of an entity without private (underscore) fields."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


GiB = 1024 ** 3
CHUNK = 1024 * 1024


def _data_ranges(fd: int, end: int):
    """(start, stop) ranges holding data, using SEEK_DATA/SEEK_HOLE when the platform supports it."""
    if not hasattr(os, "SEEK_DATA"):
        yield 0, end
        return
    pos = 0
    try:
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:      # no data after pos
                    return
                raise
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            yield data, hole
            pos = hole
    except OSError:
        yield pos, end


def sparse_copy(src: str, dst: str, size: int | None = None) -> None:
    """Copy src to dst keeping holes (only data ranges are read; zero chunks are skipped), then truncate to
    ``size`` (default: the source size)."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        end = os.fstat(fi.fileno()).st_size
        for start, stop in _data_ranges(fi.fileno(), end):
            fi.seek(start)
            pos = start
            while pos < stop:
                buf = fi.read(min(CHUNK, stop - pos))
                if not buf:
                    break
                if buf.count(0) != len(buf):
                    fo.seek(pos)
                    fo.write(buf)
                pos += len(buf)
        fo.truncate(end if size is None else size)


def make_sparse(path: str, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def monotonic() -> float:
    return time.monotonic()
