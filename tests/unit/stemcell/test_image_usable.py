"""Images that cannot be disks are refused: detect() for what does not parse, check_usable() for what cannot be a disk.

Format facts quoted below come from:

* qcow2: qemu's "qcow2 image file format", docs/interop/qcow2.txt (https://gitlab.com/qemu-project/qemu).
* VHD: Microsoft, "Virtual Hard Disk Image Format Specification", October 11, 2006 - Version 1.0.
* VMDK: VMware, "Virtual Disk Format 1.1" (the SparseExtentHeader).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from cloudstack_cpi.stemcell.image import MIN_DISK_SIZE, ImageError, check_usable, detect, vhd_checksum

from .conftest import RAW_SIZE
from .stemcell_image_builders import (
    MIB,
    compress,
    empty_stream_optimized_vmdk,
    ovf_descriptor,
    tar_of,
    vhd_footer,
    write_dynamic_vhd,
    write_fixed_vhd,
    write_ova,
    write_raw,
)

SECTOR_RULE = "a raw disk image is a whole number of 512-byte sectors and at least 1 MiB"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def usable(path: Path, declared: str | None = None):
    """What create_stemcell does before anything is created: detect, resolve if needed, check."""
    info = detect(path, resolve=True)
    check_usable(info, declared)
    return info


# --- raw: whole sectors, at least 1 MiB ------------------------------------------------------------


def test_the_nine_byte_text_file_of_the_defect(tmp_path: Path):
    """No qcow2 ("QFI\\xfb"), VHD ("conectix") or tar/OVA signature: detection calls it raw, and a raw disk is
    sectors: VHD spec v1.0: "Sector length is always 512 bytes."; qcow2.txt counts its smallest cluster as
    "512 byte clusters".  9 bytes is not a whole sector and far below 1 MiB."""
    image = write(tmp_path / "image", b"not disk\n")
    info = detect(image)
    assert (info.disk_format, info.payload_size) == ("raw", 9)  # detection alone still reports what it found
    with pytest.raises(ImageError) as caught:
        check_usable(info)
    assert str(caught.value) == (f"{image}: not a disk image: the file is 9 bytes and has no qcow2, VHD or OVA "
                                 f"signature, so it could only be a raw disk; {SECTOR_RULE}")


def test_the_text_file_with_a_declared_format_names_both(tmp_path: Path):
    image = write(tmp_path / "image", b"not disk\n")
    with pytest.raises(ImageError, match=rf"9 bytes.*{SECTOR_RULE} \(and the stemcell declares disk_format 'qcow2'\)"):
        usable(image, "qcow2")


def test_raw_not_a_whole_number_of_sectors(tmp_path: Path):
    """VHD spec v1.0: "Sector length is always 512 bytes." A disk's size is a count of sectors."""
    image = write_raw(tmp_path / "root.img", 2 * MIB + 100, {}, mbr=True)
    with pytest.raises(ImageError, match=rf"the file is {2 * MIB + 100} bytes .*{SECTOR_RULE}"):
        usable(image)


def test_raw_smaller_than_one_mib(tmp_path: Path):
    """Whole sectors, but 1 MiB is where partitioning tools start the first partition (sector 2048):
    nothing smaller holds a partition table and a file system."""
    image = write_raw(tmp_path / "root.img", 1024 * 512 - 512, {}, mbr=False)
    with pytest.raises(ImageError, match=f"is {1023 * 512} bytes"):
        usable(image)


def test_raw_of_exactly_one_mib_and_the_test_fixture_are_accepted(raw_disk: Path, tmp_path: Path):
    assert MIN_DISK_SIZE == MIB
    assert usable(write_raw(tmp_path / "small.img", MIB, {})).payload_size == MIB
    assert usable(raw_disk, "raw").payload_size == RAW_SIZE
    assert usable(raw_disk, "IMG").disk_format == "raw"  # aliases and case do not matter


