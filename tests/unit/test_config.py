import json

import pytest

from cloudstack_cpi import config
from cloudstack_cpi.errors import CpiError

MINIMAL = {"cloudstack": {"endpoint": "https://cs.example/client/api/", "api_key": "key",
                          "secret_access_key": "super-secret-value"}}


def test_minimal_config_gets_defaults():
    cfg = config.parse(MINIMAL)
    assert cfg.cloudstack.endpoint == "https://cs.example/client/api"
    assert cfg.cloudstack.skip_verify_ssl is False
    assert cfg.cloudstack.expunge_vm is True
    assert cfg.cloudstack.timeout.create_vm == 900
    assert cfg.cloudstack.timeout.global_ == 600
    assert cfg.cloudstack.default_offer.custom_disk == "shared.custom"
    assert cfg.agent.mbus is None


def test_go_cpi_property_names_are_accepted():
    raw = {"cloudstack": {**MINIMAL["cloudstack"], "default_zone": "Zone1", "default_key_name": "bosh",
                          "timeout": {"global": 30, "create_vm": 60}, "default_offer": {"disk": "d1"},
                          "stemcell": {"os_type": "Other PV (64-bit)", "requires_hvm": False},
                          "enable_auto_anti_affinity": True, "private_key": "x"},
           "agent": {"mbus": "nats://a:b@c:4222", "ntp": ["n"], "blobstore": {"provider": "dav", "options": {}}}}
    cfg = config.parse(raw)
    assert cfg.cloudstack.timeout.global_ == 30 and cfg.cloudstack.timeout.create_vm == 60
    assert cfg.cloudstack.stemcell.os_type == "Other PV (64-bit)"
    assert cfg.agent_ntp == ["n"]


def test_context_overrides_cloudstack_properties():
    context = {"director_uuid": "d", "request_id": "cpi-1", "vm": {"stemcell": {"api_version": 3}},
               "endpoint": "http://other/client/api", "default_zone": "z2"}
    cfg = config.parse(MINIMAL, context)
    assert cfg.cloudstack.endpoint == "http://other/client/api"
    assert cfg.cloudstack.default_zone == "z2"


def test_errors_name_the_path_and_never_the_value():
    raw = {"cloudstack": {"endpoint": "ftp://x", "api_key": "key", "secret_access_key": 12345678,
                          "timeout": {"create_vm": -1}}}
    with pytest.raises(CpiError) as caught:
        config.parse(raw)
    message = caught.value.message
    assert "cloudstack.endpoint" in message
    assert "cloudstack.secret_access_key" in message
    assert "cloudstack.timeout.create_vm" in message
    assert "12345678" not in message and "ftp://x" not in message


def test_missing_required_fields():
    with pytest.raises(CpiError, match="cloudstack.api_key: Field required"):
        config.parse({"cloudstack": {"endpoint": "http://x", "secret_access_key": "s"}})
    with pytest.raises(CpiError, match="cloudstack: Field required"):
        config.parse({})
    with pytest.raises(CpiError, match="expected a JSON object"):
        config.parse([1])


def test_load_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(CpiError, match="file not found"):
        config.load(str(tmp_path / "nope.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"cloudstack": {"secret_access_key": "do-not-echo"')
    with pytest.raises(CpiError) as caught:
        config.load(str(broken))
    assert "not valid JSON" in caught.value.message and "do-not-echo" not in caught.value.message
    good = tmp_path / "good.json"
    good.write_text(json.dumps(MINIMAL))
    assert config.load(str(good)).cloudstack.api_key == "key"
