"""Memory stays flat: a 1 GiB sparse disk streams with a small, bounded peak."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from cloudstack_cpi.stemcell.convert import open_upload_stream, plan_upload, vhd_footer
from cloudstack_cpi.stemcell.image import detect
from cloudstack_cpi.stemcell.multipart import MultipartBody

from .stemcell_image_builders import write_raw

GIB = 1 << 30
PEAK_LIMIT = 32 << 20


@pytest.fixture(scope="module")
def sparse_gib(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "root.img"
    blocks = {offset: os.urandom(300_000) for offset in (5 << 20, 400 << 20, GIB - 300_000)}
    return write_raw(path, GIB, blocks)


def drain_with_peak(path: Path, hypervisor: str) -> tuple[int, int, tuple[str, ...]]:
    """Upload-stream ``path`` through a multipart body; (bytes, peak traced bytes, steps)."""
    plan = plan_upload(detect(path), hypervisor)
    tracemalloc.start()
    try:
        with open_upload_stream(path, plan) as (stream, length):
            body = MultipartBody("file", "root", "application/octet-stream", lambda: stream, length)
            total = sum(len(chunk) for chunk in body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == body.content_length
    return length, peak, plan.steps


def test_raw_to_qcow2_of_a_sparse_gib_stays_flat(sparse_gib: Path):
    length, peak, steps = drain_with_peak(sparse_gib, "KVM")
    assert steps == ("raw-to-qcow2",)
    assert length < 16 << 20  # holes stayed holes
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.1f} MiB"


def test_raw_to_fixed_vhd_of_a_gib_stays_flat(sparse_gib: Path):
    length, peak, steps = drain_with_peak(sparse_gib, "XenServer")
    assert steps == ("raw-to-vhd",) and length == GIB + 512
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.1f} MiB"


def test_pass_through_of_a_gib_stays_flat(tmp_path: Path):
    fixed = tmp_path / "fixed.vhd"
    with open(fixed, "wb") as out:
        out.truncate(GIB)
        out.seek(GIB)
        out.write(vhd_footer(GIB))
    length, peak, steps = drain_with_peak(fixed, "XenServer")
    assert steps == ("pass-through",) and length == GIB + 512
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.1f} MiB"
