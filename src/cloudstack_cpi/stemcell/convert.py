"""Decide and stream what CloudStack should receive for a stemcell image.

CloudStack accepts QCOW2 for KVM, VHD (also bzip2/gzip-compressed) for
XenServer and OVA for VMware.  ``plan_upload`` picks the cheapest route:
pass the file through untouched when it is already acceptable, otherwise
unwrap (decompress / untar) and, if needed, convert via a raw byte stream
(qcow2 or dynamic/fixed VHD -> raw -> fixed VHD or qcow2).

Everything streams in ~1 MiB chunks so memory stays flat for any image size.
Formats needing random access (qcow2, dynamic VHD) are read in place when
uncompressed, or first spooled to a (sparse) temporary file when they sit
inside a compressed stream.
"""

from __future__ import annotations

import array
import contextlib
import functools
import os
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .image import (
    CHUNK_SIZE,
    QCOW2_MAGIC,
    VHD_COOKIE,
    VHD_FOOTER_SIZE,
    ImageError,
    ImageInfo,
    Qcow2Header,
    iter_payload,
    parse_qcow2_header,
    parse_vhd_footer,
    resolve,
    vhd_checksum,
)

SECTOR = 512
CLUSTER_BITS = 16  # 64 KiB clusters, qemu's default
QCOW2_HEADER_LENGTH = 104
QCOW2_REFCOUNT_ORDER = 4  # 16-bit refcounts, qemu's default
QCOW2_COPIED = 1 << 63
QCOW2_COMPRESSED = 1 << 62
QCOW2_ZERO = 1
QCOW2_OFFSET_MASK = 0x00FFFFFFFFFFFE00
QCOW2_UNSUPPORTED_FEATURES = {1: "marked corrupt", 2: "an external data file", 4: "extended L2 entries"}
VHD_UNALLOCATED = 0xFFFFFFFF
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, the VHD timestamp origin

HYPERVISOR_FORMATS = {"kvm": "QCOW2", "xenserver": "VHD", "vmware": "OVA"}
HYPERVISOR_ALIASES = {"xen": "xenserver", "xcp-ng": "xenserver", "xcpng": "xenserver",
                      "vsphere": "vmware", "esxi": "vmware"}

Chunks = Generator[bytes, None, None]  # generators: a consumer that stops early closes them
Pieces = Iterator[bytes | memoryview]   # raw bytes as read; runs of zeros are views of one shared buffer


@dataclass(frozen=True)
class UploadPlan:
    """How to turn ``info``'s file into what CloudStack takes for ``hypervisor``.

    ``steps`` is a readable recipe, e.g. ``("decompress", "untar", "raw-to-qcow2")``
    or ``("pass-through",)``.  ``compressed`` tells whether the uploaded bytes
    are still gzip/bzip2 (CloudStack's XenServer path decompresses VHDs).
    """

    format: str  # "QCOW2" | "VHD" | "OVA"
    steps: tuple[str, ...]
    compressed: bool
    info: ImageInfo
    hypervisor: str | None

    @property
    def passes_through(self) -> bool:
        return self.steps == ("pass-through",)

    @property
    def extension(self) -> str:
        """File name suffix matching the uploaded bytes, e.g. ``vhd.bz2``."""
        suffixes: dict[str | None, str] = {"gzip": ".gz", "bzip2": ".bz2"}
        suffix = suffixes.get(self.info.compression, "") if self.compressed else ""
        return self.format.lower() + suffix


# --- planning ---------------------------------------------------------------------


def plan_upload(info: ImageInfo, hypervisor: str | None) -> UploadPlan:
    """Choose the cheapest way to give CloudStack an image it accepts for ``hypervisor``."""
    hypervisor_key = _hypervisor_key(hypervisor)
    target = HYPERVISOR_FORMATS[hypervisor_key]
    if info.disk_format is None:
        raise ImageError(f"{info.path}: cannot tell a fixed VHD from a raw disk inside the "
                         f"{info.compression} stream without reading it; call resolve() first")
    if (info.disk_format == "ova") != (target == "OVA"):
        raise ImageError(f"{info.path}: a {info.disk_format} image cannot be used on "
                         f"{hypervisor} (CloudStack wants {target}); "
                         + ("building an OVA is not supported" if target == "OVA"
                            else "use a qcow2, VHD or raw image"))
    steps, compressed = _steps_for(info, target)
    return UploadPlan(target, steps, compressed, info, hypervisor)


