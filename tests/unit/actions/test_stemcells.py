"""create_stemcell's pure parts and its HTTP/CloudStack conversations, without a simulator."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import responses

from cloudstack_cpi import config
from cloudstack_cpi.actions import stemcells
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.gateway import Gateway
from cloudstack_cpi.cloudstack.models import OsType
from cloudstack_cpi.cloudstack.templates import Template, TemplateUpload
from cloudstack_cpi.errors import CloudError
from cloudstack_cpi.log import Logger
from cloudstack_cpi.stemcell import convert, image, ostypes, templates, upload_post, upload_url, upload_volume

MIB = 1 << 20
OS_TYPES_NEW = [OsType(f"os-{i}", d) for i, d in enumerate([
    "Ubuntu 18.04 LTS", "Ubuntu 22.04 LTS", "Ubuntu 20.04 LTS", "Ubuntu 24.04 LTS", "Other PV (64-bit)",
    "Other Linux (64-bit)", "Other Linux (32-bit)", "CentOS 7", "Debian GNU/Linux 12 (64-bit)",
    "Debian GNU/Linux 11 (64-bit)", "Windows Server 2019 (64-bit)"])]
OS_TYPES_OLD = [OsType(f"old-{i}", d) for i, d in enumerate([
    "Ubuntu 14.04 (32-bit)", "Ubuntu 14.04 (64-bit)", "Ubuntu 16.04 (64-bit)", "Ubuntu 16.04 (32-bit)",
    "Other PV (64-bit)", "Other (64-bit)"])]


def description(**kwargs) -> str:
    return ostypes.choose(kwargs.pop("catalogue", OS_TYPES_NEW), **kwargs).description


# --- OS types ---------------------------------------------------------------------------------------


def test_os_type_follows_the_release_in_the_stemcell_name():
    assert description(os_distro="ubuntu", architecture="x86_64",
                       stemcell_name="bosh-cloudstack-xen-ubuntu-jammy-go_agent") == "Ubuntu 22.04 LTS"
    assert description(os_distro="ubuntu", stemcell_name="bosh-cloudstack-kvm-ubuntu-noble-go_agent") == \
        "Ubuntu 24.04 LTS"


def test_os_type_without_a_known_release_is_the_newest_64_bit_one():
    assert description(os_distro="ubuntu", stemcell_name="custom") == "Ubuntu 24.04 LTS"
    assert description(catalogue=OS_TYPES_OLD, os_distro="ubuntu", architecture="x86_64") == "Ubuntu 16.04 (64-bit)"
    assert description(catalogue=OS_TYPES_OLD, os_distro="ubuntu", architecture="i386") == "Ubuntu 16.04 (32-bit)"
    assert description(os_distro="debian", architecture="amd64") == "Debian GNU/Linux 12 (64-bit)"


def test_os_type_distro_from_the_name_when_os_distro_is_missing():
    assert description(os_type="linux", stemcell_name="bosh-cloudstack-kvm-ubuntu-jammy-go_agent") == \
        "Ubuntu 22.04 LTS"


def test_os_type_falls_back_to_other_linux_then_other_pv():
    assert description(os_distro="slackware", os_type="linux") == "Other Linux (64-bit)"
    assert description(catalogue=OS_TYPES_OLD, os_distro="centos") == "Other PV (64-bit)"
    with pytest.raises(CloudError, match="set cloudstack.stemcell.os_type to one of: CentOS 7"):
        ostypes.choose([OsType("1", "CentOS 7")], os_distro="ubuntu")


def test_configured_os_type_wins_and_must_exist():
    assert description(configured="Other PV (64-bit)", os_distro="ubuntu") == "Other PV (64-bit)"
    assert description(configured="other pv (64-bit)") == "Other PV (64-bit)"
    assert ostypes.choose(OS_TYPES_NEW, configured="os-7").description == "CentOS 7"
    with pytest.raises(CloudError, match=r"OS type 'Ubuntu 9.04' \(cloudstack.stemcell.os_type\) not found"):
        ostypes.choose(OS_TYPES_NEW, configured="Ubuntu 9.04")


# --- strategy, names, tags, hypervisors -------------------------------------------------------------


def cloud_config(**cloudstack):
    return config.parse({"cloudstack": {"endpoint": "https://cs.test/client/api", "api_key": "k",
                                        "secret_access_key": "s", **cloudstack}}).cloudstack


def stemcell_config(**stemcell):
    return cloud_config(stemcell=stemcell).stemcell


@pytest.mark.parametrize("settings, expected", [
    ({}, "post"),
    ({"url": {"base_url": "http://web.test/stemcells"}}, "url"),
    ({"upload_strategy": "post", "url": {"base_url": "http://web.test/stemcells"}}, "post"),
    ({"upload_strategy": "url"}, "url"),
    ({"upload_strategy": "volume"}, "volume"),
])
def test_strategy_choice(settings, expected):
    assert stemcells.choose_strategy(stemcell_config(**settings)) == expected


def test_template_naming():
    naming = templates.naming("bosh-cloudstack-xen-ubuntu-jammy-go_agent", "1.622", unique="0a1b2c3d")
    assert naming.name == "bosh-cloudstack-xen-ubuntu-jammy-go_agent-1.622-0a1b2c3d"
    assert naming.displaytext == "bosh-cloudstack-xen-ubuntu-jammy-go_agent 1.622"
    assert templates.naming(None, None, unique="u").name == "stemcell-0-u"
    odd = templates.naming("my stemcell/x" + "y" * 200, "1", unique="12345678")
    assert len(odd.name) <= templates.MAX_NAME and odd.name.startswith("my-stemcell-xy")
    assert odd.name.endswith("-12345678")
    assert templates.naming("a", "1").name != templates.naming("a", "1").name  # re-uploads differ


def test_template_tags_director_and_v3_env_tags():
    naming = templates.naming("bosh-x", "3.1", unique="u")
    assert templates.template_tags(naming, "dir-1", {"tags": {"team": "ci", "stemcell_name": "spoofed", "n": 7}}) == {
        "team": "ci", "n": "7", "stemcell_name": "bosh-x", "stemcell_version": "3.1", "director_uuid": "dir-1"}
    assert templates.template_tags(naming, None, None) == {"stemcell_name": "bosh-x", "stemcell_version": "3.1"}


@pytest.mark.parametrize("value, expected", [("xen", "XenServer"), ("XenServer", "XenServer"), ("kvm", "KVM"),
                                             ("KVM", "KVM"), ("vmware", "VMware"), ("VMware", "VMware")])
def test_hypervisor_names(value, expected):
    assert templates.cloudstack_hypervisor(value) == expected


def test_unknown_hypervisor():
    with pytest.raises(CloudError, match="'hyperv' is not supported"):
        templates.cloudstack_hypervisor("hyperv")


# --- the POST upload ---------------------------------------------------------------------------------


def qcow2_file(path: Path, size: int = 64 * 1024) -> Path:
    header = bytearray(size)
    header[:4] = b"QFI\xfb"
    header[4:8] = (3).to_bytes(4, "big")
    header[20:24] = (16).to_bytes(4, "big")       # cluster bits
    header[24:32] = (MIB).to_bytes(8, "big")      # virtual size
    header[100:104] = (104).to_bytes(4, "big")    # header length
    path.write_bytes(bytes(header))
    return path


def log_stream() -> tuple[Logger, io.StringIO]:
    stream = io.StringIO()
    return Logger(stream=stream), stream


UPLOAD = TemplateUpload("tpl-1", "http://ssvm.test/upload/tpl-1", "sig+/=", "meta-blob", "2030-01-01T00:00:00.000Z")


@responses.activate
def test_upload_request_headers_and_streamed_body(tmp_path):
    path = qcow2_file(tmp_path / "image")
    plan = convert.plan_upload(image.detect(path), "kvm")
    assert plan.passes_through
    received = {}

    def ssvm(request):
        received["streamed"] = not isinstance(request.body, (bytes, bytearray))  # an iterable, never held whole
        received["body"] = b"".join(request.body)  # read while the upload runs, as a server would
        return 200, {}, "upload successful."

    responses.add_callback(responses.POST, UPLOAD.post_url, callback=ssvm)
    log, stream = log_stream()
    with requests.Session() as session:
        upload_post.post(UPLOAD, plan, str(path), "tpl.qcow2", session=session, log=log, timeout=(1, 5))
    request = responses.calls[0].request
    names = list(request.headers.keys())
    assert {"X-signature", "X-metadata", "X-expires"} <= set(names)  # spelt exactly so
    assert request.headers["X-signature"] == "sig+/=" and request.headers["X-metadata"] == "meta-blob"
    assert request.headers["X-expires"] == "2030-01-01T00:00:00.000Z"
    assert "Transfer-Encoding" not in request.headers
    sent = received["body"]
    assert received["streamed"] and int(request.headers["Content-Length"]) == len(sent)
    boundary = request.headers["Content-Type"].split("boundary=")[1]
    assert sent.startswith(f"--{boundary}\r\n".encode()) and sent.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="file"; filename="tpl.qcow2"' in sent and path.read_bytes() in sent
    assert "Uploading tpl.qcow2: 64.0 KiB of 64.0 KiB (100%)" in stream.getvalue()


@responses.activate
def test_upload_refused_by_the_secondary_storage(tmp_path):
    path = qcow2_file(tmp_path / "image")
    plan = convert.plan_upload(image.detect(path), "kvm")
    responses.add(responses.POST, UPLOAD.post_url, status=400, body="signature validation failed.")
    log, _ = log_stream()
    with requests.Session() as session, pytest.raises(CloudError) as caught:
        upload_post.post(UPLOAD, plan, str(path), "tpl.qcow2", session=session, log=log, timeout=(1, 5))
    assert caught.value.message == "Uploading tpl.qcow2: the secondary storage answered HTTP 400: signature validation failed."


def test_compressed_uploads_say_so():
    info = SimpleNamespace(compression="bzip2")
    assert upload_post.content_type(SimpleNamespace(compressed=True, info=info)) == "application/x-bzip"
    assert upload_post.content_type(SimpleNamespace(compressed=False, info=info)) == "application/octet-stream"


# --- waiting for templates ----------------------------------------------------------------------------


class ScriptedRows:
    """A client whose listTemplates answers come from a script (the last answer repeats)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0
        self.log, _ = log_stream()

    def list(self, command, **params):
        assert command == "listTemplates" and params["id"] == "tpl-1"
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


