"""Malformed and wrong requests, each answered by one JSON document with a director-accepted error.

The corpus goes through bin/cpi as the director would send it; the property
test throws random requests at rpc.handle (against a live simulator, so
requests that pass the argument checks reach real handlers).  The property
test is derandomized and bounded, so every clone gets the same verdict; every
failure it (or the randomized soak ``bench/fuzz_requests.py``) ever found is
kept below as an explicit ``@example``.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, example, given, settings

from cloudstack_cpi import errors
from cloudstack_cpi.log import Logger
from tests.conftest import run_cpi, write_config
from tests.contract.request_strategies import CONTEXT, STEMCELL, answer, check_answer, existing_stemcell, requests_st

UNKNOWN = "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"
MANUAL = {"type": "manual", "ip": "10.1.0.40", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
          "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}


def envelope(method, *arguments):
    return {"method": method, "arguments": list(arguments), "context": CONTEXT, "api_version": 2}


def _existing_template(simulator):
    from cloudstack_cpi.cloudstack.client import Client

    client = Client(simulator.endpoint, simulator.api_key, simulator.secret_key, log=Logger(level="error"))
    template = client.list("listTemplates", templatefilter="executable", name="bosh-stemcell-existing")[0]
    client.close()
    return template["id"]


# (payload, expected error type or None for success, fragment of the message or expected result)
def corpus(template_id):
    return [
        (b"", "Bosh::Clouds::CpiError", "Empty request"),
        (b"\x00\x01\x02", "Bosh::Clouds::CpiError", "not valid JSON"),
        (b'{"method": "has_vm", "arguments": ["a"]', "Bosh::Clouds::CpiError", "not valid JSON"),
        (b"null", "Bosh::Clouds::CpiError", "must be a JSON object, got null"),
        (b'{"method": "has_vm", "arguments": ["a"], "api_version": 2.5}', "Bosh::Clouds::CpiError", "api_version"),
        (b'{"method": ["x"], "arguments": []}', "Bosh::Clouds::CpiError", "'method' must be a non-empty string"),
        (json.dumps(envelope("create_vm", "agent", template_id, {"cpu": "four"}, {"n": MANUAL}, [], {})).encode(),
         "Bosh::Clouds::CloudError", "cpu"),
        (json.dumps(envelope("create_vm", "agent", template_id, {"compute_offering": "small", "lbs": "x"},
                             {"n": MANUAL}, [], {})).encode(), "Bosh::Clouds::CloudError", "lbs"),
        (json.dumps(envelope("create_vm", "agent", template_id, {"compute_offering": "small"},
                             {"n": {"type": "bogus"}}, [], {})).encode(), "Bosh::Clouds::CloudError", "bogus"),
        (json.dumps(envelope("create_vm", "agent", template_id, {"compute_offering": "small"},
                             {"n": "not-a-network"}, [], {})).encode(), None, None),
        (json.dumps(envelope("create_vm", "agent", template_id, {"compute_offering": "no-such"},
                             {"n": MANUAL}, [], {})).encode(), "Bosh::Clouds::CloudError", "no-such"),
        (json.dumps(envelope("create_vm", "agent", UNKNOWN, {"compute_offering": "small"},
                             {"n": MANUAL}, [], {})).encode(), "Bosh::Clouds::CloudError", UNKNOWN),
        (json.dumps(envelope("create_vm", "agent", template_id, {"compute_offering": "small"},
                             {"n": {**MANUAL, "cloud_properties": {"name": "no-such-net"}}}, [], {})).encode(),
         "Bosh::Clouds::CloudError", "no-such-net"),
        (json.dumps(envelope("create_vm", "agent", template_id, {"compute_offering": "small"},
                             {"n": MANUAL}, [UNKNOWN], {})).encode(), None, None),
        (json.dumps(envelope("has_vm", UNKNOWN)).encode(), "result", False),
        (json.dumps(envelope("has_vm", "not-a-uuid")).encode(), "result", False),
        (json.dumps(envelope("has_vm", template_id)).encode(), "result", False),
        (json.dumps(envelope("delete_vm", UNKNOWN)).encode(), "result", None),
        (json.dumps(envelope("reboot_vm", UNKNOWN)).encode(), "Bosh::Clouds::VMNotFound", UNKNOWN),
        (json.dumps(envelope("set_vm_metadata", UNKNOWN, {"a": "b"})).encode(), "Bosh::Clouds::VMNotFound", UNKNOWN),
        (json.dumps(envelope("has_disk", UNKNOWN)).encode(), "result", False),
        (json.dumps(envelope("delete_disk", UNKNOWN)).encode(), "result", None),
        (json.dumps(envelope("attach_disk", UNKNOWN, UNKNOWN)).encode(), "Bosh::Clouds::VMNotFound", UNKNOWN),
        (json.dumps(envelope("detach_disk", UNKNOWN, UNKNOWN)).encode(), "result", None),
        (json.dumps(envelope("get_disks", UNKNOWN)).encode(), "Bosh::Clouds::VMNotFound", UNKNOWN),
        (json.dumps(envelope("resize_disk", UNKNOWN, 4096)).encode(), "Bosh::Clouds::DiskNotFound", UNKNOWN),
        (json.dumps(envelope("snapshot_disk", UNKNOWN, {})).encode(), "Bosh::Clouds::DiskNotFound", UNKNOWN),
        (json.dumps(envelope("delete_snapshot", UNKNOWN)).encode(), "result", None),
        (json.dumps(envelope("create_disk", 1024, {"disk_offering": 7}, None)).encode(), "Bosh::Clouds::CloudError",
         "disk_offering"),
        (json.dumps(envelope("create_disk", 1024, {}, UNKNOWN)).encode(), "Bosh::Clouds::VMNotFound", UNKNOWN),
        (json.dumps(envelope("create_disk", 1024, {"disk_offering": "no-such"}, None)).encode(),
         "Bosh::Clouds::CloudError", "no-such"),
        (json.dumps(envelope("delete_stemcell", UNKNOWN)).encode(), "result", None),
        (json.dumps(envelope("create_stemcell", "/nonexistent/image", {"hypervisor": "kvm"})).encode(),
         "Bosh::Clouds::CloudError", "/nonexistent/image"),
        (json.dumps(envelope("calculate_vm_cloud_properties", {"cpu": "x", "ram": 1024})).encode(),
         "Bosh::Clouds::CloudError", "cpu"),
        (json.dumps({"method": "has_vm", "arguments": ["x" * 1_000_000], "context": CONTEXT}).encode(),
         "Bosh::Clouds::CpiError", "[1000000 characters]"),
        (b"[" * 200_000, "Bosh::Clouds::CpiError", "not valid JSON"),
        (json.dumps(envelope("create_stemcell", "\u0000", {})).encode(), "Bosh::Clouds::CpiError", "NUL"),
        (json.dumps(envelope("has_vm", "\ud800")).encode(), "Bosh::Clouds::CpiError", "valid Unicode"),
        (json.dumps(envelope("create_vm", "agent", template_id, {"routes": {"": True}}, {"n": MANUAL}, [],
                             {})).encode(), "Bosh::Clouds::CloudError", "routes"),
        (json.dumps(envelope("create_vm", "agent", template_id, {"compute_offering": "small"},
                             {"n": {**MANUAL, "netmask": "banana"}}, [], {})).encode(),
         "Bosh::Clouds::CpiError", "networks.n.netmask"),
        (b'{"method": "has_vm", "arguments": [NaN], "context": {}}', "Bosh::Clouds::CpiError", "NaN"),
        (b'{"method": "has_vm", "arguments": ["a"], "api_version": Infinity}', "Bosh::Clouds::CpiError",
         "api_version must be a finite number"),
        (b'{"method": "has_vm\\n", "arguments": []}', "Bosh::Clouds::NotImplemented", "'has_vm\\x0a'"),
    ]


def test_corpus_through_bin_cpi(simulator, tmp_path):
    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, simulator.secret_key,
                          api_retries=1)
    template_id = _existing_template(simulator)
    cases = corpus(template_id)
    # Independent calls, as a director's workers would make them: run them side by side.
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda case: run_cpi(case[0], config, tmp=tmp_path), cases))
    failures = []
    for (payload, expected, fragment), result in zip(cases, results, strict=False):
        label = payload[:80]
        error = result.error
        assert set(result.response) == {"result", "error", "log"} and isinstance(result.response["log"], str)
        if error is not None:
            assert error["type"] in errors.ALL_TYPES, (label, error)
            assert isinstance(error["ok_to_retry"], bool)
            assert "\n" not in error["message"] and "Traceback" not in error["message"], (label, error)
            assert not error["message"].startswith("Unexpected error"), (label, error)
        if expected == "result":
            if error is not None or result.result != fragment:
                failures.append((label, result.response))
        elif expected == "any":
            continue
        elif expected is None:
            if error is None:
                failures.append((label, "expected an error"))
        elif error is None or error["type"] != expected or (fragment and fragment not in error["message"]):
            failures.append((label, error))
    assert not failures, failures
    assert simulator.inventory()["virtualmachines"] == [] and simulator.inventory()["volumes"] == []


# -- random requests ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    from cloudstack_simulator import Simulator

    sim = Simulator(scenario="advanced").start()
    path = tmp_path_factory.mktemp("fuzz") / "cpi.json"
    write_config(path, sim.endpoint, sim.api_key, sim.secret_key, api_retries=1,
                 timeout={"global": 5, "create_vm": 5, "create_volume": 5, "attach_volume": 5})
    yield str(path), existing_stemcell(sim)
    sim.stop()


def _request(method, *arguments):
    return {"method": method, "arguments": list(arguments), "context": CONTEXT, "api_version": 2}


# Every failure ever found, by this test or by bench/fuzz_requests.py, stays here.
@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(requests_st)
# Crashes ("Unexpected error"): a NUL in a path, a lone surrogate in a CID, routes of the wrong shape.
@example(_request("create_stemcell", "\u0000", {}))
@example(_request("has_vm", "\ud800"))
@example(_request("create_vm", "agent-1", STEMCELL, {"routes": {"": True}}, {"default": MANUAL}, [], {}))
@example(_request("create_vm", "agent-1", STEMCELL, {"routes": {"default": 6.9e16}}, {"default": MANUAL}, [], {}))
@example(_request("create_vm", "agent-1", STEMCELL, {"compute_offering": "small"},
                  {"default": {**MANUAL, "cloud_properties": {"name": "bosh-isolated", "routes": [{"cidr": 5}]}}},
                  [], {}))
# NaN and infinities, which the answer echoed (not JSON to Ruby's JSON.parse).
@example(b'{"method": "has_vm", "arguments": [NaN], "context": {}}')
@example(_request("create_vm", "agent-1", STEMCELL, {"compute_offering": "small"},
                  {"default": {**MANUAL, "weight": float("nan")}}, [], {}))
@example(b'{"method": "create_disk", "arguments": [1024, {"x": -Infinity}], "context": {}}')
@example(b'{"method": "create_disk", "arguments": [1e999, {}], "context": {}}')
@example(b'{"method": "create_disk", "arguments": [' + b"9" * 5000 + b', {}], "context": {}}')
# Lone surrogates anywhere: method, keys, context.
@example({"method": "\ud800", "arguments": [], "context": CONTEXT, "api_version": 3})
@example(_request("set_vm_metadata", "vm-1", {"\udc00": "x"}))
@example({"method": "has_vm", "arguments": ["vm-1"], "context": {"request_id": "\udfff"}})
# Malformed network values, which created a VM.
@example(_request("create_vm", "agent-1", STEMCELL, {"compute_offering": "small"},
                  {"default": {**MANUAL, "netmask": "banana"}}, [], {}))
# Huge values, which came back whole in the message.
@example(_request("has_vm", "x" * 1_000_000))
@example(_request("create_stemcell", "/nonexistent/" + "d" * 100_000, {}))
@example(_request("create_vm", "agent-1", STEMCELL, {"compute_offering": "small"},
                  {"default": {**MANUAL, "gateway": "1" * 100_000}}, [], {}))
# Line breaks in values echoed by messages (the answer is one line of the task log).
@example({"method": "n\u00a7\nh", "arguments": []})
@example(_request("resize_disk", "<\n\u6190", 2))
# Deep nesting.
@example(b'{"method": "set_vm_metadata", "arguments": ["vm-1", ' + b"[" * 500 + b"]" * 500 + b'], "context": {}}')
def test_random_requests_never_crash(fuzz_target, request_body):
    config_path, stemcell = fuzz_target
    check_answer(answer(request_body, config_path, stemcell))