@pytest.mark.parametrize("kind", ["gzip", "bzip2"])
def test_compressed_text_is_refused_after_the_resolve_it_needs_anyway(tmp_path: Path, kind: str):
    image = compress(write(tmp_path / "t", b"not disk\n"), tmp_path / "image", kind)
    with pytest.raises(ImageError, match=rf"the {kind}-decompressed image is 9 bytes .*{SECTOR_RULE}"):
        usable(image)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_tarred_root_img_that_is_text_or_empty(tmp_path: Path, compression):
    text = tar_of(tmp_path / "text.tgz", {"root.img": b"not disk\n"}, compression)
    with pytest.raises(ImageError, match=rf"tar member 'root.img' is 9 bytes .*{SECTOR_RULE}"):
        usable(text)
    empty = tar_of(tmp_path / "empty.tgz", {"root.img": b""}, compression)
    with pytest.raises(ImageError, match=r"not a disk image: tar member 'root.img' is empty \(0 bytes\)"):
        usable(empty)


def test_empty_image_file(tmp_path: Path):
    with pytest.raises(ImageError, match=r"image is empty \(0 bytes\): there is no disk in it"):
        detect(write(tmp_path / "image", b""))


def test_no_image_file_at_all(tmp_path: Path):
    """The director passes <unpacked stemcell>/image; a tarball without one leaves nothing there."""
    with pytest.raises(ImageError, match="cannot read image: no such file: the stemcell has no image"):
        detect(tmp_path / "image")


def test_an_unresolved_image_cannot_be_checked(raw_disk: Path, tmp_path: Path):
    info = detect(compress(raw_disk, tmp_path / "image", "gzip"))
    with pytest.raises(ImageError, match="resolve"):
        check_usable(info)


# --- qcow2: the header must parse and its tables lie inside the file ----------------------------------


def qcow2_header(*, version=3, cluster_bits=16, size=8 * MIB, l1_size=1, l1_offset=3 << 16, refcount_offset=1 << 16,
                 refcount_clusters=1, header_length=104) -> bytearray:
    """Fields at the offsets of qcow2.txt's "Header" table (big-endian, "All numbers in qcow2 are stored in Big
    Endian byte order")."""
    header = bytearray(1 << cluster_bits)
    struct.pack_into(">4sIQIIQIIQQIIQ", header, 0, b"QFI\xfb", version, 0, 0, cluster_bits, size, 0, l1_size,
                     l1_offset, refcount_offset, refcount_clusters, 0, 0)
    if version == 3:
        struct.pack_into(">QQQII", header, 72, 0, 0, 0, 4, header_length)
    return header


def qcow2_file(path: Path, header: bytearray, clusters: int = 4) -> Path:
    return write(path, bytes(header) + bytes((clusters << 16) - len(header)))


def test_a_minimal_qcow2_is_accepted(tmp_path: Path, qcow2_disk: Path):
    assert usable(qcow2_file(tmp_path / "image", qcow2_header()), "qcow2").virtual_size == 8 * MIB
    assert usable(qcow2_disk, "qcow2").virtual_size == RAW_SIZE


def test_qcow2_garbage_after_the_magic(tmp_path: Path):
    """qcow2.txt: "version: Version number (valid values are 2 and 3)"."""
    image = write(tmp_path / "image", b"QFI\xfb" + b"garbage, not a header " * 10)
    with pytest.raises(ImageError, match="unsupported qcow2 version"):
        detect(image)


def test_qcow2_cluster_bits_out_of_range(tmp_path: Path):
    """qcow2.txt: cluster_bits "Must not be less than 9 (i.e. 512 byte clusters)" and "qemu as of today has an
    implementation limit of 2 MB as the maximum cluster size"."""
    header = qcow2_header()
    struct.pack_into(">I", header, 20, 8)
    with pytest.raises(ImageError, match="cluster_bits 8 out of range"):
        detect(qcow2_file(tmp_path / "image", header))


def test_qcow2_v3_header_length(tmp_path: Path):
    """qcow2.txt: header_length "For version 3 it's at least 104 bytes and must be a multiple of 8."."""
    for bad in (100, 108):
        with pytest.raises(ImageError, match=f"header_length {bad}"):
            detect(qcow2_file(tmp_path / f"image{bad}", qcow2_header(header_length=bad)))


