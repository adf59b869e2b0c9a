"""The CloudStack client against faked HTTP (tests/fake_http.py): envelopes, paging, jobs, errors, retries, TLS options."""

import io
import json
from urllib.parse import parse_qs, urlsplit

import certifi
import pytest

from cloudstack_cpi.cloudstack.client import (
    SAFE_TO_REPEAT,
    Client,
    PollPolicy,
    RetryPolicy,
    encode_params,
    is_safe_to_repeat,
    unwrap,
)
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.signing import sign
from cloudstack_cpi.log import Logger
from tests.fake_http import GET, POST, FakeHttp, no_answer, tls_refused

URL = "http://cs.test/client/api"
# The HTTP every client of this module sends through (``transport=responses``), emptied before each test.
responses = FakeHttp()


@pytest.fixture(autouse=True)
def _fresh_http():
    responses.reset()


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def stderr():
    return io.StringIO()


@pytest.fixture
def client(clock, stderr):
    log = Logger(stream=stderr, level="debug", request_id="cpi-1")
    return Client(URL, "the-key", "the-secret-value", log=log, sleep=clock.sleep, clock=clock, transport=responses,
                  retry=RetryPolicy(attempts=4, base_delay=0.1, max_delay=1.0))


def _params(call) -> dict:
    query = urlsplit(call.request.url).query if call.request.method == "GET" else call.request.text
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


def test_reads_are_signed_gets(client):
    responses.get(URL, json={"listzonesresponse": {"count": 1, "zone": [{"id": "z1", "name": "zone-1"}]}})
    assert client.list("listZones", name="zone 1~*") == [{"id": "z1", "name": "zone-1"}]
    call = responses.calls[0]
    assert call.request.method == "GET"
    params = _params(call)
    assert params["name"] == "zone 1~*"
    assert params["signatureVersion"] == "3" and params["apiKey"] == "the-key"
    assert params["expires"].endswith("+0000")
    signature = params.pop("signature")
    assert signature == sign(params, "the-secret-value")


def test_mutations_are_signed_posts(client):
    responses.post(URL, json={"createtagsresponse": {"jobid": "j1"}})
    client.call("createTags", resourceids=["a", "b"], resourcetype="UserVm", tags={"k": "v w"})
    call = responses.calls[0]
    assert call.request.method == "POST"
    params = _params(call)
    assert params["resourceids"] == "a,b"
    assert params["tags[0].key"] == "k" and params["tags[0].value"] == "v w"
    signature = params.pop("signature")
    assert signature == sign(params, "the-secret-value")


def test_numeric_ids_of_older_servers_come_back_as_strings(client):
    """CloudStack before 4.0 answered ids as JSON numbers (apache-libcloud's recorded CloudStack responses, e.g.
    fixtures/cloudstack/listZones_default.json and listVolumes_default.json); device numbers stay numbers."""
    responses.get(URL, json={"listvolumesresponse": {"count": 1, "volume": [
        {"id": 2, "zoneid": 1, "virtualmachineid": 7, "deviceid": 1, "size": 10, "tags": [],
         "name": "v", "isextractable": False}]}})
    (volume,) = client.list("listVolumes")
    assert volume["id"] == "2" and volume["zoneid"] == "1" and volume["virtualmachineid"] == "7"
    assert volume["deviceid"] == 1 and volume["size"] == 10 and volume["isextractable"] is False
    responses.get(URL, json={"queryasyncjobresultresponse": {"jobid": 17, "jobstatus": 1, "jobinstanceid": 3,
                                                              "jobresult": {"virtualmachine": {"id": 3}}}})
    job = client.call("queryAsyncJobResult", jobid="17")
    assert job["jobid"] == "17" and job["jobinstanceid"] == "3" and job["jobstatus"] == 1
    assert job["jobresult"]["virtualmachine"]["id"] == "3"


