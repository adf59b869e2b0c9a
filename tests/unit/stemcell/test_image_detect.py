"""detect(): every wrapping of every disk format, recognised from bytes alone."""

from __future__ import annotations

import bz2
import gzip
import os
from pathlib import Path

import pytest

from cloudstack_cpi.stemcell.image import ImageError, detect, resolve

from .conftest import RAW_SIZE
from .stemcell_image_builders import (
    MIB,
    compress,
    tar_of,
    write_dynamic_vhd,
    write_fixed_vhd,
    write_ova,
)


def test_plain_raw(raw_disk: Path):
    info = detect(raw_disk)
    assert (info.compression, info.container, info.disk_format) == (None, None, "raw")
    assert info.virtual_size == RAW_SIZE == info.file_size == info.payload_size


def test_qcow2_reports_virtual_size(qcow2_disk: Path):
    info = detect(qcow2_disk)
    assert info.disk_format == "qcow2"
    assert info.virtual_size == RAW_SIZE  # already a multiple of 512
    assert info.file_size < RAW_SIZE  # zero clusters stay unallocated


def test_fixed_vhd_found_by_footer_at_the_end(raw_disk: Path, tmp_path: Path):
    info = detect(write_fixed_vhd(raw_disk, tmp_path / "image"))
    assert (info.disk_format, info.vhd_type, info.virtual_size) == ("vhd", "fixed", RAW_SIZE)


def test_dynamic_vhd_found_by_footer_copy(raw_disk: Path, tmp_path: Path):
    info = detect(write_dynamic_vhd(raw_disk, tmp_path / "image"))
    assert (info.disk_format, info.vhd_type, info.virtual_size) == ("vhd", "dynamic", RAW_SIZE)


@pytest.mark.parametrize("kind", ["gzip", "bzip2"])
def test_compressed_dynamic_vhd_like_real_stemcells(raw_disk: Path, tmp_path: Path, kind: str):
    vhd = write_dynamic_vhd(raw_disk, tmp_path / "disk.vhd")
    info = detect(compress(vhd, tmp_path / "image", kind))
    assert (info.compression, info.disk_format, info.vhd_type) == (kind, "vhd", "dynamic")
    assert info.virtual_size == RAW_SIZE
    assert info.payload_size is None  # unknown until streamed
    assert resolve(info).payload_size == vhd.stat().st_size


@pytest.mark.parametrize("kind", ["gzip", "bzip2"])
def test_compressed_fixed_vhd_is_uncertain_until_resolved(raw_disk: Path, tmp_path: Path, kind: str):
    vhd = write_fixed_vhd(raw_disk, tmp_path / "disk.vhd")
    info = detect(compress(vhd, tmp_path / "image", kind))
    assert info.disk_format is None and not info.resolved
    resolved = info.resolve()
    assert (resolved.disk_format, resolved.vhd_type, resolved.virtual_size) == ("vhd", "fixed", RAW_SIZE)
    assert detect(tmp_path / "image", resolve=True) == resolved


def test_compressed_raw_resolves_to_raw(raw_disk: Path, tmp_path: Path):
    info = detect(compress(raw_disk, tmp_path / "image", "gzip"), resolve=True)
    assert (info.disk_format, info.virtual_size, info.payload_size) == ("raw", RAW_SIZE, RAW_SIZE)


@pytest.mark.parametrize("compression", [None, "gzip", "bzip2"])
def test_legacy_tarball_with_root_img(raw_disk: Path, tmp_path: Path, compression):
    image = tar_of(tmp_path / "image", {"root.img": raw_disk}, compression)
    info = detect(image)
    assert (info.compression, info.container, info.member) == (compression, "tar", "root.img")
    assert info.payload_size == RAW_SIZE  # from the tar header
    if compression:  # a fixed VHD footer at the member's end is out of sight
        assert info.disk_format is None
        info = info.resolve()
    assert (info.disk_format, info.virtual_size) == ("raw", RAW_SIZE)


def test_tar_with_qcow2_member_after_other_files(qcow2_disk: Path, tmp_path: Path):
    image = tar_of(tmp_path / "image", {"README": b"hello", "root.qcow2": qcow2_disk}, "gzip")
    info = detect(image)
    assert (info.member, info.disk_format, info.virtual_size) == ("root.qcow2", "qcow2", RAW_SIZE)


def test_tar_member_picked_by_content_when_name_says_nothing(qcow2_disk: Path, tmp_path: Path):
    info = detect(tar_of(tmp_path / "image", {"notes.txt": b"x", "disk": qcow2_disk}))
    assert (info.member, info.disk_format) == ("disk", "qcow2")