def _hypervisor_key(hypervisor: str | None) -> str:
    key = (hypervisor or "").strip().lower()
    key = HYPERVISOR_ALIASES.get(key, key)
    if key not in HYPERVISOR_FORMATS:
        raise ImageError(f"hypervisor {hypervisor!r} is not supported for stemcell upload "
                         f"(supported: KVM, XenServer, VMware)")
    return key


def _steps_for(info: ImageInfo, target: str) -> tuple[tuple[str, ...], bool]:
    already_acceptable = {"QCOW2": "qcow2", "VHD": "vhd", "OVA": "ova"}[target] == info.disk_format
    if already_acceptable:
        # CloudStack's XenServer path takes bzip2/gzip VHDs as they are; KVM
        # and VMware uploads need the plain file.
        whole_file = info.container is None or target == "OVA"  # an OVA *is* a tar
        if whole_file and (info.compression is None or target == "VHD"):
            return ("pass-through",), info.compression is not None
        return _unwrap_steps(info), False
    convert = "raw-to-qcow2" if target == "QCOW2" else "raw-to-vhd"
    return _unwrap_steps(info) + _to_raw_steps(info) + (convert,), False


def _unwrap_steps(info: ImageInfo) -> tuple[str, ...]:
    steps = ("decompress",) if info.compression else ()
    return steps + (("untar",) if info.container == "tar" and info.disk_format != "ova" else ())


def _to_raw_steps(info: ImageInfo) -> tuple[str, ...]:
    needs_random_access = info.disk_format == "qcow2" or info.vhd_type == "dynamic"
    spool = ("spool",) if needs_random_access and info.compression else ()
    readers: dict[str | None, str | None] = {"qcow2": "qcow2-to-raw", "raw": None}
    reader = readers.get(info.disk_format)
    if info.disk_format == "vhd":
        reader = "vhd-to-raw" if info.vhd_type == "dynamic" else "strip-vhd-footer"
    return spool + ((reader,) if reader else ())


# --- upload streams -------------------------------------------------------------


def upload_length(plan: UploadPlan) -> int | None:
    """Bytes ``open_upload_stream`` will produce, when known without reading the data.

    None for raw->qcow2 (known after its first pass) and for decompressed
    output whose size the compressed file does not tell.
    """
    info = plan.info
    if plan.passes_through:
        return info.file_size
    if "raw-to-vhd" in plan.steps:
        size = raw_size(info)
        return None if size is None else _round_up(size, SECTOR) + VHD_FOOTER_SIZE
    if "raw-to-qcow2" in plan.steps:
        return None
    return info.payload_size


@contextlib.contextmanager
def open_upload_stream(path: str | os.PathLike[str], plan: UploadPlan, *, tmpdir: str | None = None,
                       chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[BinaryIO | Chunks, int]]:
    """Yield ``(stream, length)``: the bytes to upload and their exact count.

    ``stream`` is the open file for pass-through (zero-copy), else an iterator
    of chunks.  When the length is not known up front it is measured first
    (raw->qcow2 scans for non-zero clusters; a bare decompression is counted
    in one streaming pass), so callers can always send a Content-Length.
    """
    path = os.fspath(path)
    info = plan.info
    if plan.passes_through:
        with open(path, "rb") as file:
            yield file, info.file_size
        return
    with contextlib.ExitStack() as stack:
        if "raw-to-qcow2" in plan.steps:
            source, size = stack.enter_context(_raw_source(path, info, tmpdir, chunk_size))
            layout = Qcow2Layout.scan(source(), size, chunk_size=chunk_size)
            chunks, length = layout.emit(source(), chunk_size=chunk_size), layout.length
        elif "raw-to-vhd" in plan.steps:
            source, size = stack.enter_context(_raw_source(path, info, tmpdir, chunk_size))
            chunks, length = fixed_vhd_stream(source(), size), _round_up(size, SECTOR) + VHD_FOOTER_SIZE
        else:
            info = info if info.payload_size is not None else resolve(info)
            chunks, length = iter_payload(info, chunk_size), _known_size(info.payload_size, path)
        stack.callback(chunks.close)
        yield chunks, length


# --- raw streams ------------------------------------------------------------------