def test_qcow2_tables_must_be_cluster_aligned(tmp_path: Path):
    """qcow2.txt: l1_table_offset and refcount_table_offset: "Must be aligned to a cluster boundary."."""
    with pytest.raises(ImageError, match="L1 table offset 197120 is not aligned"):
        detect(qcow2_file(tmp_path / "a", qcow2_header(l1_offset=(3 << 16) + 512)))
    with pytest.raises(ImageError, match="refcount table offset 512 is not aligned"):
        detect(qcow2_file(tmp_path / "b", qcow2_header(refcount_offset=512)))


@pytest.mark.parametrize("keep", [200, 1 << 16, 3 << 16])
def test_qcow2_cut_short_is_refused(tmp_path: Path, keep: int):
    """A download cut off: the header parses, but the L1 or refcount table it points at is past the end."""
    whole = qcow2_file(tmp_path / "whole", qcow2_header()).read_bytes()
    with pytest.raises(ImageError, match=rf"truncated qcow2: the (L1|refcount) table ends at byte \d+ but the file "
                                         rf"is {keep} bytes"):
        detect(write(tmp_path / "image", whole[:keep]))


def test_qcow2_cut_short_inside_a_tar(tmp_path: Path):
    """The tar header's size is the payload's size: the same bound, without reading the member."""
    cut = qcow2_file(tmp_path / "whole", qcow2_header()).read_bytes()[:1 << 16]
    with pytest.raises(ImageError, match="truncated qcow2: the L1 table .* tar member 'root.qcow2' is 65536 bytes"):
        detect(tar_of(tmp_path / "image", {"root.qcow2": cut}, "gzip"))


def test_qcow2_with_a_header_longer_than_its_cluster(tmp_path: Path):
    """qcow2.txt: "The first cluster of a qcow2 image contains the file header"."""
    header = qcow2_header(cluster_bits=9, l1_offset=3 * 512, refcount_offset=512, header_length=1024)
    with pytest.raises(ImageError, match="header_length 1024 exceeds the 512-byte cluster"):
        detect(write(tmp_path / "image", bytes(header) + bytes(8 * 512)))


def test_qcow2_with_a_tiny_virtual_disk(tmp_path: Path):
    """qcow2.txt: size "Virtual disk size in bytes." A stemcell's disk of 0 or a few KiB is not one."""
    for size in (0, 64 * 1024):
        image = qcow2_file(tmp_path / f"image{size}", qcow2_header(size=size))
        with pytest.raises(ImageError, match=f"the file is a qcow2 image whose disk is {size} bytes"):
            usable(image)


# --- VHD: dynamic header, block table, closing footer; fixed size ---------------------------------------


def test_dynamic_and_fixed_vhds_are_accepted(raw_disk: Path, tmp_path: Path):
    assert usable(write_dynamic_vhd(raw_disk, tmp_path / "d.vhd"), "vhdx").vhd_type == "dynamic"
    assert usable(write_fixed_vhd(raw_disk, tmp_path / "f.vhd"), "vpc").vhd_type == "fixed"
    bz2 = compress(write_dynamic_vhd(raw_disk, tmp_path / "d2.vhd"), tmp_path / "image", "bzip2")
    assert usable(bz2, "vhd").virtual_size == RAW_SIZE  # the XenServer stemcell's shape


def test_dynamic_vhd_cut_short(raw_disk: Path, tmp_path: Path):
    """VHD spec v1.0, a dynamic disk is: "Copy of hard disk footer (512 bytes) | Dynamic Disk Header (1024 bytes) |
    BAT (Block Allocation table) | Data Block 1 ... Data Block n | Hard Disk Footer (512 bytes)", and "Every time a
    data block is added, the hard disk footer must be moved to the end of the file.": a cut file ends without it."""
    whole = write_dynamic_vhd(raw_disk, tmp_path / "d.vhd").read_bytes()
    image = write(tmp_path / "image", whole[: 3 * MIB])
    with pytest.raises(ImageError, match=rf"truncated dynamic VHD: the file \({3 * MIB} bytes\) does not end with "
                                         "the VHD footer"):
        detect(image)
    with pytest.raises(ImageError, match="truncated dynamic VHD: its dynamic header ends at byte 1536"):
        detect(write(tmp_path / "head", whole[:1024]))