def gateway(client) -> Gateway:
    return Gateway(client, cloud_config().timeout)


def waiter(client, timeout=100.0):
    """The template waiter over the gateway's real template service, on a scripted client."""
    clock = itertools.count(0.0, 1.0)
    log, stream = log_stream()
    return templates.Waiter(gateway(client).templates, log, timeout=timeout, sleep=lambda s: None,
                            clock=lambda: next(clock)), stream


def row(status, ready=False, zone="z1"):
    return [{"id": "tpl-1", "zoneid": zone, "status": status, "isready": ready}]


def test_wait_until_download_complete_logging_progress():
    client = ScriptedRows(row("NotUploaded"), row("12% Downloaded"), row("Installing Template"),
                          row("Download Complete", True))
    wait, stream = waiter(client)
    assert wait.wait("tpl-1", "z1", what="Waiting", zone_name="zone-1").ready is True
    lines = stream.getvalue()
    assert "in zone 'zone-1': NotUploaded" in lines and "is ready in zone 'zone-1'" in lines


def test_download_error_status_is_the_error_text():
    client = ScriptedRows(row("5% Downloaded"), row("Failed to download template, error: HTTP Server returned 404"))
    wait, _ = waiter(client)
    with pytest.raises(CloudError) as caught:
        wait.wait("tpl-1", "z1", what="Waiting", zone_name="zone-1")
    assert caught.value.message == ("Waiting: CloudStack reports for template tpl-1 in zone 'zone-1': "
                                    "Failed to download template, error: HTTP Server returned 404")


