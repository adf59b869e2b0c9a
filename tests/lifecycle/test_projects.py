"""cloudstack.project through bin/cpi (issue 16 item 7): everything the CPI makes belongs to the project, and
everything it looks for is looked for inside it.

The simulator models the real server's project scoping (see tests/simulator/test_projects.py for the sources):
resources of a project are listed only with its projectid, and a project resource answers ``projectid`` instead
of ``account``.  A CPI that forgot projectid on one list would not find what it made; one that forgot it on a
create would make it under the account.
"""

from __future__ import annotations

import pytest

from cloudstack_cpi.operator.validate import Validator
from cloudstack_simulator import Simulator
from tests.conftest import Cpi, write_config
from tests.simulator.helpers import Api
from tests.simulator.test_projects import project_scenario

NETWORKS = {"default": {"type": "dynamic", "default": ["dns", "gateway"],
                        "cloud_properties": {"name": "project-isolated"}}}


@pytest.fixture
def sim():
    with Simulator(scenario=project_scenario()) as simulator:
        yield simulator


def project_cpi(sim, tmp_path, project) -> Cpi:
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key, project=project,
                          default_key_name="project-key")
    return Cpi(config, tmp_path)


def owners(sim) -> set:
    """(kind, owner) of everything the inventory holds that someone owns."""
    state = sim.state
    with state.lock:
        return {(kind, item.get("project") or "account:" + str(item.get("account")))
                for kind, table in (("virtualmachines", state.vms), ("volumes", state.volumes),
                                    ("snapshots", state.snapshots))
                for item in table.values()}


def test_a_deploy_lives_in_the_project(sim, tmp_path):
    api = Api(sim)
    cpi = project_cpi(sim, tmp_path, "bosh-project")
    stemcell = api.template("bosh-stemcell-existing")["id"]

    vm_id, _ = cpi.ok("create_vm", "agent-p", stemcell, {"compute_offering": "small", "ephemeral_disk_size": 2048},
                      NETWORKS, [], {})
    disk_id = cpi.ok("create_disk", 1024, {}, vm_id)
    cpi.ok("attach_disk", vm_id, disk_id)
    cpi.ok("set_vm_metadata", vm_id, {"deployment": "d", "job": "j", "index": "0"})
    snapshot_id = cpi.ok("snapshot_disk", disk_id, {"deployment": "d"})
    assert cpi.ok("has_vm", vm_id) is True and cpi.ok("has_disk", disk_id) is True
    assert cpi.ok("get_disks", vm_id) == [disk_id]
    assert owners(sim) == {("virtualmachines", "bosh-project"), ("volumes", "bosh-project"),
                           ("snapshots", "bosh-project")}
    # outside the project, none of it is listed: the CPI found it only because it asked inside
    assert api.list("listVirtualMachines", "virtualmachine") == []

    cpi.ok("delete_snapshot", snapshot_id)
    cpi.ok("detach_disk", vm_id, disk_id)
    cpi.ok("delete_disk", disk_id)
    cpi.ok("delete_vm", vm_id)
    assert cpi.ok("has_vm", vm_id) is False
    inventory = sim.inventory()
    assert inventory["virtualmachines"] == [] and inventory["snapshots"] == [] and inventory["volumes"] == []


def test_a_project_named_by_id_costs_no_lookup(sim, tmp_path):
    api = Api(sim)
    project = api.list("listProjects", "project", name="bosh-project")[0]
    vm = api.deploy(network="bosh-shared", projectid=project["id"])
    sim.clear_request_log()
    assert project_cpi(sim, tmp_path, project["id"]).ok("has_vm", vm["id"]) is True
    assert [(command, params.get("projectid")) for command, params in sim.request_log] == [
        ("listvirtualmachines", project["id"])]


def test_a_project_the_account_is_not_in_is_named_in_the_error(sim, tmp_path):
    cpi = project_cpi(sim, tmp_path, "no-such-project")
    error = cpi.call("has_vm", "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77").error
    assert error["type"] == "Bosh::Clouds::CloudError"
    assert "Finding project 'no-such-project' (cloudstack.project): no project of that name" in error["message"]


def test_validate_checks_the_project_and_looks_inside_it(sim, tmp_path):
    config = write_config(tmp_path / "cpi.json", sim.endpoint, sim.api_key, sim.secret_key, project="bosh-project",
                          default_key_name="project-key")
    findings = {f.check: f for f in Validator(str(config)).run()}
    assert findings["project"].ok and "bosh-project" in findings["project"].detail
    assert findings["default_key_name"].ok  # the project's key pair, found inside the project

    outside = write_config(tmp_path / "other.json", sim.endpoint, sim.api_key, sim.secret_key,
                           project="other-team", default_key_name="project-key")
    failed = {f.check: f for f in Validator(str(outside)).run() if not f.ok}
    assert list(failed) == ["project"] and "other-team" in failed["project"].detail
