"""Requests no director sends but a CPI must still answer well: NUL, lone surrogates, NaN, huge values.

Every answer goes through bin/cpi and must be one line of strict JSON (what
Ruby's ``JSON.parse`` accepts: no NaN/Infinity, valid UTF-8, no lone surrogate
escapes) carrying a BOSH error that names where the bad value was and quotes
at most a short prefix of it.  Each case here once crashed the CPI or echoed
the request back whole.
"""

import json
import re
import subprocess
import sys

import pytest

from cloudstack_cpi import errors
from tests.conftest import BIN_CPI, bare_env, request, run_cpi

MANUAL = {"type": "manual", "ip": "10.1.0.40", "netmask": "255.255.255.0", "gateway": "10.1.0.1",
          "dns": ["10.1.0.2"], "default": ["dns", "gateway"], "cloud_properties": {"name": "bosh-isolated"}}
VM_CONTEXT = {"vm": {"stemcell": {"api_version": 3}}}


def strict_response(result):
    """The response as a strict parser reads it: UTF-8, no NaN/Infinity, no lone surrogates."""
    text = result.stdout.decode("utf-8")  # strict: raises on invalid UTF-8

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant} in the response")

    response = json.loads(text, parse_constant=refuse)
    assert not re.search("[\ud800-\udfff]", json.dumps(response, ensure_ascii=False)), "a lone surrogate was echoed"
    return response


def assert_cpi_error(result, *fragments, limit=400):
    response = strict_response(result)
    error = response["error"]
    assert error is not None, response
    assert error["type"] == "Bosh::Clouds::CpiError", error
    assert not error["message"].startswith("Unexpected error"), error
    assert "\n" not in error["message"] and len(error["message"]) <= limit, error["message"][:500]
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"])
    assert len(result.stdout) < 2 * limit
    return error["message"]


@pytest.fixture
def template_id(simulator):
    from cloudstack_cpi.cloudstack.client import Client
    from cloudstack_cpi.log import Logger

    client = Client(simulator.endpoint, simulator.api_key, simulator.secret_key, log=Logger(level="error"))
    try:
        return client.list("listTemplates", templatefilter="executable", name="bosh-stemcell-existing")[0]["id"]
    finally:
        client.close()


def create_vm(template_id, cloud_properties=None, networks=None, env=None):
    return request("create_vm", "agent-1", template_id, cloud_properties or {"compute_offering": "small"},
                   networks or {"default": MANUAL}, [], env or {}, context=VM_CONTEXT)


def nothing_created(simulator):
    inventory = simulator.inventory()
    return inventory["virtualmachines"] == [] and inventory["volumes"] == []


# -- defect 1: crashes ("Unexpected error") ---------------------------------------------------------------------


def test_nul_in_stemcell_path_is_a_cpi_error(cpi):
    result = run_cpi(request("create_stemcell", "\u0000", {}), cpi.config_path, tmp=cpi.tmp)
    assert_cpi_error(result, "create_stemcell: argument 1 (image_path)", "NUL")


def test_nul_anywhere_is_refused_with_its_path(cpi):
    payload = request("set_vm_metadata", "vm-1", {"director": "d", "name": "a\u0000b"})
    assert_cpi_error(run_cpi(payload, cpi.config_path, tmp=cpi.tmp), "argument 2 (metadata.name)", "NUL")


def test_lone_surrogate_cid_is_a_cpi_error_and_never_echoed(cpi):
    result = run_cpi(request("has_vm", "\ud800"), cpi.config_path, tmp=cpi.tmp)
    message = assert_cpi_error(result, "has_vm: argument 1 (vm_cid)", "valid Unicode")
    assert "\\ud800" in message  # named as an escape, not carried raw


