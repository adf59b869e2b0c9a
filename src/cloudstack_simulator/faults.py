"""Fault injection: per API request, decided by seeded random streams behind a lock.

Each command has its own stream (one for requests, one for jobs), derived from
the seed and the command's name.  A seeded run therefore gives every command
the same sequence of faults whatever else happens around it: how many times a
client polls a job (which depends on timing) shifts only the
queryAsyncJobResult stream, not the faults of the commands that decide an
outcome.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, fields

KINDS = ("error", "drop", "throttle", "slow", "drop_after_action", "job_failure")


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0            # HTTP 500/503 with a CloudStack error body, before acting
    drop_rate: float = 0.0             # close the connection without answering, before acting
    throttle_rate: float = 0.0         # HTTP 429 API limit error, before acting
    slow_rate: float = 0.0             # delay the request by slow_seconds (before acting)
    slow_seconds: float = 1.0
    job_failure_rate: float = 0.0      # async job ends with jobstatus 2 / errorcode 530
    drop_after_action_rate: float = 0.0  # act, then close the connection without answering

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "slow_seconds" and not (0.0 <= float(v) <= 1.0):
                raise ValueError(f"{f.name} must be within [0, 1], got {v}")


@dataclass
class RequestFaults:
    error: int = 0          # 0 = none, else HTTP status (500/503)
    drop: bool = False
    throttle: bool = False
    slow: float = 0.0
    drop_after_action: bool = False

    def any_before(self) -> bool:
        return bool(self.error or self.drop or self.throttle)


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None, seed: int | None = None):
        self.config = config or FaultConfig()
        self._seed = seed
        self._unseeded = random.Random()
        self._streams: dict[tuple[str, str], random.Random] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._scripted: dict[tuple[str, str], int] = {}   # (command, kind) -> how many of its next requests

    def script(self, command: str, kind: str, times: int = 1) -> None:
        """Give the next ``times`` requests (or jobs, for job_failure) of ``command`` the fault ``kind``, whatever the
        rates say: for tests that need one particular mutation to fail or lose its answer."""
        if kind not in ("error", "drop", "throttle", "drop_after_action", "job_failure"):
            raise ValueError(f"cannot script a fault of kind {kind!r}")
        with self._lock:
            self._scripted[(command.lower(), kind)] = times

    def _take_scripted(self, command: str | None, kind: str) -> bool:
        key = ((command or "").lower(), kind)
        left = self._scripted.get(key, 0)
        if left <= 0:
            return False
        self._scripted[key] = left - 1
        self._count(kind)
        return True

    def set_config(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _stream(self, kind: str, command: str | None) -> random.Random:
        if self._seed is None:
            return self._unseeded
        key = (kind, (command or "").lower())
        if key not in self._streams:
            self._streams[key] = random.Random(f"{self._seed}:{kind}:{key[1]}")
        return self._streams[key]

    def for_request(self, command: str | None = None) -> RequestFaults:
        """Always draws the same number of values so a seed gives a reproducible sequence per command."""
        with self._lock:
            c = self.config
            rng = self._stream("request", command)
            r_err, r_500, r_drop, r_thr, r_slow, r_after = (rng.random() for _ in range(6))
            rf = RequestFaults()
            if self._take_scripted(command, "error"):
                rf.error = 500
            elif self._take_scripted(command, "drop"):
                rf.drop = True
            elif self._take_scripted(command, "throttle"):
                rf.throttle = True
            elif self._take_scripted(command, "drop_after_action"):
                rf.drop_after_action = True
            elif r_err < c.error_rate:
                rf.error = 500 if r_500 < 0.5 else 503
                self._count("error")
            elif r_drop < c.drop_rate:
                rf.drop = True
                self._count("drop")
            elif r_thr < c.throttle_rate:
                rf.throttle = True
                self._count("throttle")
            else:
                if r_slow < c.slow_rate:
                    rf.slow = c.slow_seconds
                    self._count("slow")
                if r_after < c.drop_after_action_rate:
                    rf.drop_after_action = True
                    self._count("drop_after_action")
            return rf

    def job_fails(self, command: str | None = None) -> bool:
        with self._lock:
            r = self._stream("job", command).random()
            if self._take_scripted(command, "job_failure") or r < self.config.job_failure_rate:
                self._count("job_failure")
                return True
            return False

    def snapshot_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)
