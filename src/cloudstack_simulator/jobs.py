"""Async job machinery: jobs complete after ``job_seconds``; results are kept for queryAsyncJobResult."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ApiError
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
    job_seconds: float = 0.0
    jobs: dict[str, Job] = field(default_factory=dict)
    _pending: list[Job] = field(default_factory=list)
    _seq: int = 0

    def submit(self, job: Job) -> Job:
        self._seq += 1
        job.seq = self._seq
        job.due = time.monotonic() + self.job_seconds
        self.jobs[job.id] = job
        self._pending.append(job)
        if self.job_seconds <= 0:
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
            job.status, job.resultcode = 2, e.code
            job.result = {"errorcode": e.code, "errortext": e.text}
        except Exception as e:  # a simulator bug must still end the job
            if job.rollback is not None:
                try:
                    job.rollback()
                except Exception:
                    pass
            job.status, job.resultcode = 2, 530
            job.result = {"errorcode": 530, "errortext": f"Internal error executing command: {e!r}"}
        job.completed = now_str()
