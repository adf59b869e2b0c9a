"""The post strategy's read-ahead: ``readahead.payload`` (a gzip image's payload through zlib in long steps) and
``ReadAhead`` (chunks made in a thread, a head start before the POST, bounded after it)."""

from __future__ import annotations

import dataclasses
import gzip
import os
import threading
import time
from pathlib import Path

import pytest

from cloudstack_cpi.stemcell import image, readahead
from cloudstack_cpi.stemcell.image import ImageError, detect, iter_payload
from cloudstack_cpi.stemcell.readahead import ReadAhead, payload

from .stemcell_image_builders import MIB, tar_of, write_raw

KIB = 1 << 10


@pytest.fixture
def busy_disk(tmp_path: Path) -> Path:
    """A raw disk that does not compress away: 2 MiB of random bytes among zeros (a real root disk's mix)."""
    size = 3 * MIB
    return write_raw(tmp_path / "root.img", size, {MIB // 2: os.urandom(2 * MIB)})


def no_fallback(monkeypatch) -> None:
    def fallback(*args, **kwargs):
        raise AssertionError("read through image.iter_payload, not zlib")

    monkeypatch.setattr(image, "iter_payload", fallback)


def test_a_tgz_members_payload_comes_from_zlib_and_is_the_members_bytes(busy_disk, tmp_path, monkeypatch):
    """Its header block is the one before the member's offset, not the end of the first decompressed step: reading
    it from there had sent every tgz the slow way (the gzip module, 1 MiB reads), unnoticed."""
    info = detect(tar_of(tmp_path / "image", {"root.img": busy_disk}, "gzip"))
    assert (info.container, info.member_offset) == ("tar", 512)
    expected = b"".join(iter_payload(info))
    no_fallback(monkeypatch)
    monkeypatch.setattr(readahead, "GZIP_STEP", 256 * KIB)  # several steps, as a real image takes
    chunks = list(payload(info))
    assert b"".join(chunks) == expected == busy_disk.read_bytes()
    assert len(chunks) > 1 and max(map(len, chunks)) <= 256 * KIB


def test_a_gzip_disks_payload_comes_from_zlib(busy_disk, tmp_path, monkeypatch):
    target = tmp_path / "image"
    target.write_bytes(gzip.compress(busy_disk.read_bytes()))
    info = detect(target, resolve=True)  # a raw disk's size inside gzip takes a pass (create_stemcell makes it)
    assert info.container is None and info.payload_size == busy_disk.stat().st_size
    no_fallback(monkeypatch)
    assert b"".join(payload(info)) == busy_disk.read_bytes()


def test_a_member_its_header_does_not_name_goes_the_usual_way(busy_disk, tmp_path):
    """A tar changed since detection (here: the member's size) is read as before, through tarfile."""
    info = detect(tar_of(tmp_path / "image", {"root.img": busy_disk}, "gzip"))
    changed = dataclasses.replace(info, payload_size=info.payload_size - 512)
    assert b"".join(payload(changed)) == b"".join(iter_payload(changed)) == busy_disk.read_bytes()[:-512]


@pytest.mark.parametrize("cut", ["in the gzip stream", "in the tar member"])
def test_a_truncated_image_fails_as_it_does_the_usual_way(busy_disk, tmp_path, cut):
    whole = tar_of(tmp_path / "whole.tgz", {"root.img": busy_disk}, "gzip").read_bytes()
    target = tmp_path / "image"
    if cut == "in the gzip stream":
        target.write_bytes(whole[: len(whole) // 2])
    else:  # a whole gzip stream of a tar that ends inside its member
        target.write_bytes(gzip.compress(gzip.decompress(whole)[: 2 * MIB]))
    info = dataclasses.replace(detect(tar_of(tmp_path / "t.tgz", {"root.img": busy_disk}, "gzip")),
                               path=str(target), file_size=target.stat().st_size)
    errors = []
    for read in (payload, iter_payload):
        with pytest.raises(ImageError) as caught:
            b"".join(read(info))
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"{target}: truncated or corrupt image while reading: ")
    assert errors[0].endswith("Compressed file ended before the end-of-stream marker was reached"
                              if cut == "in the gzip stream" else "unexpected end of data")


# --- ReadAhead -----------------------------------------------------------------------------------------------


def counted(chunks: int, size: int = KIB):
    """A producer of ``chunks`` chunks of ``size`` bytes, numbered, recording how many it has made."""
    made: list[int] = []

    def produce():
        for number in range(chunks):
            made.append(number)
            yield bytes([number % 256]) * size

    return produce, made


def settle(made: list[int], count: int) -> None:
    """Wait (5 s at most) until the producer has made ``count`` chunks, then a moment in which it could go on."""
    deadline = time.monotonic() + 5
    while len(made) < count and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)


def test_before_the_first_chunk_is_taken_the_thread_runs_up_to_its_head_start():
    produce, made = counted(100)
    ahead = ReadAhead(produce, depth=2, head_start=10 * KIB)
    try:
        settle(made, 11)
        assert len(made) == 11  # 10 KiB held, the 11th made and waiting for room
        first = next(ahead)
        time.sleep(0.02)
        assert len(made) == 11  # from the first chunk taken on, 2 chunks ahead at most: 9 still held
        rest = [next(ahead) for _ in range(8)]
        settle(made, 12)
        assert len(made) == 12 and len(ahead._items) == 2
        assert [chunk[0] for chunk in [first, *rest]] == list(range(9))
        assert b"".join(ahead)[::KIB] == bytes(range(9, 100))
    finally:
        ahead.close()


def test_without_a_head_start_the_thread_keeps_depth_chunks_ahead():
    produce, made = counted(100)
    ahead = ReadAhead(produce, depth=2)
    try:
        settle(made, 3)
        assert len(made) == 3 and len(ahead._items) == 2
    finally:
        ahead.close()


def test_an_error_comes_after_the_chunks_before_it():
    def produce():
        yield b"a"
        yield b"b"
        raise ImageError("image: truncated")

    ahead = ReadAhead(produce, head_start=MIB)
    try:
        assert next(ahead) == b"a" and next(ahead) == b"b"
        with pytest.raises(ImageError, match="truncated"):
            next(ahead)
        assert list(ahead) == []
    finally:
        ahead.close()


def test_close_stops_a_thread_waiting_for_room_and_closes_what_it_read():
    closed = threading.Event()

    def produce():
        try:
            while True:
                yield bytes(KIB)
        finally:
            closed.set()

    ahead = ReadAhead(produce, depth=2, head_start=4 * KIB)
    time.sleep(0.02)
    ahead.close()
    assert closed.is_set() and not ahead._thread.is_alive()
    assert list(ahead) == []
