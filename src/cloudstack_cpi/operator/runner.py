"""Spawn the CPI exactly as the director does: bin/cpi CONFIG, one JSON request piped in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKOUT_BIN_CPI = Path(__file__).resolve().parents[3] / "bin" / "cpi"
POLL_SECONDS = 0.2  # how often a running call checks whether the operator asked it to stop


def cpi_command() -> list[str]:
    """bin/cpi from a checkout; from an installed package, this interpreter running the same entry point."""
    if CHECKOUT_BIN_CPI.exists():
        return [str(CHECKOUT_BIN_CPI)]
    return [sys.executable, "-I", "-c", "from cloudstack_cpi.entry import serve; serve()"]


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
    stopped: bool = False  # interrupted mid-call (CpiRunner.interrupt): what it had made may remain

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
    grace: float = 300.0  # seconds a running call may go on after interrupt() before bin/cpi is interrupted too
    stop_deadline: float | None = None  # monotonic time at which the running call gets SIGINT (see interrupt)
    _counter: int = 0

    def interrupt(self, *, now: bool = False) -> None:
        """Stop the running call after ``grace`` seconds, or at once.

        Only records a deadline (the waiting loop acts on it), so a signal handler may call it.  bin/cpi
        answers a SIGINT at once; what the call had half-made is then removed only where the CPI's own
        cleanup covers an interruption.
        """
        deadline = time.monotonic() + (0.0 if now else self.grace)
        if self.stop_deadline is None or deadline < self.stop_deadline:
            self.stop_deadline = deadline

    def _spawn(self, request: bytes) -> tuple[bytes, str, int, bool]:
        """Run bin/cpi; stderr is read line by line as it comes, like the director does."""
        # Its own session: the terminal's Ctrl-C goes to the whole foreground process group, and a CPI
        # killed mid-call never tells us the CID of what it made.  Only the operator command gets it, and
        # decides (interrupt()) whether this call finishes first.
        process = subprocess.Popen([*cpi_command(), self.config_path], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=director_env(),
                                   start_new_session=True)
        stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
        assert stdin is not None and stdout is not None and stderr is not None  # all three are PIPEs
        lines: list[str] = []
        answer: list[bytes] = []

        def read_stderr() -> None:
            for raw in stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if self.on_log_line is not None:
                    self.on_log_line(line)

        readers = [threading.Thread(target=read_stderr, daemon=True),
                   threading.Thread(target=lambda: answer.append(stdout.read()), daemon=True)]
        for reader in readers:
            reader.start()
        # Not communicate(): it would read stderr too, racing the reader for the lines.  The CPI reads all
        # of stdin before it writes anything, so writing the request first cannot deadlock.
        try:
            stdin.write(request)
            stdin.close()
        except BrokenPipeError:
            pass
        try:
            stopped = self._wait(process, readers[1])
        except BaseException:
            # This command is stopping (Ctrl-C in `call`): stop the call too rather than leave it orphaned.
            process.send_signal(signal.SIGINT)
            process.wait()
            raise
        finally:
            self.stop_deadline = None
        for reader in readers:
            reader.join()
        return b"".join(answer), "\n".join(lines) + ("\n" if lines else ""), process.returncode, stopped

    def _wait(self, process: subprocess.Popen, stdout_reader: threading.Thread) -> bool:
        """Wait for bin/cpi's answer; once the stop deadline has passed, interrupt it (once).  True if it was."""
        interrupted = False
        while stdout_reader.is_alive():
            stdout_reader.join(POLL_SECONDS)
            if not interrupted and self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                process.send_signal(signal.SIGINT)
                interrupted = True
        process.wait()
        return interrupted

    def call(self, method: str, *arguments: Any, context: dict[str, Any] | None = None) -> CallOutcome:
        """One CPI call; ``context`` adds cpi-config overrides of ``cloudstack.*`` to the request's context."""
        self._counter += 1
        request = {
            "method": method,
            "arguments": list(arguments),
            "context": {
                "director_uuid": self.director_uuid,
                "request_id": f"cpi-{900000 + self._counter}",
                "vm": {"stemcell": {"api_version": self.stemcell_api_version}},
                **(context or {}),
            },
            "api_version": self.api_version,
        }
        started = time.monotonic()
        stdout, stderr, returncode, stopped = self._spawn(json.dumps(request).encode())
        seconds = time.monotonic() - started
        try:
            response = json.loads(stdout)
        except ValueError:
            response = {"result": None, "log": "", "error": {
                "type": "InvalidResponse", "ok_to_retry": False,
                "message": f"bin/cpi exited {returncode} without a JSON answer"}}
        outcome = CallOutcome(method, list(arguments), response, stderr, seconds, stopped)
        self.history.append(outcome)
        return outcome