def raw_size(info: ImageInfo) -> int | None:
    """Size of the raw disk behind ``info`` (None if only a streaming pass can tell)."""
    if info.disk_format == "raw":
        return info.payload_size
    if info.disk_format == "ova":
        from . import vmdk

        return vmdk.capacity(info)  # the VMDK header is exact; the OVF's capacity may be rounded
    return info.virtual_size if info.disk_format in ("qcow2", "vhd") else None


def raw_stream(path: str | os.PathLike[str], info: ImageInfo, *, tmpdir: str | None = None,
               chunk_size: int = CHUNK_SIZE) -> Chunks:
    """The raw disk bytes of ``info`` (qcow2, VHD, raw, or an OVA's stream-optimised VMDK), exactly its size.

    Unallocated qcow2 clusters and VHD blocks come out as zeros.  A qcow2 or
    dynamic VHD inside a compressed stream is first spooled to a temporary
    file in ``tmpdir`` (default: next to the image).
    """
    with _raw_source(os.fspath(path), info, tmpdir, chunk_size) as (source, _size):
        yield from source()


@contextlib.contextmanager
def _raw_source(path: str, info: ImageInfo, tmpdir: str | None,
                chunk_size: int) -> Iterator[tuple[Callable[[], Chunks], int]]:
    """A re-startable raw byte source (a factory of chunk iterators) and its size."""
    if info.disk_format is None or (info.disk_format == "raw" and info.payload_size is None):
        info = resolve(info)
    if info.disk_format == "raw":
        size = _known_size(info.payload_size, path)
        yield (lambda: _checked(iter_payload(info, chunk_size), size, path)), size
    elif info.disk_format == "vhd" and info.vhd_type == "fixed":
        size = _known_size(info.virtual_size, path)
        yield (lambda: _take(iter_payload(info, chunk_size), size, path)), size
    elif info.disk_format in ("qcow2", "vhd"):
        with _random_access(path, info, tmpdir) as source:
            reader = _qcow2_chunks if info.disk_format == "qcow2" else _dynamic_vhd_chunks
            size = _known_size(info.virtual_size, path)
            yield (lambda: rechunk(reader(source, path, chunk_size), chunk_size)), size
    elif info.disk_format == "ova":
        from . import vmdk

        def ova_chunks() -> Chunks:
            with vmdk.open_ova_disk(info) as disk:
                yield from rechunk(vmdk.raw_chunks(disk, path, chunk_size), chunk_size)

        yield ova_chunks, vmdk.capacity(info)
    else:
        raise ImageError(f"{path}: a {info.disk_format} image has no single raw disk to stream")


@contextlib.contextmanager
def _random_access(path: str, info: ImageInfo, tmpdir: str | None) -> Iterator[RandomAccess]:
    """Seekable access to the payload: in place if uncompressed, else via a spool file."""
    if info.compression is None:
        with open(path, "rb") as file:
            yield RandomAccess(file, info.member_offset or 0, path)
        return
    directory = tmpdir or os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryFile(dir=directory, prefix=".cpi-spool-") as spool:
        _spool(iter_payload(info), spool)
        yield RandomAccess(spool, 0, path)


def _spool(chunks: Iterable[bytes], spool: BinaryIO) -> None:
    """Copy chunks to ``spool``, leaving holes where chunks are all zeros."""
    size = 0
    for chunk in chunks:
        if _is_zero(chunk):
            spool.seek(len(chunk), os.SEEK_CUR)
        else:
            spool.write(chunk)
        size += len(chunk)
    spool.truncate(size)
    spool.flush()


class RandomAccess:
    """Positional reads into a payload that starts at ``base`` inside ``file``."""

    def __init__(self, file: BinaryIO, base: int, path: str):
        self._fd = file.fileno()
        self._base = base
        self.path = path

    def read_at(self, offset: int, length: int, *, exact: bool = True) -> bytes:
        data = os.pread(self._fd, length, self._base + offset)
        if exact and len(data) != length:
            raise ImageError(f"{self.path}: truncated: wanted {length} bytes at offset {offset}, "
                             f"got {len(data)}")
        return data


