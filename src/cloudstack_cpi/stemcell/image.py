"""Recognise what a stemcell ``image`` file really is, from its bytes.

A BOSH stemcell's ``image`` can be a bzip2-compressed dynamic VHD (what
bosh-linux-stemcell-builder ships for CloudStack), a gzip tarball holding
``root.img`` (older stemcells), a qcow2 (maybe tarred), or an OVA.  The file
name and the stemcell's ``disk_format`` property are not trusted: ``detect``
peeks at the first few KiB (decompressing only that much) and, for plain
files, at the last 512 bytes where a fixed VHD keeps its footer.

A fixed VHD inside a compressed stream cannot be told apart from a raw disk
without reading to the end; ``detect`` then reports ``disk_format=None`` and
``resolve`` (or ``detect(path, resolve=True)``) settles it with one
streaming pass.  This module also owns sequential access to the *payload*:
the disk bytes after removing compression and the tar container.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import os
import re
import struct
import tarfile
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_SIZE = 1 << 20
HEAD_SIZE = 4096  # enough for a tar header, a qcow2 header and a VHD footer
OVF_MAX_SIZE = 1 << 20  # an OVF descriptor is a small XML file

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
QCOW2_MAGIC = b"QFI\xfb"
VHD_COOKIE = b"conectix"
VHD_FOOTER_SIZE = 512
USTAR_OFFSET = 257

VHD_TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}
DISK_MEMBER_SUFFIXES = (".qcow2", ".vhd", ".img", ".raw")


class ImageError(ValueError):
    """The image is empty, truncated, unreadable or not something we can serve."""


@dataclass(frozen=True)
class VhdFooter:
    disk_type: str  # "fixed" | "dynamic" | "differencing"
    current_size: int
    data_offset: int  # where a dynamic VHD keeps its dynamic header


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    cluster_bits: int
    virtual_size: int
    l1_size: int
    l1_table_offset: int
    backing_file_offset: int
    crypt_method: int
    incompatible_features: int
    compression_type: int

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits


@dataclass(frozen=True)
class ImageInfo:
    """What ``detect`` learnt about an image file.

    ``payload_size`` is the size of the bytes that would be uploaded as "the
    disk" once compression and the tar container are removed (for an OVA:
    the whole uncompressed tar).  ``disk_format is None`` means "fixed VHD or
    raw, not known yet": call ``resolve``.
    """

    path: str
    file_size: int
    compression: str | None  # "gzip" | "bzip2" | None
    container: str | None  # "tar" | None
    member: str | None  # tar member holding the disk (the .ovf for an OVA)
    member_offset: int | None  # offset of that member's data in the uncompressed tar
    disk_format: str | None  # "qcow2" | "vhd" | "raw" | "ova" | None
    virtual_size: int | None
    payload_size: int | None
    vhd_type: str | None = None  # "fixed" | "dynamic" for VHDs

    @property
    def resolved(self) -> bool:
        return self.disk_format is not None

    def resolve(self) -> ImageInfo:
        return resolve(self)


def detect(path: str | os.PathLike[str], *, resolve: bool = False) -> ImageInfo:
    """Identify compression, container and disk format of ``path`` from its bytes.

    Only a few KiB are decompressed.  With ``resolve=True`` a "fixed VHD or
    raw" uncertainty is settled at once by streaming the payload one time.
    """
    path = os.fspath(path)
    file_size = _file_size(path)
    with _image_errors(path, "reading"):
        with open(path, "rb") as raw_file:
            compression = _compression_of(raw_file.read(4))
        with open_decompressed(path, compression) as stream:
            head = _read_up_to(stream, HEAD_SIZE)
            if compression and not head:
                raise ImageError(f"{path}: {compression} stream decompresses to nothing")
            base = ImageInfo(path, file_size, compression, None, None, None, None, None,
                             None if compression else file_size)
            if _is_tar(head):
                info = _detect_in_tar(base, head, stream)
            else:
                info = _detect_disk(base, head, base.payload_size, _tail_reader(base, 0))
    return _resolve_if_needed(info) if resolve else info


def resolve(info: ImageInfo) -> ImageInfo:
    """Settle ``disk_format=None`` (fixed VHD or raw) by streaming the payload once.

    Also fills in ``payload_size`` for compressed inputs.  Costs one full
    decompression; memory stays flat.
    """
    if info.disk_format is not None and info.payload_size is not None:
        return info
    size, tail = _measure_payload(info)
    info = dataclasses.replace(info, payload_size=size)
    if info.disk_format is not None:
        return info
    footer = parse_vhd_footer(tail, info.path, strict=False) if size >= VHD_FOOTER_SIZE else None
    if footer is None:
        return dataclasses.replace(info, disk_format="raw", virtual_size=size)
    _reject_differencing(footer, info.path)
    return dataclasses.replace(info, disk_format="vhd", vhd_type=footer.disk_type,
                               virtual_size=footer.current_size)


# --- payload access -------------------------------------------------------


@contextlib.contextmanager
def open_decompressed(path: str, compression: str | None) -> Iterator[BinaryIO]:
    """The file's bytes with the outer gzip/bzip2 layer removed, as a stream."""
    opener = {"gzip": gzip.open, "bzip2": bz2.open, None: open}[compression]
    with opener(path, "rb") as stream:
        yield stream


