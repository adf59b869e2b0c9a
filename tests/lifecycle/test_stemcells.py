"""create_stemcell / delete_stemcell through bin/cpi against the simulator: every strategy and format."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from cloudstack_cpi.stemcell import convert, image
from cloudstack_simulator import Simulator
from tests.conftest import Cpi, write_config
from tests.simulator.helpers import Api
from tests.unit.stemcell.stemcell_image_builders import (
    MIB,
    compress,
    sample_blocks,
    tar_of,
    write_dynamic_vhd,
    write_ova,
    write_raw,
)

KVM_PROPS = {"name": "bosh-cloudstack-kvm-ubuntu-jammy-go_agent", "version": "1.622", "infrastructure": "cloudstack",
             "hypervisor": "kvm", "disk": 5120, "disk_format": "qcow2", "container_format": "bare",
             "os_type": "linux", "os_distro": "ubuntu", "architecture": "x86_64", "auto_disk_config": True}
XEN_PROPS = dict(KVM_PROPS, name="bosh-cloudstack-xen-ubuntu-jammy-go_agent", hypervisor="xen", disk_format="vhdx")
VMWARE_PROPS = dict(KVM_PROPS, name="bosh-cloudstack-vmware-ubuntu-jammy-go_agent", hypervisor="vmware",
                    disk_format="ova")
SIZE = 6 * MIB


def declaring(props: dict, disk_format: str | None) -> dict:
    """The stemcell's cloud_properties with another declared disk_format (None: none declared)."""
    return {k: v for k, v in dict(props, disk_format=disk_format).items() if v is not None}


def raw_image(tmp_path: Path) -> Path:
    return write_raw(tmp_path / "root.img", SIZE, sample_blocks(SIZE))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def planned_sha256(path: Path, hypervisor: str) -> str:
    """What the upload plan says CloudStack should receive for this image."""
    plan = convert.plan_upload(image.detect(path, resolve=True), hypervisor)
    digest = hashlib.sha256()
    with convert.open_upload_stream(path, plan) as (stream, _length):
        chunks = iter(lambda: stream.read(MIB), b"") if hasattr(stream, "read") else stream
        for chunk in chunks:
            digest.update(chunk)
    return digest.hexdigest()


def rows(sim: Simulator, template_id: str) -> list[dict]:
    return Api(sim).list("listTemplates", "template", templatefilter="self", id=template_id)


def template_tags(sim: Simulator, template_id: str) -> dict[str, str]:
    tags = Api(sim).list("listTags", "tag", resourcetype="Template", resourceid=template_id)
    return {tag["key"]: tag["value"] for tag in tags}


def configured(sim: Simulator, tmp_path: Path, default_zone="zone-1", **cloudstack) -> Cpi:
    config = write_config(tmp_path / "cpi-stemcell.json", sim.endpoint, sim.api_key, sim.secret_key,
                          default_zone=default_zone, **cloudstack)
    return Cpi(config, tmp_path)


NAMES = ("getUploadParamsForTemplate", "registerTemplate", "copyTemplate", "deleteTemplate", "createVolume",
         "attachVolume", "detachVolume", "createSnapshot", "createTemplate", "deleteSnapshot", "deleteVolume")


def commands(sim: Simulator) -> list[str]:
    """API commands the simulator received, in CloudStack's spelling (the log has them lower-cased)."""
    spelling = {name.lower(): name for name in NAMES}
    return [spelling.get(command, command) for command, _ in sim.request_log]


