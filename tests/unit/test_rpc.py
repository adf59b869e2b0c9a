"""The wire layer in-process: request checks, dispatch, versions, error mapping."""

import io
import json

import pytest

from cloudstack_cpi import errors, rpc
from cloudstack_cpi.log import Logger


def call(payload, config_path=None, method_table=None):
    stream = io.StringIO()
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = rpc.handle(raw, config_path, Logger(stream=stream))
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