def _qcow2_chunks(source: RandomAccess, path: str, chunk_size: int) -> Pieces:
    """Guest-order raw bytes of a qcow2 image, walking its L1/L2 tables."""
    header = parse_qcow2_header(source.read_at(0, QCOW2_HEADER_LENGTH + 8, exact=False), path)
    _check_qcow2_supported(header, path)
    cluster_size = header.cluster_size
    entries_per_l2 = cluster_size // 8
    guest_clusters = _ceil_div(header.virtual_size, cluster_size)
    l1_needed = _ceil_div(guest_clusters, entries_per_l2)
    if header.l1_size < l1_needed:
        raise ImageError(f"{path}: qcow2 L1 table too small ({header.l1_size} < {l1_needed})")
    l1 = _be_uint64_array(source.read_at(header.l1_table_offset, l1_needed * 8))
    remaining = header.virtual_size
    for l1_entry in l1:
        span = min(remaining, entries_per_l2 * cluster_size)
        l2_offset = l1_entry & QCOW2_OFFSET_MASK
        if l2_offset == 0:
            yield from zeros(span, chunk_size)
        else:
            l2 = _be_uint64_array(source.read_at(l2_offset, cluster_size))
            yield from _qcow2_l2_chunks(source, header, l2, span, path)
        remaining -= span


def _qcow2_l2_chunks(source: RandomAccess, header: Qcow2Header, l2: array.array, span: int, path: str) -> Pieces:
    cluster_size = header.cluster_size
    for index in range(_ceil_div(span, cluster_size)):
        length = min(cluster_size, span - index * cluster_size)
        yield _qcow2_cluster(source, header, l2[index], path)[:length]


def _qcow2_cluster(source: RandomAccess, header: Qcow2Header, entry: int, path: str) -> bytes | memoryview:
    cluster_size = header.cluster_size
    if entry & QCOW2_COMPRESSED:
        return _qcow2_compressed_cluster(source, header, entry, path)
    offset = entry & QCOW2_OFFSET_MASK
    if offset == 0 or entry & QCOW2_ZERO:
        return ZERO_VIEW[:cluster_size]
    return source.read_at(offset, cluster_size)


def _qcow2_compressed_cluster(source: RandomAccess, header: Qcow2Header, entry: int, path: str) -> bytes:
    # Descriptor layout from the qcow2 spec: the low x bits are the host
    # offset, the next bits count additional 512-byte sectors.
    offset_bits = 62 - (header.cluster_bits - 8)
    offset = entry & ((1 << offset_bits) - 1)
    extra_sectors = (entry >> offset_bits) & ((1 << (header.cluster_bits - 8)) - 1)
    compressed = source.read_at(offset, (extra_sectors + 1) * SECTOR - offset % SECTOR, exact=False)
    try:
        data = zlib.decompressobj(-15).decompress(compressed, header.cluster_size)
    except zlib.error as error:
        raise ImageError(f"{path}: corrupt compressed qcow2 cluster at {offset}: {error}") from error
    return data.ljust(header.cluster_size, b"\0")


def _check_qcow2_supported(header: Qcow2Header, path: str) -> None:
    if header.backing_file_offset:
        raise ImageError(f"{path}: qcow2 image has a backing file; flatten it first (qemu-img convert)")
    if header.crypt_method:
        raise ImageError(f"{path}: qcow2 image is encrypted")
    for bit, what in QCOW2_UNSUPPORTED_FEATURES.items():
        if header.incompatible_features & bit:
            raise ImageError(f"{path}: qcow2 image has {what}, not supported")
    if header.compression_type != 0:
        raise ImageError(f"{path}: qcow2 compression type {header.compression_type} (zstd) not supported")


