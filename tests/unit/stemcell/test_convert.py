"""plan_upload / open_upload_stream / raw_stream: routes, lengths and round trips."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from cloudstack_cpi.stemcell.convert import (
    Qcow2Layout,
    open_upload_stream,
    plan_upload,
    raw_stream,
    upload_length,
    vhd_footer,
    vhd_geometry,
)
from cloudstack_cpi.stemcell.image import ImageError, detect, vhd_checksum

from .conftest import RAW_SIZE, collect
from .stemcell_image_builders import (
    MIB,
    compress,
    tar_of,
    write_dynamic_vhd,
    write_fixed_vhd,
    write_ova,
    write_raw,
)


def upload_bytes(path: Path, hypervisor: str, tmpdir: Path | None = None) -> tuple[bytes, object]:
    plan = plan_upload(detect(path, resolve=True), hypervisor)
    with open_upload_stream(path, plan, tmpdir=str(tmpdir) if tmpdir else None) as (stream, length):
        data = collect(stream)
    assert len(data) == length
    known = upload_length(plan)
    assert known is None or known == length
    return data, plan


def to_raw(path: Path) -> bytes:
    return b"".join(bytes(chunk) for chunk in raw_stream(path, detect(path, resolve=True)))


# --- plans ------------------------------------------------------------------------------


def test_qcow2_for_kvm_passes_through(qcow2_disk: Path):
    data, plan = upload_bytes(qcow2_disk, "KVM")
    assert plan.steps == ("pass-through",) and plan.format == "QCOW2"
    assert data == qcow2_disk.read_bytes()


@pytest.mark.parametrize("kind,suffix", [("bzip2", "vhd.bz2"), ("gzip", "vhd.gz")])
def test_compressed_dynamic_vhd_for_xenserver_passes_through(raw_disk, tmp_path, kind, suffix):
    image = compress(write_dynamic_vhd(raw_disk, tmp_path / "d.vhd"), tmp_path / "image", kind)
    plan = plan_upload(detect(image), "XenServer")
    assert (plan.steps, plan.compressed, plan.extension) == (("pass-through",), True, suffix)
    assert upload_length(plan) == image.stat().st_size


def test_ova_for_vmware_passes_through(tmp_path: Path):
    ova = write_ova(tmp_path / "image")
    data, plan = upload_bytes(ova, "vmware")
    assert (plan.format, plan.steps, data) == ("OVA", ("pass-through",), ova.read_bytes())


def test_gzipped_ova_for_vmware_is_decompressed(tmp_path: Path):
    ova = write_ova(tmp_path / "x.ova")
    data, plan = upload_bytes(compress(ova, tmp_path / "image", "gzip"), "VMware")
    assert plan.steps == ("decompress",) and data == ova.read_bytes()


@pytest.mark.parametrize("compression", [None, "gzip", "bzip2"])
def test_tarred_qcow2_for_kvm_is_unwrapped(qcow2_disk, tmp_path, compression):
    image = tar_of(tmp_path / "image", {"root.qcow2": qcow2_disk}, compression)
    data, plan = upload_bytes(image, "KVM")
    assert plan.steps == (("decompress",) if compression else ()) + ("untar",)
    assert upload_length(plan) == qcow2_disk.stat().st_size  # exact, from the tar header
    assert data == qcow2_disk.read_bytes()


def test_gzipped_qcow2_for_kvm_is_decompressed_and_measured(qcow2_disk, tmp_path):
    image = compress(qcow2_disk, tmp_path / "image", "gzip")
    plan = plan_upload(detect(image), "KVM")
    assert plan.steps == ("decompress",) and upload_length(plan) is None
    with open_upload_stream(image, plan) as (stream, length):
        assert length == qcow2_disk.stat().st_size
        assert collect(stream) == qcow2_disk.read_bytes()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_legacy_root_img_tarball_for_kvm_becomes_qcow2(raw_disk, tmp_path, compression):
    image = tar_of(tmp_path / "image", {"root.img": raw_disk}, compression)
    data, plan = upload_bytes(image, "KVM")
    assert plan.steps[-2:] == ("untar", "raw-to-qcow2")
    out = tmp_path / "out.qcow2"
    out.write_bytes(data)
    assert to_raw(out) == raw_disk.read_bytes()


def test_legacy_root_img_tarball_for_xenserver_becomes_fixed_vhd(raw_disk, tmp_path):
    image = tar_of(tmp_path / "image", {"root.img": raw_disk}, "gzip")
    data, plan = upload_bytes(image, "XenServer")
    assert plan.steps == ("decompress", "untar", "raw-to-vhd")
    assert data[:-512] == raw_disk.read_bytes()
    assert detect_bytes(tmp_path, data).vhd_type == "fixed"


def test_real_stemcell_bzip2_dynamic_vhd_for_kvm_is_spooled_and_converted(raw_disk, tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    image = compress(write_dynamic_vhd(raw_disk, tmp_path / "d.vhd"), tmp_path / "image", "bzip2")
    data, plan = upload_bytes(image, "KVM", tmpdir=spool_dir)
    assert plan.steps == ("decompress", "spool", "vhd-to-raw", "raw-to-qcow2")
    assert os.listdir(spool_dir) == []  # spool file removed
    assert to_raw(write(tmp_path / "o.qcow2", data)) == raw_disk.read_bytes()


def test_qcow2_for_xenserver_becomes_fixed_vhd(qcow2_disk, tmp_path):
    data, plan = upload_bytes(qcow2_disk, "xenserver")
    assert plan.steps == ("qcow2-to-raw", "raw-to-vhd")
    assert data[:-512] == qcow2_disk.with_name("root.img").read_bytes()


def test_fixed_vhd_for_kvm_strips_footer_then_converts(raw_disk, tmp_path):
    vhd = write_fixed_vhd(raw_disk, tmp_path / "image")
    data, plan = upload_bytes(vhd, "KVM")
    assert plan.steps == ("strip-vhd-footer", "raw-to-qcow2")
    assert to_raw(write(tmp_path / "o.qcow2", data)) == raw_disk.read_bytes()


@pytest.mark.parametrize("hypervisor", ["KVM", "XenServer"])
def test_ova_is_rejected_outside_vmware(tmp_path, hypervisor):
    with pytest.raises(ImageError, match=rf"ova image cannot be used on {hypervisor}"):
        plan_upload(detect(write_ova(tmp_path / "image")), hypervisor)


def test_disk_for_vmware_is_rejected(qcow2_disk):
    with pytest.raises(ImageError, match="qcow2 image cannot be used on VMware.*OVA"):
        plan_upload(detect(qcow2_disk), "VMware")


@pytest.mark.parametrize("hypervisor", ["Hyperv", None])
def test_unknown_hypervisor(qcow2_disk, hypervisor):
    with pytest.raises(ImageError, match=f"{hypervisor!r} is not supported"):
        plan_upload(detect(qcow2_disk), hypervisor)


def test_dynamic_vhd_inside_plain_tar_is_read_in_place(raw_disk, tmp_path):
    dynamic = write_dynamic_vhd(raw_disk, tmp_path / "d.vhd")
    image = tar_of(tmp_path / "image", {"README": b"x" * 700, "root.vhd": dynamic})
    data, plan = upload_bytes(image, "KVM")
    assert plan.steps == ("untar", "vhd-to-raw", "raw-to-qcow2")
    assert to_raw(write(tmp_path / "o.qcow2", data)) == raw_disk.read_bytes()
    assert to_raw(image) == raw_disk.read_bytes()


def test_differencing_vhd_is_rejected(raw_disk, tmp_path):
    dynamic = bytearray(write_dynamic_vhd(raw_disk, tmp_path / "d.vhd").read_bytes()[:512])
    dynamic[60:64] = (4).to_bytes(4, "big")
    dynamic[64:68] = vhd_checksum(bytes(dynamic)).to_bytes(4, "big")
    with pytest.raises(ImageError, match="differencing VHD"):
        detect(write(tmp_path / "image", bytes(dynamic) + bytes(2048)))


def test_unresolved_image_must_be_resolved_first(raw_disk, tmp_path):
    info = detect(compress(raw_disk, tmp_path / "image", "gzip"))
    with pytest.raises(ImageError, match="resolve"):
        plan_upload(info, "XenServer")


# --- round trips -------------------------------------------------------------------------


def test_raw_qcow2_raw_round_trip_is_byte_identical(raw_disk, qcow2_disk):
    assert to_raw(qcow2_disk) == raw_disk.read_bytes()


def test_qcow2_keeps_zero_clusters_unallocated(qcow2_disk):
    # header + L1 + refcount table + refcount block + one L2 table, then data:
    # MBR (cluster 0), 1 MiB+100 (16), the straddling write (31, 32) and the
    # last 4 KiB, which straddle clusters 79 and 80.  Nothing else.
    assert qcow2_disk.stat().st_size == (5 + 6) * 65536


def test_raw_vhd_raw_round_trips(raw_disk, tmp_path):
    fixed, _ = upload_bytes(raw_disk, "XenServer")
    fixed_path = write(tmp_path / "fixed.vhd", fixed)
    assert to_raw(fixed_path) == raw_disk.read_bytes()
    dynamic = write_dynamic_vhd(raw_disk, tmp_path / "dyn.vhd", block_size=64 * 1024)
    assert to_raw(dynamic) == raw_disk.read_bytes()


def test_compressed_qcow2_raw_stream_spools_next_to_the_image(qcow2_disk, raw_disk, tmp_path):
    image = tar_of(tmp_path / "image", {"root.qcow2": qcow2_disk}, "bzip2")
    before = set(os.listdir(tmp_path))
    chunks = raw_stream(image, detect(image))
    first = next(chunks)
    spooled = set(os.listdir(tmp_path)) - before
    assert spooled == set() or all(name.startswith(".cpi-spool-") for name in spooled)
    assert first + b"".join(chunks) == raw_disk.read_bytes()
    assert set(os.listdir(tmp_path)) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size_sectors=st.integers(1, 6000),
       writes=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=3000)), max_size=6))
def test_round_trips_for_arbitrary_sparse_disks(tmp_path_factory, size_sectors, writes):
    tmp = tmp_path_factory.mktemp("prop")
    size = size_sectors * 512
    blocks = {min(int(at * size), size - len(data)): data for at, data in writes if len(data) <= size}
    raw = write_raw(tmp / "root.img", size, blocks, mbr=False)
    expected = raw.read_bytes()
    assume(not expected.startswith((b"QFI\xfb", b"conectix")))  # would really be qcow2/VHD
    qcow2, _ = upload_bytes(raw, "KVM")
    assert to_raw(write(tmp / "o.qcow2", qcow2)) == expected
    vhd, _ = upload_bytes(raw, "XenServer")
    assert to_raw(write(tmp / "o.vhd", vhd)) == expected
    assert to_raw(write_dynamic_vhd(raw, tmp / "d.vhd", block_size=4096)) == expected


def test_unaligned_raw_is_padded_to_a_sector(tmp_path):
    raw = write_raw(tmp_path / "root.img", 1000, {0: b"\x01" * 1000}, mbr=False)
    data, _ = upload_bytes(raw, "XenServer")
    assert len(data) == 1024 + 512 and data[:1024] == b"\x01" * 1000 + bytes(24)
    qcow2 = write(tmp_path / "o.qcow2", upload_bytes(raw, "KVM")[0])
    assert detect(qcow2).virtual_size == 1024


# --- VHD footer details -------------------------------------------------------------------


def test_vhd_footer_fields():
    footer = vhd_footer(RAW_SIZE, timestamp=946684800 + 10, unique_id=bytes(range(16)))
    cookie, features, version, data_offset, stamp, creator = struct.unpack_from(">8sIIQI4s", footer)
    assert (cookie, features, version, stamp, creator) == (b"conectix", 2, 0x10000, 10, b"cpi ")
    assert data_offset == 0xFFFFFFFFFFFFFFFF
    assert struct.unpack_from(">QQ", footer, 40) == (RAW_SIZE, RAW_SIZE)
    assert struct.unpack_from(">I", footer, 60) == (2,)
    assert struct.unpack_from(">I", footer, 64) == (vhd_checksum(footer),)
    assert footer[68:84] == bytes(range(16))


@pytest.mark.parametrize("size,geometry", [
    # Worked by hand through the spec's algorithm (qemu-img agrees, see test_qemu_interop).
    (2 * 1024**3, (4161, 16, 63)),
    (10 * MIB, (301, 4, 17)),
    (127 * 1024**3, (65278, 16, 255)),
    (2 * 1024**4, (65535, 16, 255)),  # clamped to the largest geometry
])
def test_vhd_geometry(size, geometry):
    assert vhd_geometry(size) == geometry


def test_qcow2_layout_solves_refcount_size_for_big_disks():
    allocated = bytearray(b"\x01") * (300 * 1024**3 // 65536)  # 300 GiB, fully allocated
    layout = Qcow2Layout(300 * 1024**3, allocated)
    table, blocks = layout.refcount_clusters
    per_block = 65536 * 8 // 16
    assert blocks * per_block >= layout.total_clusters > (blocks - 1) * per_block
    assert table * 65536 // 8 >= blocks


def detect_bytes(tmp_path: Path, data: bytes):
    return detect(write(tmp_path / "probe", data))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
