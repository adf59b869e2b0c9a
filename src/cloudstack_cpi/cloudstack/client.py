"""The signed CloudStack API client: every CloudStack call goes through ``Client.call``.

One client (one ``HttpTransport``, so one kept-alive connection) per CPI
process.  Signing, timeouts, the per-call deadline, the retry policy, TLS
trust, logging and redaction live here once.  The client knows CloudStack's
conventions (envelopes, paging, async jobs, "no such id" answers) and nothing
about BOSH.

Time: every request has a connect and a read timeout; on top of that, all the
requests of one CPI call and the pauses between their retries share one API
deadline (``api_deadline`` seconds, by default two full tries: 2 x (connect +
read)).  Waits for async jobs are not part of it: the polls of a job share that
job's own timeout instead, so a 20-minute deploy is bounded by
``cloudstack.timeout.create_vm``, not by the API deadline.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from .errors import CloudStackError
from .signing import sign
from .transport import HttpResponse, HttpTransport, TransportError

# Commands that only read, so that asking again after a lost answer or a 5xx cannot change anything.  These are
# sent as GET and retried; every other command, including any command not listed here, is a mutation: sent as POST
# and repeated only when the request never left this machine.  Being safe to repeat is a property of the command,
# not of its name: getUploadParamsForTemplate (and getUploadParamsForVolume) create a record on every call.
SAFE_TO_REPEAT = frozenset({
    # what the CPI and its operator commands read
    "listAffinityGroups", "listApis", "listCapabilities", "listDiskOfferings", "listFirewallRules",
    "listHypervisors", "listLoadBalancerRuleInstances", "listLoadBalancerRules", "listNetworks", "listOsTypes",
    "listPublicIpAddresses", "listSSHKeyPairs", "listSecurityGroups", "listServiceOfferings", "listSnapshots",
    "listTags", "listTemplates", "listVirtualMachines", "listVolumes", "listZones",
    "queryAsyncJobResult",
    # reads an operator check may add (account, role and limits lookups)
    "listAccounts", "listAsyncJobs", "listConfigurations", "listDomains", "listNics", "listProjects",
    "listResourceLimits", "listRolePermissions", "listRoles", "listUsers",
    # the get* commands of CloudStack 4.11 that only read (not getUploadParamsFor*, which create records)
    "getApiLimit", "getCloudIdentifier", "getUser", "getVirtualMachineUserData",
})
# The commands the CPI sends that take ``projectid`` (CloudStack 4.11's listApis).  With a project configured, the
# client scopes each of them to it: creates make the project the owner, lists see the project's resources (and
# not the account's own).  Commands on one resource by id (attach, delete, tags, jobs) take no projectid: the
# server checks access to the resource itself.  tests/unit/cloudstack/test_client.py keeps this equal to the API.
PROJECT_SCOPED = frozenset({
    "createAffinityGroup", "createTemplate", "createVolume", "deleteAffinityGroup", "deployVirtualMachine",
    "getUploadParamsForTemplate", "listAffinityGroups", "listFirewallRules", "listLoadBalancerRules",
    "listNetworks", "listPublicIpAddresses", "listResourceLimits", "listSSHKeyPairs", "listSecurityGroups",
    "listSnapshots", "listTags", "listTemplates", "listVirtualMachines", "listVolumes", "registerTemplate",
})
PAGE_SIZE = 500
# Seconds (at most one read timeout) that a job's last status query may take beyond the job's timeout.
JOB_POLL_GRACE = 5.0
SIGNATURE_LIFETIME = timedelta(minutes=10)
# Values that must never reach a log line, whatever the log level.
SECRET_PARAMS = frozenset({"signature", "apikey", "userdata", "password", "secretkey"})
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6            # tries in all, for requests that may be repeated
    base_delay: float = 0.25     # seconds; doubles each time, with jitter
    max_delay: float = 8.0


@dataclass(frozen=True)
class PollPolicy:
    """Async job polling: soon at first, then a fixed fraction of the time waited so far.

    Polling at ``fraction * elapsed`` keeps the delay between a job finishing and
    the CPI noticing under ``fraction`` of the job's duration, with few calls for
    long jobs (the count grows with the logarithm of the duration).
    """

    first: float = 0.05
    fraction: float = 0.08
    cap: float = 5.0

    def interval(self, elapsed: float) -> float:
        return min(self.cap, max(self.first, self.fraction * elapsed))


def is_safe_to_repeat(command: str) -> bool:
    """True for commands listed in ``SAFE_TO_REPEAT``; an unknown command is not safe."""
    return command in SAFE_TO_REPEAT


class _ApiDeadline:
    """The call's API deadline: seconds that requests and retry pauses may still use (job waits excluded).

    It is spent by time actually used, not by the wall clock, so local work
    (converting or streaming a stemcell image) and job waits do not use it up.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spent = 0.0

    def left(self) -> float:
        return self.seconds - self.spent

    def charge(self, seconds: float) -> None:
        self.spent += max(0.0, seconds)

    def describe(self) -> str:
        return f"the call's API deadline of {self.seconds:g} s"


