"""release/manifests: YAML that parses, and names that match the job spec and the cloud_properties models."""

from __future__ import annotations

import pytest

from cloudstack_cpi.models import DiskCloudProperties, NetworkCloudProperties, VMCloudProperties

from .conftest import JOB, RELEASE, load_yaml

MANIFESTS = RELEASE / "manifests"
VM_KEYS = set(VMCloudProperties.model_fields)
DISK_KEYS = set(DiskCloudProperties.model_fields)
NETWORK_KEYS = set(NetworkCloudProperties.model_fields)


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _flatten(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


@pytest.mark.parametrize("name", ["cpi.yml", "cpi-release-url.yml", "cloud-config-advanced.yml", "cloud-config-basic.yml",
                                  "deployment.yml"])
def test_manifest_parses(name):
    assert load_yaml(MANIFESTS / name)


def test_ops_file_swaps_in_this_release_everywhere_the_go_release_was():
    ops = load_yaml(MANIFESTS / "cpi.yml")
    assert all(op["type"] == "replace" and op["path"].startswith("/") and "value" in op for op in ops)
    by_path = {op["path"]: op["value"] for op in ops}
    job_spec = load_yaml(JOB / "spec")

    assert by_path["/releases/-"]["name"] == load_yaml(RELEASE / "config" / "final.yml")["name"]
    job = {"name": job_spec["name"], "release": by_path["/releases/-"]["name"]}
    assert by_path["/instance_groups/name=bosh/jobs/-"] == job
    assert by_path["/cloud_provider/template?"] == job
    assert by_path["/instance_groups/name=bosh/properties/director/cpi_job?"] == job_spec["name"]

    director = by_path["/instance_groups/name=bosh/properties/cloudstack?"]
    assert director == by_path["/cloud_provider/properties/cloudstack?"]
    assert set(director) == {"endpoint", "api_key", "secret_access_key", "default_key_name", "default_zone"}
    declared = set(job_spec["properties"])
    for path in ["/instance_groups/name=bosh/properties/agent/blobstore?", "/cloud_provider/properties/agent/blobstore?"]:
        assert {f"agent.blobstore.{key}" for key in by_path[path]} <= declared
    assert {f"cloudstack.{key}" for key in _flatten(director)} <= declared

    assert set(by_path["/resource_pools/name=vms/cloud_properties?"]) <= VM_KEYS
    assert set(by_path["/disk_pools/name=disks/cloud_properties?"]) <= DISK_KEYS
    assert set(by_path["/networks/name=default/subnets/0/cloud_properties?"]) <= NETWORK_KEYS


@pytest.mark.parametrize("name", ["cloud-config-advanced.yml", "cloud-config-basic.yml"])
def test_cloud_config_uses_cloud_properties_the_cpi_knows(name):
    cloud_config = load_yaml(MANIFESTS / name)
    for az in cloud_config["azs"]:
        assert set(az["cloud_properties"]) == {"availability_zone"}
    for vm_type in cloud_config["vm_types"] + cloud_config.get("vm_extensions", []):
        assert set(vm_type["cloud_properties"]) <= VM_KEYS, vm_type["name"]
    for disk_type in cloud_config["disk_types"]:
        assert set(disk_type["cloud_properties"]) <= DISK_KEYS, disk_type["name"]
    for network in cloud_config["networks"]:
        for subnet in network.get("subnets", []):
            assert set(subnet.get("cloud_properties", {})) <= NETWORK_KEYS, network["name"]
    assert cloud_config["compilation"]["vm_type"] in {vm["name"] for vm in cloud_config["vm_types"]}


def test_advanced_cloud_config_has_manual_dynamic_and_vip_networks_with_names():
    networks = {n["name"]: n for n in load_yaml(MANIFESTS / "cloud-config-advanced.yml")["networks"]}
    assert {n["type"] for n in networks.values()} == {"manual", "dynamic", "vip"}
    for network in networks.values():
        for subnet in network.get("subnets", []):
            assert subnet["cloud_properties"]["name"]


def test_basic_cloud_config_names_no_network_and_uses_security_groups():
    networks = load_yaml(MANIFESTS / "cloud-config-basic.yml")["networks"]
    assert [n["type"] for n in networks] == ["dynamic"]
    for subnet in networks[0]["subnets"]:
        assert "name" not in subnet["cloud_properties"]
        assert subnet["cloud_properties"]["security_groups"]


def test_deployment_uses_what_the_advanced_cloud_config_defines():
    cloud_config = load_yaml(MANIFESTS / "cloud-config-advanced.yml")
    deployment = load_yaml(MANIFESTS / "deployment.yml")
    for group in deployment["instance_groups"]:
        assert group["vm_type"] in {v["name"] for v in cloud_config["vm_types"]}
        assert group["persistent_disk_type"] in {d["name"] for d in cloud_config["disk_types"]}
        assert set(group["azs"]) <= {az["name"] for az in cloud_config["azs"]}
        assert {n["name"] for n in group["networks"]} <= {n["name"] for n in cloud_config["networks"]}
