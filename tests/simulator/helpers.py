"""Fixtures for the simulator tests: a tiny independent signer + raw HTTP client (requests).

Deliberately NOT the CPI's client and not the simulator's signing code: it follows cloudstack-api.md §1.2
(``quote(v, safe="*")`` with ``~`` -> ``%7E``, sorted raw names, lower-cased, HMAC-SHA1, base64)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import requests

from cloudstack_simulator import Simulator


def sign(params: dict, secret: str) -> str:
    s = "&".join(f"{k}={quote(str(params[k]), safe='*').replace('~', '%7E')}" for k in sorted(params)).lower()
    return base64.b64encode(hmac.new(secret.encode(), s.encode(), hashlib.sha1).digest()).decode()


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        inner = next(iter(body.values())) if isinstance(body, dict) and body else {}
        self.errorcode = inner.get("errorcode")
        self.errortext = inner.get("errortext", "")


class JobFailed(Exception):
    def __init__(self, job):
        super().__init__(str(job))
        self.job = job
        self.errorcode = job["jobresult"].get("errorcode")
        self.errortext = job["jobresult"].get("errortext", "")


class Api:
    def __init__(self, sim: Simulator):
        self.sim = sim
        self.endpoint = sim.endpoint
        self.key = sim.api_key
        self.secret = sim.secret_key
        self.http = requests.Session()

    def signed(self, command: str, params: dict, expires: str | None = None, secret: str | None = None,
               key: str | None = None, version3: bool = True) -> dict:
        p = {k: str(v) for k, v in params.items() if v is not None}
        p.update(command=command, response="json", apiKey=key or self.key)
        if version3:
            p["signatureVersion"] = "3"
            p["expires"] = expires or (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S+0000")
        p["signature"] = sign(p, secret or self.secret)
        return p

    def raw(self, command: str, method: str = "GET", **params) -> requests.Response:
        p = self.signed(command, params)
        if method == "GET":
            return self.http.get(self.endpoint, params=p, timeout=30)
        return self.http.post(self.endpoint, data=p, timeout=30)

    def call(self, command: str, method: str = "GET", **params) -> dict:
        r = self.raw(command, method, **params)
        body = r.json()
        if r.status_code != 200:
            raise ApiError(r.status_code, body)
        assert len(body) == 1
        return next(iter(body.values()))

    def job(self, jobid: str) -> dict:
        return self.call("queryAsyncJobResult", jobid=jobid)

    def wait(self, jobid: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            j = self.job(jobid)
            if j["jobstatus"] != 0:
                return j
            if time.monotonic() > deadline:
                raise TimeoutError(jobid)
            time.sleep(0.02)

    def acall(self, command: str, method: str = "GET", **params) -> dict:
        """Async call; returns the jobresult, raises JobFailed on jobstatus 2."""
        r = self.call(command, method, **params)
        j = self.wait(r["jobid"])
        if j["jobstatus"] != 1:
            raise JobFailed(j)
        return j["jobresult"]

    def list(self, command: str, key: str, **params) -> list:
        return self.call(command, **params).get(key, [])

    # ---- catalog shortcuts
    def zone(self, name: str) -> dict:
        return self.list("listZones", "zone", name=name)[0]

    def network(self, zone_id: str, name: str) -> dict:
        # listNetworks has no ``name`` parameter (4.11-4.18): the server ignores it, so pick the network here
        return next(n for n in self.list("listNetworks", "network", zoneid=zone_id) if n["name"] == name)

    def offering(self, name: str) -> dict:
        return self.list("listServiceOfferings", "serviceoffering", name=name)[0]

    def disk_offering(self, name: str) -> dict:
        return self.list("listDiskOfferings", "diskoffering", name=name)[0]

    def template(self, name: str) -> dict:
        return self.list("listTemplates", "template", templatefilter="executable", name=name)[0]

    def ostype(self, description: str) -> dict:
        return next(o for o in self.list("listOsTypes", "ostype") if o["description"] == description)

    def deploy(self, zone="zone-1", network="bosh-isolated", offering="small", **extra) -> dict:
        z = self.zone(zone)
        params = dict(zoneid=z["id"], serviceofferingid=self.offering(offering)["id"],
                      templateid=self.template("bosh-stemcell-existing")["id"])
        if network:
            params["networkids"] = self.network(z["id"], network)["id"]
        params.update(extra)
        return self.acall("deployVirtualMachine", **params)["virtualmachine"]