def _dynamic_vhd_chunks(source: RandomAccess, path: str, chunk_size: int) -> Pieces:
    """Raw bytes of a dynamic VHD: follow the BAT, skip per-block sector bitmaps."""
    footer = parse_vhd_footer(source.read_at(0, VHD_FOOTER_SIZE), path)
    dynamic_header = source.read_at(footer.data_offset, 1024)
    if not dynamic_header.startswith(b"cxsparse"):
        raise ImageError(f"{path}: VHD dynamic header missing at offset {footer.data_offset}")
    table_offset, = struct.unpack_from(">Q", dynamic_header, 16)
    max_entries, block_size = struct.unpack_from(">II", dynamic_header, 28)
    if block_size == 0 or block_size % SECTOR:
        raise ImageError(f"{path}: VHD block size {block_size} is not a multiple of 512")
    blocks = _ceil_div(footer.current_size, block_size)
    if max_entries < blocks:
        raise ImageError(f"{path}: VHD block table too small ({max_entries} < {blocks})")
    bat = _be_uint32_array(source.read_at(table_offset, blocks * 4))
    bitmap_size = _round_up(_ceil_div(block_size // SECTOR, 8), SECTOR)
    remaining = footer.current_size
    for sector in bat:
        length = min(block_size, remaining)
        if sector == VHD_UNALLOCATED:
            yield from zeros(length, chunk_size)
        else:
            yield from _read_range(source, sector * SECTOR + bitmap_size, length, chunk_size)
        remaining -= length


def _read_range(source: RandomAccess, offset: int, length: int, chunk_size: int) -> Chunks:
    for start in range(0, length, chunk_size):
        yield source.read_at(offset + start, min(chunk_size, length - start))


# --- raw -> fixed VHD ---------------------------------------------------------------


def fixed_vhd_stream(raw_chunks: Iterable[bytes], size: int) -> Chunks:
    """Raw bytes, zero padding to a whole sector, then a fixed-VHD footer."""
    yield from _checked(raw_chunks, size, "raw source")
    padded = _round_up(size, SECTOR)
    if padded > size:
        yield bytes(padded - size)
    yield vhd_footer(padded)


def vhd_footer(size: int, *, disk_type: str = "fixed", data_offset: int | None = None,
               timestamp: float | None = None, unique_id: bytes | None = None) -> bytes:
    """A 512-byte VHD footer (spec: Virtual Hard Disk Image Format Specification)."""
    type_code = {"fixed": 2, "dynamic": 3}[disk_type]
    if data_offset is None:
        data_offset = 0xFFFFFFFFFFFFFFFF if disk_type == "fixed" else VHD_FOOTER_SIZE
    import uuid  # here: only a VHD footer needs it, and uuid imports platform (~4 ms of every create_stemcell)

    seconds = int((time.time() if timestamp is None else timestamp) - VHD_EPOCH) & 0xFFFFFFFF
    cylinders, heads, sectors = vhd_geometry(size)
    footer = bytearray(struct.pack(
        ">8sIIQI4sI4sQQHBBII16sB",
        VHD_COOKIE, 2, 0x00010000, data_offset, seconds,
        b"cpi ", 0x00010000, b"Wi2k",  # creator app / version / host OS
        size, size, cylinders, heads, sectors, type_code, 0,
        unique_id or uuid.uuid4().bytes, 0))
    footer.extend(bytes(VHD_FOOTER_SIZE - len(footer)))
    struct.pack_into(">I", footer, 64, vhd_checksum(footer))
    return bytes(footer)


def vhd_geometry(size: int) -> tuple[int, int, int]:
    """CHS geometry for ``size`` bytes, the algorithm given in the VHD spec."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        sectors, heads = 255, 16
        cylinders_times_heads = total // sectors
    else:
        sectors = 17
        cylinders_times_heads = total // sectors
        heads = max((cylinders_times_heads + 1023) // 1024, 4)
        if cylinders_times_heads >= heads * 1024 or heads > 16:
            sectors, heads = 31, 16
            cylinders_times_heads = total // sectors
        if cylinders_times_heads >= heads * 1024:
            sectors, heads = 63, 16
            cylinders_times_heads = total // sectors
    return cylinders_times_heads // heads, heads, sectors


# --- raw -> qcow2 -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Qcow2Layout:
    """Where everything goes in the qcow2 file built from a scanned raw disk.

    Host layout, cluster by cluster: header, L1 table, refcount table,
    refcount blocks, L2 tables (only those covering data), data clusters in
    guest order.  All-zero guest clusters stay unallocated.
    """

    virtual_size: int
    allocated: bytearray  # one byte per guest cluster: 1 = has data
    cluster_bits: int = CLUSTER_BITS

    @classmethod
    def scan(cls, raw_chunks: Iterable[bytes], size: int, *, cluster_bits: int = CLUSTER_BITS,
             chunk_size: int = CHUNK_SIZE) -> Qcow2Layout:
        """First pass: note which guest clusters hold non-zero bytes."""
        cluster_size = 1 << cluster_bits
        allocated = bytearray(_ceil_div(size, cluster_size))
        for index, cluster in _clusters(raw_chunks, size, cluster_size, chunk_size):
            allocated[index] = cluster is not None
        return cls(_round_up(size, SECTOR), allocated, cluster_bits)

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def l2_entries(self) -> int:
        return self.cluster_size // 8

    @property
    def l1_size(self) -> int:
        return _ceil_div(len(self.allocated), self.l2_entries)

    @property
    def l1_clusters(self) -> int:
        return max(1, _ceil_div(self.l1_size * 8, self.cluster_size))

    @functools.cached_property
    def l2_tables(self) -> list[int]:
        """L1 indices that need an L2 table (those covering any data)."""
        per = self.l2_entries
        return [i for i in range(self.l1_size) if any(self.allocated[i * per:(i + 1) * per])]

    @functools.cached_property
    def data_clusters(self) -> int:
        return self.allocated.count(1)

    @functools.cached_property
    def refcount_clusters(self) -> tuple[int, int]:
        """(refcount table clusters, refcount block clusters), solved to a fixed point."""
        per_block = self.cluster_size * 8 >> QCOW2_REFCOUNT_ORDER
        fixed = 1 + self.l1_clusters + len(self.l2_tables) + self.data_clusters
        table, blocks = 1, 1
        while True:
            total = fixed + table + blocks
            new_blocks = _ceil_div(total, per_block)
            new_table = _ceil_div(new_blocks * 8, self.cluster_size)
            if (new_table, new_blocks) == (table, blocks):
                return table, blocks
            table, blocks = max(new_table, table), max(new_blocks, blocks)

    @property
    def total_clusters(self) -> int:
        table, blocks = self.refcount_clusters
        return 1 + self.l1_clusters + table + blocks + len(self.l2_tables) + self.data_clusters

    @property
    def length(self) -> int:
        return self.total_clusters * self.cluster_size

    def emit(self, raw_chunks: Iterable[bytes], *, chunk_size: int = CHUNK_SIZE) -> Chunks:
        """Second pass: the whole qcow2 file, in order, as chunks."""
        return rechunk(self._emit_pieces(raw_chunks, chunk_size), chunk_size)

    def _emit_pieces(self, raw_chunks: Iterable[bytes], chunk_size: int) -> Chunks:
        offsets = self._offsets()
        yield self._header(offsets)
        yield self._l1_table(offsets)
        yield from self._refcount_structures(offsets)
        yield from self._l2_tables(offsets)
        yield from self._data(raw_chunks, chunk_size)

    def _offsets(self) -> dict[str, int]:
        table, blocks = self.refcount_clusters
        cluster = self.cluster_size
        l1 = cluster
        refcount_table = l1 + self.l1_clusters * cluster
        refcount_blocks = refcount_table + table * cluster
        l2 = refcount_blocks + blocks * cluster
        data = l2 + len(self.l2_tables) * cluster
        return {"l1": l1, "refcount_table": refcount_table, "refcount_blocks": refcount_blocks,
                "l2": l2, "data": data, "refcount_table_clusters": table, "refcount_blocks_count": blocks}

    def _header(self, offsets: dict[str, int]) -> bytes:
        header = struct.pack(
            ">4sIQIIQIIQQIIQQQQII",
            QCOW2_MAGIC, 3, 0, 0, self.cluster_bits, self.virtual_size, 0,
            self.l1_size, offsets["l1"], offsets["refcount_table"],
            offsets["refcount_table_clusters"], 0, 0,
            0, 0, 0, QCOW2_REFCOUNT_ORDER, QCOW2_HEADER_LENGTH)
        # Zero padding doubles as the "end of header extensions" marker.
        return header.ljust(self.cluster_size, b"\0")

    def _l1_table(self, offsets: dict[str, int]) -> bytes:
        entries = array.array("Q", bytes(8 * self.l1_size))
        for position, l1_index in enumerate(self.l2_tables):
            entries[l1_index] = (offsets["l2"] + position * self.cluster_size) | QCOW2_COPIED
        return _be_bytes(entries).ljust(self.l1_clusters * self.cluster_size, b"\0")

    def _refcount_structures(self, offsets: dict[str, int]) -> Chunks:
        blocks = offsets["refcount_blocks_count"]
        table = array.array("Q", (offsets["refcount_blocks"] + i * self.cluster_size for i in range(blocks)))
        yield _be_bytes(table).ljust(offsets["refcount_table_clusters"] * self.cluster_size, b"\0")
        per_block = self.cluster_size * 8 >> QCOW2_REFCOUNT_ORDER
        used = self.total_clusters
        for block in range(blocks):
            in_use = max(0, min(per_block, used - block * per_block))
            counts = array.array("H", [1]) * in_use + array.array("H", bytes(2 * (per_block - in_use)))
            yield _be_bytes(counts)

    def _l2_tables(self, offsets: dict[str, int]) -> Chunks:
        per = self.l2_entries
        next_data = offsets["data"]
        for l1_index in self.l2_tables:
            entries = array.array("Q", bytes(self.cluster_size))
            for slot, flag in enumerate(self.allocated[l1_index * per:(l1_index + 1) * per]):
                if flag:
                    entries[slot] = next_data | QCOW2_COPIED
                    next_data += self.cluster_size
            yield _be_bytes(entries)

    def _data(self, raw_chunks: Iterable[bytes], chunk_size: int) -> Chunks:
        for index, cluster in _clusters(raw_chunks, None, self.cluster_size, chunk_size):
            if index >= len(self.allocated) or (cluster is not None) != bool(self.allocated[index]):
                raise ImageError(f"raw source changed between the two qcow2 passes (cluster {index})")
            if cluster is not None:
                yield cluster.ljust(self.cluster_size, b"\0")


def _clusters(raw_chunks: Iterable[bytes], size: int | None, cluster_size: int,
              chunk_size: int) -> Iterator[tuple[int, bytes | None]]:
    """(guest cluster index, bytes or None when all zeros) for every cluster."""
    aligned = max(cluster_size, chunk_size - chunk_size % cluster_size)
    index = 0
    chunks = raw_chunks if size is None else _checked(raw_chunks, size, "raw source")
    for chunk in rechunk(chunks, aligned):
        if _is_zero(chunk):  # fast path: a whole chunk of zeros
            count = _ceil_div(len(chunk), cluster_size)
            for offset in range(count):
                yield index + offset, None
            index += count
            continue
        for start in range(0, len(chunk), cluster_size):
            cluster = chunk[start:start + cluster_size]
            yield index, (None if _is_zero(cluster) else cluster)
            index += 1


# --- chunk plumbing -----------------------------------------------------------------

ZEROS = bytes(max(CHUNK_SIZE, 1 << 21))  # shared, read-only source of zero bytes
ZERO_VIEW = memoryview(ZEROS)


@functools.lru_cache(maxsize=4)
def _zero_bytes(length: int) -> bytes:
    return bytes(length)


def _is_zero(data: bytes) -> bool:
    # bytes == bytes is a memcmp; the cache avoids building a zero buffer per call.
    return data == _zero_bytes(len(data))


def zeros(length: int, chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """``length`` zero bytes as views of one shared buffer (no allocation per chunk)."""
    step = min(chunk_size, len(ZEROS))
    for start in range(0, length, step):
        yield ZERO_VIEW[:min(step, length - start)]


def rechunk(pieces: Iterable[bytes | memoryview], chunk_size: int) -> Chunks:
    """Regroup pieces of any size into ``chunk_size`` bytes chunks (last may be short)."""
    buffer = bytearray()
    for piece in pieces:
        if not buffer and len(piece) == chunk_size and isinstance(piece, bytes):
            yield piece
            continue
        buffer += piece
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    if buffer:
        yield bytes(buffer)


def _known_size(size: int | None, path: str) -> int:
    """``size``, which detect and resolve fill in for every disk that gets this far."""
    if size is None:
        raise ImageError(f"{path}: the disk's size is not known")
    return size


def _checked(chunks: Iterable[bytes], size: int, what: str) -> Chunks:
    """Pass chunks through, failing if they total anything but ``size`` bytes."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            raise ImageError(f"{what}: more than the expected {size} bytes")
        yield chunk
    if seen != size:
        raise ImageError(f"{what}: truncated: {seen} of {size} bytes")


def _take(chunks: Chunks, size: int, what: str) -> Chunks:
    """The first ``size`` bytes of ``chunks`` (e.g. a fixed VHD without its footer)."""
    remaining = size
    with contextlib.closing(chunks):
        for chunk in chunks:
            piece = chunk[:remaining]
            remaining -= len(piece)
            yield piece
            if remaining == 0:
                break
    if remaining:
        raise ImageError(f"{what}: truncated: {size - remaining} of {size} bytes")


def _be_uint64_array(data: bytes) -> array.array:
    values = array.array("Q", data)
    if sys.byteorder == "little":
        values.byteswap()
    return values


def _be_uint32_array(data: bytes) -> array.array:
    values = array.array("I", data)
    if values.itemsize != 4:
        values = array.array("L", data)
    if sys.byteorder == "little":
        values.byteswap()
    return values


def _be_bytes(values: array.array) -> bytes:
    if sys.byteorder == "little":
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(value: int, multiple: int) -> int:
    return _ceil_div(value, multiple) * multiple
