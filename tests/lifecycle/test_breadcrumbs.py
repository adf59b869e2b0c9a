"""Every error says what the CPI was doing: each method's first API call refused.

The simulator answers 401 to a wrong secret (ApiServer.verifyRequest), the first request of every method.
Before, create_stemcell answered "listZones: ..." with no word of the stemcell: that case runs through bin/cpi;
the others run in-process through rpc.handle (the same code from the request on, without 19 interpreter
start-ups the suite's time cannot afford).
"""

from __future__ import annotations

import io
import json

import pytest

from cloudstack_cpi import rpc
from cloudstack_cpi.log import Logger
from tests.conftest import Cpi, request, write_config

VM, DISK, SNAPSHOT = "0f5a1a44-9c1b-4b7e-9d6a-3f0c2b1e8d77", "1e6b2b55-0d2c-4c8f-8e1b-4a1d3c2f9e88", "snap-1"
NETWORKS = {"default": {"type": "dynamic", "default": ["dns", "gateway"], "cloud_properties": {"name": "n"}}}
CALLS = [
    ("create_stemcell", ["/nonexistent/image", {"name": "bosh-stemcell", "version": "1.1"}], "Creating stemcell"),
    ("create_stemcell", ["/nonexistent/image", {"template_name": "x"}], "Creating stemcell"),
    ("delete_stemcell", ["tmpl-1"], "Deleting stemcell 'tmpl-1'"),
    ("create_vm", ["agent-1", "tmpl-1", {"compute_offering": "small"}, NETWORKS, [], {}], "Creating VM for agent"),
    ("delete_vm", [VM], f"Deleting VM '{VM}'"),
    ("has_vm", [VM], f"Looking for VM '{VM}'"),
    ("reboot_vm", [VM], f"Rebooting VM '{VM}'"),
    ("set_vm_metadata", [VM, {"job": "j"}], f"Setting metadata of VM '{VM}'"),
    ("calculate_vm_cloud_properties", [{"cpu": 1, "ram": 512, "ephemeral_disk_size": 1024}], "Calculating"),
    ("create_disk", [1024, {}, VM], "Creating disk"),
    ("delete_disk", [DISK], f"Deleting disk '{DISK}'"),
    ("has_disk", [DISK], f"Looking for disk '{DISK}'"),
    ("attach_disk", [VM, DISK], f"Attaching disk '{DISK}'"),
    ("detach_disk", [VM, DISK], f"Detaching disk '{DISK}'"),
    ("get_disks", [VM], f"Listing disks of VM '{VM}'"),
    ("resize_disk", [DISK, 2048], f"Resizing disk '{DISK}'"),
    ("update_disk", [DISK, 2048, {}], f"Updating disk '{DISK}'"),
    ("set_disk_metadata", [DISK, {"job": "j"}], f"Setting metadata of disk '{DISK}'"),
    ("snapshot_disk", [DISK, {}], f"Snapshotting disk '{DISK}'"),
    ("delete_snapshot", [SNAPSHOT], f"Deleting snapshot '{SNAPSHOT}'"),
]


@pytest.fixture(scope="module")
def refused_config(tmp_path_factory):
    from cloudstack_simulator import Simulator

    with Simulator(scenario="advanced") as sim:
        tmp = tmp_path_factory.mktemp("breadcrumbs")
        yield write_config(tmp / "cpi.json", sim.endpoint, sim.api_key, "not-the-secret"), tmp


def test_create_stemcell_names_the_stemcell_through_bin_cpi(refused_config):
    config, tmp = refused_config
    error = Cpi(config, tmp).call("create_stemcell", *CALLS[0][1]).error
    assert error is not None and "401" in error["message"]
    assert error["message"].startswith("Creating stemcell 'bosh-stemcell 1.1': listZones"), error["message"]


@pytest.mark.parametrize("method, arguments, breadcrumb", CALLS, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CALLS)])
def test_an_error_names_what_the_cpi_was_doing(refused_config, method, arguments, breadcrumb):
    config, _ = refused_config
    payload = request(method, *arguments, context={"vm": {"stemcell": {"api_version": 3}}})
    error = rpc.handle(json.dumps(payload).encode(), str(config), Logger(stream=io.StringIO()))["error"]
    assert error is not None and "401" in error["message"]
    assert error["message"].startswith(breadcrumb), error["message"]
