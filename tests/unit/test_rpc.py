"""The wire layer in-process: request checks, dispatch, versions, error mapping."""

import io
import json

import pytest

from cloudstack_cpi import errors, rpc
from cloudstack_cpi.log import Logger


def call(payload, config_path=None, method_table=None, size=None):
    stream = io.StringIO()
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = rpc.handle(raw, config_path, Logger(stream=stream), size)
    return response, stream.getvalue()


def test_error_types_are_the_directors_ten():
    assert errors.ALL_TYPES == {
        "Bosh::Clouds::CpiError", "Bosh::Clouds::NotImplemented", "Bosh::Clouds::NotSupported",
        "Bosh::Clouds::CloudError", "Bosh::Clouds::VMNotFound", "Bosh::Clouds::NetworkNotFound",
        "Bosh::Clouds::NoDiskSpace", "Bosh::Clouds::DiskNotAttached", "Bosh::Clouds::DiskNotFound",
        "Bosh::Clouds::VMCreationFailed"}


def test_info_shape():
    response, _ = call({"method": "info", "arguments": [], "context": {}})
    assert response["error"] is None and response["log"] == ""
    assert response["result"]["api_version"] == 3
    assert {"cloudstack-vhdx", "cloudstack-qcow2", "cloudstack-ova"} <= set(response["result"]["stemcell_formats"])


@pytest.mark.parametrize("payload, fragment", [
    (b"", "Empty request"),
    (b"   \n", "Empty request"),
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got array"),
    (b'"info"', "must be a JSON object, got string"),
    (b'{"arguments": []}', "has no 'method'"),
    (b'{"method": 5, "arguments": []}', "'method' must be a non-empty string, got number"),
    (b'{"method": "info"}', "has no 'arguments'"),
    (b'{"method": "info", "arguments": {}}', "'arguments' must be an array, got object"),
    (b'{"method": "info", "arguments": [], "context": []}', "'context' must be an object"),
    (b'{"method": "info", "arguments": [], "api_version": "2"}', "'api_version' must be an integer"),
    (b'{"method": "has_vm", "arguments": []}', "has_vm takes 1 arguments (vm_cid), got 0"),
    (b'{"method": "has_vm", "arguments": [5]}', "argument 1 (vm_cid) must be a string, got number"),
    (b'{"method": "has_vm", "arguments": [""]}', "argument 1 (vm_cid) must not be empty"),
    (b'{"method": "create_disk", "arguments": ["10", {}]}', "argument 1 (size) must be an integer"),
    (b'{"method": "create_disk", "arguments": [true, {}]}', "argument 1 (size) must be an integer"),
    (b'{"method": "create_disk", "arguments": [1024, {}, null, 4]}', "takes 2 to 3 arguments"),
    (b'{"method": "create_vm", "arguments": ["a", "s", [], {}]}', "argument 3 (cloud_properties) must be an object"),
    (b'{"method": "create_vm", "arguments": ["a", "s", {}, {}, "d"]}', "argument 5 (disk_cids) must be an array"),
    (b'[' * 100000, "not valid JSON"),
])
def test_bad_requests_are_cpi_errors(payload, fragment):
    response, _ = call(payload)
    assert response["result"] is None
    assert response["error"]["type"] == "Bosh::Clouds::CpiError"
    assert fragment in response["error"]["message"]
    assert response["error"]["ok_to_retry"] is False
    assert isinstance(response["log"], str)


def test_unknown_method_is_not_implemented():
    response, _ = call({"method": "current_vm_id", "arguments": []})
    assert response["error"]["type"] == "Bosh::Clouds::NotImplemented"
    assert "current_vm_id" in response["error"]["message"]


def test_api_version_above_supported_is_not_implemented():
    response, _ = call({"method": "info", "arguments": [], "api_version": 9})
    assert response["error"]["type"] == "Bosh::Clouds::NotImplemented"


def test_old_stemcells_are_refused_for_vm_calls():
    payload = {"method": "create_vm", "arguments": ["a", "s", {}, {}, [], {}],
               "context": {"vm": {"stemcell": {"api_version": 1}}}, "api_version": 2}
    response, _ = call(payload)
    assert response["error"]["type"] == "Bosh::Clouds::CloudError"
    assert "registry-based stemcells are not supported" in response["error"]["message"]


def test_request_id_prefixes_log_lines():
    _, stderr = call({"method": "has_vm", "arguments": [3], "context": {"request_id": "cpi-777"}})
    assert "[cpi-777]" in stderr