def test_lone_surrogate_in_a_key_or_the_method_is_refused(cpi):
    result = run_cpi(request("set_vm_metadata", "vm-1", {"\udc00": "x"}), cpi.config_path, tmp=cpi.tmp)
    assert_cpi_error(result, "argument 2 (metadata)", "key", "valid Unicode")
    result = run_cpi(request("has_vm\udfff", "vm-1"), cpi.config_path, tmp=cpi.tmp)
    assert_cpi_error(result, "Request method", "valid Unicode")


def test_routes_of_the_wrong_shape_are_a_validation_error(cpi, simulator, template_id):
    # Found by the suite's own property test: bool routes for a network crashed with TypeError.
    result = run_cpi(create_vm(template_id, {"compute_offering": "small", "routes": {"": True}}),
                     cpi.config_path, tmp=cpi.tmp)
    response = strict_response(result)
    assert response["error"]["type"] == "Bosh::Clouds::CloudError", response
    assert "routes['']" in response["error"]["message"] and "valid list" in response["error"]["message"]
    assert not response["error"]["message"].startswith("Unexpected error")
    assert nothing_created(simulator)


# -- defect 2: NaN and Infinity ------------------------------------------------------------------------------------


def test_nan_in_a_network_is_refused_not_echoed(cpi, simulator, template_id):
    # The director's network spec is echoed in create_vm's v2 answer: NaN came back as bare NaN, not JSON.
    payload = create_vm(template_id, networks={"default": {**MANUAL, "weight": float("nan")}})
    result = run_cpi(payload, cpi.config_path, tmp=cpi.tmp)
    assert_cpi_error(result, "create_vm: argument 4 (networks.default.weight)", "finite number", "NaN")
    assert nothing_created(simulator)


@pytest.mark.parametrize("literal, where", [
    (b"Infinity", "argument 3 (cloud_properties.cpu)"),
    (b"-Infinity", "argument 3 (cloud_properties.cpu)"),
    (b"1e999", "argument 3 (cloud_properties.cpu)"),
])
def test_infinities_are_refused_with_their_path(cpi, literal, where):
    payload = (b'{"method": "create_vm", "arguments": ["a", "s", {"cpu": ' + literal + b'}, {}], '
               b'"context": {"vm": {"stemcell": {"api_version": 3}}}, "api_version": 2}')
    assert_cpi_error(run_cpi(payload, cpi.config_path, tmp=cpi.tmp), where, "finite number")


def test_nan_in_the_context_is_refused(cpi):
    payload = b'{"method": "has_vm", "arguments": ["vm-1"], "context": {"director_uuid": "d", "x": [1, NaN]}}'
    assert_cpi_error(run_cpi(payload, cpi.config_path, tmp=cpi.tmp), "Request context.x.1", "NaN")


# -- defect 3: malformed network values --------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, fragment", [
    ("netmask", "banana", "networks.default.netmask: must be a netmask"),
    ("ip", "10.1.0.400", "networks.default.ip: must be an IP address"),
    ("gateway", "gw.example.com", "networks.default.gateway: must be an IP address"),
    ("dns", ["10.1.0.2", "not-an-ip"], "networks.default.dns.1: must be an IP address"),
])
def test_malformed_network_values_are_refused_before_anything_is_created(cpi, simulator, template_id, key, value,
                                                                         fragment):
    simulator.clear_request_log()
    result = run_cpi(create_vm(template_id, networks={"default": {**MANUAL, key: value}}), cpi.config_path,
                     tmp=cpi.tmp)
    assert_cpi_error(result, fragment)
    assert nothing_created(simulator)
    assert simulator.request_log == []  # refused before the first CloudStack call


