"""ProgressMeter pacing and wording, driven by a fake clock."""

from __future__ import annotations

import pytest

from cloudstack_cpi.stemcell.progress import ProgressMeter, format_bytes

MIB = 1 << 20
GIB = 1 << 30


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def meter(total, interval=5.0):
    lines: list[str] = []
    clock = FakeClock()
    return ProgressMeter(total, "Uploading stemcell image", lines.append, interval, clock), lines, clock


def test_lines_are_paced_by_the_interval():
    progress, lines, clock = meter(2 * GIB)
    for second in range(1, 12):
        clock.now += 1
        progress.update(second * 100 * MIB)
    # Lines at t+5 and t+10 only.
    assert lines == [
        "Uploading stemcell image: 500.0 MiB of 2.0 GiB (24%), 100.0 MiB/s",
        "Uploading stemcell image: 1000.0 MiB of 2.0 GiB (48%), 100.0 MiB/s",
    ]


def test_example_line_from_the_spec():
    progress, lines, clock = meter(2 * GIB)
    clock.now += 5
    progress.update(512 * MIB)
    assert lines == ["Uploading stemcell image: 512.0 MiB of 2.0 GiB (25%), 102.4 MiB/s"]


def test_rate_is_over_the_last_interval():
    progress, lines, clock = meter(None)
    clock.now += 5
    progress.update(500 * MIB)
    clock.now += 10
    progress.update(600 * MIB)  # stalled: 10 MiB/s
    assert lines[-1] == "Uploading stemcell image: 600.0 MiB, 10.0 MiB/s"


def test_finish_emits_once_with_average_rate():
    progress, lines, clock = meter(GIB)
    clock.now += 2
    progress.update(GIB)
    assert lines == []  # too soon for a periodic line
    progress.finish()
    progress.finish()
    assert lines == ["Uploading stemcell image: 1.0 GiB of 1.0 GiB (100%) in 2.0 s, 512.0 MiB/s"]


def test_finish_without_elapsed_time_or_total():
    progress, lines, _ = meter(None)
    progress.update(10)
    progress.finish()
    assert lines == ["Uploading stemcell image: 10 B in 0.0 s"]


def test_zero_total_is_complete():
    progress, lines, _ = meter(0)
    progress.finish()
    assert lines == ["Uploading stemcell image: 0 B of 0 B (100%) in 0.0 s"]


@pytest.mark.parametrize("count,text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (2 * GIB, "2.0 GiB"), (5 << 40, "5.0 TiB"), (3 << 60, "3072.0 PiB"),
])
def test_format_bytes(count, text):
    assert format_bytes(count) == text