def test_post_kvm_from_raw_with_v3_tags_copy_and_repeated_delete(simulator, tmp_path):
    image_path = raw_image(tmp_path)
    cpi = configured(simulator, tmp_path, stemcell={"upload_strategy": "post", "zones": ["zone-1", "zone-2"]})
    cid = cpi.ok("create_stemcell", str(image_path), declaring(KVM_PROPS, "raw"), {"tags": {"team": "platform"}},
                 api_version=3)

    by_zone = {row["zonename"]: row for row in rows(simulator, cid)}
    assert set(by_zone) == {"zone-1", "zone-2"} and all(r["isready"] for r in by_zone.values())
    row = by_zone["zone-1"]
    assert (row["format"], row["hypervisor"], row["ostypename"]) == ("QCOW2", "KVM", "Ubuntu 22.04 LTS")
    assert row["displaytext"] == "bosh-cloudstack-kvm-ubuntu-jammy-go_agent 1.622"
    assert row["isextractable"] is True and row["passwordenabled"] is False
    assert sha256(simulator.template_bytes(cid)) == planned_sha256(image_path, "kvm")
    assert template_tags(simulator, cid) == {
        "stemcell_name": KVM_PROPS["name"], "stemcell_version": "1.622", "director_uuid": "director-uuid-1",
        "team": "platform"}
    assert "copyTemplate" in commands(simulator) and commands(simulator).count("getUploadParamsForTemplate") == 1

    assert cpi.ok("delete_stemcell", cid) is None
    assert rows(simulator, cid) == [] and simulator.inventory()["templates"] == []
    again = cpi.call("delete_stemcell", cid)
    assert again.error is None and "already gone" in again.stderr


def test_post_xenserver_bzip2_vhd_passes_through_in_a_basic_zone(basic_simulator, tmp_path):
    vhd = write_dynamic_vhd(raw_image(tmp_path), tmp_path / "root.vhd")
    image_path = compress(vhd, tmp_path / "image", "bzip2")  # what bosh-linux-stemcell-builder ships
    cpi = configured(basic_simulator, tmp_path, default_zone="basic-zone")
    cid = cpi.ok("create_stemcell", str(image_path), XEN_PROPS)

    row = rows(basic_simulator, cid)[0]
    assert (row["format"], row["hypervisor"], row["isready"]) == ("VHD", "XenServer", True)
    assert sha256(basic_simulator.template_bytes(cid)) == sha256(image_path)  # uploaded as it is
    assert sha256(image_path) == planned_sha256(image_path, "xen")
    cpi.ok("delete_stemcell", cid)
    assert basic_simulator.inventory()["templates"] == []

    raw = raw_image(tmp_path)  # a raw disk becomes a fixed VHD on the way
    converted = basic_simulator.template_bytes(cpi.ok("create_stemcell", str(raw), declaring(XEN_PROPS, "raw"))
                                               ).read_bytes()
    assert converted[:-512] == raw.read_bytes() and converted[-512:].startswith(b"conectix")


def test_post_vmware_ova_in_a_vmware_zone(tmp_path):
    scenario = json.loads((Path(image.__file__).parents[2] / "cloudstack_simulator" / "scenarios"
                           / "advanced.json").read_text())
    scenario["name"] = "vmware"
    for zone in scenario["zones"]:
        zone["hypervisors"] = ["VMware"]
    scenario["templates"] = []
    with Simulator(scenario) as sim:
        ova = write_ova(tmp_path / "image")
        cpi = configured(sim, tmp_path)
        cid = cpi.ok("create_stemcell", str(ova), VMWARE_PROPS)
        row = rows(sim, cid)[0]
        assert (row["format"], row["hypervisor"]) == ("OVA", "VMware")
        assert sha256(sim.template_bytes(cid)) == sha256(ova) == planned_sha256(ova, "vmware")

        # A disk image cannot become an OVA: refused before anything is created.
        failed = cpi.call("create_stemcell", str(raw_image(tmp_path)), declaring(VMWARE_PROPS, None))
        assert failed.error["type"] == "Bosh::Clouds::CloudError"
        assert "CloudStack wants OVA" in failed.error["message"]
        cpi.ok("delete_stemcell", cid)
        assert sim.inventory()["templates"] == []


def test_url_strategy_with_the_built_in_server(simulator, tmp_path):
    vhd = write_dynamic_vhd(raw_image(tmp_path), tmp_path / "root.vhd")
    image_path = compress(vhd, tmp_path / "image", "gzip")  # converted to qcow2 for KVM, served from a temp file
    cpi = configured(simulator, tmp_path, stemcell={"upload_strategy": "url", "url": {"listen_host": "127.0.0.1"}})
    result = cpi.call("create_stemcell", str(image_path), declaring(KVM_PROPS, "vhd"))
    cid = result.ok()
    assert "registerTemplate" in commands(simulator) and "getUploadParamsForTemplate" not in commands(simulator)
    assert "Serving " in result.stderr and "http://127.0.0.1:" in result.stderr
    assert sha256(simulator.template_bytes(cid)) == planned_sha256(image_path, "kvm")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".cpi-")) == []  # temp file removed
    cpi.ok("delete_stemcell", cid)