def test_timeout_names_the_setting_and_last_status():
    wait, _ = waiter(ScriptedRows(row("UploadInProgress")), timeout=5)
    with pytest.raises(CloudError, match=r"within 5 s \(cloudstack.timeout.poll_template\); last status: "
                                         r"UploadInProgress"):
        wait.wait("tpl-1", "z1", what="Waiting")


def test_a_template_vanishing_while_waiting():
    wait, _ = waiter(ScriptedRows(row("Processing"), []))
    with pytest.raises(CloudError, match="disappeared"):
        wait.wait("tpl-1", "z1", what="Waiting")


@pytest.mark.parametrize("status, failed", [
    ("Download Complete", False), ("45% Downloaded", False), ("Installing Template", False), ("NotUploaded", False),
    ("UploadInProgress", False), ("Upload Error", True), ("UploadAbandoned", True), ("Failed post upload checks", True),
    ("Upload failed: format mismatch", True), ("DOWNLOAD_ERROR", True),
])
def test_status_texts(status, failed):
    assert Template("tpl-1", status=status).failed is failed


# --- create_stemcell against a fake cloud: cleanup on failure ------------------------------------------


class FakeCloud:
    """Just enough CloudStack for the post strategy; template rows follow ``statuses``."""

    def __init__(self, statuses, upload_answer=None):
        self.statuses = list(statuses)
        self.calls: list[tuple[str, dict]] = []
        self.deleted = False
        self.session = SimpleNamespace(verify=True)
        self.log, self.stream = log_stream()
        self.upload_answer = upload_answer or {
            "getuploadparams": {"id": "tpl-1", "postURL": UPLOAD.post_url, "signature": "sig-123456",
                                "metadata": "meta-123456", "expires": UPLOAD.expires}}

    def call(self, command, **params):
        self.calls.append((command, params))
        if command == "getUploadParamsForTemplate":
            if isinstance(self.upload_answer, Exception):  # the record is made, and then the answer goes wrong
                raise self.upload_answer
            return self.upload_answer
        raise AssertionError(command)

    def list(self, command, **params):
        self.calls.append((command, params))
        if command == "listZones":
            return [{"id": "z1", "name": "zone-1"}]
        if command == "listHypervisors":
            return [{"name": "KVM"}]
        if command == "listTemplates":
            if self.deleted:
                return []
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return row(status, status == "Download Complete")
        raise AssertionError(command)

    def list_all(self, command, **params):
        self.calls.append((command, params))
        if command == "listTemplates":  # by the unique name, after a failed create
            return [] if self.deleted else [dict(r, name=params["name"]) for r in row(self.statuses[0])]
        assert command == "listOsTypes"
        return [{"id": o.id, "description": o.description} for o in OS_TYPES_NEW]

    def run_job(self, command, *, timeout, what, **params):
        self.calls.append((command, params))
        if command == "deleteTemplate":
            self.deleted = True
        return {}

    def finish_job(self, started, *, command, timeout, what):
        return started  # no jobs here: every answer is the result

    def sleep(self, seconds):
        pass

    def commands(self):
        return [command for command, _ in self.calls]