def test_encode_params_conventions():
    wire = encode_params({"a": None, "b": True, "c": [1, 2], "details": {"cpuNumber": 2, "memory": 512},
                          "iptonetworklist": [{"networkid": "n1", "ip": "10.0.0.5"}, {"networkid": "n2"}]})
    assert wire == {"b": "true", "c": "1,2", "details[0].cpuNumber": "2", "details[0].memory": "512",
                    "iptonetworklist[0].networkid": "n1", "iptonetworklist[0].ip": "10.0.0.5",
                    "iptonetworklist[1].networkid": "n2"}


def test_unwrap_handles_irregular_response_names():
    body = {"postuploadtemplateresponse": {"getuploadparams": {"id": "t"}}}
    assert unwrap("getUploadParamsForTemplate", body) == {"getuploadparams": {"id": "t"}}
    assert unwrap("listTemplates", {"listtemplatesresponse": {}}) == {}
    with pytest.raises(CloudStackError):
        unwrap("listZones", {"a": 1, "b": 2})


def test_list_all_pages_until_count(client):
    pages = [
        {"listvolumesresponse": {"count": 1001, "volume": [{"id": str(i)} for i in range(500)]}},
        {"listvolumesresponse": {"count": 1001, "volume": [{"id": str(i)} for i in range(500, 1000)]}},
        {"listvolumesresponse": {"count": 1001, "volume": [{"id": "1000"}]}},
    ]
    for page in pages:
        responses.get(URL, json=page)
    items = client.list_all("listVolumes", zoneid="z")
    assert len(items) == 1001
    assert [_params(c)["page"] for c in responses.calls] == ["1", "2", "3"]
    assert all(_params(c)["pagesize"] == "500" for c in responses.calls)


def test_empty_list_is_an_empty_object(client):
    responses.get(URL, json={"listvolumesresponse": {}})
    assert client.list_all("listVolumes") == []


def test_api_errors_carry_all_fields(client):
    responses.post(URL, status=431, json={"deployvirtualmachineresponse": {
        "uuidList": [], "errorcode": 431, "cserrorcode": 4350, "errortext": "Unable to find zone"}})
    with pytest.raises(CloudStackError) as caught:
        client.call("deployVirtualMachine", zoneid="x")
    err = caught.value
    assert (err.http_status, err.errorcode, err.cserrorcode, err.command) == (431, 431, 4350, "deployVirtualMachine")
    assert "Unable to find zone" in str(err)
    assert len(responses.calls) == 1  # a definite answer is never repeated


def test_find_turns_unknown_id_into_none(client):
    responses.get(URL, status=431, json={"listvirtualmachinesresponse": {
        "errorcode": 431, "cserrorcode": 4350, "errortext": "invalid value for parameter id"}})
    assert client.find("listVirtualMachines", id="nope") is None
    responses.get(URL, json={"listvirtualmachinesresponse": {}})
    assert client.find("listVirtualMachines", id="gone") is None


def test_reads_retry_on_5xx_and_connection_errors(client, stderr):
    responses.get(URL, status=503, body="busy")
    responses.get(URL, body=no_answer("reset"))
    responses.get(URL, json={"listzonesresponse": {"count": 1, "zone": [{"id": "z"}]}})
    assert client.list("listZones") == [{"id": "z"}]
    assert len(responses.calls) == 3
    assert stderr.getvalue().count("Retrying listZones") == 2


def test_reads_give_up_after_the_configured_attempts(client):
    for _ in range(4):
        responses.get(URL, status=502, body="bad gateway")
    with pytest.raises(CloudStackError) as caught:
        client.list("listZones")
    assert caught.value.http_status == 502
    assert len(responses.calls) == 4


def test_mutations_are_not_repeated_on_5xx(client):
    responses.post(URL, status=500, body="oops")
    with pytest.raises(CloudStackError):
        client.call("deployVirtualMachine", zoneid="z")
    assert len(responses.calls) == 1