def test_url_strategy_download_failure_reports_status_and_leaves_nothing(simulator, tmp_path):
    serve = tmp_path / "www"
    serve.mkdir()
    image_path = raw_image(tmp_path)
    # Nothing serves this directory at base_url: the secondary storage's download fails with HTTP 404.
    cpi = configured(simulator, tmp_path, stemcell={"url": {"base_url": f"{simulator.endpoint.rsplit('/client', 1)[0]}"
                                                                        "/nowhere", "serve_directory": str(serve)}})
    failed = cpi.call("create_stemcell", str(image_path), declaring(KVM_PROPS, "raw"))
    assert failed.error["type"] == "Bosh::Clouds::CloudError"
    assert "Failed to download template" in failed.error["message"] and "404" in failed.error["message"]
    assert "registerTemplate" in commands(simulator)  # auto picked url because base_url is set
    assert simulator.inventory()["templates"] == [] and list(serve.iterdir()) == []


def test_volume_strategy_writes_onto_an_attached_volume(tmp_path):
    devices = tmp_path / "devices"
    with Simulator("advanced", device_dir=devices) as sim:
        vm = Api(sim).deploy()
        qcow2_source = raw_image(tmp_path)
        cpi = configured(sim, tmp_path, stemcell={
            "upload_strategy": "volume", "zones": ["zone-1", "zone-2"],
            "volume": {"vm_id": vm["id"], "device_dir": str(devices / vm["id"])}})
        result = cpi.call("create_stemcell", str(qcow2_source), declaring(KVM_PROPS, "raw"))
        cid = result.ok()
        assert "/vdb (device id 1)" in result.stderr
        stored = sim.template_bytes(cid)
        with open(stored, "rb") as handle, open(qcow2_source, "rb") as source:
            assert handle.read(SIZE) == source.read()  # the raw disk, then the rest of the 1 GiB volume
            assert handle.read(MIB) == bytes(MIB)
        assert {r["zonename"] for r in rows(sim, cid)} == {"zone-1", "zone-2"}
        inventory = sim.inventory()
        assert inventory["volumes"] == [] and inventory["snapshots"] == []  # work volume and snapshot removed
        assert [c for c in commands(sim) if c in ("createVolume", "attachVolume", "detachVolume", "createSnapshot",
                                                 "createTemplate", "deleteSnapshot", "deleteVolume")] == [
            "createVolume", "attachVolume", "detachVolume", "createSnapshot", "createTemplate", "deleteSnapshot",
            "deleteVolume"]
        cpi.ok("delete_stemcell", cid)
        assert sim.inventory()["templates"] == []


def test_copies_to_several_zones_run_side_by_side(tmp_path):
    """Issue 17 item 6: every copyTemplate is started before the CPI waits for any (one job per destination zone,
    TemplateManagerImpl.copyTemplate), so three zones take the slowest copy's time, not the sum."""
    import copy

    from cloudstack_simulator.state import load_scenario

    scenario = load_scenario("advanced")
    third = copy.deepcopy(next(z for z in scenario["zones"] if z["name"] == "zone-2"))
    third["name"] = "zone-3"
    for index, network in enumerate(third["networks"]):
        network.update(cidr=f"10.{40 + index}.0.0/24", gateway=f"10.{40 + index}.0.1", dns=[f"10.{40 + index}.0.1"])
        network.pop("startip", None), network.pop("endip", None)
    third["public_ip_ranges"] = [dict(r, start="192.0.2.10", end="192.0.2.40", gateway="192.0.2.1")
                                 for r in third.get("public_ip_ranges", [])][:1]
    third["preallocated_public_ips"] = []
    scenario["zones"].append(third)
    with Simulator(scenario=scenario, job_seconds=0.3) as sim:
        cpi = configured(sim, tmp_path, stemcell={"zones": ["zone-1", "zone-2", "zone-3"]})
        cid = cpi.ok("create_stemcell", str(raw_image(tmp_path)), declaring(KVM_PROPS, "raw"))
        assert {r["zonename"] for r in rows(sim, cid) if r["isready"]} == {"zone-1", "zone-2", "zone-3"}
        sent = commands(sim)
        first = sent.index("copyTemplate")
        assert sent[first:first + 2] == ["copyTemplate", "copyTemplate"]  # the second before waiting for the first