class _JobWindow:
    """The bound of one job wait: its polls may use the time until the job's timeout (plus a short grace)."""

    def __init__(self, end: float, clock: Callable[[], float], what: str, timeout: float) -> None:
        self.end = end
        self.clock = clock
        self.what = what
        self.timeout = timeout

    def left(self) -> float:
        return self.end - self.clock()

    def charge(self, seconds: float) -> None:
        pass  # the wall clock runs the window down

    def describe(self) -> str:
        return f"the {self.timeout:g} s timeout of {self.what}"


def encode_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Python values to CloudStack's wire conventions.

    ``None`` is left out; booleans are ``true``/``false``; lists become one
    comma-separated value (the server keeps only one value per name); a mapping
    under ``tags`` becomes ``tags[i].key``/``tags[i].value``; any other mapping
    becomes ``name[0].field`` (``details``); a list of mappings becomes
    ``name[i].field`` (``iptonetworklist``).
    """
    wire: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            wire[name] = "true" if value else "false"
        elif isinstance(value, Mapping):
            if name == "tags":
                for i, (key, val) in enumerate(value.items()):
                    wire[f"tags[{i}].key"] = str(key)
                    wire[f"tags[{i}].value"] = str(val)
            else:
                for field, val in value.items():
                    wire[f"{name}[0].{field}"] = _scalar(val)
        elif isinstance(value, (list, tuple)):
            if value and all(isinstance(item, Mapping) for item in value):
                for i, item in enumerate(value):
                    for field, val in item.items():
                        if val is not None:
                            wire[f"{name}[{i}].{field}"] = _scalar(val)
            else:
                wire[name] = ",".join(_scalar(item) for item in value)
        else:
            wire[name] = _scalar(value)
    return wire


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Fields named like ids that hold device numbers, not ids.
_NUMBER_FIELDS = frozenset({"deviceid", "rootdeviceid"})


def string_ids(value: Any, key: str = "") -> Any:
    """The answer with every id as a string.

    CloudStack before 4.0 (and recordings of it) answered ids as JSON numbers;
    a CID must be a string, and a number compared with the configured
    ``default_zone: "1"`` would never match.  Fields named ``id``, ``*id`` or
    ``*ids`` become strings, except device numbers.
    """
    if isinstance(value, dict):
        return {k: string_ids(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [string_ids(item, key) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and key:
        field = key.lower()
        if field not in _NUMBER_FIELDS and (field == "id" or field.endswith(("id", "ids"))):
            return str(value)
    return value


def unwrap(command: str, body: Any) -> dict:
    """The object inside ``{"<command>response": {...}}``.

    Response names are usually ``<command>response`` but some commands have
    their own (getUploadParamsForTemplate answers ``postuploadtemplateresponse``),
    so the one key ending in ``response`` is taken.
    """
    if not isinstance(body, dict):
        raise CloudStackError(command, f"unexpected response: {type(body).__name__}", kind="transport")
    expected = command.lower() + "response"
    if expected in body:
        inner = body[expected]
    else:
        keys = [key for key in body if key.endswith("response")]
        if len(keys) != 1:
            raise CloudStackError(command, f"unexpected response keys {sorted(body)}", kind="transport")
        inner = body[keys[0]]
    if not isinstance(inner, dict):
        raise CloudStackError(command, "unexpected response shape", kind="transport")
    return inner


def list_items(response: Mapping[str, Any]) -> list[dict]:
    """Items of a list response: ``{}`` when empty, ``{"count": n, "<item>": [...]}`` otherwise."""
    for key, value in response.items():
        if key != "count" and isinstance(value, list):
            return value
    return []


class Client:
    def __init__(
        self,
        endpoint: str,
        api_key: str,
        secret_key: str,
        *,
        log,
        verify: bool = True,
        ca_cert: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        api_deadline: float | None = None,
        retry: RetryPolicy = RetryPolicy(),
        poll: PollPolicy = PollPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: HttpTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.api_key = api_key
        self._secret = secret_key
        self.log = log
        self.timeout = (connect_timeout, read_timeout)
        # Two full tries by default: one that runs into the read timeout, and one more; quick failures (refused
        # connections, 5xx) are retried as often as RetryPolicy allows within it.
        self.deadline = _ApiDeadline(api_deadline if api_deadline is not None else 2 * (connect_timeout + read_timeout))
        self.retry = retry
        self.poll = poll
        self.sleep = sleep
        self.clock = clock
        self.calls = 0
        self.project_id: str | None = None   # set once resolved: see PROJECT_SCOPED
        log.add_secret(secret_key)
        # Trust is a CA file (the configured ca_cert or the default bundle) or none; never the environment's.
        self.transport = transport or HttpTransport(self._verify_setting(verify, ca_cert))

    @property
    def api_time_left(self) -> float:
        """Seconds left of the call's API deadline."""
        return max(0.0, self.deadline.left())

    def _verify_setting(self, verify: bool, ca_cert: str | None) -> bool | str | None:
        """False, the configured CA's file, or None: the transport's default bundle (certifi's), found on first use."""
        if not verify:
            self.log.warning("TLS certificate verification is off (cloudstack.skip_verify_ssl)")
            return False
        if ca_cert:
            return ca_file(ca_cert)
        return None

    def close(self) -> None:
        self.transport.close()

    def upload_transport(self) -> HttpTransport:
        """A transport of its own (for requests to other URLs: a template's upload slot) that trusts what this client
        trusts: the configured CA file, the default bundle, or nothing; never the environment's bundle."""
        return self.transport.fresh()

    # -- the choke point ---------------------------------------------------

    def call(self, command: str, **params: Any) -> dict:
        """Run one API command and return the object inside its response envelope."""
        if self.project_id is not None and command in PROJECT_SCOPED:
            params.setdefault("projectid", self.project_id)
        return self._call(command, encode_params(params), self.deadline)

    def _call(self, command: str, wire: Mapping[str, str], limit: _ApiDeadline | _JobWindow) -> dict:
        """Send, retrying what is safe to retry while ``limit`` has time left; each try's timeouts fit in it."""
        safe = is_safe_to_repeat(command)
        attempt = 0
        last: CloudStackError | None = None
        while True:
            left = limit.left()
            if left <= 0:
                raise self._deadline_reached(command, limit, last, attempt)
            attempt += 1
            timeout = (_cut(self.timeout[0], left), _cut(self.timeout[1], left))
            started = self.clock()
            try:
                answer = self._send(command, wire, safe, timeout)
            except CloudStackError as err:
                limit.charge(self.clock() - started)
                last = err
                if attempt >= self.retry.attempts or not self._may_retry(err, safe):
                    if err.kind == "transport" and timeout[1] < self.timeout[1] and limit.left() <= 0:
                        # The read timeout was cut short by the deadline: say so, not just "timed out".
                        raise self._deadline_reached(command, limit, err, attempt) from None
                    raise
                delay = self._backoff(attempt, err)
                if delay >= limit.left():
                    # Retries stop here rather than sleep into the deadline and send a try with no time left.
                    raise self._deadline_reached(command, limit, err, attempt) from None
                reason = f"HTTP {err.http_status}" if err.http_status else err.errortext
                self.log.warning(f"Retrying {command} after {reason} (attempt {attempt + 1} of "
                                 f"{self.retry.attempts}) in {delay:.2f}s")
                self.sleep(delay)
                limit.charge(delay)
                continue
            limit.charge(self.clock() - started)
            return answer

    def _deadline_reached(self, command: str, limit: _ApiDeadline | _JobWindow, last: CloudStackError | None,
                          tries: int) -> CloudStackError:
        """The error for running out of time: retryable (kind transport), naming the limit and what was awaited."""
        if last is None:
            return CloudStackError(command, f"{limit.describe()} was reached before {command} could be sent",
                                   kind="transport")
        plural = "try" if tries == 1 else "tries"
        detail = last.errortext.removeprefix(f"no answer from {self.endpoint}: ")  # the endpoint is named once
        return CloudStackError(
            command,
            f"{limit.describe()} was reached waiting for an answer from {self.endpoint} "
            f"({tries} {plural}; last: {detail})",
            kind="transport", http_status=last.http_status, outcome_unknown=last.outcome_unknown,
        )

    def _may_retry(self, err: CloudStackError, safe: bool) -> bool:
        if err.http_status == 429:
            return True  # throttled: the server did nothing
        if err.kind == "transport":
            # A mutation is repeated only when the request never left this machine.
            return safe or not err.outcome_unknown
        if err.http_status is not None and err.http_status >= 500:
            return safe
        return False

    def _backoff(self, attempt: int, err: CloudStackError) -> float:
        delay = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        retry_after = err.retry_after
        if retry_after:
            delay = max(delay, retry_after)
        import random  # only a retry needs it: most calls never wait for one

        return delay * (0.75 + 0.5 * random.random())

    def _signed(self, command: str, wire: Mapping[str, str]) -> dict[str, str]:
        expires = (datetime.now(UTC) + SIGNATURE_LIFETIME).strftime("%Y-%m-%dT%H:%M:%S+0000")
        params = {
            **wire,
            "command": command,
            "response": "json",
            "apiKey": self.api_key,
            "signatureVersion": "3",
            "expires": expires,
        }
        params["signature"] = sign(params, self._secret)
        return params

    def _send(self, command: str, wire: Mapping[str, str], safe: bool, timeout: tuple[float, float]) -> dict:
        params = self._signed(command, wire)
        if self.log.debug_enabled:
            self.log.debug(f"CloudStack {command} request {self._redacted(wire)}")
        self.calls += 1
        started = self.clock()
        try:
            if safe:
                url = f"{self.endpoint}?{urlencode(params, quote_via=quote)}"
                response = self.transport.request("GET", url, timeout=timeout)
            else:
                response = self.transport.request("POST", self.endpoint, body=urlencode(params).encode("ascii"),
                                                  headers=FORM, timeout=timeout)
        except TransportError as exc:
            if exc.tls:
                raise CloudStackError(command, f"TLS error talking to {self.endpoint}: {_redacted_text(exc.text)}",
                                      kind="tls") from None
            if not exc.sent:
                raise CloudStackError(
                    command, f"cannot connect to {self.endpoint}: {_redacted_text(exc.text)}", kind="transport"
                ) from None
            # The request may have reached the server: the outcome of a mutation is unknown.
            raise CloudStackError(
                command, f"no answer from {self.endpoint}: {_redacted_text(exc.text)}", kind="transport",
                outcome_unknown=True,
            ) from None
        elapsed = self.clock() - started
        self.log.debug(f"CloudStack {command} -> HTTP {response.status} in {elapsed:.3f}s")
        return self._parse(command, response)

    def _parse(self, command: str, response: HttpResponse) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status == 200:
            if body is None:
                raise CloudStackError(command, "answer is not JSON", kind="transport", http_status=200)
            return string_ids(unwrap(command, body))
        error = _error_fields(body)
        text = error.get("errortext") or response.header("X-Description") or response.reason or "no error text"
        err = CloudStackError(
            command,
            str(text),
            http_status=response.status,
            errorcode=_int_or_none(error.get("errorcode")) or response.status,
            cserrorcode=_int_or_none(error.get("cserrorcode")),
        )
        retry_after = response.header("Retry-After")
        if retry_after and retry_after.isdigit():
            err.retry_after = float(retry_after)
        raise err

    def _redacted(self, wire: Mapping[str, str]) -> dict[str, str]:
        return {key: ("<redacted>" if key.lower() in SECRET_PARAMS else value) for key, value in wire.items()}

    # -- conventions on top of call ------------------------------------------

    def list_all(self, command: str, **params: Any) -> list[dict]:
        """Every item of a list command, page by page, until ``count`` items are read."""
        items: list[dict] = []
        page = 1
        while True:
            response = self.call(command, page=page, pagesize=PAGE_SIZE, **params)
            batch = list_items(response)
            items.extend(batch)
            total = int(response.get("count", 0) or 0)
            if not batch or len(items) >= total or len(batch) < PAGE_SIZE:
                return items
            page += 1

    def list(self, command: str, **params: Any) -> list[dict]:
        """One unpaged list call: for lookups that match a handful of items."""
        return list_items(self.call(command, **params))

    def find(self, command: str, **params: Any) -> dict | None:
        """The one item matching ``params`` (typically ``id``), or None.

        CloudStack answers a list filtered by an unknown or malformed id with 431
        ("invalid value ... entity does not exist") rather than an empty list.
        """
        try:
            items = self.list(command, **params)
        except CloudStackError as err:
            if err.errorcode == 431 and "id" in params:
                return None
            raise
        return items[0] if items else None

    def wait_for_job(self, jobid: str, *, command: str, timeout: float, what: str, since: float | None = None
                     ) -> dict:
        """Poll ``queryAsyncJobResult`` until the job ends; return its ``jobresult``.

        The polls share the job's ``timeout`` (plus a short grace, so the status
        query made when the timeout comes can still be answered), not the call's
        API deadline: a long job is bounded by its own configured timeout.
        ``since``: when the job was submitted (``clock``), for a job waited for
        after other work: its timeout and poll pace count from then, and a job
        submitted more than the first pause ago is asked about at once.
        """
        now = self.clock()
        started = now if since is None else min(since, now)
        window = _JobWindow(started + timeout + min(self.timeout[1], JOB_POLL_GRACE), self.clock, what, timeout)
        instance = None
        first = True
        while True:
            waited = self.clock() - started
            pause = max(0.0, self.poll.first - waited) if first else self.poll.interval(waited)
            first = False
            self.sleep(max(0.0, min(pause, timeout - waited)))
            try:
                job = self._call("queryAsyncJobResult", encode_params({"jobid": jobid}), window)
            except CloudStackError as err:
                err.jobid = err.jobid or jobid
                if err.kind == "tls" or self.clock() - started < timeout:
                    raise
                raise CloudStackError(
                    command, f"{what} did not finish within {timeout:g}s (last status query: {err.errortext})",
                    kind="timeout", jobid=jobid, resource_id=instance,
                ) from None
            instance = job.get("jobinstanceid") or instance
            status = int(job.get("jobstatus", 0))
            if status == 1:
                return job.get("jobresult") or {}
            if status >= 2:
                result = job.get("jobresult") or {}
                raise CloudStackError(
                    command,
                    str(result.get("errortext") or f"job ended with status {status}"),
                    kind="job",
                    errorcode=_int_or_none(result.get("errorcode")) or _int_or_none(job.get("jobresultcode")),
                    jobid=jobid,
                    resource_id=job.get("jobinstanceid"),
                )
            if self.clock() - started >= timeout:
                raise CloudStackError(
                    command,
                    f"{what} did not finish within {timeout:g}s",
                    kind="timeout",
                    jobid=jobid,
                    resource_id=job.get("jobinstanceid"),
                )

    def run_job(self, command: str, *, timeout: float, what: str, ours: Callable[[dict], bool] | None = None,
                **params: Any) -> dict:
        """Start an async command and wait for it; errors carry the new resource's id when it has one.

        When the answer to the start is lost, the job it may have started is looked for (``pending_job``) and
        waited for as if it had been answered: looking at the resource instead would see it unchanged while the
        job still runs.  The newest job of the command on the resource may be an earlier call's (a resize to
        another size, an attach to another VM): ``ours`` tells from its result whether it did what this call
        asked; when it did not, the outcome is unknown and the error says so (the caller's retry decides)."""
        try:
            started = self.call(command, **params)
        except CloudStackError as err:
            found = self.pending_job(command, params) if err.outcome_unknown else None
            if found is None:
                raise
            self.log.info(f"The answer to {command} was lost; its job {found['jobid']} was found and is awaited")
            result = self.finish_job({"jobid": found["jobid"]}, command=command, timeout=timeout, what=what)
            if ours is not None and not ours(result):
                raise CloudStackError(command, f"{err.errortext}; the job found afterwards ({found['jobid']}) did "
                                               "not do what this call asked: an earlier call's", kind="transport",
                                      outcome_unknown=True) from None
            return result
        return self.finish_job(started, command=command, timeout=timeout, what=what)

    def finish_job(self, started: dict, *, command: str, timeout: float, what: str, since: float | None = None
                   ) -> dict:
        """The result of an async command started with ``call`` (the second half of ``run_job``), for callers that
        start several jobs before waiting for any: an answer without a job (a synchronous one, or ``{}``) is the
        result itself; a failure carries the new resource's id.  ``since``: when it was started (``wait_for_job``)."""
        jobid = started.get("jobid")
        if not jobid:
            return started
        try:
            return self.wait_for_job(jobid, command=command, timeout=timeout, what=what, since=since)
        except CloudStackError as err:
            err.resource_id = err.resource_id or started.get("id")
            raise


    def pending_job(self, command: str, params: Mapping[str, Any], *, instance: str | None = None) -> dict | None:
        """The newest job of ``command`` on the resource ``params`` name, if the server has one (listAsyncJobs).

        Only commands on one existing resource qualify: their job names it (jobinstanceid), so another call's job
        cannot be taken for this one.  A job of an earlier attempt on the same resource is as good: its outcome is
        the one the caller wants to know.  A create's job names the new resource (ApiServer.queueCommand:
        ``instanceId = objectId``): once the caller has found that resource by lookup, it passes its id as
        ``instance``.
        """
        instance = instance or next((str(params[key]) for key in INSTANCE_PARAMS.get(command, ()) if params.get(key)),
                                    None)
        if instance is None:
            return None
        job_class = job_class_of(command)
        try:
            jobs = self.list_all("listAsyncJobs", keyword=job_class, listall=True)
        except CloudStackError as err:
            self.log.warning(f"Looking for the job of {command} after a lost answer: {err}")
            return None
        mine = [job for job in jobs if str(job.get("cmd", "")).rsplit(".", 1)[-1] == job_class
                and str(job.get("jobinstanceid", "")) == instance and job.get("jobid")]
        return max(mine, key=lambda job: str(job.get("created", ""))) if mine else None


