"""bin/cpi as the director runs it: bare environment, piped JSON, one document on stdout, exit 0."""

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import BIN_CPI, bare_env, run_cpi

INFO = {"method": "info", "arguments": [], "context": {"director_uuid": "d", "request_id": "cpi-123456"}}


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "cpi.json"
    path.write_text(json.dumps({"cloudstack": {"endpoint": "http://127.0.0.1:9/client/api", "api_key": "k",
                                               "secret_access_key": "s3cret-key-value"}}))
    return path


def test_info_from_the_directors_bare_environment(config_path, tmp_path):
    result = run_cpi(INFO, config_path, tmp=tmp_path)
    assert set(result.response) == {"result", "error", "log"}
    assert result.response["error"] is None and result.response["log"] == ""
    assert result.result["api_version"] == 3
    assert "cloudstack-vhdx" in result.result["stemcell_formats"]


def test_info_without_api_version_and_with_v1(config_path, tmp_path):
    for version in (None, 1):
        payload = dict(INFO, **({} if version is None else {"api_version": version}))
        assert run_cpi(payload, config_path, tmp=tmp_path).result["api_version"] == 3


def test_works_when_run_through_a_relative_path(config_path, tmp_path):
    completed = subprocess.run(["bin/cpi", str(config_path)], input=json.dumps(INFO).encode(),
                               capture_output=True, cwd=BIN_CPI.parent.parent, env=bare_env(tmp_path))
    assert json.loads(completed.stdout)["result"]["api_version"] == 3


@pytest.mark.parametrize("payload, error_type, fragment", [
    (b"", "Bosh::Clouds::CpiError", "Empty request"),
    (b"{\"method\": ", "Bosh::Clouds::CpiError", "not valid JSON"),
    (b"42", "Bosh::Clouds::CpiError", "must be a JSON object"),
    (b'{"method": "info"}', "Bosh::Clouds::CpiError", "no 'arguments'"),
    (b'{"method": "delete_vm", "arguments": [null]}', "Bosh::Clouds::CpiError", "vm_cid"),
    (b'{"method": "create_vm", "arguments": ["a"]}', "Bosh::Clouds::CpiError", "create_vm takes 4 to 6"),
    (b'{"method": "launch_rocket", "arguments": []}', "Bosh::Clouds::NotImplemented", "launch_rocket"),
])
def test_bad_input_gets_one_json_error(config_path, tmp_path, payload, error_type, fragment):
    result = run_cpi(payload, config_path, tmp=tmp_path)
    assert result.error["type"] == error_type
    assert fragment in result.error["message"]
    assert result.error["ok_to_retry"] is False
    assert b"Traceback" not in result.stdout


def test_missing_config_file_is_a_cpi_error(tmp_path):
    payload = {"method": "has_disk", "arguments": ["d"], "context": {}}
    result = run_cpi(payload, tmp_path / "missing.json", tmp=tmp_path)
    assert result.error["type"] in ("Bosh::Clouds::CpiError", "Bosh::Clouds::NotImplemented")


def test_invalid_config_names_the_field_and_hides_secrets(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"cloudstack": {"endpoint": "nope", "api_key": "k",
                                               "secret_access_key": "hide-me-please"}}))
    from cloudstack_cpi import config
    with pytest.raises(Exception) as caught:
        config.load(str(path))
    assert "cloudstack.endpoint" in str(caught.value) and "hide-me-please" not in str(caught.value)


def test_no_config_argument_still_answers(tmp_path):
    completed = subprocess.run([str(BIN_CPI)], input=json.dumps(INFO).encode(), capture_output=True,
                               env=bare_env(tmp_path))
    assert completed.returncode == 0
    assert json.loads(completed.stdout)["result"]["api_version"] == 3


def test_stderr_lines_carry_the_request_id(config_path, tmp_path):
    result = run_cpi(b'{"method": "has_vm", "arguments": [7], "context": {"request_id": "cpi-555555"}}',
                     config_path, tmp=tmp_path)
    assert "[cpi-555555]" in result.stderr
    assert result.response["log"] == ""  # lines go to stderr once, not twice


def test_cloudstack_cpi_cpi_command_is_the_same_entry(config_path, tmp_path):
    import sys
    completed = subprocess.run([sys.executable, "-m", "cloudstack_cpi.cli", "cpi", str(config_path)],
                               input=json.dumps(INFO).encode(), capture_output=True)
    assert json.loads(completed.stdout)["result"]["api_version"] == 3


