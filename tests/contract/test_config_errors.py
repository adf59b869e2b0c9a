"""A config an operator cannot get wrong silently: through bin/cpi and the real `cloudstack-cpi validate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloudstack_cpi import config
from cloudstack_cpi.errors import CpiError
from tests.conftest import bare_env, run_cpi

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = Path(sys.executable).parent / "cloudstack-cpi"
BASE = {"endpoint": "http://127.0.0.1:9/client/api", "api_key": "k", "secret_access_key": "s3cret-key-value",
        "default_zone": "zone-1"}
HAS_VM = {"method": "has_vm", "arguments": ["0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"], "context": {},
          "api_version": 2}


def error_for(tmp_path, text: str) -> str:
    path = tmp_path / "cpi.json"
    path.write_text(text)
    error = run_cpi(HAS_VM, path, tmp=tmp_path).error
    assert error is not None and error["type"] == "Bosh::Clouds::CpiError"
    return error["message"]


MISTAKES = [
    ({"defualt_zone": "z"}, "cloudstack.defualt_zone: unknown property, did you mean 'default_zone'?"),
    ({"timeout": {"create_vn": 5}}, "cloudstack.timeout.create_vn: unknown property, did you mean 'create_vm'?"),
    ({"stemcell": {"upload_stratgy": "post"}}, ("cloudstack.stemcell.upload_stratgy: unknown property, did you mean "
                                                "'upload_strategy'?")),
    ({"skip_verify_ssl": "yes"}, "cloudstack.skip_verify_ssl: must be true or false"),
    ({"expunge_vm": 1}, "cloudstack.expunge_vm: must be true or false"),
    ({"ca_cert": "/etc/ssl/certs/cloud-ca.pem"}, "cloudstack.ca_cert: Value error, must be PEM text"),
]


@pytest.mark.parametrize("cloudstack, says", [MISTAKES[0], MISTAKES[3]])
def test_mistakes_are_refused_through_bin_cpi(tmp_path, cloudstack, says):
    message = error_for(tmp_path, json.dumps({"cloudstack": {**BASE, **cloudstack}}))
    assert says in message
    assert "s3cret-key-value" not in message


@pytest.mark.parametrize("cloudstack, says", MISTAKES)
def test_mistakes_are_refused_naming_the_property(cloudstack, says):
    with pytest.raises(CpiError) as raised:
        config.parse({"cloudstack": {**BASE, **cloudstack}})
    assert says in raised.value.message and "s3cret-key-value" not in raised.value.message


def test_an_unknown_top_level_key_lists_what_is_valid(tmp_path):
    message = error_for(tmp_path, json.dumps({"cloudstack": BASE, "agnet": {}}))
    assert "agnet: unknown property, did you mean 'agent'?" in message


def test_the_go_cpi_releases_keys_are_accepted_and_ignored(tmp_path):
    """The Go CPI release's config.json keys (prior-cloudstack-cpis.md §3.2): a switch of releases keeps working."""
    raw = {"cloudstack": {**BASE, "private_key": "", "clean_disk": True, "interval_clean_disk": 60,
                          "calculate": {"disk_tags": [], "compute_tags": []}},
           "agent": {"env_service": "", "mbus": "nats://n:p@10.0.0.6:4222"},
           "registry": {"host": "", "port": 6901}, "director": {"name": "bosh"}, "ntp": []}
    parsed = config.parse(raw)
    assert parsed.cloudstack.default_zone == "zone-1"


def test_yaml_is_named_as_such(tmp_path):
    message = error_for(tmp_path, "---\ncloudstack:\n  endpoint: https://cloud.example.com/client/api\n")
    assert "looks like YAML, but the CPI reads JSON" in message


def test_a_json_syntax_error_says_where_and_what_was_expected(tmp_path):
    message = error_for(tmp_path, '{"cloudstack": {"endpoint": "x",}}')
    assert "not valid JSON at line 1 column 33: Expecting property name enclosed in double quotes" in message


def test_validate_refuses_a_typo_and_gives_a_fix_that_fits(tmp_path):
    path = tmp_path / "cpi.json"
    path.write_text(json.dumps({"cloudstack": {**BASE, "timeout": {"create_vn": 5}}}))
    completed = subprocess.run([str(CONSOLE), "validate", str(path)], capture_output=True, text=True,
                               env=bare_env(tmp_path), timeout=60)
    assert completed.returncode == 1 and "the cloud is ready" not in completed.stdout
    assert "cloudstack.timeout.create_vn: unknown property, did you mean 'create_vm'?" in completed.stdout
    path.write_text('{"cloudstack": {"endpoint": "x",}}')
    completed = subprocess.run([str(CONSOLE), "validate", str(path)], capture_output=True, text=True,
                               env=bare_env(tmp_path), timeout=60)
    assert completed.returncode == 1 and "line and column given" in completed.stdout
    assert "names the property" not in completed.stdout  # the JSON error names no property


@pytest.mark.parametrize("example", ["cpi-advanced.json", "cpi-basic.json"])
def test_the_example_configs_load(example):
    parsed = config.load(str(ROOT / "docs" / "examples" / example))
    assert parsed.cloudstack.default_zone and parsed.agent.mbus


def test_the_readme_links_the_examples():
    readme = (ROOT / "README.md").read_text()
    assert "docs/examples/cpi-advanced.json" in readme and "docs/examples/cpi-basic.json" in readme
