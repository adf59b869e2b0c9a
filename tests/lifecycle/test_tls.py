"""TLS towards the CloudStack endpoint: verified by default, ca_cert honoured, skip_verify_ssl for tests.

The configuration decides trust whatever the environment holds (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
SSL_CERT_FILE), for API calls and the stemcell upload; the CA file written for a call is gone when it ends;
``cloudstack-cpi validate`` answers a refused certificate with the CA hint.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN_CPI, Cpi, CpiResult, bare_env, request, run_cpi, write_config

trustme = pytest.importorskip("trustme")

UNKNOWN_VM = "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77"


@pytest.fixture(scope="module")
def authority():
    return trustme.CA()


@pytest.fixture
def https_simulator(authority, tmp_path):
    from cloudstack_simulator import Simulator

    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    for extra in server_cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert), append=True)
    server_cert.private_key_pem.write_to_path(str(key))
    sim = Simulator(scenario="advanced", tls_cert=str(cert), tls_key=str(key)).start()
    yield sim
    sim.stop()


def _cpi(sim, tmp_path, **cloudstack) -> Cpi:
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key, **cloudstack)
    return Cpi(config, tmp_path)


def test_endpoint_is_https(https_simulator):
    assert https_simulator.endpoint.startswith("https://127.0.0.1:")


def test_ca_cert_from_config_verifies_the_endpoint(https_simulator, authority, tmp_path):
    cpi = _cpi(https_simulator, tmp_path, ca_cert=authority.cert_pem.bytes().decode())
    assert cpi.ok("has_vm", UNKNOWN_VM) is False


def test_verification_is_on_by_default(https_simulator, tmp_path):
    result = _cpi(https_simulator, tmp_path).call("has_vm", UNKNOWN_VM)
    assert result.error["type"] == "Bosh::Clouds::CloudError"
    assert "TLS error" in result.error["message"] and "certificate verify failed" in result.error["message"]


def test_a_certificate_from_another_authority_is_refused(https_simulator, tmp_path):
    other = trustme.CA()
    result = _cpi(https_simulator, tmp_path, ca_cert=other.cert_pem.bytes().decode()).call("has_vm", UNKNOWN_VM)
    assert result.error is not None and "certificate verify failed" in result.error["message"]


def test_skip_verify_ssl_accepts_any_certificate_and_says_so(https_simulator, tmp_path):
    result = _cpi(https_simulator, tmp_path, skip_verify_ssl=True).call("has_vm", UNKNOWN_VM)
    assert result.ok() is False
    assert "verification is off" in result.stderr


# -- the configuration decides trust, whatever the environment says ---------------------------------------------
#
# requests replaces a verify of True/None with REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE on every request, and bosh
# create-env runs the CPI with the operator's environment.  Each test below sets such a variable to a bundle that
# would give the opposite answer from the configuration's.

CA_ENV_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
CONSOLE_SCRIPT = Path(sys.executable).parent / "cloudstack-cpi"  # the installed `cloudstack-cpi` command


def _env(tmp_path, **extra) -> dict[str, str]:
    return {**bare_env(tmp_path), **extra}


def _has_vm(config, tmp_path, env) -> CpiResult:
    return run_cpi(request("has_vm", UNKNOWN_VM), config, env=env, tmp=tmp_path)


def _bundle_of(ca, path) -> str:
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("variable", CA_ENV_VARS)
def test_ca_cert_from_config_wins_over_the_environments_bundle(https_simulator, authority, tmp_path, variable):
    config = write_config(tmp_path / "cpi.json", https_simulator.endpoint, https_simulator.api_key,
                          https_simulator.secret_key, ca_cert=authority.cert_pem.bytes().decode())
    unrelated = _bundle_of(trustme.CA(), tmp_path / "unrelated-ca.pem")
    result = _has_vm(config, tmp_path, _env(tmp_path, **{variable: unrelated}))
    assert result.ok() is False


def test_ca_cert_from_config_wins_over_the_system_bundle_in_the_environment(https_simulator, authority, tmp_path):
    system = "/etc/ssl/certs/ca-certificates.crt"
    if not os.path.exists(system):
        pytest.skip(f"{system} does not exist here")
    config = write_config(tmp_path / "cpi.json", https_simulator.endpoint, https_simulator.api_key,
                          https_simulator.secret_key, ca_cert=authority.cert_pem.bytes().decode())
    assert _has_vm(config, tmp_path, _env(tmp_path, REQUESTS_CA_BUNDLE=system)).ok() is False


@pytest.mark.parametrize("variable", CA_ENV_VARS)
def test_skip_verify_ssl_wins_over_the_environments_bundle(https_simulator, tmp_path, variable):
    config = write_config(tmp_path / "cpi.json", https_simulator.endpoint, https_simulator.api_key,
                          https_simulator.secret_key, skip_verify_ssl=True)
    unrelated = _bundle_of(trustme.CA(), tmp_path / "unrelated-ca.pem")
    assert _has_vm(config, tmp_path, _env(tmp_path, **{variable: unrelated})).ok() is False


@pytest.mark.parametrize("variable", (*CA_ENV_VARS, "SSL_CERT_FILE"))
def test_without_ca_cert_the_default_bundle_is_used_not_the_environments(https_simulator, authority, tmp_path,
                                                                         variable):
    # The environment's bundle would trust the endpoint; the configuration (no ca_cert) says: the default bundle.
    config = write_config(tmp_path / "cpi.json", https_simulator.endpoint, https_simulator.api_key,
                          https_simulator.secret_key)
    trusting = _bundle_of(authority, tmp_path / "endpoint-ca.pem")
    result = _has_vm(config, tmp_path, _env(tmp_path, **{variable: trusting}))
    assert result.error is not None and "certificate verify failed" in result.error["message"]


def test_stemcell_upload_uses_the_configured_ca_whatever_the_environment(https_simulator, authority, tmp_path):
    from tests.lifecycle.test_stemcells import KVM_PROPS, raw_image

    config = write_config(tmp_path / "cpi.json", https_simulator.endpoint, https_simulator.api_key,
                          https_simulator.secret_key, ca_cert=authority.cert_pem.bytes().decode(),
                          stemcell={"upload_strategy": "post"})
    env = _env(tmp_path, REQUESTS_CA_BUNDLE=_bundle_of(trustme.CA(), tmp_path / "unrelated-ca.pem"))
    props = dict(KVM_PROPS, disk_format="raw")  # raw_image writes a raw disk
    payload = request("create_stemcell", str(raw_image(tmp_path)), props,
                      context={"vm": {"stemcell": {"api_version": 3}}})
    cid = run_cpi(payload, config, env=env, tmp=tmp_path).ok()
    assert https_simulator.template_bytes(cid).stat().st_size > 0  # the multipart POST to postURL went through


# -- the CA file the CPI writes for requests: one per certificate, shared by all calls -------------------------


def _ca_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if "ca-" in name and name.endswith(".pem"))


def test_calls_share_one_ca_file_per_certificate_and_a_killed_call_leaves_none(https_simulator, authority, tmp_path):
    """Issue 16 item 3: each call wrote its own CA file and removed it when done, so every call killed with SIGKILL
    (no handler runs) left one in TMPDIR.  Now the file is named by the certificate's content and reused."""
    import signal
    import time

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    good = write_config(tmp_path / "good.json", https_simulator.endpoint, https_simulator.api_key,
                        https_simulator.secret_key, ca_cert=authority.cert_pem.bytes().decode())
    wrong = write_config(tmp_path / "wrong.json", https_simulator.endpoint, https_simulator.api_key,
                         https_simulator.secret_key, ca_cert=trustme.CA().cert_pem.bytes().decode())
    env = {**bare_env(tmp_path), "TMPDIR": str(tmpdir)}
    assert run_cpi(request("has_vm", UNKNOWN_VM), good, env=env, tmp=tmp_path).ok() is False
    [shared] = _ca_files(tmpdir)
    assert (tmpdir / shared).read_text() == authority.cert_pem.bytes().decode()
    run_cpi(request("reboot_vm", UNKNOWN_VM), good, env=env, tmp=tmp_path)  # an error of the action (VMNotFound)
    assert _ca_files(tmpdir) == [shared]
    refused = run_cpi(request("has_vm", UNKNOWN_VM), wrong, env=env, tmp=tmp_path)  # a TLS error
    assert refused.error is not None and len(_ca_files(tmpdir)) == 2

    https_simulator.set_job_seconds(30)  # a call that waits for a job, killed while it waits
    process = subprocess.Popen([str(BIN_CPI), str(good)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    process.stdin.write(json.dumps(request("create_disk", 1024, {}, None)).encode())
    process.stdin.close()
    deadline = time.monotonic() + 60
    while not any(name == "createvolume" for name, _ in https_simulator.request_log):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    https_simulator.set_job_seconds(0)
    assert len(_ca_files(tmpdir)) == 2


# -- cloudstack-cpi validate: a refused certificate gets the CA hint --------------------------------------------


def test_validate_gives_the_ca_hint_for_a_refused_certificate(https_simulator, tmp_path):
    config = write_config(tmp_path / "cpi.json", https_simulator.endpoint, https_simulator.api_key,
                          https_simulator.secret_key)
    completed = subprocess.run([str(CONSOLE_SCRIPT), "validate", str(config)], check=False, capture_output=True,
                               text=True, env=bare_env(tmp_path), timeout=120)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "FAIL  endpoint: " in completed.stdout and "certificate verify failed" in completed.stdout
    assert "fix: Give the CA in cloudstack.ca_cert" in completed.stdout
    assert "Check cloudstack.endpoint" not in completed.stdout
    assert f"Connecting to {https_simulator.endpoint}" in completed.stderr


def test_validate_passes_with_the_configured_ca_under_the_environments_bundle(https_simulator, authority, tmp_path):
    config = write_config(tmp_path / "cpi.json", https_simulator.endpoint, https_simulator.api_key,
                          https_simulator.secret_key, ca_cert=authority.cert_pem.bytes().decode())
    env = _env(tmp_path, REQUESTS_CA_BUNDLE=_bundle_of(trustme.CA(), tmp_path / "unrelated-ca.pem"))
    completed = subprocess.run([str(CONSOLE_SCRIPT), "validate", str(config)], check=False, capture_output=True,
                               text=True, env=env, timeout=120)
    assert "ok    credentials: accepted" in completed.stdout, completed.stdout + completed.stderr