def test_volume_strategy_removes_the_work_volume_a_killed_call_left_attached(tmp_path):
    """Issue 16 item 3: create_stemcell killed with SIGKILL while it wrote the image leaves its work volume attached
    to the CPI's own VM, for good.  The next create_stemcell removes such a volume once it is older than any
    create_stemcell can run; a younger one (maybe another call's, still writing) stays.  The age is made by
    backdating the volume's ``created``, as waiting hours for it is not a test."""
    devices = tmp_path / "devices"
    with Simulator("advanced", device_dir=devices) as sim:
        api = Api(sim)
        vm = api.deploy()
        zone = api.zone("zone-1")["id"]
        offering = api.disk_offering("disk-10")["id"]
        stale, young = (api.acall("createVolume", name=f"bosh-stemcell-1.0-{unique}-work", zoneid=zone,
                                  diskofferingid=offering)["volume"]["id"] for unique in ("1a2b3c4d", "5e6f7a8b"))
        for volume_id in (stale, young):
            api.acall("attachVolume", id=volume_id, virtualmachineid=vm["id"])
        with sim.state.lock:
            sim.state.volumes[stale]["created"] = "2020-01-01T00:00:00+0000"
        cpi = configured(sim, tmp_path, stemcell={
            "upload_strategy": "volume", "volume": {"vm_id": vm["id"], "device_dir": str(devices / vm["id"])}})
        result = cpi.call("create_stemcell", str(raw_image(tmp_path)), declaring(KVM_PROPS, "raw"))
        result.ok()
        assert f"Work volume {stale}" in result.stderr and "a create_stemcell that did not finish left it" in result.stderr
        assert sim.inventory()["volumes"] == [young]


def test_volume_strategy_cleans_up_when_the_device_never_appears(tmp_path):
    with Simulator("advanced") as sim:  # no device_dir: attaching creates no device file
        vm = Api(sim).deploy()
        cpi = configured(sim, tmp_path, stemcell={"upload_strategy": "volume", "volume": {
            "vm_id": vm["id"], "device_dir": str(tmp_path / "no-devices"), "device_timeout": 1}})
        failed = cpi.call("create_stemcell", str(raw_image(tmp_path)), declaring(KVM_PROPS, "raw"))
        assert failed.error["type"] == "Bosh::Clouds::CloudError"
        assert "did not appear" in failed.error["message"]
        inventory = sim.inventory()
        assert inventory["volumes"] == [] and inventory["templates"] == [] and inventory["snapshots"] == []


def test_light_stemcell_is_found_not_created_and_survives_delete(simulator, tmp_path):
    cpi = configured(simulator, tmp_path)
    existing = Api(simulator).template("bosh-stemcell-existing")
    for props in ({"template_name": "bosh-stemcell-existing"}, {"template_id": existing["id"]},
                  {"light_template": "bosh-stemcell-existing"}):
        assert cpi.ok("create_stemcell", "/dev/null", dict(KVM_PROPS, **props)) == f"{existing['id']} light"
    assert cpi.ok("delete_stemcell", f"{existing['id']} light") is None
    assert Api(simulator).template("bosh-stemcell-existing")["isready"] is True
    assert not {"deleteTemplate", "getUploadParamsForTemplate", "registerTemplate"} & set(commands(simulator))

    missing = cpi.call("create_stemcell", "/dev/null", dict(KVM_PROPS, template_name="no-such-template"))
    assert missing.error["type"] == "Bosh::Clouds::CloudError" and "not found in zone 'zone-1'" in missing.error["message"]


def test_zone_without_the_stemcells_hypervisor_is_refused(simulator, tmp_path):
    cpi = configured(simulator, tmp_path)
    failed = cpi.call("create_stemcell", str(raw_image(tmp_path)), XEN_PROPS)
    assert failed.error["type"] == "Bosh::Clouds::CloudError"
    assert "Zone 'zone-1' has no XenServer hosts (its hypervisors: KVM)" in failed.error["message"]
    assert simulator.inventory()["templates"] == []