@contextlib.contextmanager
def open_payload(info: ImageInfo) -> Iterator[BinaryIO]:
    """A sequential stream of the payload (decompressed, tar member extracted).

    For an OVA the payload is the whole (decompressed) tar.  The stream ends
    exactly at the payload's end; reading it never loads it whole.
    """
    with _image_errors(info.path, "reading"):
        with open_decompressed(info.path, info.compression) as stream:
            if info.container != "tar" or info.disk_format == "ova":
                yield stream
            elif info.compression is None:
                stream.seek(info.member_offset)
                yield stream  # callers stop after payload_size bytes
            else:
                yield _tar_member_stream(info, stream)


def iter_payload(info: ImageInfo, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The payload as chunks; raises ImageError if it ends before ``payload_size``."""
    with open_payload(info) as stream:
        yield from read_exactly(stream, info.payload_size, chunk_size, info.path)


def read_exactly(stream: BinaryIO, length: int | None, chunk_size: int, path: str) -> Iterator[bytes]:
    """Chunks of ``stream`` up to ``length`` bytes (or EOF when None), checking for truncation."""
    remaining = length
    with _image_errors(path, "reading"):
        while remaining is None or remaining > 0:
            want = chunk_size if remaining is None else min(chunk_size, remaining)
            chunk = stream.read(want)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    if remaining:
        raise ImageError(f"{path}: truncated: payload ended {remaining} bytes early")


def _tar_member_stream(info: ImageInfo, stream: BinaryIO) -> BinaryIO:
    # Stream mode ("r|") reads the tar strictly forwards: no seeking in the
    # decompressor, no member list held in memory.
    tar = tarfile.open(fileobj=stream, mode="r|")
    for member in tar:
        if member.name == info.member:
            extracted = tar.extractfile(member)
            if extracted is not None:
                return extracted
    raise ImageError(f"{info.path}: tar member {info.member!r} not found on second read")


def _measure_payload(info: ImageInfo) -> tuple[int, bytes]:
    """Stream the payload once: its size and its last 512 bytes."""
    size, tail = 0, b""
    with open_payload(info) as stream:
        for chunk in read_exactly(stream, info.payload_size, CHUNK_SIZE, info.path):
            size += len(chunk)
            tail = (tail + chunk[-VHD_FOOTER_SIZE:])[-VHD_FOOTER_SIZE:]
    return size, tail


# --- detection helpers ------------------------------------------------------


def _file_size(path: str) -> int:
    try:
        size = os.stat(path).st_size
        if not os.path.isfile(path):
            raise ImageError(f"{path}: not a regular file")
    except OSError as error:
        raise ImageError(f"{path}: cannot read image: {error.strerror or error}") from error
    if size == 0:
        raise ImageError(f"{path}: image is empty (0 bytes)")
    return size


def _compression_of(magic: bytes) -> str | None:
    if magic.startswith(GZIP_MAGIC):
        return "gzip"
    if magic.startswith(BZIP2_MAGIC) and magic[3:4].isdigit():
        return "bzip2"
    return None


def _is_tar(head: bytes) -> bool:
    return head[USTAR_OFFSET:USTAR_OFFSET + 5] == b"ustar"


def _detect_in_tar(base: ImageInfo, head: bytes, stream: BinaryIO) -> ImageInfo:
    """Walk tar headers until the .ovf (an OVA) or the first disk-like member."""
    info = dataclasses.replace(base, container="tar")
    seen: list[str] = []
    # The decompressed stream was already read HEAD_SIZE bytes in: glue the
    # head back in front so tarfile sees the archive from its start.
    tar = tarfile.open(fileobj=_Prefixed(head, stream), mode="r|")
    for member in tar:
        if not member.isfile():
            continue
        seen.append(member.name)
        lowered = member.name.lower()
        if os.path.basename(lowered) == "stemcell.mf":
            raise ImageError(f"{base.path}: this is a whole stemcell tarball (has stemcell.MF); "
                             "pass the 'image' file extracted from it")
        if lowered.endswith(".ovf"):
            return _ova_info(info, tar.extractfile(member), member)
        extracted = tar.extractfile(member)
        member_head = _read_up_to(extracted, HEAD_SIZE)
        if _is_disk_member(lowered, member_head):
            _check_member_complete(base, member)
            info = dataclasses.replace(info, member=member.name, member_offset=member.offset_data,
                                       payload_size=member.size)
            return _detect_disk(info, member_head, member.size,
                                _tail_reader(info, member.offset_data))
    raise ImageError(f"{base.path}: tar archive holds no disk image (members: {seen or 'none'})")


def _check_member_complete(info: ImageInfo, member: tarfile.TarInfo) -> None:
    """For a plain tar the file size tells at once whether the member is cut short."""
    end = member.offset_data + member.size
    if info.compression is None and end > info.file_size:
        raise ImageError(f"{info.path}: truncated: tar member {member.name!r} needs {end} bytes, "
                         f"file has {info.file_size}")


def _is_disk_member(lowered_name: str, member_head: bytes) -> bool:
    name = os.path.basename(lowered_name)
    return (name == "root.img" or name.endswith(DISK_MEMBER_SUFFIXES)
            or member_head.startswith((QCOW2_MAGIC, VHD_COOKIE)))


def _ova_info(info: ImageInfo, ovf_file: BinaryIO | None, member: tarfile.TarInfo) -> ImageInfo:
    ovf_bytes = ovf_file.read(OVF_MAX_SIZE) if ovf_file else b""
    payload_size = info.file_size if info.compression is None else None
    return dataclasses.replace(info, member=member.name, member_offset=member.offset_data,
                               disk_format="ova", virtual_size=_ovf_capacity(ovf_bytes),
                               payload_size=payload_size)


def _ovf_capacity(ovf_bytes: bytes) -> int | None:
    """Capacity of the first <Disk> in an OVF descriptor; None when unreadable."""
    try:
        root = ElementTree.fromstring(ovf_bytes)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.rpartition("}")[2] != "Disk":
            continue
        attributes = {key.rpartition("}")[2]: value for key, value in element.attrib.items()}
        units = re.fullmatch(r"\s*byte\s*(?:\*\s*2\s*\^\s*(\d+))?\s*",
                             attributes.get("capacityAllocationUnits", "byte"))
        capacity = attributes.get("capacity", "")
        if units and capacity.isdigit():
            return int(capacity) << int(units.group(1) or 0)
        return None
    return None


def _detect_disk(info: ImageInfo, head: bytes, payload_size: int | None, read_tail) -> ImageInfo:
    """Classify a payload from its first bytes (and its last 512 when reachable)."""
    if head.startswith(QCOW2_MAGIC):
        header = parse_qcow2_header(head, info.path)
        return dataclasses.replace(info, disk_format="qcow2", virtual_size=header.virtual_size)
    if head.startswith(VHD_COOKIE):
        # A dynamic VHD starts with a copy of its footer.
        footer = parse_vhd_footer(head[:VHD_FOOTER_SIZE], info.path)
        _reject_differencing(footer, info.path)
        return dataclasses.replace(info, disk_format="vhd", vhd_type=footer.disk_type,
                                   virtual_size=footer.current_size)
    if read_tail is None:
        return info  # compressed: fixed VHD or raw, decided by resolve()
    if payload_size >= VHD_FOOTER_SIZE:
        footer = parse_vhd_footer(read_tail(payload_size), info.path, strict=False)
        if footer is not None:
            _reject_differencing(footer, info.path)
            return dataclasses.replace(info, disk_format="vhd", vhd_type=footer.disk_type,
                                       virtual_size=footer.current_size)
    return dataclasses.replace(info, disk_format="raw", virtual_size=payload_size)


def _tail_reader(info: ImageInfo, payload_offset: int):
    """For uncompressed files, a function reading the payload's last 512 bytes."""
    if info.compression is not None:
        return None

    def read_tail(payload_size: int) -> bytes:
        with open(info.path, "rb") as file:
            file.seek(payload_offset + payload_size - VHD_FOOTER_SIZE)
            return file.read(VHD_FOOTER_SIZE)

    return read_tail


def _resolve_if_needed(info: ImageInfo) -> ImageInfo:
    return info if info.disk_format is not None else resolve(info)


def _reject_differencing(footer: VhdFooter, path: str) -> None:
    if footer.disk_type == "differencing":
        raise ImageError(f"{path}: differencing VHD (needs a parent disk); upload a fixed or dynamic VHD")


# --- format headers -----------------------------------------------------------


def parse_vhd_footer(data: bytes, path: str, *, strict: bool = True) -> VhdFooter | None:
    """Parse a 512-byte VHD footer; None (or ImageError when strict) if it is not one."""
    if len(data) < VHD_FOOTER_SIZE or not data.startswith(VHD_COOKIE):
        if strict:
            raise ImageError(f"{path}: truncated VHD footer ({len(data)} bytes)")
        return None
    (stored,) = struct.unpack_from(">I", data, 64)
    if stored != vhd_checksum(data):
        raise ImageError(f"{path}: VHD footer checksum mismatch (stored {stored:#010x}, "
                         f"computed {vhd_checksum(data):#010x})")
    data_offset, = struct.unpack_from(">Q", data, 16)
    current_size, = struct.unpack_from(">Q", data, 48)
    disk_type, = struct.unpack_from(">I", data, 60)
    if disk_type not in VHD_TYPES:
        raise ImageError(f"{path}: VHD footer has unknown disk type {disk_type}")
    return VhdFooter(VHD_TYPES[disk_type], current_size, data_offset)


def vhd_checksum(footer_or_header: bytes) -> int:
    """One's complement of the byte sum, skipping the checksum field itself.

    Works for the footer (checksum at 64) and for the dynamic header (at 36)
    because callers zero or skip the field before summing.
    """
    if footer_or_header.startswith(VHD_COOKIE):
        total = sum(footer_or_header[:64]) + sum(footer_or_header[68:VHD_FOOTER_SIZE])
    else:
        total = sum(footer_or_header[:36]) + sum(footer_or_header[40:1024])
    return ~total & 0xFFFFFFFF


def parse_qcow2_header(head: bytes, path: str) -> Qcow2Header:
    """Parse and sanity-check a qcow2 header (versions 2 and 3)."""
    if len(head) < 72:
        raise ImageError(f"{path}: truncated qcow2 header ({len(head)} bytes)")
    version, backing_offset, _, cluster_bits, size, crypt, l1_size, l1_offset = struct.unpack_from(
        ">IQIIQIIQ", head, 4)
    if version not in (2, 3):
        raise ImageError(f"{path}: unsupported qcow2 version {version}")
    if not 9 <= cluster_bits <= 21:
        raise ImageError(f"{path}: qcow2 cluster_bits {cluster_bits} out of range")
    incompatible, compression_type = 0, 0
    if version == 3:
        if len(head) < 104:
            raise ImageError(f"{path}: truncated qcow2 v3 header ({len(head)} bytes)")
        incompatible, = struct.unpack_from(">Q", head, 72)
        header_length, = struct.unpack_from(">I", head, 100)
        if header_length > 104 and len(head) > 104:
            compression_type = head[104]
    return Qcow2Header(version, cluster_bits, size, l1_size, l1_offset, backing_offset,
                       crypt, incompatible, compression_type)


# --- small utilities ----------------------------------------------------------


def _read_up_to(stream: BinaryIO | None, size: int) -> bytes:
    """Read up to ``size`` bytes, looping because decompressors return short reads."""
    if stream is None:
        return b""
    parts, remaining = [], size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


class _Prefixed:
    """A read-only stream: ``prefix`` bytes followed by the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: BinaryIO):
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0:
                data, self._prefix = self._prefix + self._stream.read(), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._stream.read(size)


@contextlib.contextmanager
def _image_errors(path: str, doing: str) -> Iterator[None]:
    """Turn low-level decoder/IO errors into ImageError naming the file."""
    try:
        yield
    except ImageError:
        raise
    except (EOFError, tarfile.TarError, zlib.error) as error:
        raise ImageError(f"{path}: truncated or corrupt image while {doing}: {error}") from error
    except OSError as error:
        raise ImageError(f"{path}: unreadable image while {doing}: {error}") from error