def test_malformed_route_is_refused_with_its_path(cpi, simulator, template_id):
    routes = [{"destination": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.254"},
              {"destination": "10.8.0.0", "netmask": "banana", "gateway": "10.1.0.254"}]
    networks = {"default": {**MANUAL, "cloud_properties": {"name": "bosh-isolated", "routes": routes}}}
    result = run_cpi(create_vm(template_id, networks=networks), cpi.config_path, tmp=cpi.tmp)
    assert_cpi_error(result, "networks.default.cloud_properties.routes.1.netmask", "'banana'")
    assert nothing_created(simulator)


# -- defect 4: huge values ------------------------------------------------------------------------------------------


def test_huge_cid_is_quoted_by_a_short_prefix(cpi):
    result = run_cpi(request("has_vm", "x" * 5_000_000), cpi.config_path, tmp=cpi.tmp)
    assert_cpi_error(result, "has_vm: argument 1 (vm_cid) is too long", "[5000000 characters]", limit=250)
    assert len(result.stderr) < 2000


def test_huge_network_value_is_quoted_by_a_short_prefix(cpi, simulator, template_id):
    result = run_cpi(create_vm(template_id, networks={"default": {**MANUAL, "netmask": "255." * 250_000}}),
                     cpi.config_path, tmp=cpi.tmp)
    assert_cpi_error(result, "networks.default.netmask", "[1000000 characters]", limit=250)
    assert nothing_created(simulator)


def test_values_echoed_by_actions_are_cut_too(cpi):
    # The action quotes the image path in its message; the edge cuts any long argument value it finds there.
    path = "/nonexistent/" + "d" * 4000 + "/image"
    result = run_cpi(request("create_stemcell", path, {"hypervisor": "kvm"}), cpi.config_path, tmp=cpi.tmp)
    error = strict_response(result)["error"]
    assert error["type"] == "Bosh::Clouds::CloudError"
    assert "/nonexistent/ddd" in error["message"] and f"[{len(path)} characters]" in error["message"]
    assert len(error["message"]) < 400 and len(result.stdout) < 600


def test_oversized_request_is_refused_unread(cpi):
    result = run_cpi(request("has_vm", "x" * 20_000_000), cpi.config_path, tmp=cpi.tmp)
    message = assert_cpi_error(result, "Request is too large")
    assert str(len(json.dumps(request("has_vm", "x" * 20_000_000)))) in message


PEAK_RSS = """
import resource, subprocess, sys
with open(sys.argv[1], "rb") as stdin:
    done = subprocess.run([sys.argv[2], sys.argv[3]], stdin=stdin, capture_output=True, env={"PATH": "/usr/bin:/bin"})
sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + " " + str(len(done.stdout)))
"""


@pytest.mark.parametrize("size", [20_000_000])
def test_peak_memory_stays_flat_for_huge_requests(cpi, tmp_path, size):
    """Before: a 20 MB CID took 370 MB of memory and came back whole on stdout (100 MB: 1.6 GB)."""
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request("has_vm", "x" * size)))
    probe = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path), str(BIN_CPI), str(cpi.config_path)],
                           capture_output=True, text=True, env=bare_env(tmp_path), check=True)
    peak_kib, stdout_bytes = map(int, probe.stdout.split())
    assert stdout_bytes < 500
    # Python with the CPI's modules is ~30 MiB; at most the request and one copy of it on top.
    assert peak_kib < 40 * 1024 + 2 * size // 1024, f"peak RSS {peak_kib} KiB for a {size} byte request"


# -- the answer is always strict JSON -------------------------------------------------------------------------------


def test_encode_never_writes_nan_or_lone_surrogates():
    from cloudstack_cpi import rpc

    text = rpc.encode({"result": {"a": "x\ud800y", "\udc01": ["\U0001F600"]}, "error": None, "log": "\udfff"})
    response = json.loads(text.decode("ascii"), parse_constant=lambda c: pytest.fail(c))
    assert response == {"result": {"a": "x\ufffdy", "\ufffd": ["\U0001F600"]}, "error": None, "log": "\ufffd"}
    text = rpc.encode({"result": [float("nan")], "error": None, "log": ""})
    response = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert response["result"] is None and response["error"]["type"] == "Bosh::Clouds::CpiError"
    assert response["error"]["type"] in errors.ALL_TYPES
