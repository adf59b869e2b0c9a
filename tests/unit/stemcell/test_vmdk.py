"""Decoding an OVA's stream-optimised VMDK to the raw disk, as a stream."""

import io
import shutil
import struct
import subprocess
import tarfile
import zlib

import pytest

from cloudstack_cpi.stemcell import convert, image, vmdk

GRAIN = 64 * 1024


def stream_optimized(raw: bytes, grain: int = GRAIN, shuffle: bool = False) -> bytes:
    """A minimal streamOptimized VMDK: header, descriptor, grain markers for non-zero grains, a GT, EOS."""
    capacity_sectors = -(-len(raw) // 512)
    header = struct.pack("<IIIQQQQIQQQB4cH", vmdk.MAGIC, 3, vmdk.FLAG_COMPRESSED | vmdk.FLAG_MARKERS | 1,
                         capacity_sectors, grain // 512, 1, 1, 512, 0, 0xFFFFFFFFFFFFFFFF, 2, 0,
                         b"\n", b" ", b"\r", b"\n", vmdk.COMPRESSION_DEFLATE).ljust(512, b"\0")
    descriptor = b"# Disk DescriptorFile\ncreateType=\"streamOptimized\"\n".ljust(512, b"\0")
    body = bytearray()
    offsets = list(range(0, len(raw), grain))
    if shuffle:
        offsets.reverse()
    for offset in offsets:
        piece = raw[offset:offset + grain]
        if not any(piece):
            continue
        data = zlib.compress(piece)
        record = struct.pack("<QI", offset // 512, len(data)) + data
        body += record.ljust(-(-len(record) // 512) * 512, b"\0")
        body += struct.pack("<QII", 1, 0, 1).ljust(512, b"\0") + bytes(512)  # a one-sector grain table marker
    body += struct.pack("<QII", 0, 0, 0).ljust(512, b"\0")  # end of stream
    return header + descriptor + bytes(body)


def ova(path, disk: bytes, disk_name: str = "disk1.vmdk"):
    with tarfile.open(path, "w") as tar:
        ovf = (b'<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
               b'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><DiskSection>'
               b'<Disk ovf:capacity="1" ovf:diskId="vmdisk1"/></DiskSection></Envelope>')
        for name, data in (("vm.ovf", ovf), (disk_name, disk)):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


def raw_disk(size: int) -> bytes:
    raw = bytearray(size)
    raw[0:512] = b"\xeb\x63\x90" + bytes(507) + b"\x55\xaa"
    raw[3 * GRAIN + 100: 3 * GRAIN + 5000] = b"x" * 4900
    raw[size - 700:] = b"end" * 233 + b"!"
    return bytes(raw)


def test_round_trip_with_sparse_regions_and_a_partial_last_grain():
    raw = raw_disk(10 * GRAIN + 1536)
    decoded = b"".join(vmdk.raw_chunks(io.BytesIO(stream_optimized(raw)), "image"))
    assert decoded == raw


def test_out_of_order_grains_are_refused():
    raw = raw_disk(8 * GRAIN)
    with pytest.raises(image.ImageError, match="out of order"):
        b"".join(vmdk.raw_chunks(io.BytesIO(stream_optimized(raw, shuffle=True)), "image"))


def test_not_a_stream_optimised_vmdk_is_refused():
    with pytest.raises(image.ImageError, match="not a sparse VMDK"):
        vmdk.parse_header(bytes(512), "image")
    flat = bytearray(stream_optimized(raw_disk(4 * GRAIN))[:512])
    struct.pack_into("<I", flat, 8, 1)  # flags without compression and markers
    with pytest.raises(image.ImageError, match="not stream-optimised"):
        vmdk.parse_header(bytes(flat), "image")


def test_raw_stream_of_an_ova_gives_the_disk(tmp_path):
    raw = raw_disk(6 * GRAIN + 512)
    path = ova(tmp_path / "image", stream_optimized(raw))
    info = image.detect(path, resolve=True)
    assert info.disk_format == "ova"
    assert convert.raw_size(info) == len(raw)
    assert b"".join(convert.raw_stream(path, info)) == raw


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed (apt-get install qemu-utils)")
def test_a_vmdk_made_by_qemu_img_decodes_to_its_source(tmp_path):
    raw = raw_disk(32 * GRAIN)
    source = tmp_path / "source.raw"
    source.write_bytes(raw)
    target = tmp_path / "disk1.vmdk"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
                    str(source), str(target)], check=True)
    path = ova(tmp_path / "image", target.read_bytes())
    info = image.detect(path, resolve=True)
    assert b"".join(convert.raw_stream(path, info)) == raw
