"""Small helpers shared by the simulator modules."""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone


def now_str() -> str:
    """CloudStack response date format, e.g. 2021-10-04T09:24:38+0000."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def public(obj: dict) -> dict:
    """Copy of an entity without private (underscore) fields."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


GiB = 1024 ** 3
CHUNK = 1024 * 1024


def sparse_copy(src: str, dst: str, size: int | None = None) -> None:
    """Copy src to dst keeping holes (zero chunks are skipped with seek), then truncate to ``size``."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while True:
            buf = fi.read(CHUNK)
            if not buf:
                break
            if buf.count(0) == len(buf):
                fo.seek(len(buf), os.SEEK_CUR)
            else:
                fo.write(buf)
        end = fo.tell() if size is None else size
        fo.truncate(end)


def make_sparse(path: str, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def monotonic() -> float:
    return time.monotonic()