def test_unexpected_exceptions_are_one_line_cloud_errors(monkeypatch):
    def explode(ctx):
        raise ZeroDivisionError("boom\nsecond line")

    import cloudstack_cpi.actions.info as info_module
    monkeypatch.setattr(info_module, "info", explode)
    response, stderr = call({"method": "info", "arguments": []})
    assert response["error"]["type"] == "Bosh::Clouds::CloudError"
    assert response["error"]["message"] == "Unexpected error in info: ZeroDivisionError: boom"
    assert "Traceback" in stderr and "Traceback" not in json.dumps(response)


def test_unserialisable_result_is_a_cpi_error():
    encoded = json.loads(rpc.encode({"result": object(), "error": None, "log": ""}))
    assert encoded["error"]["type"] == "Bosh::Clouds::CpiError"


def test_lines_stderr_cannot_carry_go_into_log():
    class Closed(io.StringIO):
        def write(self, _):
            raise OSError("closed")

    response = rpc.handle(b'{"method": "has_vm", "arguments": [1]}', None, Logger(stream=Closed()))
    assert "argument 1 (vm_cid)" in response["log"]


def test_missing_config_is_a_cpi_error():
    response, _ = call({"method": "has_vm", "arguments": ["vm-1"]})
    assert response["error"]["type"] in ("Bosh::Clouds::CpiError", "Bosh::Clouds::NotImplemented")


# -- values no request may hold, refused once at the edge with their path ----------------------------------------


@pytest.mark.parametrize("payload, fragment", [
    (b'{"method": "create_stemcell", "arguments": ["\\u0000", {}]}',
     "create_stemcell: argument 1 (image_path) must not contain a NUL character (at character 0)"),
    (b'{"method": "has_vm", "arguments": ["a\\ud800"]}',
     "has_vm: argument 1 (vm_cid) must be valid Unicode: an unpaired surrogate \\ud800 at character 1"),
    (b'{"method": "has_vm", "arguments": ["\\udc00\\ud800"]}', "an unpaired surrogate \\udc00 at character 0"),
    (b'{"method": "create_vm", "arguments": ["a", "s", {"cpu": NaN}, {}]}',
     "create_vm: argument 3 (cloud_properties.cpu) must be a finite number, got NaN"),
    (b'{"method": "create_vm", "arguments": ["a", "s", {}, {"net": {"dns": [1, -Infinity]}}]}',
     "create_vm: argument 4 (networks.net.dns.1) must be a finite number, got -Infinity"),
    (b'{"method": "create_disk", "arguments": [1e400, {}]}', "argument 1 (size) must be a finite number, got 1e400"),
    (b'{"method": "create_disk", "arguments": [' + b"1" * 40 + b', {}]}',
     "argument 1 (size) is out of range: an integer of 40 digits"),
    (b'{"method": "set_vm_metadata", "arguments": ["vm", {"a\\u0000b": 1}]}',
     ("set_vm_metadata: argument 2 (metadata) has a key that must not contain a NUL character (at character 1): "
      "'a\\x00b'")),
    (b'{"method": "set_vm_metadata", "arguments": ["vm", {"x.y": {"": [NaN]}}]}',
     "argument 2 (metadata['x.y']['']. 0) must be a finite number".replace(". ", ".")),
    (b'{"method": "info", "arguments": [], "context": {"request_id": NaN}}', "Request context.request_id"),
    (b'{"method": "\\ud800", "arguments": []}', "Request method must be valid Unicode"),
    (b'{"method": "nope", "arguments": [NaN]}', "Request arguments.0 must be a finite number"),
    (b'{"method": "has_vm", "arguments": ["a", "b", NaN]}', "Request arguments.2 must be a finite number"),
    (b'{"method": "info", "arguments": [' + b"[" * 70 + b"]" * 70 + b']}', "nested more than 64 levels deep"),
    (b'{"method": "has_vm", "arguments": ["' + b"x" * 300 + b'"]}',
     "argument 1 (vm_cid) is too long: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\u2026 [300 characters]'"),
    (b'{"method": "has_vm", "arguments": ["vm-1\\n"]}',
     "argument 1 (vm_cid) must not contain control characters, got 'vm-1\\x0a'"),
    (b'{"method": "create_vm", "arguments": ["a", "s", {}, {}, ["d", 5]]}', "argument 5 (disk_cids) item 1 must be a string"),
    (b'{"method": "create_disk", "arguments": [9007199254740992, {}]}', "argument 1 (size) must be at most"),
    (b'{"method": "create_stemcell", "arguments": ["/tmp/' + b"p" * 5000 + b'", {}]}', "(image_path) is too long"),
])
def test_values_no_request_may_hold_are_cpi_errors_naming_their_path(payload, fragment):
    response, _ = call(payload)
    assert response["error"]["type"] == "Bosh::Clouds::CpiError", response
    assert fragment in response["error"]["message"]
    assert len(response["error"]["message"]) < 300