class NoClient:
    """Actions reach CloudStack only through ``ctx.cloud``: any use of ``ctx.client`` fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"an action used ctx.client.{name}: it must go through the gateway (ctx.cloud)")


def fake_ctx(cloud, **cloudstack):
    cfg = config.parse({"cloudstack": {"endpoint": "https://cs.test/client/api", "api_key": "k",
                                       "secret_access_key": "s", "default_zone": "zone-1", **cloudstack}})
    return SimpleNamespace(config=cfg, client=NoClient(), cloud=Gateway(cloud, cfg.cloudstack.timeout),
                           log=cloud.log, director_uuid="dir-1")


PROPS = {"name": "bosh-kvm", "version": "1", "hypervisor": "kvm", "os_distro": "ubuntu"}


@responses.activate
def test_download_error_after_upload_deletes_the_template(tmp_path):
    responses.add(responses.POST, UPLOAD.post_url, body="upload successful.")
    cloud = FakeCloud(["UploadInProgress", "Upload Error: checksum mismatch"])
    with pytest.raises(CloudError) as caught:
        stemcells.create_stemcell(fake_ctx(cloud), str(qcow2_file(tmp_path / "image")), PROPS)
    assert caught.value.message.startswith("Creating stemcell 'bosh-kvm 1': Waiting for the template: ")
    assert caught.value.message.endswith("Upload Error: checksum mismatch")
    params = dict(cloud.calls)["getUploadParamsForTemplate"]
    assert params["format"] == "QCOW2" and params["hypervisor"] == "KVM" and params["zoneid"] == "z1"
    assert params["ostypeid"] == "os-3" and params["bits"] == 64 and params["isextractable"] is True
    assert params["displaytext"] == "bosh-kvm 1" and params["passwordenabled"] is False
    assert "deleteTemplate" in cloud.commands() and "createTags" not in cloud.commands()


@responses.activate
def test_timeout_deletes_the_template(tmp_path):
    responses.add(responses.POST, UPLOAD.post_url, body="upload successful.")
    cloud = FakeCloud(["Installing Template"])
    with pytest.raises(CloudError, match="not ready in zone 'zone-1' within 0.3 s"):
        stemcells.create_stemcell(fake_ctx(cloud, timeout={"poll_template": 0.3}),
                                  str(qcow2_file(tmp_path / "image")), PROPS)
    assert "deleteTemplate" in cloud.commands() and cloud.deleted
    assert "meta-123456" not in cloud.stream.getvalue()  # upload credentials never logged


@responses.activate
def test_upload_refused_deletes_the_template(tmp_path):
    responses.add(responses.POST, UPLOAD.post_url, status=500,
                  body="Upload failed: format mismatch, declared QCOW2 but the file is not a valid QCOW2 image")
    cloud = FakeCloud(["NotUploaded"])
    with pytest.raises(CloudError, match="HTTP 500: Upload failed: format mismatch"):
        stemcells.create_stemcell(fake_ctx(cloud), str(qcow2_file(tmp_path / "image")), PROPS)
    assert "deleteTemplate" in cloud.commands()


@responses.activate
def test_without_a_hypervisor_the_zones_only_one_is_used(tmp_path):
    responses.add(responses.POST, UPLOAD.post_url, body="upload successful.")
    cloud = FakeCloud(["Download Complete"])
    props = {key: value for key, value in PROPS.items() if key != "hypervisor"}
    assert stemcells.create_stemcell(fake_ctx(cloud), str(qcow2_file(tmp_path / "image")), props) == "tpl-1"
    assert dict(cloud.calls)["getUploadParamsForTemplate"]["hypervisor"] == "KVM"
    tags = dict(cloud.calls)["createTags"]["tags"]
    assert tags == {"stemcell_name": "bosh-kvm", "stemcell_version": "1", "director_uuid": "dir-1"}


@pytest.mark.parametrize("answer, message", [
    (CloudStackError("getUploadParamsForTemplate", "no answer from https://cs.test/client/api: read timed out",
                     kind="transport", outcome_unknown=True),
     "getUploadParamsForTemplate: no answer from https://cs.test/client/api: read timed out"),
    ({"getuploadparams": {"id": "tpl-1", "signature": "sig-123456", "metadata": "meta-123456"}},
     "getUploadParamsForTemplate: answered without 'postURL'"),
])
def test_an_upload_slot_gone_wrong_is_found_by_its_name_and_deleted(tmp_path, answer, message):
    """The record exists once getUploadParamsForTemplate ran, whatever became of its answer: found by the unique
    name and deleted, and the command is not sent again (it would make a second record)."""
    cloud = FakeCloud(["NotUploaded"], upload_answer=answer)
    with pytest.raises(CloudError) as caught:
        stemcells.create_stemcell(fake_ctx(cloud), str(qcow2_file(tmp_path / "image")), PROPS)
    assert caught.value.message == f"Creating stemcell 'bosh-kvm 1': {message}" and caught.value.ok_to_retry
    sent_name = dict(cloud.calls)["getUploadParamsForTemplate"]["name"]
    assert ("listTemplates", {"templatefilter": "self", "name": sent_name, "listall": True}) in cloud.calls
    assert cloud.commands().count("getUploadParamsForTemplate") == 1 and cloud.deleted
    assert "meta-123456" not in cloud.stream.getvalue()


def test_light_stemcell_cids_are_not_deleted():
    cloud = FakeCloud(["Download Complete"])
    assert stemcells.delete_stemcell(fake_ctx(cloud), "tpl-1 light") is None
    assert cloud.calls == []


# --- the built-in HTTP server and the volume strategy's device search ------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-10", (990, 999)), ("bytes=990-5000", (990, 999)),
    ("bytes=1000-", None), ("bytes=5-2", None), ("bytes=-", None), ("items=0-1", None), ("bytes=0-1,5-6", None),
])
def test_range_parsing(spec, expected):
    assert upload_url._parse_range(spec, 1000) == expected


def test_one_file_server_answers_head_get_and_ranges(tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB
    path = tmp_path / "t.qcow2"
    path.write_bytes(data)
    log, stream = log_stream()
    with upload_url.OneFileServer(str(path), "t.qcow2", listen_host="127.0.0.1", listen_port=0,
                                  advertise_host=None, endpoint="http://127.0.0.1:1/client/api", log=log) as server:
        assert server.url.startswith(f"http://127.0.0.1:{server.port}/") and server.url.endswith("/t.qcow2")
        head = requests.head(server.url, timeout=5)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
        assert head.headers["Accept-Ranges"] == "bytes"
        assert requests.get(server.url, timeout=5).content == data
        part = requests.get(server.url, headers={"Range": "bytes=1000-1999"}, timeout=5)
        assert part.status_code == 206 and part.content == data[1000:2000]
        assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        assert requests.get(server.url, headers={"Range": f"bytes={len(data)}-"}, timeout=5).status_code == 416
        assert requests.get(server.url.rsplit("/", 2)[0] + "/other/t.qcow2", timeout=5).status_code == 404
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url, timeout=2)
    assert "Serving t.qcow2" in stream.getvalue()


def test_device_names_for_device_ids():
    assert upload_volume.device_names(1) == ["vdb", "xvdb", "sdb"]
    assert upload_volume.device_names(4) == ["vde", "xvde", "sde"]


def no_sleep(clock):
    return {"sleep": lambda s: next(clock), "clock": lambda: next(clock)}


def test_device_found_by_device_id_even_when_others_appear(tmp_path):
    (tmp_path / "vda").touch()
    before = upload_volume.list_devices(str(tmp_path))
    for name in ("vdc", "sdc", "loop0"):
        (tmp_path / name).touch()
    found = upload_volume.find_device(str(tmp_path), 2, before, **no_sleep(itertools.count()))
    assert found == str(tmp_path / "vdc")


def test_device_found_by_directory_difference(tmp_path):
    (tmp_path / "vda").touch()
    (tmp_path / "vdb").touch()  # an existing disk holds the mapped name: never chosen
    before = upload_volume.list_devices(str(tmp_path))
    (tmp_path / "vdc").touch()
    assert upload_volume.find_device(str(tmp_path), 1, before, **no_sleep(itertools.count())) == str(tmp_path / "vdc")


def test_device_ambiguity_and_absence_are_errors(tmp_path):
    before = upload_volume.list_devices(str(tmp_path / "missing"))
    assert before == set()
    with pytest.raises(CloudError, match="did not appear in .* within 3 s"):
        upload_volume.find_device(str(tmp_path / "missing"), 1, before, timeout=3, **no_sleep(itertools.count()))
    (tmp_path / "vdd").touch()
    (tmp_path / "vde").touch()
    with pytest.raises(CloudError, match="refusing to guess"):
        upload_volume.find_device(str(tmp_path), 1, set(), **no_sleep(itertools.count()))


def test_write_device_writes_in_place_and_checks_the_count(tmp_path):
    device = tmp_path / "vdb"
    device.write_bytes(b"\xff" * (4 * MIB))
    log, _ = log_stream()
    upload_volume.write_device(str(device), [b"a" * MIB, memoryview(b"b" * MIB)], 2 * MIB, log)
    content = device.read_bytes()
    assert content[:2 * MIB] == b"a" * MIB + b"b" * MIB and content[2 * MIB:] == b"\xff" * (2 * MIB)
    with pytest.raises(CloudError, match="wrote 1 of 2 bytes"):
        upload_volume.write_device(str(device), [b"x"], 2, log)


# --- the volume strategy's resources after a lost answer or a failed job (against the simulator, in-process) ------


@pytest.mark.parametrize("command, fault", [
    ("createVolume", "drop_after_action"), ("createSnapshot", "drop_after_action"),
    ("createTemplate", "drop_after_action"), ("createTemplate", "job_failure"), ("deleteSnapshot", "error"),
])
def test_volume_strategy_leaves_nothing_when_a_create_answer_is_lost(tmp_path, command, fault):
    """Issue 16: the work volume, its snapshot and the template each carry the template's unique name from the
    moment they exist, so a lost answer is recovered by looking them up, and a cleanup that fails once is tried
    again; every one of them is gone when create_stemcell answers."""
    import json

    from cloudstack_cpi import rpc
    from cloudstack_simulator import Simulator
    from tests.conftest import request
    from tests.simulator.helpers import Api
    from tests.unit.stemcell.stemcell_image_builders import sample_blocks, write_raw

    devices = tmp_path / "devices"
    with Simulator("advanced", device_dir=devices) as sim:
        vm = Api(sim).deploy()
        cfg = tmp_path / "cpi.json"
        cfg.write_text(json.dumps({"cloudstack": {
            "endpoint": sim.endpoint, "api_key": sim.api_key, "secret_access_key": sim.secret_key,
            "default_zone": "zone-1", "stemcell": {"upload_strategy": "volume", "volume": {
                "vm_id": vm["id"], "device_dir": str(devices / vm["id"])}}}}))
        image_path = write_raw(tmp_path / "image", 4 * MIB, sample_blocks(4 * MIB))
        sim.clear_request_log()
        sim.script_fault(command, fault)
        log, stream = log_stream()
        response = rpc.handle(json.dumps(request("create_stemcell", str(image_path), dict(PROPS, disk_format="raw"))
                                         ).encode(), str(cfg), log)
        sent = [c for c, _ in sim.request_log]
        assert sent.count(command.lower()) == (2 if command == "deleteSnapshot" else 1), stream.getvalue()
        inventory = sim.inventory()
        assert inventory["volumes"] == [] and inventory["snapshots"] == [], stream.getvalue()
        if command == "deleteSnapshot":  # a cleanup failing once: the stemcell is made all the same
            assert response["error"] is None and inventory["templates"] == [response["result"]]
            assert "trying again" in stream.getvalue()
        else:
            assert response["error"] is not None and inventory["templates"] == [], stream.getvalue()
            assert response["error"]["message"].startswith("Creating stemcell 'bosh-kvm 1': ")