def test_mutation_with_lost_answer_is_marked_unknown(client):
    responses.post(URL, body=no_answer("Connection aborted."))
    with pytest.raises(CloudStackError) as caught:
        client.call("deployVirtualMachine", zoneid="z")
    assert caught.value.outcome_unknown is True
    assert len(responses.calls) == 1


def test_throttling_is_retried_for_any_command(client, clock):
    responses.post(URL, status=429, json={"deployvirtualmachineresponse": {
        "errorcode": 429, "errortext": "You have exceeded the API request limit"}}, headers={"Retry-After": "2"})
    responses.post(URL, json={"deployvirtualmachineresponse": {"id": "vm", "jobid": "j"}})
    assert client.call("deployVirtualMachine", zoneid="z") == {"id": "vm", "jobid": "j"}
    assert clock.sleeps and clock.sleeps[0] >= 1.5  # honours Retry-After (with jitter)


def test_queryasyncjobresult_is_retried(client):
    responses.get(URL, status=500, body="oops")
    responses.get(URL, json={"queryasyncjobresultresponse": {"jobstatus": 1, "jobresult": {"success": True}}})
    assert client.wait_for_job("j", command="createTags", timeout=10, what="tagging") == {"success": True}


def test_run_job_polls_with_growing_intervals(client, clock):
    responses.post(URL, json={"deployvirtualmachineresponse": {"id": "vm-1", "jobid": "job-1"}})
    for _ in range(30):
        responses.get(URL, json={"queryasyncjobresultresponse": {"jobstatus": 0}})
    responses.get(URL, json={"queryasyncjobresultresponse": {
        "jobstatus": 1, "jobresult": {"virtualmachine": {"id": "vm-1", "state": "Running"}}}})
    result = client.run_job("deployVirtualMachine", timeout=600, what="creating VM", zoneid="z")
    assert result == {"virtualmachine": {"id": "vm-1", "state": "Running"}}
    assert clock.sleeps[0] <= 0.1                      # first poll comes quickly
    assert clock.sleeps[-1] > clock.sleeps[0]          # then the pace slows
    assert all(s <= 0.08 * t + 0.05 + 1e-9 for s, t in zip(clock.sleeps, _cumulative(clock.sleeps), strict=False))


def _cumulative(sleeps):
    total, out = 0.0, []
    for s in sleeps:
        out.append(total)
        total += s
    return out


def test_a_job_waited_for_after_other_work_counts_from_its_submission(client, clock):
    """A job started beside another (a create's tags beside the create, a template's tags beside its upload) and
    waited for later: it is asked about at once when it was submitted more than the first pause ago, its pace is
    8 % of the time since its submission, and its timeout counts from then too."""
    responses.get(URL, json={"queryasyncjobresultresponse": {"jobstatus": 0}})
    responses.get(URL, json={"queryasyncjobresultresponse": {"jobstatus": 1, "jobresult": {"success": True}}})
    clock.now = 30.0
    assert client.wait_for_job("job-tags", command="createTags", timeout=60, what="tagging", since=0.0) == \
        {"success": True}
    assert clock.sleeps == [0.0, pytest.approx(0.08 * 30)]

    responses.reset()
    responses.get(URL, json={"queryasyncjobresultresponse": {"jobstatus": 0}})
    clock.sleeps.clear()
    with pytest.raises(CloudStackError) as caught:
        client.wait_for_job("job-late", command="createTags", timeout=20, what="tagging", since=clock.now - 25)
    assert caught.value.kind == "timeout" and clock.sleeps == [0.0]  # one look: its 20 s had passed

    responses.reset()
    responses.get(URL, json={"queryasyncjobresultresponse": {"jobstatus": 1, "jobresult": {}}})
    clock.sleeps.clear()
    client.wait_for_job("job-new", command="createTags", timeout=20, what="tagging", since=clock.now)
    assert clock.sleeps == [0.05]  # just submitted: the first pause as always


