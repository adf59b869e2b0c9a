"""Malformed and wrong requests, each answered by one JSON document with a director-accepted error.

The corpus goes through bin/cpi as the director would send it; the property
test throws thousands of random requests at rpc.handle (against a live
simulator, so requests that pass the argument checks reach real handlers).
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudstack_cpi import errors, rpc
from cloudstack_cpi.log import Logger
from tests.conftest import run_cpi, write_config

UNKNOWN = "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"
MANUAL = {"type": "manual", "ip": "10.1.0.40", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
          "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}
CONTEXT = {"director_uuid": "d", "request_id": "cpi-101010", "vm": {"stemcell": {"api_version": 3}}}


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
        (json.dumps({"method": "has_vm", "arguments": ["x" * 1_000_000], "context": CONTEXT}).encode(), "any", None),
        (b"[" * 200_000, "Bosh::Clouds::CpiError", "not valid JSON"),
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
    for (payload, expected, fragment), result in zip(cases, results):
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

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                      st.text(max_size=12), st.sampled_from([UNKNOWN, "", "small", "bosh-isolated", "zone-1"]))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                              st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=6)

# Keys handlers actually read, so typed requests get past the envelope checks and into validation and lookups.
PROPERTY_KEYS = ["compute_offering", "cpu", "ram", "cpu_speed", "disk", "root_disk_size", "ephemeral_disk_offering",
                 "availability_zone", "key_name", "security_groups", "affinity_group", "lbs", "routes", "name",
                 "type", "ip", "netmask", "gateway", "dns", "default", "cloud_properties", "disk_offering",
                 "hypervisor", "disk_format", "template_name", "ram", "ephemeral_disk_size", "bosh", "tags"]
objects = st.dictionaries(st.one_of(st.sampled_from(PROPERTY_KEYS), st.text(max_size=6)), json_values, max_size=4)
cids = st.one_of(st.sampled_from([UNKNOWN, "vm-1", "bosh-isolated", " "]), st.text(min_size=1, max_size=12))
ARGUMENT_STRATEGIES = {
    rpc._cid: cids, rpc._string: cids, rpc._cid_or_null: st.one_of(st.none(), cids),
    rpc._object: objects, rpc._object_or_null: st.one_of(st.none(), objects),
    rpc._size: st.integers(1, 2**31), rpc._cid_list: st.lists(cids, max_size=2),
}


@st.composite
def typed_request(draw):
    method = draw(st.sampled_from(sorted(rpc.METHODS)))
    spec = rpc.METHODS[method]
    arguments = [draw(ARGUMENT_STRATEGIES[check]) for _, check in spec.args[: draw(
        st.integers(spec.required, len(spec.args)))]]
    if method == "create_vm" and len(arguments) >= 4:
        arguments[3] = draw(st.dictionaries(st.text(max_size=6), objects, max_size=2))  # networks: name -> spec
    return {"method": method, "arguments": arguments, "context": CONTEXT,
            "api_version": draw(st.sampled_from([1, 2, 3]))}


untyped_request = st.one_of(
    st.fixed_dictionaries({"method": st.one_of(st.sampled_from(sorted(rpc.METHODS)), st.text(max_size=12)),
                           "arguments": st.lists(json_values, max_size=7)},
                          optional={"context": st.one_of(st.just(CONTEXT), json_values),
                                    "api_version": st.one_of(st.integers(0, 4), json_values)}),
    json_values,
)
requests_st = st.one_of(typed_request(), untyped_request)


@pytest.fixture(scope="module")
def fuzz_config(tmp_path_factory):
    from cloudstack_simulator import Simulator

    sim = Simulator(scenario="advanced").start()
    path = tmp_path_factory.mktemp("fuzz") / "cpi.json"
    write_config(path, sim.endpoint, sim.api_key, sim.secret_key, api_retries=1,
                 timeout={"global": 5, "create_vm": 5, "create_volume": 5, "attach_volume": 5})
    yield str(path)
    sim.stop()


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(requests_st)
def test_random_requests_never_crash(fuzz_config, request_body):
    log = Logger(stream=_NullStream())
    response = rpc.handle(json.dumps(request_body).encode(), fuzz_config, log)
    assert set(response) == {"result", "error", "log"}
    json.dumps(response)  # always serialisable
    error = response["error"]
    if error is not None:
        assert error["type"] in errors.ALL_TYPES
        assert isinstance(error["message"], str) and isinstance(error["ok_to_retry"], bool)
        assert not error["message"].startswith("Unexpected error"), error["message"]


class _NullStream:
    def write(self, _):
        return 0

    def flush(self):
        pass
