"""Which commands the client repeats: only those that are safe to repeat, by a table, not by the name's prefix.

``getUploadParamsForTemplate`` starts like a read but creates a template record on every call: when its answer is
lost, sending it again would leave an orphan template (the first record, whose id the CPI never learnt).  A proxy
in front of the simulator loses exactly that answer.  Calls run in-process through ``rpc.handle``.
"""

from __future__ import annotations

import io

import pytest

from cloudstack_cpi import rpc
from cloudstack_cpi.log import Logger
from cloudstack_simulator import Simulator
from tests.lifecycle.test_stemcells import KVM_PROPS, raw_image

from .harness import error_problems, request, write_config
from .proxy import LossyProxy

PROPS = dict(KVM_PROPS, disk_format="raw")  # raw_image writes a raw disk


@pytest.fixture
def cloud(tmp_path):
    with Simulator(scenario="advanced") as sim, LossyProxy(sim.endpoint) as proxy:
        config = write_config(tmp_path / "cpi.json", proxy.endpoint, sim.api_key, sim.secret_key,
                              stemcell={"upload_strategy": "post"})
        yield sim, proxy, config


def call(config, method: str, *arguments) -> tuple[dict, str]:
    stream = io.StringIO()
    response = rpc.handle(request(method, *arguments), str(config), Logger(stream=stream))
    return response, stream.getvalue()


def test_a_lost_get_upload_params_answer_is_not_followed_by_a_second_request(cloud, tmp_path):
    sim, proxy, config = cloud
    image = str(raw_image(tmp_path))
    before = sorted(sim.inventory()["templates"])
    proxy.lose_answer("getUploadParamsForTemplate")
    response, log = call(config, "create_stemcell", image, PROPS)
    assert sorted(sim.inventory()["templates"]) == before, "the record the lost answer created was left"
    assert proxy.lost == ["getuploadparamsfortemplate"]
    assert proxy.count("getUploadParamsForTemplate") == 1, f"sent again after its answer was lost:\n{log}"
    error = response["error"]
    assert error is not None and error_problems("create_stemcell", error) == []  # retryable, one line
    assert "getUploadParamsForTemplate" in error["message"]

    cid, log = call(config, "create_stemcell", image, PROPS)  # the director's retry
    assert cid["error"] is None, f"{cid['error']}\n{log}"
    assert proxy.count("getUploadParamsForTemplate") == 2
    assert cid["result"] in sim.inventory()["templates"]


def test_reads_are_still_repeated_after_a_lost_answer(cloud, tmp_path):
    _sim, proxy, config = cloud
    proxy.lose_answer("listVirtualMachines")
    response, _ = call(config, "has_vm", "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77")
    assert response["error"] is None and response["result"] is False
    assert proxy.count("listVirtualMachines") == 2 and proxy.lost == ["listvirtualmachines"]


def test_a_lost_register_template_answer_leaves_no_template(tmp_path):
    """registerTemplate (url strategy) creates the record before it answers: found by its unique name and removed."""
    with Simulator(scenario="advanced") as sim, LossyProxy(sim.endpoint) as proxy:
        config = write_config(tmp_path / "cpi.json", proxy.endpoint, sim.api_key, sim.secret_key,
                              stemcell={"upload_strategy": "url"})
        before = sorted(sim.inventory()["templates"])
        proxy.lose_answer("registerTemplate")
        response, log = call(config, "create_stemcell", str(raw_image(tmp_path)), PROPS)
        assert proxy.count("registerTemplate") == 1
        assert response["error"] is not None and error_problems("create_stemcell", response["error"]) == []
        assert sorted(sim.inventory()["templates"]) == before, log
