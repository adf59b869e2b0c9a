"""Spawn the CPI exactly as the director does: bin/cpi CONFIG, one JSON request piped in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKOUT_BIN_CPI = Path(__file__).resolve().parents[3] / "bin" / "cpi"


def cpi_command() -> list[str]:
    """bin/cpi from a checkout; from an installed package, this interpreter running the same entry point."""
    if CHECKOUT_BIN_CPI.exists():
        return [str(CHECKOUT_BIN_CPI)]
    return [sys.executable, "-I", "-c", "import sys; from cloudstack_cpi.entry import main; sys.exit(main())"]


def director_env() -> dict[str, str]:
    """The director's environment for CPI processes: PATH, HOME and TMPDIR only."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for key in ("HOME", "TMPDIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


@dataclass
class CallOutcome:
    method: str
    arguments: list
    response: dict
    stderr: str
    seconds: float

    @property
    def error(self) -> dict | None:
        return self.response.get("error")

    @property
    def result(self) -> Any:
        return self.response.get("result")


@dataclass
class CpiRunner:
    config_path: str
    director_uuid: str = "cloudstack-cpi-operator"
    stemcell_api_version: int = 3
    api_version: int = 2
    history: list[CallOutcome] = field(default_factory=list)
    on_log_line: Callable[[str], None] | None = None  # sees each stderr line as it is written (progress)
    _counter: int = 0

    def _spawn(self, request: bytes) -> tuple[bytes, str, int]:
        """Run bin/cpi; stderr is read line by line as it comes, like the director does."""
        process = subprocess.Popen([*cpi_command(), self.config_path], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=director_env())
        lines: list[str] = []

        def read_stderr() -> None:
            for raw in process.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if self.on_log_line is not None:
                    self.on_log_line(line)

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        # Not communicate(): it would read stderr too, racing the reader for the lines.  The CPI reads all
        # of stdin before it writes anything, so writing the request first cannot deadlock.
        try:
            process.stdin.write(request)
            process.stdin.close()
        except BrokenPipeError:
            pass
        stdout = process.stdout.read()
        process.wait()
        reader.join()
        return stdout, "\n".join(lines) + ("\n" if lines else ""), process.returncode

    def call(self, method: str, *arguments: Any) -> CallOutcome:
        self._counter += 1
        request = {
            "method": method,
            "arguments": list(arguments),
            "context": {
                "director_uuid": self.director_uuid,
                "request_id": f"cpi-{900000 + self._counter}",
                "vm": {"stemcell": {"api_version": self.stemcell_api_version}},
            },
            "api_version": self.api_version,
        }
        started = time.monotonic()
        stdout, stderr, returncode = self._spawn(json.dumps(request).encode())
        seconds = time.monotonic() - started
        try:
            response = json.loads(stdout)
        except ValueError:
            response = {"result": None, "log": "", "error": {
                "type": "InvalidResponse", "ok_to_retry": False,
                "message": f"bin/cpi exited {returncode} without a JSON answer"}}
        outcome = CallOutcome(method, list(arguments), response, stderr, seconds)
        self.history.append(outcome)
        return outcome
