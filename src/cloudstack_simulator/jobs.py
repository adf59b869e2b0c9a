"""Async job machinery: each job completes after its duration (timing.py: a profile's figure for its command, or
the single ``job_seconds`` override); results are kept for queryAsyncJobResult."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import CS_INVALID_PARAMETER, INTERNAL_ERROR, PARAM_ERROR, ApiError
from .timing import Timing
from .util import now_str

JOB_FAILURE_TEXT = "Internal error executing command, please contact your system administrator"


@dataclass
class Job:
    id: str
    cmd: str                     # Java class name, like the real server reports
    command: str                 # API command name
    instancetype: str | None
    instanceid: str | None
    created: str
    due: float
    complete: Callable[[], dict]        # returns the jobresult dict ({"virtualmachine": {...}} / {"success": True})
    rollback: Callable[[], None] | None = None
    fail_fault: bool = False
    status: int = 0
    resultcode: int = 0
    result: Any = None
    completed: str | None = None
    seq: int = 0

    def to_response(self, account: dict) -> dict:
        r = {
            "accountid": account["id"],
            "userid": account["userid"],
            "cmd": self.cmd,
            "jobstatus": self.status,
            "jobprocstatus": 0,
            "jobresultcode": self.resultcode,
            "jobresulttype": "object",
            "created": self.created,
            "jobid": self.id,
        }
        if self.instancetype:
            r["jobinstancetype"] = self.instancetype
        if self.instanceid:
            r["jobinstanceid"] = self.instanceid
        if self.status != 0:
            r["jobresult"] = self.result
            r["completed"] = self.completed
        return r


@dataclass
class JobManager:
    """All methods are called with the state lock held."""
    timing: Timing = field(default_factory=Timing)
    # How ApiAsyncJobDispatcher.runJob records a failure: "4.20" (the newest source: an InvalidParameterValueException
    # becomes PARAM_ERROR 431, jobresultcode = errorcode) or "4.11" (4.11 to 4.19: it is "not a ServerApiException",
    # so errorcode 530, and jobresultcode is INTERNAL_ERROR 530 for every failure).  Scenario setting job_error_codes.
    error_codes: str = "4.20"
    jobs: dict[str, Job] = field(default_factory=dict)
    _pending: list[Job] = field(default_factory=list)
    _seq: int = 0

    @property
    def job_seconds(self) -> float | None:
        """The single duration that overrides the timing profile for every job (None: the profile decides)."""
        return self.timing.override

    @job_seconds.setter
    def job_seconds(self, seconds: float | None) -> None:
        self.timing.override = None if seconds is None else float(seconds)

    def duration(self, command: str, variant: str | None = None) -> float:
        return self.timing.seconds(command, variant)

    def submit(self, job: Job, seconds: float | None = None) -> Job:
        """Queue ``job``; it completes ``seconds`` from now (default: the timing of its command)."""
        if seconds is None:
            seconds = self.duration(job.command)
        self._seq += 1
        job.seq = self._seq
        job.due = time.monotonic() + seconds
        self.jobs[job.id] = job
        self._pending.append(job)
        if seconds <= 0:
            self.tick()
        return job

    def has_pending(self) -> bool:
        return bool(self._pending)

    def tick(self) -> None:
        now = time.monotonic()
        while True:
            due = [j for j in self._pending if j.due <= now]
            if not due:
                return
            job = min(due, key=lambda j: (j.due, j.seq))
            self._pending.remove(job)
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            if job.fail_fault:
                raise ApiError(530, JOB_FAILURE_TEXT)
            result = job.complete()
            job.status, job.resultcode, job.result = 1, 0, result
        except ApiError as e:
            if job.rollback is not None:
                job.rollback()
            code = e.code
            if self.error_codes == "4.11" and code == PARAM_ERROR and e.cserrorcode == CS_INVALID_PARAMETER:
                code = INTERNAL_ERROR
            job.status, job.resultcode = 2, INTERNAL_ERROR if self.error_codes == "4.11" else code
            job.result = {"errorcode": code, "errortext": e.text}
        except Exception as e:  # noqa: BLE001 - a simulator bug must still end the job
            if job.rollback is not None:
                with contextlib.suppress(Exception):
                    job.rollback()
            job.status, job.resultcode = 2, 530
            job.result = {"errorcode": 530, "errortext": f"Internal error executing command: {e!r}"}
        job.completed = now_str()