def test_fixed_vhd_inside_plain_tar_uses_member_footer(raw_disk: Path, tmp_path: Path):
    vhd = write_fixed_vhd(raw_disk, tmp_path / "x.vhd")
    info = detect(tar_of(tmp_path / "image", {"root.vhd": vhd}))
    assert (info.disk_format, info.vhd_type) == ("vhd", "fixed")


def test_fixed_vhd_inside_gzip_tar_needs_resolve(raw_disk: Path, tmp_path: Path):
    vhd = write_fixed_vhd(raw_disk, tmp_path / "x.vhd")
    info = detect(tar_of(tmp_path / "image", {"root.vhd": vhd}, "gzip"))
    assert info.disk_format is None and info.payload_size == vhd.stat().st_size
    assert info.resolve().vhd_type == "fixed"


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_ova(tmp_path: Path, compression):
    ova = write_ova(tmp_path / "plain.ova", capacity_gib=3)
    image = compress(ova, tmp_path / "image", compression) if compression else ova
    info = detect(image)
    assert (info.container, info.disk_format, info.member) == ("tar", "ova", "stemcell.ovf")
    assert info.virtual_size == 3 << 30


def test_detection_ignores_the_file_name(qcow2_disk: Path, tmp_path: Path):
    misleading = tmp_path / "image.vhd.bz2"
    os.rename(qcow2_disk, misleading)
    assert detect(misleading).disk_format == "qcow2"


# --- errors ------------------------------------------------------------------------


def test_empty_file(tmp_path: Path):
    empty = tmp_path / "image"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"image.*empty"):
        detect(empty)


def test_missing_file_is_an_image_error(tmp_path: Path):
    with pytest.raises(ImageError, match="cannot read image"):
        detect(tmp_path / "nope")


def test_truncated_qcow2_header(tmp_path: Path):
    image = tmp_path / "image"
    image.write_bytes(b"QFI\xfb\x00\x00\x00\x03")
    with pytest.raises(ImageError, match=r"image: truncated qcow2 header \(8 bytes\)"):
        detect(image)


def test_truncated_gzip_stream(raw_disk: Path, tmp_path: Path):
    whole = gzip.compress(b"QFI\xfb" + bytes(100))
    image = tmp_path / "image"
    image.write_bytes(whole[:12])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        detect(image)


def test_corrupt_bzip2(tmp_path: Path):
    image = tmp_path / "image"
    image.write_bytes(bz2.compress(bytes(1000))[:4] + b"garbage" * 10)
    with pytest.raises(ImageError, match=str(image)):
        detect(image)


def test_truncated_plain_tar_member(raw_disk: Path, tmp_path: Path):
    tarball = tar_of(tmp_path / "t.tar", {"root.img": raw_disk})
    image = tmp_path / "image"
    image.write_bytes(tarball.read_bytes()[: 3 * MIB])  # header says 5 MiB
    with pytest.raises(ImageError, match=r"image: truncated: tar member 'root.img'"):
        detect(image)


def test_truncated_gzip_tar_member_detected_when_streaming(raw_disk: Path, tmp_path: Path):
    tarball = tar_of(tmp_path / "t.tgz", {"root.img": raw_disk}, "gzip")
    image = tmp_path / "image"
    image.write_bytes(tarball.read_bytes()[:-2000])
    info = detect(image)  # only the first KiB are decompressed: looks fine
    with pytest.raises(ImageError, match="truncated"):
        info.resolve()


def test_whole_stemcell_tarball_is_rejected_with_a_hint(raw_disk: Path, tmp_path: Path):
    image = tar_of(tmp_path / "stemcell.tgz", {"stemcell.MF": b"name: x", "image": raw_disk}, "gzip")
    with pytest.raises(ImageError, match="stemcell.MF"):
        detect(image)


def test_tar_without_disk(tmp_path: Path):
    image = tar_of(tmp_path / "image", {"a.txt": b"a", "b.txt": b"b"})
    with pytest.raises(ImageError, match=r"no disk image.*a\.txt"):
        detect(image)


def test_vhd_footer_with_bad_checksum(raw_disk: Path, tmp_path: Path):
    vhd = write_dynamic_vhd(raw_disk, tmp_path / "image")
    with open(vhd, "r+b") as file:
        file.seek(48)
        file.write(b"\x7f")  # size changed, checksum not updated
    with pytest.raises(ImageError, match="checksum mismatch"):
        detect(vhd)
