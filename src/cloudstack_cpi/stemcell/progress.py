"""Rate-limited progress lines for long transfers (stemcell uploads).

BOSH shows the CPI's stderr log; a line every few seconds tells the operator
the 2 GiB upload is alive without flooding the log.  The meter is pure:
time comes from an injectable clock and output goes to ``emit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


class ProgressMeter:
    """Emit ``label: done of total (pct%), rate`` at most once per ``interval`` seconds."""

    def __init__(self, total: int | None, label: str, emit: Callable[[str], None],
                 interval: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.label = label
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_time = self._started
        self._last_bytes = 0
        self._current = 0
        self._finished = False

    def update(self, n_bytes_total: int) -> None:
        """Record that ``n_bytes_total`` bytes are done; maybe emit a line."""
        self._current = n_bytes_total
        now = self._clock()
        if now - self._last_time < self._interval:
            return
        # The rate over the last interval shows stalls better than the average.
        rate = (n_bytes_total - self._last_bytes) / (now - self._last_time)
        self._emit(f"{self.label}: {self._amount(n_bytes_total)}, {format_bytes(rate)}/s")
        self._last_time, self._last_bytes = now, n_bytes_total

    def finish(self) -> None:
        """Emit the final line (once), with the average rate over the whole run."""
        if self._finished:
            return
        self._finished = True
        elapsed = self._clock() - self._started
        line = f"{self.label}: {self._amount(self._current)} in {elapsed:.1f} s"
        if elapsed > 0:
            line += f", {format_bytes(self._current / elapsed)}/s"
        self._emit(line)

    def _amount(self, done: int) -> str:
        if self.total is None:
            return format_bytes(done)
        percent = 100 if self.total == 0 else min(100, done * 100 // self.total)
        return f"{format_bytes(done)} of {format_bytes(self.total)} ({percent}%)"


def format_bytes(count: float) -> str:
    """``512 B``, ``1.5 KiB``, ``2.0 GiB``: binary units, one decimal above bytes."""
    if count < 1024:
        return f"{count:.0f} B"
    value = float(count)
    for unit in UNITS[1:]:
        value /= 1024
        if value < 1024 or unit == UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