def test_dynamic_vhd_cut_short_inside_a_plain_tar_is_refused(raw_disk: Path, tmp_path: Path):
    whole = write_dynamic_vhd(raw_disk, tmp_path / "d.vhd").read_bytes()
    image = tar_of(tmp_path / "image", {"root.vhd": whole[: 3 * MIB]})
    with pytest.raises(ImageError, match="truncated dynamic VHD: tar member 'root.vhd'"):
        detect(image)


def dynamic_vhd_with_header(raw_disk: Path, tmp_path: Path, edit) -> Path:
    """A dynamic VHD whose dynamic header (at 512) was changed by ``edit``, checksum recomputed unless told."""
    data = bytearray(write_dynamic_vhd(raw_disk, tmp_path / "d.vhd").read_bytes())
    header = bytearray(data[512:1536])
    fix_checksum = edit(header)
    if fix_checksum is not False:
        struct.pack_into(">I", header, 36, vhd_checksum(bytes(header)))
    data[512:1536] = header
    return write(tmp_path / "image", bytes(data))


def test_dynamic_vhd_without_its_dynamic_header(raw_disk: Path, tmp_path: Path):
    """VHD spec v1.0, Dynamic Disk Header, Cookie: "This field holds the value "cxsparse"."."""
    image = dynamic_vhd_with_header(raw_disk, tmp_path, lambda h: h.__setitem__(slice(0, 8), b"garbage!"))
    with pytest.raises(ImageError, match=r"no dynamic header \('cxsparse'\) at offset 512"):
        detect(image)


def test_dynamic_vhd_header_checksum(raw_disk: Path, tmp_path: Path):
    """VHD spec v1.0, Dynamic Disk Header, Checksum: "a one's complement of the sum of all the bytes in the header
    without the checksum field. If the checksum verification fails the file should be assumed to be corrupt.\""""

    def corrupt(header: bytearray):
        header[28] ^= 0x01
        return False  # keep the old checksum

    with pytest.raises(ImageError, match="dynamic header checksum mismatch"):
        detect(dynamic_vhd_with_header(raw_disk, tmp_path, corrupt))


def test_dynamic_vhd_block_size(raw_disk: Path, tmp_path: Path):
    """VHD spec v1.0, Block Size: "The sectors per block must always be a power of two."."""
    image = dynamic_vhd_with_header(raw_disk, tmp_path, lambda h: struct.pack_into(">I", h, 32, 3 * 512))
    with pytest.raises(ImageError, match="block size 1536 is not a power-of-two number of 512-byte sectors"):
        detect(image)


def test_dynamic_vhd_block_table_too_small(raw_disk: Path, tmp_path: Path):
    """VHD spec v1.0, Max Table Entries: "This should be equal to the number of blocks in the disk (that is, the
    disk size divided by the block size).\""""
    image = dynamic_vhd_with_header(raw_disk, tmp_path, lambda h: struct.pack_into(">I", h, 28, 1))
    with pytest.raises(ImageError, match="block allocation table has 1 entries, the .* disk needs 3"):
        detect(image)


def test_dynamic_vhd_whose_closing_footer_disagrees(raw_disk: Path, tmp_path: Path):
    """VHD spec v1.0: "the footer is mirrored as a header at the front of the file for purposes of redundancy"."""
    data = bytearray(write_dynamic_vhd(raw_disk, tmp_path / "d.vhd").read_bytes())
    data[-512:] = vhd_footer(RAW_SIZE * 2, 3, 512)
    with pytest.raises(ImageError, match="the footer at the end .* is not the copy at the start"):
        detect(write(tmp_path / "image", bytes(data)))


def test_a_dynamic_footer_only_at_the_end(raw_disk: Path, tmp_path: Path):
    """Without the footer copy at the front it is no dynamic VHD (and raw plus a footer is no raw disk either)."""
    data = raw_disk.read_bytes() + vhd_footer(RAW_SIZE, 3, 512)
    with pytest.raises(ImageError, match="ends with a dynamic VHD footer but does not start with its copy"):
        detect(write(tmp_path / "image", data))
    with pytest.raises(ImageError, match="ends with a dynamic VHD footer but does not start with its copy"):
        detect(compress(tmp_path / "image", tmp_path / "image.gz", "gzip"), resolve=True)