def test_poll_policy_bounds_lateness():
    policy = PollPolicy()
    for elapsed in (0, 0.2, 2, 20, 200, 2000):
        assert policy.interval(elapsed) <= max(0.1 * elapsed + 0.1, 0.05)
    assert policy.interval(10_000) == policy.cap


def test_failed_job_raises_with_code_text_and_resource(client):
    responses.post(URL, json={"deployvirtualmachineresponse": {"id": "vm-9", "jobid": "job-9"}})
    responses.get(URL, json={"queryasyncjobresultresponse": {
        "jobstatus": 2, "jobresultcode": 530, "jobinstanceid": "vm-9",
        "jobresult": {"errorcode": 533, "errortext": "Insufficient capacity"}}})
    with pytest.raises(CloudStackError) as caught:
        client.run_job("deployVirtualMachine", timeout=60, what="creating VM", zoneid="z")
    err = caught.value
    assert (err.kind, err.errorcode, err.jobid, err.resource_id) == ("job", 533, "job-9", "vm-9")
    assert err.is_capacity and err.is_transient


def test_job_timeout_names_the_job_and_the_work(client):
    responses.post(URL, json={"attachvolumeresponse": {"jobid": "job-slow"}})
    for _ in range(200):
        responses.get(URL, json={"queryasyncjobresultresponse": {"jobstatus": 0, "jobinstanceid": "vol-1"}})
    with pytest.raises(CloudStackError) as caught:
        client.run_job("attachVolume", timeout=5, what="attaching volume vol-1", id="vol-1")
    err = caught.value
    assert err.kind == "timeout" and err.jobid == "job-slow"
    assert "attaching volume vol-1" in str(err) and "5s" in str(err)


def test_logs_redact_secrets(client, stderr):
    responses.post(URL, json={"deployvirtualmachineresponse": {"id": "vm", "jobid": "j"}})
    client.call("deployVirtualMachine", userdata="c2VjcmV0LXVzZXItZGF0YQ==", zoneid="z")
    log = stderr.getvalue()
    assert "deployVirtualMachine" in log and "[cpi-1]" in log
    assert "c2VjcmV0LXVzZXItZGF0YQ==" not in log and "the-secret-value" not in log
    assert "signature" not in log.lower().replace("'signature'", "")


def test_tls_options(stderr, tmp_path):
    log = Logger(stream=stderr)
    # The default bundle by name (certifi's), whatever the environment says.
    assert Client(URL, "k", "secret-1", log=log).transport.verify == certifi.where()
    insecure = Client(URL, "k", "secret-1", log=log, verify=False)
    assert insecure.transport.verify is False
    assert "verification is off" in stderr.getvalue()
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with_ca = Client(URL, "k", "secret-1", log=log, ca_cert=pem)
    path = with_ca.transport.verify
    assert isinstance(path, str)
    with open(path) as handle:
        assert handle.read() == pem
    with_ca.close()
    # one file per certificate, shared by the calls that use it (a killed call leaves no file of its own)
    assert Client(URL, "k", "secret-1", log=log, ca_cert=pem).transport.verify == path


