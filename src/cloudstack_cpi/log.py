"""Log lines for the director's task CPI log.

The director copies every stderr line into ``bosh task N --cpi`` as it arrives,
so lines are written and flushed one at a time (long uploads show progress
live).  Known secrets are registered with the logger and replaced in every line,
whatever code produced it.  The stdlib ``logging`` package is not used: it costs
more start-up time than this whole module, and every CPI call is a new process.
"""

from __future__ import annotations

import sys
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
REDACTED = "<redacted>"


class Logger:
    def __init__(self, *, request_id: str | None = None, level: str = "info", stream=None) -> None:
        self.request_id = request_id
        self.threshold = LEVELS.get(level, 20)
        self.stream = stream if stream is not None else sys.stderr
        self.unwritten: list[str] = []  # lines stderr could not carry; they go into the response's log
        self._secrets: list[str] = []
        self.method = ""

    def set_level(self, level: str) -> None:
        self.threshold = LEVELS.get(level, self.threshold)

    def add_secret(self, value: str | None) -> None:
        """Never print this value; short values are skipped to avoid mangling normal words."""
        if value and len(value) >= 6 and value not in self._secrets:
            self._secrets.append(value)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def debug(self, message: str) -> None:
        self._emit(10, "DEBUG", message)

    def info(self, message: str) -> None:
        self._emit(20, "INFO", message)

    def warning(self, message: str) -> None:
        self._emit(30, "WARN", message)

    def error(self, message: str) -> None:
        self._emit(40, "ERROR", message)

    @property
    def debug_enabled(self) -> bool:
        return self.threshold <= 10

    def _emit(self, level: int, label: str, message: str) -> None:
        if level < self.threshold:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        prefix = f"[{self.request_id}] " if self.request_id else ""
        where = f" {self.method}" if self.method else ""
        line = self.redact(f"{prefix}{stamp} {label}{where}: {message}")
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.unwritten.append(line)