def test_fixed_vhd_shorter_than_its_footer_says(tmp_path: Path):
    """VHD spec v1.0, Fixed Hard Disk Image: "The size of the entire file is the size of the hard disk in the guest
    operating system plus the size of the footer."."""
    raw = write_raw(tmp_path / "root.img", 2 * MIB, {})
    image = write(tmp_path / "image", raw.read_bytes() + vhd_footer(4 * MIB, 2, 0xFFFFFFFFFFFFFFFF))
    with pytest.raises(ImageError, match=rf"truncated fixed VHD: .* should be {4 * MIB + 512} bytes, but it is "
                                         rf"{2 * MIB + 512}"):
        usable(image)


def test_vhd_with_a_tiny_disk(tmp_path: Path):
    """VHD spec v1.0, Current Size: "the current size of the hard disk, in bytes, from the perspective of the
    virtual machine"."""
    image = write(tmp_path / "image", bytes(4096) + vhd_footer(4096, 2, 0xFFFFFFFFFFFFFFFF))
    with pytest.raises(ImageError, match="the file is a fixed VHD whose disk is 4096 bytes"):
        usable(image)


# --- OVA: an OVF envelope and a VMDK ------------------------------------------------------------------------


def test_an_ova_is_accepted_with_the_vmdk_capacity(tmp_path: Path):
    """VMware Virtual Disk Format 1.1: SparseExtentHeader "SectorType capacity" is the disk size in sectors."""
    info = usable(write_ova(tmp_path / "image", capacity_gib=3), "ova")
    assert info.virtual_size == 3 << 30
    assert usable(tmp_path / "image", "vmdk").disk_format == "ova"


def test_ova_whose_descriptor_is_not_xml(tmp_path: Path):
    image = tar_of(tmp_path / "image", {"vm.ovf": b"this is not xml", "disk.vmdk": empty_stream_optimized_vmdk(MIB)})
    with pytest.raises(ImageError, match="not a usable OVA: its descriptor 'vm.ovf' is not XML"):
        detect(image)


def test_ova_whose_descriptor_is_not_an_envelope(tmp_path: Path):
    image = tar_of(tmp_path / "image", {"vm.ovf": b"<html/>", "disk.vmdk": empty_stream_optimized_vmdk(MIB)})
    with pytest.raises(ImageError, match=r"is <html>, not an OVF <Envelope>"):
        detect(image)


def test_ova_without_a_disk(tmp_path: Path):
    image = tar_of(tmp_path / "image", {"vm.ovf": ovf_descriptor(3), "vm.mf": b"SHA256(vm.ovf)= 00"})
    with pytest.raises(ImageError, match=r"descriptor 'vm.ovf' is there but no .vmdk disk \(members: \['vm.ovf', "
                                         r"'vm.mf'\]\)"):
        detect(image)


def test_ova_whose_disk_is_not_a_vmdk(tmp_path: Path):
    """VMware Virtual Disk Format 1.1: "#define SPARSE_MAGICNUMBER 0x564d444b /* 'V' 'M' 'D' 'K' */", stored
    little-endian, so a sparse extent starts with the bytes "KDMV"."""
    image = tar_of(tmp_path / "image", {"vm.ovf": ovf_descriptor(3), "disk.vmdk": b"garbage" * 100})
    with pytest.raises(ImageError, match="its disk 'disk.vmdk' has no VMDK header"):
        detect(image)


def test_ova_cut_short_in_its_disk(tmp_path: Path):
    whole = tar_of(tmp_path / "whole", {"vm.ovf": ovf_descriptor(3),
                                        "disk.vmdk": empty_stream_optimized_vmdk(MIB) + bytes(8 * 512)}).read_bytes()
    with pytest.raises(ImageError, match="truncated: tar member 'disk.vmdk'"):
        detect(write(tmp_path / "image", whole[:3 * 512 + 1024]))  # the VMDK's header, 1 KiB of its 5.5


