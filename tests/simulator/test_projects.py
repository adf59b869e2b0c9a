"""Projects (issue 15 item 8): a project's resources are listed only when the request names the project.

Sources, apache/cloudstack (4.11 to main, the same logic throughout):
* server/src/main/java/com/cloud/user/AccountManagerImpl.java ``buildACLSearchParameters``: with ``projectId``
  -1 a normal caller's permitted accounts are its projects' accounts (admins: ListProjectResourcesOnly); with a
  project id, the project's account, after ``canAccessProjectAccount`` ("Account ... can't access project id=...",
  a PermissionDeniedException since 4.15, InvalidParameterValueException before); without one,
  SkipProjectResources unless an ``id`` is given, and a NORMAL caller is narrowed to its own account either way.
* server/src/main/java/com/cloud/api/ApiResponseHelper.java ``populateOwner``: an object whose owner is a
  project's account answers ``projectid`` and ``project``, not ``account``.
* TaggedResourceManagerImpl.createTags: a tag belongs to its resource's owner; a snapshot to its volume's
  (SnapshotManagerImpl.allocSnapshot: ``volume.getAccountId()``).
"""
from __future__ import annotations

import pytest

from cloudstack_simulator import Simulator
from cloudstack_simulator.state import load_scenario

from .helpers import Api, ApiError

KEY = ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7cDdb0aJ2kqJk5C8o8C3mVnU1h1a3Ejv5Vv6b0zOeZ3sC9sL4cJ2m3kq1n7Yb2S"
       "4Wk3d7tQ0b2w8m1f0q6N3b project")


def project_scenario(role: str = "user") -> dict:
    sc = load_scenario("advanced")
    sc["account"] = {**sc["account"], "role": role}
    sc["projects"] = [{"name": "bosh-project", "displaytext": "BOSH"}, {"name": "other-team", "member": False}]
    zone = next(z for z in sc["zones"] if z["name"] == "zone-1")
    zone["networks"] = zone["networks"] + [{"name": "project-isolated", "type": "Isolated", "cidr": "10.9.0.0/24",
                                            "project": "bosh-project"}]
    sc["ssh_key_pairs"] = [*sc.get("ssh_key_pairs", []),
                           {"name": "project-key", "public_key": KEY, "project": "bosh-project"}]
    return sc


@pytest.fixture(scope="module")
def sim():
    with Simulator(scenario=project_scenario(), seed=1) as s:
        yield s


@pytest.fixture(scope="module")
def api(sim):
    return Api(sim)


@pytest.fixture(scope="module")
def project(api):
    return api.list("listProjects", "project", name="bosh-project")[0]


@pytest.fixture(scope="module")
def project_vm(api, project):
    zone = api.zone("zone-1")
    network = next(n for n in api.list("listNetworks", "network", zoneid=zone["id"], projectid=project["id"])
                   if n["name"] == "project-isolated")
    return api.acall("deployVirtualMachine", zoneid=zone["id"], serviceofferingid=api.offering("small")["id"],
                     templateid=api.template("bosh-stemcell-existing")["id"], networkids=network["id"],
                     keypair="project-key", projectid=project["id"])["virtualmachine"]


def test_a_user_lists_only_the_projects_it_belongs_to(api):
    assert [p["name"] for p in api.list("listProjects", "project")] == ["bosh-project"]


def test_a_project_resource_answers_the_project_not_an_account(project_vm, project):
    assert project_vm["projectid"] == project["id"] and project_vm["project"] == "bosh-project"
    assert "account" not in project_vm


def test_lists_show_a_projects_resources_only_when_asked(api, project_vm, project):
    own = api.deploy()  # the account's own VM, in the account's own network
    ids = lambda **scope: {v["id"] for v in api.list("listVirtualMachines", "virtualmachine", **scope)}  # noqa: E731
    assert ids() == {own["id"]}
    assert ids(projectid=project["id"]) == {project_vm["id"]}
    assert ids(projectid=-1) == {project_vm["id"]}
    # a normal user is narrowed to its own account even when it names the id
    assert ids(id=project_vm["id"]) == set()
    assert ids(id=project_vm["id"], projectid=project["id"]) == {project_vm["id"]}
    volumes = api.list("listVolumes", "volume", virtualmachineid=project_vm["id"], projectid=project["id"])
    assert volumes and all(v["projectid"] == project["id"] for v in volumes)
    assert api.list("listVolumes", "volume", virtualmachineid=project_vm["id"]) == []


