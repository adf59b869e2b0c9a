"""The one exception type for everything the CloudStack API (or the way to it) says no to."""

from __future__ import annotations

# CloudStack answers lack of capacity with these codes (ApiErrorCode): the same
# request may succeed later or elsewhere, so BOSH may retry.
CAPACITY_CODES = frozenset({533, 534, 535})
# Throttled (429), unavailable (503) and internal errors (530) may pass when the operation is tried again.
TRANSIENT_CODES = frozenset({429, 503, 530})
TRANSIENT_HTTP = frozenset({500, 502, 503, 504})


class CloudStackError(Exception):
    """A failed CloudStack call.

    ``kind`` says how it failed: ``api`` (the server answered with an error),
    ``job`` (an async job ended in failure), ``timeout`` (a job did not finish in
    time), ``transport`` (no usable answer: connection, bad JSON), ``tls`` (the
    endpoint's certificate was refused: a configuration matter, never retried).
    ``outcome_unknown`` is true when a mutation may or may not have happened
    (the connection dropped after the request was sent): callers must look
    before trying again.
    """

    def __init__(
        self,
        command: str,
        errortext: str,
        *,
        kind: str = "api",
        http_status: int | None = None,
        errorcode: int | None = None,
        cserrorcode: int | None = None,
        jobid: str | None = None,
        resource_id: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.command = command
        self.errortext = errortext
        self.kind = kind
        self.http_status = http_status
        self.errorcode = errorcode
        self.cserrorcode = cserrorcode
        self.jobid = jobid
        self.resource_id = resource_id
        self.outcome_unknown = outcome_unknown
        self.retry_after: float | None = None  # seconds a 429 asked to wait (its Retry-After header)
        self.context = ""  # what was being done, in front of the message: add_context
        super().__init__(self._describe())

    def _describe(self) -> str:
        return self.context + self._plain()

    def _plain(self) -> str:
        code = f" (errorcode {self.errorcode})" if self.errorcode else ""
        if self.kind == "job":
            return f"{self.command} job {self.jobid} failed{code}: {self.errortext}"
        if self.kind == "timeout":
            return f"{self.command} job {self.jobid} timed out: {self.errortext}"
        if self.kind in ("transport", "tls"):
            return f"{self.command}: {self.errortext}"
        return f"{self.command} failed{code}: {self.errortext}"

    def add_context(self, step: str) -> None:
        """Put what was being done in front of the message (``tagging volume 'v': createTags job ...``)."""
        self.context = f"{self.context}{step}"
        self.args = (self._describe(),)

    @property
    def is_capacity(self) -> bool:
        return self.errorcode in CAPACITY_CODES

    @property
    def is_transient(self) -> bool:
        """Worth trying the whole operation again later.

        Server-side failures (HTTP 500/502/503/504: an overloaded or restarting
        management server, a proxy in front of it) are, like 429 and 530; a 4xx
        answer about the request itself is not.
        """
        return (self.is_capacity or self.kind in ("transport", "timeout") or self.errorcode in TRANSIENT_CODES
                or self.http_status in TRANSIENT_HTTP)
