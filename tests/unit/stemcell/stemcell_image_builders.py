"""Small disk images for the stemcell tests, built from the format specs.

The dynamic VHD builder is written independently of the production reader
(straight from the VHD spec) so the reader is checked against something it
did not produce.  Sizes stay small: a few MiB, mostly sparse.
"""

from __future__ import annotations

import bz2
import gzip
import io
import shutil
import struct
import tarfile
import uuid
from pathlib import Path

SECTOR = 512
MIB = 1 << 20


def write_raw(path: Path, size: int, blocks: dict[int, bytes], *, mbr: bool = True) -> Path:
    """A sparse raw disk: holes everywhere except ``blocks`` (offset -> bytes)."""
    with open(path, "wb") as file:
        file.truncate(size)
        if mbr:
            file.seek(446)
            file.write(bytes([0x80, 0, 2, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, size // SECTOR - 2048))
            file.seek(510)
            file.write(b"\x55\xaa")
        for offset, data in blocks.items():
            file.seek(offset)
            file.write(data)
    return path


def sample_blocks(size: int) -> dict[int, bytes]:
    """A few non-zero regions: unaligned, straddling clusters, at the very end."""
    pattern = bytes(range(256)) * 64  # 16 KiB, deterministic
    return {
        1 * MIB + 100: pattern,
        2 * MIB - 3000: pattern[:6000],  # straddles a 64 KiB cluster and a 2 MiB block
        size - 4096: pattern[:4096],
    }


def compress(source: Path, target: Path, kind: str) -> Path:
    opener = {"gzip": gzip.open, "bzip2": bz2.open}[kind]
    with open(source, "rb") as src, opener(target, "wb") as dst:
        shutil.copyfileobj(src, dst, MIB)
    return target


def tar_of(target: Path, members: dict[str, Path | bytes], compression: str | None = None) -> Path:
    mode = {"gzip": "w:gz", "bzip2": "w:bz2", None: "w"}[compression]
    with tarfile.open(target, mode, format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members.items():
            if isinstance(content, bytes):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.add(content, arcname=name)
    return target


def ovf_descriptor(capacity_gib: int) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="disk.vmdk" ovf:id="file1"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:capacity="{capacity_gib}" ovf:capacityAllocationUnits="byte * 2^30"
          ovf:diskId="vmdisk1" ovf:fileRef="file1"/>
  </DiskSection>
</Envelope>
""".encode()


def empty_stream_optimized_vmdk(capacity: int) -> bytes:
    """A streamOptimized VMDK of ``capacity`` bytes holding only zeros: header, descriptor, end-of-stream marker.

    From "VMware Virtual Disk Format 1.1": the SparseExtentHeader starts with
    ``uint32 magicNumber`` (SPARSE_MAGICNUMBER 0x564d444b, 'V' 'M' 'D' 'K'),
    ``uint32 version``, ``uint32 flags``, ``SectorType capacity`` (in sectors),
    ``SectorType grainSize``...; a stream ends with an end-of-stream marker.
    """
    header = struct.pack("<IIIQQQQIQQQB4cH", 0x564D444B, 3, (1 << 16) | (1 << 17) | 1, -(-capacity // SECTOR),
                         128, 1, 1, 512, 0, 0xFFFFFFFFFFFFFFFF, 2, 0, b"\n", b" ", b"\r", b"\n", 1)
    descriptor = b'# Disk DescriptorFile\ncreateType="streamOptimized"\n'
    return header.ljust(SECTOR, b"\0") + descriptor.ljust(SECTOR, b"\0") + bytes(SECTOR)


def write_ova(target: Path, capacity_gib: int = 3) -> Path:
    return tar_of(target, {"stemcell.ovf": ovf_descriptor(capacity_gib),
                           "disk.vmdk": empty_stream_optimized_vmdk(capacity_gib << 30)})


# --- VHD, from "Virtual Hard Disk Image Format Specification" v1.0 -------------------


def vhd_checksum(data: bytes, checksum_offset: int) -> int:
    total = sum(data) - sum(data[checksum_offset:checksum_offset + 4])
    return ~total & 0xFFFFFFFF


def vhd_footer(size: int, disk_type: int, data_offset: int) -> bytes:
    footer = bytearray(512)
    struct.pack_into(">8sIIQI4sI4sQQHBBII16s", footer, 0, b"conectix", 2, 0x00010000, data_offset,
                     0, b"test", 0x00010000, b"Wi2k", size, size, 1024, 16, 63, disk_type, 0,
                     uuid.UUID(int=7).bytes)
    struct.pack_into(">I", footer, 64, vhd_checksum(footer, 64))
    return bytes(footer)


def write_fixed_vhd(raw: Path, target: Path) -> Path:
    size = raw.stat().st_size
    shutil.copyfile(raw, target)
    with open(target, "ab") as file:
        file.write(vhd_footer(size, 2, 0xFFFFFFFFFFFFFFFF))
    return target


def write_dynamic_vhd(raw: Path, target: Path, block_size: int = 2 * MIB) -> Path:
    """Footer copy, dynamic header, BAT, allocated blocks (bitmap + data), footer."""
    size = raw.stat().st_size
    blocks = -(-size // block_size)
    table_offset = 512 + 1024
    bat_bytes = -(-blocks * 4 // SECTOR) * SECTOR
    bitmap = b"\xff" * (-(-(block_size // SECTOR) // 8 // SECTOR) * SECTOR or SECTOR)
    footer = vhd_footer(size, 3, 512)
    bat = [0xFFFFFFFF] * blocks
    next_sector = (table_offset + bat_bytes) // SECTOR
    with open(raw, "rb") as source, open(target, "wb") as out:
        out.write(footer + _dynamic_header(table_offset, blocks, block_size))
        out.seek(table_offset + bat_bytes)
        for index in range(blocks):
            data = source.read(block_size).ljust(block_size, b"\0")
            if data.count(0) == len(data):
                continue
            bat[index] = next_sector
            out.write(bitmap + data)
            next_sector += (len(bitmap) + block_size) // SECTOR
        out.write(footer)
        out.seek(table_offset)
        out.write(struct.pack(f">{blocks}I", *bat).ljust(bat_bytes, b"\xff"))
    return target


def _dynamic_header(table_offset: int, entries: int, block_size: int) -> bytes:
    header = bytearray(1024)
    struct.pack_into(">8sQQIII", header, 0, b"cxsparse", 0xFFFFFFFFFFFFFFFF, table_offset,
                     0x00010000, entries, block_size)
    struct.pack_into(">I", header, 36, vhd_checksum(header, 36))
    return bytes(header)
