"""The signed CloudStack API client: every CloudStack call goes through ``Client.call``.

One client (one ``requests.Session``, so one pool of kept-alive connections) per
CPI process.  Signing, timeouts, the retry policy, logging and redaction live
here once.  The client knows CloudStack's conventions (envelopes, paging, async
jobs, "no such id" answers) and nothing about BOSH.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

import requests

from .errors import CloudStackError
from .signing import sign

READ_PREFIXES = ("list", "query", "get")
PAGE_SIZE = 500
SIGNATURE_LIFETIME = timedelta(minutes=10)
# Values that must never reach a log line, whatever the log level.
SECRET_PARAMS = frozenset({"signature", "apikey", "userdata", "password", "secretkey"})


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


def is_read(command: str) -> bool:
    return command.startswith(READ_PREFIXES)


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
        retry: RetryPolicy = RetryPolicy(),
        poll: PollPolicy = PollPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.api_key = api_key
        self._secret = secret_key
        self.log = log
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry
        self.poll = poll
        self.sleep = sleep
        self.clock = clock
        self.calls = 0
        self._rng = random.Random()
        log.add_secret(secret_key)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "cloudstack-cpi"
        self.session.verify = self._verify_setting(verify, ca_cert)

    def _verify_setting(self, verify: bool, ca_cert: str | None) -> bool | str:
        if not verify:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            self.log.warning("TLS certificate verification is off (cloudstack.skip_verify_ssl)")
            return False
        if ca_cert:
            # requests wants a file; the config carries PEM text.
            handle = tempfile.NamedTemporaryFile("w", prefix="cpi-ca-", suffix=".pem", delete=False)
            with handle:
                handle.write(ca_cert)
            self._ca_file = handle.name
            return handle.name
        return True

    def close(self) -> None:
        self.session.close()
        ca_file = getattr(self, "_ca_file", None)
        if ca_file:
            try:
                os.unlink(ca_file)
            except OSError:
                pass

    # -- the choke point ---------------------------------------------------

    def call(self, command: str, **params: Any) -> dict:
        """Run one API command and return the object inside its response envelope."""
        wire = encode_params(params)
        read = is_read(command)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(command, wire, read)
            except CloudStackError as err:
                if attempt >= self.retry.attempts or not self._may_retry(err, read):
                    raise
                delay = self._backoff(attempt, err)
                reason = f"HTTP {err.http_status}" if err.http_status else err.errortext
                self.log.warning(
                    f"Retrying {command} after {reason} (attempt {attempt + 1} of {self.retry.attempts}) in {delay:.2f}s"
                )
                self.sleep(delay)

    def _may_retry(self, err: CloudStackError, read: bool) -> bool:
        if err.http_status == 429:
            return True  # throttled: the server did nothing
        if err.kind == "transport":
            # A mutation is repeated only when the request never left this machine.
            return read or not err.outcome_unknown
        if err.http_status is not None and err.http_status >= 500:
            return read
        return False

    def _backoff(self, attempt: int, err: CloudStackError) -> float:
        delay = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        retry_after = getattr(err, "retry_after", None)
        if retry_after:
            delay = max(delay, retry_after)
        return delay * (0.75 + 0.5 * self._rng.random())

    def _signed(self, command: str, wire: Mapping[str, str]) -> dict[str, str]:
        expires = (datetime.now(timezone.utc) + SIGNATURE_LIFETIME).strftime("%Y-%m-%dT%H:%M:%S+0000")
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

    def _send(self, command: str, wire: Mapping[str, str], read: bool) -> dict:
        params = self._signed(command, wire)
        if self.log.debug_enabled:
            self.log.debug(f"CloudStack {command} request {self._redacted(wire)}")
        self.calls += 1
        started = self.clock()
        try:
            if read:
                url = f"{self.endpoint}?{urlencode(params, quote_via=quote)}"
                response = self.session.get(url, timeout=self.timeout)
            else:
                response = self.session.post(self.endpoint, data=params, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise CloudStackError(command, f"TLS error talking to {self.endpoint}: {_transport_text(exc)}", kind="tls") from None
        except requests.exceptions.RequestException as exc:
            if _never_sent(exc):
                raise CloudStackError(
                    command, f"cannot connect to {self.endpoint}: {_transport_text(exc)}", kind="transport"
                ) from None
            # The request may have reached the server: the outcome of a mutation is unknown.
            raise CloudStackError(
                command, f"no answer from {self.endpoint}: {_transport_text(exc)}", kind="transport",
                outcome_unknown=True,
            ) from None
        elapsed = self.clock() - started
        self.log.debug(f"CloudStack {command} -> HTTP {response.status_code} in {elapsed:.3f}s")
        return self._parse(command, response)

    def _parse(self, command: str, response: requests.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200:
            if body is None:
                raise CloudStackError(command, "answer is not JSON", kind="transport", http_status=200)
            return unwrap(command, body)
        error = _error_fields(body)
        text = error.get("errortext") or response.headers.get("X-Description") or response.reason or "no error text"
        err = CloudStackError(
            command,
            str(text),
            http_status=response.status_code,
            errorcode=_int_or_none(error.get("errorcode")) or response.status_code,
            cserrorcode=_int_or_none(error.get("cserrorcode")),
        )
        retry_after = response.headers.get("Retry-After")
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

    def wait_for_job(self, jobid: str, *, command: str, timeout: float, what: str) -> dict:
        """Poll ``queryAsyncJobResult`` until the job ends; return its ``jobresult``."""
        started = self.clock()
        while True:
            waited = self.clock() - started
            self.sleep(max(0.0, min(self.poll.interval(waited), timeout - waited)))
            job = self.call("queryAsyncJobResult", jobid=jobid)
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

    def run_job(self, command: str, *, timeout: float, what: str, **params: Any) -> dict:
        """Start an async command and wait for it; errors carry the new resource's id when it has one."""
        started = self.call(command, **params)
        jobid = started.get("jobid")
        if not jobid:
            return started  # the server answered synchronously
        try:
            return self.wait_for_job(jobid, command=command, timeout=timeout, what=what)
        except CloudStackError as err:
            err.resource_id = err.resource_id or started.get("id")
            raise


_QUERY_STRING = re.compile(r"\?\S*")


def _transport_text(exc: BaseException) -> str:
    """What went wrong on the way, without the request URL (its query holds the key and signature)."""
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", None) or reason  # urllib3's MaxRetryError wraps the cause
    text = _first_line(reason) if isinstance(reason, BaseException) else str(reason)
    return _QUERY_STRING.sub("?<query redacted>", text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


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


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """True when the request cannot have reached the server (refused, unresolvable, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)