# Async commands on one existing resource, and the parameter that names it (the job's jobinstanceid).
INSTANCE_PARAMS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("attachVolume", "detachVolume", "resizeVolume", "deleteSnapshot", "destroyVirtualMachine",
                     "expungeVirtualMachine", "startVirtualMachine", "stopVirtualMachine", "rebootVirtualMachine",
                     "deleteTemplate", "copyTemplate", "deleteAffinityGroup", "deleteFirewallRule",
                     "deleteLoadBalancerRule", "assignToLoadBalancerRule", "removeFromLoadBalancerRule"), ("id",)),
    "disableStaticNat": ("ipaddressid",),
}


def job_class_of(command: str) -> str:
    """The API command's Java class, as jobs name it (``cmd``): detachVolume -> DetachVolumeCmd; the VM commands
    are ``...VMCmd`` (DeployVMCmd, StartVMCmd, ...)."""
    return command[0].upper() + command[1:].replace("VirtualMachine", "VM") + "Cmd"


CA_FILE_PREFIX = "cloudstack-cpi-ca-"
STALE_CA_FILE_SECONDS = 7 * 24 * 3600  # far beyond any call's job timeouts: no running call still reads it


def ca_file(pem: str) -> str:
    """A file holding ``pem`` for TLS, named by its content in TMPDIR and shared by every call.

    Calls reuse it instead of each writing (and, if killed with SIGKILL, leaving) a file of their own: there is one
    file per certificate ever configured, never one per call.  It is written to a private name and renamed, so a
    concurrent call sees the whole file or none.  Files of other certificates unused for a week are removed then.
    """
    import hashlib
    import tempfile

    directory = tempfile.gettempdir()
    path = os.path.join(directory, f"{CA_FILE_PREFIX}{hashlib.sha256(pem.encode()).hexdigest()[:32]}.pem")
    try:
        with open(path, encoding="utf-8") as existing:
            if existing.read() == pem:
                os.utime(path)  # in use: not stale
                return path
    except OSError:
        pass
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=f"{CA_FILE_PREFIX}new-", suffix=".pem",
                                     delete=False, encoding="utf-8") as handle:
        handle.write(pem)
    os.chmod(handle.name, 0o644)  # a CA certificate is public; another user's CPI may share TMPDIR
    os.replace(handle.name, path)
    _remove_stale_ca_files(directory, keep=path)
    return path


def _remove_stale_ca_files(directory: str, keep: str) -> None:
    now = time.time()
    try:
        # "cpi-ca-": the per-call files of earlier versions, which a killed call left behind
        names = [n for n in os.listdir(directory) if n.startswith((CA_FILE_PREFIX, "cpi-ca-")) and n.endswith(".pem")]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            if path != keep and now - os.stat(path).st_mtime > STALE_CA_FILE_SECONDS:
                os.unlink(path)
        except OSError:
            pass


def _cut(seconds: float, left: float) -> float:
    """A timeout cut to what is left, in whole milliseconds (they appear in messages), never 0 (non-blocking)."""
    return max(0.001, round(min(seconds, left), 3))


_QUERY_STRING = re.compile(r"\?\S*")


def _redacted_text(text: str) -> str:
    """A transport failure's text without any query string (a GET's holds the key and signature)."""
    return _QUERY_STRING.sub("?<query redacted>", text)


def _error_fields(body: Any) -> dict:
    if isinstance(body, dict) and len(body) == 1:
        inner = next(iter(body.values()))
        if isinstance(inner, dict):
            return inner
    return {}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
