"""TLS towards the CloudStack endpoint: verified by default, ca_cert honoured, skip_verify_ssl for tests."""

import pytest

from tests.conftest import Cpi, write_config

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