def test_unknown_method_and_request_id_are_quoted_short():
    response, stderr = call({"method": "m" * 10_000, "arguments": [], "context": {"request_id": "r" * 10_000}})
    assert response["error"]["type"] == "Bosh::Clouds::NotImplemented"
    assert "[10000 characters]" in response["error"]["message"] and len(response["error"]["message"]) < 200
    response, stderr = call({"method": "has_vm", "arguments": [5], "context": {"request_id": "r" * 10_000}})
    assert len(stderr) < 400 and "[10000 characters]" in stderr


def test_request_over_the_limit_is_refused_whatever_its_content():
    response, _ = call(b"{" * 10, size=rpc.MAX_REQUEST_BYTES + 1)
    assert response["error"]["type"] == "Bosh::Clouds::CpiError"
    assert response["error"]["message"] == (f"Request is too large: {rpc.MAX_REQUEST_BYTES + 1} bytes "
                                            f"(at most {rpc.MAX_REQUEST_BYTES})")


def test_read_request_keeps_at_most_the_limit_and_counts_the_rest():
    data, size = rpc.read_request(io.BytesIO(b"a" * 100), limit=10)
    assert (data, size) == (b"a" * 11, 100)
    data, size = rpc.read_request(io.BytesIO(b'{"method": "info"}'), limit=100)
    assert (data, size) == (b'{"method": "info"}', 18)


def test_messages_from_actions_are_cut_redacted_and_one_line(monkeypatch):
    import cloudstack_cpi.actions.info as info_module

    long_value = "v" * 5000

    def echo(ctx, *arguments):
        raise errors.CloudError(f"Looking for '{long_value}' with secret-value-1234\nsecond line\tand\x07bell")

    monkeypatch.setattr(info_module, "info", echo)
    monkeypatch.setitem(rpc.METHODS, "info", rpc._m("info:info", ("x", rpc._cid_or_null), required=0))
    log = Logger(stream=io.StringIO())
    log.add_secret("secret-value-1234")
    response = rpc.handle(json.dumps({"method": "info", "arguments": []}).encode(), None, log)
    message = response["error"]["message"]
    assert "secret-value" not in message and "\n" not in message
    assert message.startswith("Looking for 'vvv") and message.endswith("\u2026 [5054 characters]")
    assert len(message) == rpc.MAX_MESSAGE_CHARS + len("\u2026 [5054 characters]")
    # A long value from the request itself is cut to a short prefix wherever the message quotes it.
    monkeypatch.setitem(rpc.METHODS, "info", rpc._m("info:info", ("x", rpc._object_or_null), required=0))
    response = rpc.handle(json.dumps({"method": "info", "arguments": [{"k": long_value}]}).encode(), None, log)
    assert response["error"]["message"] == (f"Looking for '{'v' * 64}\u2026 [5000 characters]' with <redacted> "
                                            "second line and\\x07bell")


def test_encode_is_strict_ascii_json_without_lone_surrogates():
    encoded = rpc.encode({"result": ["\ud800", "\U0001F600", "é"], "error": None, "log": ""})
    assert encoded == b'{"result": ["\\ufffd", "\\ud83d\\ude00", "\\u00e9"], "error": null, "log": ""}'
    for bad in (float("nan"), float("inf")):
        decoded = json.loads(rpc.encode({"result": {"x": bad}, "error": None, "log": ""}))
        assert decoded["error"]["type"] == "Bosh::Clouds::CpiError" and decoded["result"] is None


def test_quote_and_shorten():
    assert errors.quote("abc") == "'abc'"
    assert errors.quote("a" * 65) == "'" + "a" * 64 + "\u2026 [65 characters]'"
    assert errors.quote("a\x00\ud800\n") == "'a\\x00\\ud800\\x0a'"
    assert errors.quote(None) == "null" and errors.quote(True) == "true" and errors.quote(2.5) == "2.5"
    assert errors.quote({"a": 1}) == "an object" and errors.quote([1]) == "an array"
    assert errors.dotted(["networks", "default", "routes", 0, "netmask"]) == "networks.default.routes.0.netmask"
    assert errors.dotted(["routes", "", "a b"]) == "routes['']['a b']"