@pytest.mark.parametrize("relative", [False, True])
def test_works_when_invoked_through_a_symlink(config_path, tmp_path, relative):
    """A release's bin/cpi or a PATH entry may be a symlink: the checkout is found from the real file."""
    links = tmp_path / "links"
    links.mkdir()
    link = links / "cpi"
    link.symlink_to(os.path.relpath(BIN_CPI, links) if relative else BIN_CPI)
    completed = subprocess.run([str(link), str(config_path)], input=json.dumps(INFO).encode(),
                               capture_output=True, cwd=tmp_path, env=bare_env(tmp_path))
    assert json.loads(completed.stdout)["result"]["api_version"] == 3, completed.stderr


def _checkout_without_venv(tmp_path):
    root = tmp_path / "checkout"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BIN_CPI, root / "bin" / "cpi")
    shutil.copytree(BIN_CPI.parent.parent / "src", root / "src")
    return root


@pytest.mark.parametrize("python3, says", [
    (None, "no .venv and no python3 on PATH"),
    ("#!/bin/sh\nexit 1\n", "the python3 on PATH is older than 3.11"),
    ("#!/bin/sh\ncase \"$2\" in *pydantic*) exit 1;; esac\nexit 0\n", "lacks pydantic and requests"),
])
def test_without_a_venv_it_answers_what_to_run_instead_of_a_traceback(config_path, tmp_path, python3, says):
    root = _checkout_without_venv(tmp_path)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("readlink", "sh"):
        (tools / tool).symlink_to(shutil.which(tool))
    if python3:
        (tools / "python3").write_text(python3)
        (tools / "python3").chmod(0o755)
    env = dict(bare_env(tmp_path), PATH=str(tools))
    completed = subprocess.run([str(root / "bin" / "cpi"), str(config_path)], input=json.dumps(INFO).encode(),
                               capture_output=True, env=env)
    assert completed.returncode == 0
    response = json.loads(completed.stdout)
    assert response["error"]["type"] == "Bosh::Clouds::CpiError" and says in response["error"]["message"]
    assert "make install" in response["error"]["message"]
    assert f"Run 'make install' in {root}" in completed.stderr.decode()
    assert b"Traceback" not in completed.stderr


def test_ok_to_retry_is_only_sent_where_the_director_reads_it(tmp_path):
    """bosh-director's external_cpi.rb handle_error builds NoDiskSpace, DiskNotAttached, DiskNotFound and
    VMCreationFailed with the response's ok_to_retry, every other type from the message alone. A transient
    CloudError (nothing listens at the endpoint) answers ok_to_retry false and says in the log that a re-run may
    pass."""
    config = tmp_path / "cpi.json"
    config.write_text(json.dumps({"cloudstack": {"endpoint": "http://127.0.0.1:9/client/api", "api_key": "k",
                                                 "secret_access_key": "s3cret-key-value",
                                                 "timeout": {"http_connect": 1, "http_read": 1}}}))
    result = run_cpi({"method": "has_vm", "arguments": ["0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"], "context": {},
                      "api_version": 2}, config, tmp=tmp_path)
    assert result.error["type"] == "Bosh::Clouds::CloudError" and result.error["ok_to_retry"] is False
    assert "looks transient" in result.stderr and "re-running the task may succeed" in result.stderr


@pytest.mark.parametrize("method, arguments, may_import", [
    ("info", [], set()),
    ("has_vm", ["0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"], {"http.client"}),
    ("create_disk", [1024, {"disk_offering": "shared.custom"}, None], {"http.client"}),  # its chain is 1.5 s
])
def test_cheap_calls_import_only_what_they_need(simulator, tmp_path, method, arguments, may_import):
    """Issue 17: has_vm may cost at most 1.3x `import requests, pydantic` (bench/overhead.py measures it), and a
    short call's wall time is its jobs + 10% + 100 ms.  It gets there on the standard library and certifi: the
    config is read without pydantic (schema.py), HTTP is http.client (cloudstack/transport.py: requests and urllib3
    took ~0.2 s to import) and create_vm's machinery loads lazily.  info imports no HTTP at all.  Runs bin/cpi's
    own command line with -X importtime."""
    import re
    import sys

    from tests.conftest import request, write_config

    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, simulator.secret_key)
    code = re.search(r"-I -c '([^']+)'", BIN_CPI.read_text()).group(1)
    completed = subprocess.run([sys.executable, "-I", "-X", "importtime", "-c", code, str(config)],
                               input=json.dumps(request(method, *arguments)).encode(),
                               capture_output=True, env=bare_env(tmp_path))
    response = json.loads(completed.stdout)
    assert response["error"] is None and response["result"] is not None
    imported = {line.rsplit("|", 1)[1].strip() for line in completed.stderr.decode().splitlines()
                if line.startswith("import time:")}
    heavy = {"requests", "urllib3", "pydantic", "cloudstack_cpi.models", "cloudstack_cpi.networks", "http.client"}
    assert imported & heavy == may_import
