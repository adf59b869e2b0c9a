"""Fixtures: one small sparse raw disk and its wrapped/converted variants."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudstack_cpi.stemcell.convert import Qcow2Layout, raw_stream
from cloudstack_cpi.stemcell.image import detect

from .stemcell_image_builders import MIB, sample_blocks, write_raw

RAW_SIZE = 5 * MIB + 3 * 512  # not a multiple of the cluster or block size


@pytest.fixture
def raw_disk(tmp_path: Path) -> Path:
    return write_raw(tmp_path / "root.img", RAW_SIZE, sample_blocks(RAW_SIZE))


@pytest.fixture
def qcow2_disk(raw_disk: Path, tmp_path: Path) -> Path:
    """A qcow2 produced by our own writer from ``raw_disk``."""
    info = detect(raw_disk)
    layout = Qcow2Layout.scan(raw_stream(raw_disk, info), info.virtual_size)
    target = tmp_path / "disk.qcow2"
    with open(target, "wb") as out:
        for chunk in layout.emit(raw_stream(raw_disk, info)):
            out.write(chunk)
    return target


def collect(stream) -> bytes:
    """All bytes of a readable stream or chunk iterator (small test images only)."""
    if hasattr(stream, "read"):
        return stream.read()
    return b"".join(bytes(chunk) for chunk in stream)