def test_ca_files_of_other_certificates_go_once_unused_for_a_week(tmp_path, monkeypatch):
    import os
    import tempfile

    from cloudstack_cpi.cloudstack import client as client_module

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = tmp_path / "cpi-ca-abcdef.pem"          # a per-call file an earlier version left
    recent = tmp_path / "cloudstack-cpi-ca-0123.pem"
    for leftover in (old, recent):
        leftover.write_text("pem")
    week_ago = os.stat(old).st_mtime - client_module.STALE_CA_FILE_SECONDS - 60
    os.utime(old, (week_ago, week_ago))
    path = client_module.ca_file("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([recent.name, os.path.basename(path)])


def test_timeouts_are_passed_on_every_request(clock, stderr):
    log = Logger(stream=stderr)
    client = Client(URL, "k", "secret-1", log=log, connect_timeout=3, read_timeout=7, transport=responses)
    seen = []

    def callback(request):
        seen.append(request.timeout)
        return 200, {}, json.dumps({"listzonesresponse": {}})

    responses.add_callback(GET, URL, callback=callback)
    client.list("listZones")
    assert seen == [(3, 7)]


def test_transport_errors_never_carry_the_request_url(client):
    url_text = f"{URL}?apiKey=the-key&signature=abc%2Fdef&command=listZones"
    responses.get(URL, body=tls_refused(f"certificate verify failed for {url_text}"))
    with pytest.raises(CloudStackError) as caught:
        client.list("listZones")
    err = caught.value
    assert err.kind == "tls" and not err.is_transient
    assert "certificate verify failed" in str(err)
    assert "the-key" not in str(err) and "signature" not in str(err)
    assert len(responses.calls) == 1  # a refused certificate is not retried

    responses.post(URL, body=no_answer(f"reset while sending {url_text}"))
    with pytest.raises(CloudStackError) as caught:
        client.call("deployVirtualMachine", zoneid="z")
    assert "signature" not in str(caught.value) and "reset" in str(caught.value)


# -- TLS trust: the configuration, never the environment ------------------------------------------------------


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_the_environments_ca_bundle_never_replaces_the_configured_trust(monkeypatch, stderr, variable):
    """The API's transport and the upload slot's trust the configured CA file (or nothing), whatever the
    environment names; proxies still come from the environment.  Over real TLS: tests/lifecycle/test_tls.py."""
    from cloudstack_cpi.cloudstack.transport import _origin_of

    monkeypatch.setenv(variable, "/somewhere/else/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    log = Logger(stream=stderr)
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    for client, expected in ((Client(URL, "k", "secret-1", log=log), certifi.where()),
                             (Client(URL, "k", "secret-1", log=log, verify=False), False),
                             (Client(URL, "k", "secret-1", log=log, ca_cert=pem), None)):
        expected = client.transport.verify if expected is None else expected
        assert isinstance(expected, str) or expected is False
        for transport in (client.transport, client.upload_transport()):
            assert transport.verify == expected
            proxy = transport.proxy_for(_origin_of("https://cs.test/client/api"))
            assert proxy is not None and (proxy.host, proxy.port) == ("proxy.test", 3128)
        client.close()


# -- which commands are repeated ---------------------------------------------------------------------------------


def test_safe_to_repeat_is_a_table_not_a_prefix():
    assert is_safe_to_repeat("listVirtualMachines") and is_safe_to_repeat("queryAsyncJobResult")
    assert is_safe_to_repeat("listApis") and is_safe_to_repeat("getVirtualMachineUserData")
    assert not is_safe_to_repeat("getUploadParamsForTemplate")   # creates a template record on every call
    assert not is_safe_to_repeat("getUploadParamsForVolume")
    assert not is_safe_to_repeat("listSomethingNew")             # unknown: not safe until someone says so
    assert not is_safe_to_repeat("deployVirtualMachine")


def test_every_command_in_the_table_exists_in_cloudstack_and_only_reads():
    from pathlib import Path

    reference = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "cloudstack-4.11-listApis.json"
    if not reference.exists():
        pytest.skip("the listApis reference is not next to this checkout")
    apis = {api["name"]: api for api in json.loads(reference.read_text())["api"]}
    missing = sorted(SAFE_TO_REPEAT - set(apis))
    assert missing == []
    assert not any(apis[name]["isasync"] for name in SAFE_TO_REPEAT)  # an async command always starts a job


def test_every_read_the_cpi_sends_is_in_the_table():
    """A list*/query* command in the CPI's source that the table lacks would be POSTed and never retried."""
    import re
    from pathlib import Path

    source = Path(__file__).resolve().parents[3] / "src" / "cloudstack_cpi"
    used = set()
    for path in source.rglob("*.py"):
        used |= set(re.findall(r"[\"'](list[A-Z][A-Za-z]+|query[A-Z][A-Za-z]+)[\"']", path.read_text()))
    assert used and sorted(used - SAFE_TO_REPEAT) == []


def test_get_upload_params_is_posted_and_not_repeated_after_a_lost_answer(client):
    responses.post(URL, body=no_answer("Connection aborted."))
    responses.post(URL, json={"postuploadtemplateresponse": {"getuploadparams": {"id": "t-2"}}})
    with pytest.raises(CloudStackError) as caught:
        client.call("getUploadParamsForTemplate", name="s", zoneid="z", format="QCOW2")
    assert caught.value.outcome_unknown is True and caught.value.is_transient
    assert len(responses.calls) == 1
    assert responses.calls[0].request.method == "POST"


def test_get_upload_params_is_not_repeated_after_a_5xx(client):
    responses.post(URL, status=503, body="busy")
    responses.post(URL, json={"postuploadtemplateresponse": {"getuploadparams": {"id": "t-2"}}})
    with pytest.raises(CloudStackError):
        client.call("getUploadParamsForTemplate", name="s", zoneid="z", format="QCOW2")
    assert len(responses.calls) == 1


def test_an_unknown_command_is_posted_and_not_repeated(client):
    responses.post(URL, body=no_answer("read timed out (after 60 s)"))
    with pytest.raises(CloudStackError):
        client.call("listSomethingNew")
    assert len(responses.calls) == 1 and responses.calls[0].request.method == "POST"


# -- the call's API deadline -------------------------------------------------------------------------------------


def _silent(clock, seen):
    """A server that accepts and never answers: each try takes its whole read timeout, on the fake clock."""
    def callback(request):
        connect, read = request.timeout
        seen.append((connect, read))
        clock.now += read
        raise no_answer(f"read timed out (after {read:g} s)")
    return callback


def test_retries_stop_at_the_deadline_and_each_try_fits_in_it(clock, stderr):
    log = Logger(stream=stderr)
    client = Client(URL, "k", "secret-1", log=log, sleep=clock.sleep, clock=clock, transport=responses, connect_timeout=1,
                    read_timeout=10, api_deadline=25, retry=RetryPolicy(attempts=6, base_delay=0.25, max_delay=8))
    seen: list = []
    responses.add_callback(GET, URL, callback=_silent(clock, seen))
    with pytest.raises(CloudStackError) as caught:
        client.list("listVirtualMachines", id="vm-1")
    err = caught.value
    assert clock.now <= 25.001                       # not 6 x 10 s plus pauses
    assert len(seen) == 3 and seen[0] == (1, 10) and seen[-1][1] < 10  # the last try got what was left
    assert all(connect <= read or read < 1 for connect, read in seen)
    assert err.kind == "transport" and err.is_transient
    assert "API deadline of 25 s was reached" in str(err) and "listVirtualMachines" in str(err)
    assert "3 tries" in str(err) and "read timed out" in str(err)
    assert client.api_time_left < 0.001               # timeouts are cut to whole milliseconds


def test_the_default_deadline_is_two_full_tries(clock, stderr):
    client = Client(URL, "k", "secret-1", log=Logger(stream=stderr), sleep=clock.sleep, clock=clock, transport=responses,
                    connect_timeout=2, read_timeout=30)
    assert client.api_time_left == 64
    seen: list = []
    responses.add_callback(GET, URL, callback=_silent(clock, seen))
    with pytest.raises(CloudStackError, match="deadline of 64 s was reached"):
        client.list("listZones")
    assert clock.now <= 64.001 and [read for _, read in seen][:2] == [30, 30]


def test_the_deadline_is_shared_by_all_requests_of_the_call(clock, stderr):
    client = Client(URL, "k", "secret-1", log=Logger(stream=stderr), sleep=clock.sleep, clock=clock, transport=responses,
                    connect_timeout=1, read_timeout=10, api_deadline=15, retry=RetryPolicy(attempts=1))
    seen: list = []
    responses.add_callback(GET, URL, callback=_silent(clock, seen))
    with pytest.raises(CloudStackError):
        client.list("listZones")
    with pytest.raises(CloudStackError, match="deadline of 15 s was reached"):
        client.list("listZones")                      # 5 s left: its read timeout is 5 s, not 10
    assert [read for _, read in seen] == [10, 5]
    with pytest.raises(CloudStackError, match="reached before deployVirtualMachine could be sent") as caught:
        client.call("deployVirtualMachine", zoneid="z")
    assert caught.value.outcome_unknown is False and len(seen) == 2


def test_a_mutation_cut_short_by_the_deadline_is_an_unknown_outcome(clock, stderr):
    client = Client(URL, "k", "secret-1", log=Logger(stream=stderr), sleep=clock.sleep, clock=clock, transport=responses,
                    connect_timeout=1, read_timeout=10, api_deadline=4)
    seen: list = []
    responses.add_callback(POST, URL, callback=_silent(clock, seen))
    with pytest.raises(CloudStackError, match="deadline of 4 s was reached") as caught:
        client.call("deployVirtualMachine", zoneid="z")
    assert caught.value.outcome_unknown is True and [read for _, read in seen] == [4]


def test_job_waits_do_not_use_up_the_api_deadline(clock, stderr):
    """A 20-minute job with a small API deadline: the polls share the job's timeout instead."""
    client = Client(URL, "k", "secret-1", log=Logger(stream=stderr), sleep=clock.sleep, clock=clock, transport=responses,
                    connect_timeout=1, read_timeout=2, api_deadline=6)
    responses.post(URL, json={"deployvirtualmachineresponse": {"id": "vm-1", "jobid": "job-1"}})
    polls = {"n": 0}

    def job(request):
        polls["n"] += 1
        clock.now += 0.5  # each status query takes half a second
        done = clock.now >= 20 * 60
        return 200, {}, json.dumps({"queryasyncjobresultresponse": {"jobstatus": 1 if done else 0,
                                                                    "jobresult": {"virtualmachine": {"id": "vm-1"}}}})

    responses.add_callback(GET, URL, callback=job)
    result = client.run_job("deployVirtualMachine", timeout=1800, what="creating VM", zoneid="z")
    assert result == {"virtualmachine": {"id": "vm-1"}}
    assert polls["n"] * 0.5 > 6                      # the polls alone took longer than the API deadline
    assert client.api_time_left == 6                 # and none of it was charged to the deadline
    responses.add(GET, URL, json={"listzonesresponse": {}})
    assert client.list("listZones") == []            # API calls after the job still have their time


def test_a_silent_endpoint_during_a_job_wait_ends_at_the_jobs_timeout(clock, stderr):
    client = Client(URL, "k", "secret-1", log=Logger(stream=stderr), sleep=clock.sleep, clock=clock, transport=responses,
                    connect_timeout=1, read_timeout=30, api_deadline=100)
    responses.post(URL, json={"attachvolumeresponse": {"jobid": "job-7"}})
    seen: list = []
    responses.add_callback(GET, URL, callback=_silent(clock, seen))
    with pytest.raises(CloudStackError) as caught:
        client.run_job("attachVolume", timeout=60, what="attaching volume vol-1", id="vol-1")
    err = caught.value
    assert err.kind == "timeout" and err.jobid == "job-7" and err.is_transient
    assert "attaching volume vol-1 did not finish within 60s" in str(err)
    assert clock.now <= 60 + 5.001                   # the job's timeout plus the grace of its last status query
    assert client.api_time_left == 100


def _commands_the_cpi_sends(api: dict) -> set[str]:
    """Every API command name written as a string literal in the CPI's sources."""
    import re
    from pathlib import Path

    source = "\n".join(p.read_text() for p in (Path(__file__).resolve().parents[3] / "src" / "cloudstack_cpi").rglob("*.py"))
    return {name for name in re.findall(r'"([a-z][A-Za-z]+)"', source) if name in api}


def test_project_scoped_commands_are_exactly_those_the_api_gives_a_projectid():
    """CloudStack 4.11's listApis (the simulator's api_spec.json is extracted from it): a command the CPI sends
    that takes projectid but is missing here would create under the account, or list outside the project."""
    from pathlib import Path

    from cloudstack_cpi.cloudstack.client import PROJECT_SCOPED

    spec = json.loads((Path(__file__).resolve().parents[3] / "src" / "cloudstack_simulator" / "api_spec.json")
                      .read_text())["api"]
    api = {(c.get("name") or key): c for key, c in spec.items()} if isinstance(spec, dict) else \
        {c["name"]: c for c in spec}
    with_projectid = {name for name, c in api.items() if any(p["name"] == "projectid" for p in c["params"])}
    assert PROJECT_SCOPED == _commands_the_cpi_sends(api) & with_projectid


def test_a_project_scopes_the_commands_that_take_it_and_no_others():
    responses.add(GET, "http://cs.test/client/api", json={"listvolumesresponse": {}})
    responses.add(POST, "http://cs.test/client/api", json={"createtagsresponse": {"jobid": "j"}})
    client = Client("http://cs.test/client/api", "key", "secret", log=Logger(), transport=responses)
    client.project_id = "p-1"
    client.call("listVolumes", virtualmachineid="v")
    client.call("createTags", resourceids="v")
    sent = [parse_qs(urlsplit(c.request.url).query) or parse_qs(c.request.text) for c in responses.calls]
    assert sent[0]["projectid"] == ["p-1"] and "projectid" not in sent[1]


@pytest.mark.parametrize("command, job_class", [
    ("detachVolume", "DetachVolumeCmd"), ("destroyVirtualMachine", "DestroyVMCmd"),
    ("startVirtualMachine", "StartVMCmd"), ("disableStaticNat", "DisableStaticNatCmd"),
    ("removeFromLoadBalancerRule", "RemoveFromLoadBalancerRuleCmd"),
])
def test_jobs_name_their_command_by_its_java_class(command, job_class):
    """The ``cmd`` of a job (AsyncJobResponse) is the command's class: api/src/.../command/user/vm/StartVMCmd.java,
    .../volume/DetachVolumeCmd.java, .../nat/DisableStaticNatCmd.java, ..."""
    from cloudstack_cpi.cloudstack.client import job_class_of

    assert job_class_of(command) == job_class


def test_a_lost_start_is_recovered_only_from_a_job_on_the_same_resource(stderr):
    from cloudstack_cpi.cloudstack.client import Client as _Client

    jobs = {"listasyncjobsresponse": {"count": 2, "asyncjobs": [
        {"jobid": "other", "cmd": "org.apache.cloudstack.api.command.user.volume.DetachVolumeCmd",
         "jobinstanceid": "vol-2", "created": "2026-11-30T08:00:01+0000"},
        {"jobid": "mine", "cmd": "org.apache.cloudstack.api.command.user.volume.DetachVolumeCmd",
         "jobinstanceid": "vol-1", "created": "2026-11-30T08:00:00+0000"}]}}
    responses.add(GET, URL, json=jobs)
    client = _Client(URL, "k", "secret-1", log=Logger(stream=stderr), transport=responses)
    assert client.pending_job("detachVolume", {"id": "vol-1"})["jobid"] == "mine"
    assert client.pending_job("detachVolume", {"id": "vol-3"}) is None
    assert client.pending_job("createTags", {"resourceids": "vol-1"}) is None  # names no resource: not looked for
