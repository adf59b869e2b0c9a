"""The raw disk inside an OVA: its stream-optimised VMDK, decoded as a stream.

An OVA's disk is a ``streamOptimized`` sparse VMDK (VMware Virtual Disk
Format 1.1): a 512-byte header, then, from sector ``overHead`` on, a sequence
of sector-aligned markers.  A grain marker is ``(lba: u64, size: u32)``
followed by ``size`` bytes of deflate-compressed grain data; a metadata
marker has ``size == 0``, a type (0 end of stream, 1 grain table, 2 grain
directory, 3 footer) and is followed by ``lba`` sectors of metadata that a
sequential reader skips.  Grains come in increasing LBA order, so the raw
disk can be produced front to back: zeros up to each grain, then the grain.
Nothing is held beyond one grain.
"""

from __future__ import annotations

import contextlib
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .image import ImageError, ImageInfo, open_payload

SECTOR = 512
MAGIC = 0x564D444B  # "KDMV"
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
COMPRESSION_DEFLATE = 1
_HEADER = struct.Struct("<IIIQQQQIQQQB4cH")
_MARKER = struct.Struct("<QII")  # lba / sector count, compressed size, type (when size == 0)
MARKER_END_OF_STREAM = 0
ZERO_CHUNK = bytes(1 << 20)


@dataclass(frozen=True)
class Header:
    capacity: int     # bytes
    grain_size: int   # bytes
    overhead: int     # bytes before the first marker


def parse_header(sector: bytes, path: str) -> Header:
    if len(sector) < _HEADER.size:
        raise ImageError(f"{path}: the OVA's VMDK is truncated (no header)")
    (magic, _version, flags, capacity, grain, _desc_offset, _desc_size, _gtes, _rgd, _gd, overhead, _unclean,
     _a, _b, _c, _d, compression) = _HEADER.unpack_from(sector)
    if magic != MAGIC:
        raise ImageError(f"{path}: the OVA's disk is not a sparse VMDK (no KDMV header)")
    if not (flags & FLAG_COMPRESSED and flags & FLAG_MARKERS) or compression != COMPRESSION_DEFLATE:
        raise ImageError(f"{path}: the OVA's VMDK is not stream-optimised (flags {flags:#x}, compression "
                         f"{compression}); only streamOptimized disks, as OVAs carry, are supported")
    return Header(capacity=capacity * SECTOR, grain_size=grain * SECTOR, overhead=overhead * SECTOR)


def raw_chunks(stream: IO[bytes], path: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The raw disk of a stream-optimised VMDK read sequentially from ``stream``: exactly its capacity."""
    header = parse_header(_read(stream, SECTOR, path), path)
    _read(stream, header.overhead - SECTOR, path)  # descriptor and padding
    position = 0
    while True:
        marker = _read(stream, SECTOR, path)
        value, size, kind = _MARKER.unpack_from(marker)
        if size == 0:
            if kind == MARKER_END_OF_STREAM:
                break
            _read(stream, value * SECTOR, path)  # grain table, directory or footer: not needed to stream
            continue
        offset = value * SECTOR
        if offset < position:
            raise ImageError(f"{path}: the OVA's VMDK has grains out of order (sector {value}); cannot stream it")
        data = marker[_MARKER.size - 4:]  # grain data starts right after lba and size
        if size > len(data):
            data += _read(stream, _round_up(size - len(data), SECTOR), path)
        try:
            grain = zlib.decompress(data[:size])
        except zlib.error as exc:
            raise ImageError(f"{path}: the OVA's VMDK has a corrupt grain at sector {value}: {exc}") from None
        end = min(offset + len(grain), header.capacity)
        yield from _zeros(offset - position, chunk_size)
        if end > offset:
            yield grain[: end - offset]
        position = max(position, end)
    yield from _zeros(header.capacity - position, chunk_size)


@contextlib.contextmanager
def open_ova_disk(info: ImageInfo) -> Iterator[IO[bytes]]:
    """The OVA's first .vmdk member as a sequential stream (the OVA itself is read front to back)."""
    with open_payload(info) as payload, tarfile.open(fileobj=payload, mode="r|") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".vmdk"):
                disk = tar.extractfile(member)
                if disk is not None:
                    yield disk
                    return
    raise ImageError(f"{info.path}: the OVA holds no .vmdk disk")


def capacity(info: ImageInfo) -> int:
    """The raw size of the OVA's disk, from its VMDK header (the OVF's figure may be rounded or absent)."""
    with open_ova_disk(info) as disk:
        return parse_header(disk.read(SECTOR), info.path).capacity


def _read(stream: IO[bytes], length: int, path: str) -> bytes:
    data = stream.read(length) if length > 0 else b""
    if len(data) != max(length, 0):
        raise ImageError(f"{path}: the OVA's VMDK ends early")
    return data


def _zeros(length: int, chunk_size: int) -> Iterator[bytes]:
    while length > 0:
        step = min(length, chunk_size, len(ZERO_CHUNK))
        yield ZERO_CHUNK[:step]
        length -= step


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