def test_ova_with_an_empty_disk(tmp_path: Path):
    image = tar_of(tmp_path / "image", {"vm.ovf": ovf_descriptor(0), "disk.vmdk": empty_stream_optimized_vmdk(0)})
    with pytest.raises(ImageError, match="the file is an OVA whose disk is 0 bytes"):
        usable(image)


# --- the declared disk_format must be what the bytes are --------------------------------------------------


@pytest.mark.parametrize("declared, found", [
    ("qcow2", "a raw disk of 5244416 bytes"),
    ("vhdx", "a raw disk of 5244416 bytes"),
    ("ova", "a raw disk of 5244416 bytes"),
])
def test_declared_format_differs_from_a_raw_disk(raw_disk: Path, declared: str, found: str):
    with pytest.raises(ImageError) as caught:
        usable(raw_disk, declared)
    assert str(caught.value) == f"{raw_disk}: the stemcell declares disk_format '{declared}' but the image is {found}"


def test_declared_raw_but_a_compressed_dynamic_vhd(raw_disk: Path, tmp_path: Path):
    image = compress(write_dynamic_vhd(raw_disk, tmp_path / "d.vhd"), tmp_path / "image", "bzip2")
    with pytest.raises(ImageError, match="declares disk_format 'raw' but the image is a dynamic VHD, "
                                         "bzip2-compressed"):
        usable(image, "raw")


def test_declared_qcow2_but_a_tarred_raw_disk(raw_disk: Path, tmp_path: Path):
    image = tar_of(tmp_path / "image", {"root.img": raw_disk}, "gzip")
    with pytest.raises(ImageError, match=r"declares disk_format 'qcow2' but the image is a raw disk of 5244416 "
                                         r"bytes, in a tar \(root.img\), gzip-compressed"):
        usable(image, "qcow2")


def test_declared_qcow2_in_a_gzip_tarball_like_openstack_stemcells(qcow2_disk: Path, tmp_path: Path):
    """bosh-linux-stemcell-builder's OpenStack-style image: a gzip tarball whose root.img is a qcow2."""
    image = tar_of(tmp_path / "image", {"root.img": qcow2_disk}, "gzip")
    assert usable(image, "qcow2").member == "root.img"


def test_an_unknown_declared_format(raw_disk: Path):
    """VDI (VirtualBox) has no signature detect knows: its bytes would pass for raw.  Refused, not guessed."""
    with pytest.raises(ImageError, match="declares disk_format 'vdi', which the CPI does not know"):
        usable(raw_disk, "vdi")


@pytest.mark.parametrize("declared", [None, "", "  "])
def test_no_declared_format_goes_by_the_bytes(raw_disk: Path, declared):
    assert usable(raw_disk, declared).disk_format == "raw"


def test_checks_use_what_detection_read(raw_disk: Path, tmp_path: Path, monkeypatch):
    """check_usable reads nothing: it works from ImageInfo (head, sizes, tail read by detect)."""
    info = detect(write_dynamic_vhd(raw_disk, tmp_path / "image"))
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("check_usable opened a file"))
    check_usable(info, "vhd")


def test_detect_reads_only_the_head_of_a_large_gzip_image(tmp_path: Path, monkeypatch):
    """Only HEAD_SIZE bytes are decompressed to detect (and check) a compressed qcow2 of any size."""
    image = tmp_path / "image"
    header = qcow2_header(size=1 << 30)
    with gzip.open(image, "wb") as out:
        out.write(bytes(header))
        out.write(bytes(64 * MIB))
    read = []
    real_open = gzip.open

    def counting_open(*args, **kwargs):
        stream = real_open(*args, **kwargs)
        original = stream.read

        def tracked(size=-1):
            data = original(size)
            read.append(len(data))
            return data

        stream.read = tracked
        return stream

    monkeypatch.setattr(gzip, "open", counting_open)
    info = detect(image)
    check_usable(info, "qcow2")
    assert info.disk_format == "qcow2" and sum(read) <= 4096