def test_image_failing_after_the_template_exists_leaves_no_template(simulator, tmp_path):
    """A gzip-compressed dynamic VHD cut short: its head is sound, so only converting it finds the cut (after
    getUploadParamsForTemplate made the template); a plain file cut short is refused up front (below)."""
    vhd = write_dynamic_vhd(raw_image(tmp_path), tmp_path / "root.vhd")
    whole = compress(vhd, tmp_path / "whole.gz", "gzip").read_bytes()
    broken = tmp_path / "image"
    broken.write_bytes(whole[: len(whole) // 2])
    cpi = configured(simulator, tmp_path, stemcell={"upload_strategy": "post"})
    failed = cpi.call("create_stemcell", str(broken), declaring(KVM_PROPS, "vhd"))
    assert failed.error["type"] == "Bosh::Clouds::CloudError"
    assert "truncated" in failed.error["message"]
    assert "getUploadParamsForTemplate" in commands(simulator) and "deleteTemplate" in commands(simulator)
    assert simulator.inventory()["templates"] == []


def _vmware_scenario() -> dict:
    scenario = json.loads((Path(image.__file__).parents[2] / "cloudstack_simulator" / "scenarios"
                           / "advanced.json").read_text())
    scenario["name"] = "vmware-url"
    for zone in scenario["zones"]:
        zone["hypervisors"] = ["VMware"]
    scenario["templates"] = []
    return scenario


def test_url_strategy_for_xenserver_and_vmware_stemcells(basic_simulator, tmp_path):
    vhd = write_dynamic_vhd(raw_image(tmp_path), tmp_path / "root.vhd")
    xen_image = compress(vhd, tmp_path / "image", "bzip2")
    built_in = {"upload_strategy": "url", "url": {"listen_host": "127.0.0.1"}}
    xen = configured(basic_simulator, tmp_path, default_zone="basic-zone", stemcell=built_in)
    cid = xen.ok("create_stemcell", str(xen_image), XEN_PROPS)
    assert (rows(basic_simulator, cid)[0]["format"], rows(basic_simulator, cid)[0]["hypervisor"]) == ("VHD", "XenServer")
    assert sha256(basic_simulator.template_bytes(cid)) == sha256(xen_image)
    xen.ok("delete_stemcell", cid)

    with Simulator(_vmware_scenario()) as sim:
        ova = write_ova(tmp_path / "vmware-image")
        vmware = configured(sim, tmp_path, stemcell=built_in)
        cid = vmware.ok("create_stemcell", str(ova), VMWARE_PROPS)
        assert rows(sim, cid)[0]["format"] == "OVA"
        assert sha256(sim.template_bytes(cid)) == sha256(ova)
        vmware.ok("delete_stemcell", cid)
        assert sim.inventory()["templates"] == []


def test_volume_strategy_for_a_xenserver_stemcell(tmp_path):
    devices = tmp_path / "devices"
    with Simulator("basic", device_dir=devices) as sim:
        api = Api(sim)
        zone = api.zone("basic-zone")
        template = api.list("listTemplates", "template", templatefilter="executable", zoneid=zone["id"])[0]
        vm = api.acall("deployVirtualMachine", zoneid=zone["id"], serviceofferingid=api.offering("small")["id"],
                       templateid=template["id"])["virtualmachine"]
        raw = raw_image(tmp_path)
        xen_image = compress(write_dynamic_vhd(raw, tmp_path / "root.vhd"), tmp_path / "image", "bzip2")
        cpi = configured(sim, tmp_path, default_zone="basic-zone", stemcell={
            "upload_strategy": "volume", "volume": {"vm_id": vm["id"], "device_dir": str(devices / vm["id"])}})
        cid = cpi.ok("create_stemcell", str(xen_image), XEN_PROPS)
        with open(sim.template_bytes(cid), "rb") as stored:
            assert stored.read(SIZE) == raw.read_bytes()  # the VHD's raw disk, written onto the work volume
        inventory = sim.inventory()
        assert inventory["volumes"] == [] and inventory["snapshots"] == []
        cpi.ok("delete_stemcell", cid)
        assert sim.inventory()["templates"] == []


def test_volume_strategy_for_a_vmware_ova(tmp_path):
    from tests.unit.stemcell.test_vmdk import ova, stream_optimized

    scenario = _vmware_scenario()
    scenario["templates"] = [dict(t, hypervisor="VMware", format="OVA") for t in json.loads(
        (Path(image.__file__).parents[2] / "cloudstack_simulator" / "scenarios" / "advanced.json").read_text()
    )["templates"]]
    devices = tmp_path / "devices"
    with Simulator(scenario, device_dir=devices) as sim:
        vm = Api(sim).deploy()
        raw = raw_image(tmp_path).read_bytes()
        image_path = ova(tmp_path / "image", stream_optimized(raw))
        cpi = configured(sim, tmp_path, stemcell={
            "upload_strategy": "volume", "volume": {"vm_id": vm["id"], "device_dir": str(devices / vm["id"])}})
        cid = cpi.ok("create_stemcell", str(image_path), VMWARE_PROPS)
        with open(sim.template_bytes(cid), "rb") as stored:
            assert stored.read(len(raw)) == raw  # the VMDK's raw disk, written onto the work volume
        assert sim.inventory()["volumes"] == [] and sim.inventory()["snapshots"] == []
        cpi.ok("delete_stemcell", cid)
        assert sim.inventory()["templates"] == []


# --- images that cannot be disks: refused before anything exists in CloudStack ---------------------------------

CREATING = {"getUploadParamsForTemplate", "registerTemplate", "createVolume", "attachVolume", "createSnapshot",
            "createTemplate", "copyTemplate"}


def stemcell_tarball(path: Path, cloud_properties: dict, image_bytes: bytes | None) -> Path:
    """A stemcell tarball laid out as bosh-linux-stemcell-builder makes it: stemcell.MF and image (None: no image)."""
    manifest = {"name": cloud_properties.get("name"), "version": cloud_properties.get("version"),
                "bosh_protocol": 1, "api_version": 3, "operating_system": "ubuntu-jammy",
                "stemcell_formats": ["cloudstack-qcow2"], "cloud_properties": cloud_properties}
    members: dict[str, bytes] = {"stemcell.MF": yaml.safe_dump(manifest).encode()}
    if image_bytes is not None:
        members["image"] = image_bytes
    return tar_of(path, members, "gzip")


def unpack_like_the_director(tarball: Path, into: Path) -> tuple[str, dict]:
    """What the director (or bosh create-env) does: extract, read stemcell.MF, pass <dir>/image and its
    cloud_properties to create_stemcell."""
    into.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    manifest = yaml.safe_load((into / "stemcell.MF").read_text())
    return str(into / "image"), manifest["cloud_properties"]


def refused_leaving_nothing(sim: Simulator, cpi: Cpi, image_path: str, props: dict) -> str:
    """create_stemcell fails with a CloudError, sends no creating command and leaves the cloud as it was."""
    before = sim.inventory()
    sim.clear_request_log()
    failed = cpi.call("create_stemcell", image_path, props)
    assert failed.error is not None and failed.error["type"] == "Bosh::Clouds::CloudError", failed.response
    assert failed.error["ok_to_retry"] is False
    assert not CREATING & set(commands(sim)), commands(sim)
    assert sim.inventory() == before
    return failed.error["message"]


def strategy_config(sim: Simulator, tmp_path: Path, strategy: str) -> dict:
    if strategy == "url":
        return {"upload_strategy": "url", "url": {"listen_host": "127.0.0.1"}}
    if strategy == "volume":
        vm = Api(sim).deploy()
        return {"upload_strategy": "volume", "volume": {"vm_id": vm["id"], "device_dir": str(tmp_path / "devices")}}
    return {"upload_strategy": "post"}


@pytest.mark.parametrize("strategy", ["post", "url", "volume"])
def test_a_nine_byte_text_image_is_refused_before_anything_is_created(simulator, tmp_path, strategy):
    """The defect: a 9-byte text file has no qcow2/VHD/OVA signature, so detection calls it raw, and a template
    was made of it.  A raw disk image is a whole number of 512-byte sectors ("Sector length is always 512
    bytes", VHD spec v1.0, the unit every disk format here counts in) and at least 1 MiB (image.MIN_DISK_SIZE)."""
    tarball = stemcell_tarball(tmp_path / "stemcell.tgz", KVM_PROPS, b"not disk\n")
    image_path, props = unpack_like_the_director(tarball, tmp_path / "unpacked")
    cpi = configured(simulator, tmp_path, stemcell=strategy_config(simulator, tmp_path, strategy))
    message = refused_leaving_nothing(simulator, cpi, image_path, props)
    # (the image path itself may be shortened in the message: it is a request argument)
    assert message.startswith(f"Creating stemcell '{KVM_PROPS['name']} 1.622': image ")
    assert ": not a disk image: the file is 9 bytes and has no qcow2, VHD or OVA signature" in message
    assert "a raw disk image is a whole number of 512-byte sectors and at least 1 MiB" in message
    assert "the stemcell declares disk_format 'qcow2'" in message
    assert simulator.inventory()["templates"] == []
    assert [p.name for p in Path(image_path).parent.iterdir() if p.name.startswith(".cpi-")] == []


@pytest.mark.parametrize("image_bytes, expected", [
    (None, "no such file: the stemcell has no image"),
    (b"", "image is empty (0 bytes)"),
])
def test_a_stemcell_without_an_image_or_with_an_empty_one_is_refused(simulator, tmp_path, image_bytes, expected):
    tarball = stemcell_tarball(tmp_path / "stemcell.tgz", KVM_PROPS, image_bytes)
    image_path, props = unpack_like_the_director(tarball, tmp_path / "unpacked")
    cpi = configured(simulator, tmp_path, stemcell={"upload_strategy": "post"})
    message = refused_leaving_nothing(simulator, cpi, image_path, props)
    assert message.startswith(f"Creating stemcell '{KVM_PROPS['name']} 1.622': image ") and expected in message


def test_a_declared_disk_format_must_be_what_the_bytes_are(simulator, tmp_path):
    """A sound raw disk in a stemcell that says qcow2: refused (CloudStack would be told QCOW2 for raw bytes)."""
    cpi = configured(simulator, tmp_path, stemcell={"upload_strategy": "post"})
    image_path = str(raw_image(tmp_path))
    message = refused_leaving_nothing(simulator, cpi, image_path, KVM_PROPS)
    assert message.endswith(f": the stemcell declares disk_format 'qcow2' but the image is a raw disk of {SIZE} bytes")


def test_a_plain_dynamic_vhd_cut_short_is_refused_before_anything_is_created(basic_simulator, tmp_path):
    """VHD spec v1.0: a dynamic disk is "Copy of hard disk footer (512 bytes) | Dynamic Disk Header (1024 bytes) |
    BAT | Data Block 1 ... n | Hard Disk Footer (512 bytes)"; a file cut short has no footer at its end."""
    vhd = write_dynamic_vhd(raw_image(tmp_path), tmp_path / "root.vhd")
    broken = tmp_path / "image"
    broken.write_bytes(vhd.read_bytes()[: 3 * MIB])
    cpi = configured(basic_simulator, tmp_path, default_zone="basic-zone", stemcell={"upload_strategy": "post"})
    message = refused_leaving_nothing(basic_simulator, cpi, str(broken), XEN_PROPS)
    assert f"truncated dynamic VHD: the file ({3 * MIB} bytes) does not end with the VHD footer" in message


def test_light_stemcells_need_no_image(simulator, tmp_path):
    """Light stemcells name a template; their image is never read, whatever it is (or if it is missing)."""
    cpi = configured(simulator, tmp_path)
    existing = Api(simulator).template("bosh-stemcell-existing")
    text = tmp_path / "text"
    text.write_bytes(b"not disk\n")
    light = dict(KVM_PROPS, template_name="bosh-stemcell-existing")
    for image_path in (str(tmp_path / "missing"), str(text)):
        assert cpi.ok("create_stemcell", image_path, light) == f"{existing['id']} light"
    assert not CREATING & set(commands(simulator))
