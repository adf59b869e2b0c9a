"""cloudstack-cpi validate, call and lifecycle against the simulator, through the real console script."""

import json
import subprocess
import sys
from pathlib import Path

from cloudstack_cpi.operator.demo import DEMO_STEMCELL_PROPERTIES, simulator_config, write_demo_image
from cloudstack_cpi.operator.validate import Validator, render
from tests.conftest import write_config

CLI = Path(sys.executable).with_name("cloudstack-cpi")  # the console script of this venv


def _cli(*args, **kwargs):
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_validate_passes_on_a_good_config(simulator, tmp_path):
    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, simulator.secret_key,
                          default_offer={"disk": "disk-10", "compute": "small"})
    completed = _cli("validate", str(config))
    assert completed.returncode == 0, completed.stdout
    assert "valid: the cloud is ready for BOSH" in completed.stdout
    assert "default_zone: 'zone-1'" in completed.stdout
    assert simulator.secret_key not in completed.stdout + completed.stderr


def test_validate_explains_each_problem(simulator, tmp_path):
    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, simulator.secret_key,
                          default_zone="nowhere", default_key_name="missing-key",
                          default_offer={"disk": "no-such-offering"}, default_security_groups=["default"])
    findings = Validator(str(config)).run()
    failed = {f.check: f for f in findings if not f.ok}
    assert "Zone 'nowhere' not found (available: zone-1, zone-2)" in failed["default_zone"].detail
    assert "default_offer.disk" in failed and "disk-10" in failed["default_offer.disk"].detail
    assert failed["default_key_name"].fix.startswith("Register it")
    text = render(findings)
    assert "fix:" in text and text.endswith("problem(s) found")


def test_validate_reports_rejected_credentials(simulator, tmp_path):
    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, "not-the-secret")
    findings = Validator(str(config)).run()
    assert [f.check for f in findings if not f.ok] == ["credentials"]
    assert "rejected" in findings[-1].detail


def test_validate_reports_an_unreachable_endpoint(tmp_path):
    config = write_config(tmp_path / "cpi.json", "http://127.0.0.1:9/client/api", "k", "secret-value")
    findings = Validator(str(config)).run()
    assert findings[-1].check == "endpoint" and "cannot connect" in findings[-1].detail


def test_validate_reports_a_broken_config_file(tmp_path):
    path = tmp_path / "cpi.json"
    path.write_text(json.dumps({"cloudstack": {"endpoint": "x"}}))
    completed = _cli("validate", str(path))
    assert completed.returncode == 1
    assert "cloudstack.endpoint" in completed.stdout and "cloudstack.api_key" in completed.stdout


def test_call_prints_result_and_errors(simulator, tmp_path):
    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, simulator.secret_key)
    info = _cli("call", "--config", str(config), "info")
    assert info.returncode == 0 and json.loads(info.stdout)["api_version"] >= 2
    bad = _cli("call", "--config", str(config), "no_such_method")
    assert bad.returncode == 1 and "Bosh::Clouds::NotImplemented" in bad.stdout


def test_lifecycle_against_the_embedded_simulator_passes_and_leaves_nothing():
    completed = _cli("lifecycle")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "lifecycle PASSED: 20 calls, 0 failed" in completed.stdout
    assert "simulator still holds" not in completed.stdout


def _zone_id(sim, name):
    with sim.state.lock:
        return next(zone["id"] for zone in sim.state.zones.values() if zone["name"] == name)


def test_lifecycle_in_another_zone_puts_the_stemcell_there(simulator, tmp_path):
    config = simulator_config(simulator, tmp_path)  # default_zone: zone-1
    image = write_demo_image(tmp_path / "image")
    completed = _cli("lifecycle", "--config", str(config), "--zone", "zone-2", "--compute-offering", "small",
                     "--network", "bosh-isolated", "--disk-offering", "shared.custom", "--stemcell", str(image),
                     "--stemcell-properties", json.dumps(DEMO_STEMCELL_PROPERTIES))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "lifecycle PASSED: 20 calls, 0 failed" in completed.stdout
    zone_2 = _zone_id(simulator, "zone-2")
    zones = {command: params.get("zoneid") for command, params in simulator.request_log
             if command in ("getuploadparamsfortemplate", "deployvirtualmachine")}
    assert zones == {"getuploadparamsfortemplate": zone_2, "deployvirtualmachine": zone_2}
    assert not any(simulator.inventory()[kind] for kind in ("virtualmachines", "volumes", "templates"))


def test_lifecycle_refuses_stemcell_properties_that_are_not_json(tmp_path):
    config, image = tmp_path / "cpi.json", tmp_path / "image"
    config.write_text("{}")
    image.write_bytes(b"")
    base = ["lifecycle", "--config", str(config), "--compute-offering", "small", "--stemcell", str(image)]
    bad = _cli(*base, "--stemcell-properties", "{bad")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Invalid value for '--stemcell-properties': not valid JSON (Expecting property name" in bad.stderr
    assert "Traceback" not in bad.stderr
    not_an_object = _cli(*base, "--stemcell-properties", "[1]")
    assert not_an_object.returncode == 2 and "expected a JSON object, got list" in not_an_object.stderr


def test_validate_fails_the_upload_check_on_a_cloud_without_get_upload_params(simulator, tmp_path, monkeypatch):
    """Regression: ``validate`` took any listApis error for "unknown, assume yes".  A real server answers
    ``listApis name=X`` for an API it does not offer (or the caller's role may not call) with 530 "Api Discovery
    plugin was unable to find an api by that name or process any apis" (ListApisCmd.execute, when
    ApiDiscoveryServiceImpl.listApis returns null), never with an empty list, so the check always passed."""
    from cloudstack_simulator.commands import catalog

    full_spec = catalog.load_spec
    monkeypatch.setattr(catalog, "load_spec",
                        lambda: {k: v for k, v in full_spec().items() if k != "getuploadparamsfortemplate"})
    config = write_config(tmp_path / "cpi.json", simulator.endpoint, simulator.api_key, simulator.secret_key,
                          default_offer={"disk": "disk-10", "compute": "small"})
    findings = Validator(str(config)).run()
    failed = {f.check: f for f in findings if not f.ok}
    assert "does not offer getUploadParamsForTemplate" in failed["stemcell upload"].detail
    assert list(failed) == ["stemcell upload"]