def test_shared_and_public_things_are_seen_in_every_scope(api, project):
    zone = api.zone("zone-1")
    in_project = {n["name"] for n in api.list("listNetworks", "network", zoneid=zone["id"], projectid=project["id"])}
    # the account's isolated networks stay out; the shared network (ACL type Domain) and the project's are in
    assert in_project == {"bosh-shared", "project-isolated"}
    outside = {n["name"] for n in api.list("listNetworks", "network", zoneid=zone["id"])}
    assert "project-isolated" not in outside and "bosh-isolated" in outside
    public = api.list("listTemplates", "template", templatefilter="executable", projectid=project["id"])
    assert "bosh-stemcell-existing" in {t["name"] for t in public}


def test_tags_and_snapshots_belong_to_their_resources_owner(api, project_vm, project):
    api.acall("createTags", resourcetype="UserVm", resourceids=project_vm["id"],
              **{"tags[0].key": "director", "tags[0].value": "d1"})
    tagged = api.list("listVirtualMachines", "virtualmachine", projectid=project["id"],
                      **{"tags[0].key": "director", "tags[0].value": "d1"})
    assert [v["id"] for v in tagged] == [project_vm["id"]]
    tags = api.list("listTags", "tag", resourceid=project_vm["id"], projectid=project["id"])
    assert [(t["key"], t["projectid"]) for t in tags] == [("director", project["id"])]
    assert api.list("listTags", "tag", resourceid=project_vm["id"]) == []
    root = api.list("listVolumes", "volume", virtualmachineid=project_vm["id"], projectid=project["id"])[0]
    snapshot = api.acall("createSnapshot", volumeid=root["id"])["snapshot"]
    assert snapshot["projectid"] == project["id"]
    assert [s["id"] for s in api.list("listSnapshots", "snapshot", projectid=project["id"])] == [snapshot["id"]]
    assert api.list("listSnapshots", "snapshot") == []


def test_a_key_pair_is_found_under_the_vms_owner(api, project):
    """UserVmManagerImpl.createVirtualMachine looks the key pair up by the owner's account: the account's own
    key pair is not found for a project VM."""
    zone = api.zone("zone-1")
    network = next(n for n in api.list("listNetworks", "network", zoneid=zone["id"], projectid=project["id"])
                   if n["name"] == "project-isolated")
    with pytest.raises(ApiError) as err:
        api.call("deployVirtualMachine", zoneid=zone["id"], serviceofferingid=api.offering("small")["id"],
                 templateid=api.template("bosh-stemcell-existing")["id"], networkids=network["id"],
                 keypair="no-such-key", projectid=project["id"])
    assert err.value.status == 431


def test_a_project_the_caller_is_not_in_is_refused(sim, api):
    other = sim.state.fixed_id("project", "other-team")
    with pytest.raises(ApiError) as err:
        api.call("listVirtualMachines", projectid=other)
    assert err.value.status == 531 and "can't access project id=" + other in err.value.errortext


def test_an_admin_naming_an_id_sees_a_project_resource():
    """buildACLSearchParameters: an id without projectid leaves the criteria unset for a non-NORMAL caller."""
    with Simulator(scenario=project_scenario(role="root-admin"), seed=1) as sim:
        api = Api(sim)
        project = api.list("listProjects", "project", name="bosh-project")[0]
        vm = api.deploy(network="bosh-shared", projectid=project["id"])
        assert vm["projectid"] == project["id"]
        assert [v["id"] for v in api.list("listVirtualMachines", "virtualmachine", id=vm["id"])] == [vm["id"]]
        assert api.list("listVirtualMachines", "virtualmachine") == []
