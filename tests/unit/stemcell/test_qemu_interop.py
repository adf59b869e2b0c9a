"""Cross-check our images with qemu-img (skipped when qemu-img is not installed).

qemu-img opens a fixed VHD by its CHS geometry unless the creator is one it
knows, and it probes footer-only fixed VHDs as raw; so VHDs are opened with
``driver=vpc,force_size_calc=current_size`` here, which is how XenServer
(the consumer of these VHDs) reads them too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudstack_cpi.stemcell.convert import (
    Qcow2Layout,
    open_upload_stream,
    plan_upload,
    raw_stream,
    vhd_geometry,
)
from cloudstack_cpi.stemcell.image import check_usable, detect

from .conftest import RAW_SIZE
from .stemcell_image_builders import compress, ovf_descriptor, tar_of, write_dynamic_vhd, write_raw

QEMU_IMG = shutil.which("qemu-img")
pytestmark = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img not installed")


def qemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, timeout=60)


def vpc(path: Path) -> str:
    return f"driver=vpc,force_size_calc=current_size,file.filename={path}"


def upload_to(path: Path, hypervisor: str, target: Path) -> Path:
    plan = plan_upload(detect(path, resolve=True), hypervisor)
    with open_upload_stream(path, plan) as (stream, _), open(target, "wb") as out:
        for chunk in (iter(lambda: stream.read(1 << 20), b"") if hasattr(stream, "read") else stream):
            out.write(chunk)
    return target


def test_our_qcow2_passes_qemu_img_check_and_compare(raw_disk: Path, tmp_path: Path):
    qcow2 = upload_to(raw_disk, "KVM", tmp_path / "out.qcow2")
    check = qemu("check", "--output=json", "-f", "qcow2", str(qcow2))
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report.get("corruptions", 0) == 0 and report.get("leaks", 0) == 0
    compare = qemu("compare", "-f", "raw", "-F", "qcow2", str(raw_disk), str(qcow2))
    assert compare.returncode == 0 and "identical" in compare.stdout, compare.stdout + compare.stderr
    info = json.loads(qemu("info", "--output=json", str(qcow2)).stdout)
    assert (info["format"], info["virtual-size"]) == ("qcow2", RAW_SIZE)


def test_our_fixed_vhd_matches_the_raw_disk(raw_disk: Path, tmp_path: Path):
    vhd = upload_to(raw_disk, "XenServer", tmp_path / "out.vhd")
    compare = qemu("compare", "--image-opts", f"driver=raw,file.filename={raw_disk}", vpc(vhd))
    assert compare.returncode == 0, compare.stdout + compare.stderr
    info = json.loads(qemu("info", "--output=json", "--image-opts", vpc(vhd)).stdout)
    assert (info["format"], info["virtual-size"]) == ("vpc", RAW_SIZE)


def test_our_geometry_matches_qemu(tmp_path: Path):
    # Without force_size qemu rounds the size to its CHS geometry and records
    # both; our algorithm must derive the same geometry from that size.
    for size in (10 << 20, 2 << 30, 127 << 30):
        target = tmp_path / f"{size}.vhd"
        qemu("create", "-q", "-f", "vpc", "-o", "subformat=fixed", str(target), str(size))
        footer = _tail(target)  # qemu-img create leaves the disk sparse
        current_size = int.from_bytes(footer[48:56], "big")
        cylinders, heads, sectors = int.from_bytes(footer[56:58], "big"), footer[58], footer[59]
        assert vhd_geometry(current_size) == (cylinders, heads, sectors), size


def test_we_read_qemu_made_dynamic_vhd_and_qcow2(raw_disk: Path, tmp_path: Path):
    expected = raw_disk.read_bytes()
    for fmt, options in [("vpc", "subformat=dynamic,force_size=on"), ("qcow2", "compat=0.10"),
                         ("qcow2", "compat=1.1,cluster_size=4096")]:
        target = tmp_path / f"qemu.{fmt}"
        made = qemu("convert", "-f", "raw", "-O", fmt, "-o", options, str(raw_disk), str(target))
        assert made.returncode == 0, made.stderr
        assert b"".join(raw_stream(target, detect(target))) == expected, options


def test_we_read_compressed_qcow2_clusters(raw_disk: Path, tmp_path: Path):
    target = tmp_path / "c.qcow2"
    assert qemu("convert", "-c", "-f", "raw", "-O", "qcow2", str(raw_disk), str(target)).returncode == 0
    assert b"".join(raw_stream(target, detect(target))) == raw_disk.read_bytes()


def test_qemu_reads_our_test_dynamic_vhd_builder(raw_disk: Path, tmp_path: Path):
    vhd = write_dynamic_vhd(raw_disk, tmp_path / "d.vhd")
    compare = qemu("compare", "--image-opts", f"driver=raw,file.filename={raw_disk}", vpc(vhd))
    assert compare.returncode == 0, compare.stdout + compare.stderr


def test_real_stemcell_shape_to_kvm_qcow2(raw_disk: Path, tmp_path: Path):
    """bzip2 dynamic VHD (what bosh-linux-stemcell-builder ships) -> qcow2 for KVM."""
    dynamic = tmp_path / "qemu.vhd"
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on",
         str(raw_disk), str(dynamic))
    image = compress(dynamic, tmp_path / "image", "bzip2")
    qcow2 = upload_to(image, "KVM", tmp_path / "out.qcow2")
    assert qemu("check", "-f", "qcow2", str(qcow2)).returncode == 0
    compare = qemu("compare", "-f", "raw", "-F", "qcow2", str(raw_disk), str(qcow2))
    assert compare.returncode == 0, compare.stdout + compare.stderr


def _tail(path: Path) -> bytes:
    with open(path, "rb") as file:
        file.seek(-512, 2)
        return file.read()


@pytest.mark.parametrize("cluster_bits", [9, 12])
def test_small_clusters_exercise_multi_cluster_metadata(tmp_path: Path, cluster_bits: int):
    """Tiny clusters force several L1 clusters, L2 tables and refcount blocks."""
    blocks = dict.fromkeys(range(0, 3 << 20, 1536), b"\xa5" * 100)  # every 3rd sector
    raw_disk = write_raw(tmp_path / "dense.img", 4 << 20, blocks, mbr=False)
    info = detect(raw_disk)
    layout = Qcow2Layout.scan(raw_stream(raw_disk, info), info.virtual_size, cluster_bits=cluster_bits)
    if cluster_bits == 9:
        assert layout.refcount_clusters[1] > 1 and layout.l1_clusters > 1
    target = tmp_path / "small.qcow2"
    with open(target, "wb") as out:
        for chunk in layout.emit(raw_stream(raw_disk, info)):
            out.write(chunk)
    assert target.stat().st_size == layout.length
    check = qemu("check", "-f", "qcow2", str(target))
    assert check.returncode == 0, check.stdout + check.stderr
    compare = qemu("compare", "-f", "raw", "-F", "qcow2", str(raw_disk), str(target))
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert b"".join(raw_stream(target, detect(target))) == raw_disk.read_bytes()


@pytest.mark.parametrize("fmt, options, declared", [
    ("qcow2", "compat=1.1", "qcow2"),
    ("qcow2", "compat=0.10", "qcow2"),
    ("qcow2", "compat=1.1,cluster_size=4096", "qcow2"),
    ("vpc", "subformat=dynamic", "vhd"),
    ("vpc", "subformat=dynamic,force_size=on", "vhdx"),
    ("vpc", "subformat=fixed,force_size=on", "vhd"),
])
def test_images_qemu_makes_pass_the_usability_checks(raw_disk: Path, tmp_path: Path, fmt, options, declared):
    """What detect() and check_usable() refuse must not include what qemu-img writes (also compressed)."""
    target = tmp_path / f"qemu.{fmt}"
    made = qemu("convert", "-f", "raw", "-O", fmt, "-o", options, str(raw_disk), str(target))
    assert made.returncode == 0, made.stderr
    check_usable(detect(target, resolve=True), declared)
    image = compress(target, tmp_path / "image", "bzip2")
    check_usable(detect(image, resolve=True), declared)


def test_an_ova_with_a_qemu_made_stream_optimised_vmdk_passes(raw_disk: Path, tmp_path: Path):
    target = tmp_path / "disk1.vmdk"
    made = qemu("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw_disk), str(target))
    assert made.returncode == 0, made.stderr
    image = tar_of(tmp_path / "image", {"vm.ovf": ovf_descriptor(1), "disk1.vmdk": target})
    info = detect(image)
    check_usable(info, "ova")
    assert info.virtual_size == RAW_SIZE
