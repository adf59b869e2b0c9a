"""create_stemcell and delete_stemcell: the pure parts (OS types, strategy choice, naming, tags, the POST upload,
the built-in web server, the volume strategy's device search), the template waiter, and the actions' BOSH decisions
against the one fake of the gateway (tests/unit/fake_cloud): which zones, which strategy, cleanup after a failure,
a timeout or an interruption, light stemcells, error breadcrumbs, idempotent delete.

What CloudStack itself does with templates (rows per zone, status texts, upload slots, recovery of a create whose
answer was lost) is the gateway's, tested against the simulator in tests/unit/cloudstack/test_templates.py; the
whole CPI process against the simulator is tests/lifecycle/test_stemcells.py.  Only the bytes the post strategy
streams to the secondary storage VM go over (faked) HTTP here: a FakeHttp (tests/fake_http.py), the fake cloud's
``cloud.http``, stands in for the SSVM.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cloudstack_cpi import config
from cloudstack_cpi.actions import stemcells
from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.models import OsType
from cloudstack_cpi.cloudstack.templates import TemplateUpload
from cloudstack_cpi.cloudstack.transport import HttpTransport, TransportError
from cloudstack_cpi.errors import CloudError, Interrupted
from cloudstack_cpi.log import Logger
from cloudstack_cpi.stemcell import convert, image, ostypes, templates, upload_post, upload_url, upload_volume
from cloudstack_cpi.stemcell.readahead import ReadAhead
from tests.fake_http import FakeHttp
from tests.unit.fake_cloud import api_error, job_failure
from tests.unit.fake_cloud.templates import GONE, UPLOAD_URL
from tests.unit.stemcell.stemcell_image_builders import sample_blocks, tar_of, write_raw

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


class BodyTypeRecordingHttp(FakeHttp):
    """A FakeHttp that also records what ``request`` was given as the body, before it reads it whole."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[object] = []

    def request(self, method, url, *, body=None, headers=None, timeout):
        self.given.append(body)
        return super().request(method, url, body=body, headers=headers, timeout=timeout)


def test_upload_request_headers_and_streamed_body(tmp_path):
    path = qcow2_file(tmp_path / "image")
    plan = convert.plan_upload(image.detect(path), "kvm")
    assert plan.passes_through
    received = {}
    http = BodyTypeRecordingHttp()

    def ssvm(request):
        received["streamed"] = not isinstance(http.given[-1], (bytes, bytearray))  # an iterable, never held whole
        received["body"] = request.body  # read (by FakeHttp) while the upload runs, as a server would
        return 200, {}, "upload successful."

    http.add_callback("POST", UPLOAD.post_url, ssvm)
    log, stream = log_stream()
    upload_post.post(UPLOAD, plan, str(path), "tpl.qcow2", transport=http, log=log, timeout=(1, 5))
    request = http.calls[0].request
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


def test_upload_refused_by_the_secondary_storage(tmp_path):
    path = qcow2_file(tmp_path / "image")
    plan = convert.plan_upload(image.detect(path), "kvm")
    http = FakeHttp()
    http.post(UPLOAD.post_url, status=400, body="signature validation failed.")
    log, _ = log_stream()
    with pytest.raises(CloudError) as caught:
        upload_post.post(UPLOAD, plan, str(path), "tpl.qcow2", transport=http, log=log, timeout=(1, 5))
    assert caught.value.message == "Uploading tpl.qcow2: the secondary storage answered HTTP 400: signature validation failed."


def test_compressed_uploads_say_so():
    info = SimpleNamespace(compression="bzip2")
    assert upload_post.content_type(SimpleNamespace(compressed=True, info=info)) == "application/x-bzip"
    assert upload_post.content_type(SimpleNamespace(compressed=False, info=info)) == "application/octet-stream"


# --- waiting for a template: the waiter over the fake's scripted rows, on the fake's clock -----------------------
#
# The simulator cannot give a template a chosen sequence of statuses cheaply (its uploads and downloads reach
# "Download Complete" at once, or after real seconds with its realistic timing), so the waiter is tested on the
# fake's status scripts (``cloud.templates.show``); which texts CloudStack writes, and which of them mean failure,
# is tested with the gateway's Template model in tests/unit/cloudstack/test_templates.py.


def waiter(cloud, timeout=100.0) -> templates.Waiter:
    return templates.Waiter(cloud.templates, cloud.log, timeout=timeout)


def test_wait_until_download_complete_logging_progress(cloud):
    template = cloud.templates.add("t", status="NotUploaded")
    cloud.templates.show(template, "NotUploaded", "12% Downloaded", "Installing Template", "Download Complete")
    assert waiter(cloud).wait(template, "z1", what="Waiting", zone_name="zone-1").ready is True
    assert "in zone 'zone-1': NotUploaded" in cloud.log_text and "is ready in zone 'zone-1'" in cloud.log_text
    assert cloud.client.sleeps == pytest.approx([0.2, 0.3, 0.45])  # the intervals grow
    assert cloud.methods() == ["templates.in_zone"] * 4


def test_download_error_status_is_the_error_text(cloud):
    template = cloud.templates.add("t", status="5% Downloaded")
    cloud.templates.show(template, "5% Downloaded", "Failed to download template, error: HTTP Server returned 404")
    with pytest.raises(CloudError) as caught:
        waiter(cloud).wait(template, "z1", what="Waiting", zone_name="zone-1")
    assert caught.value.message == (f"Waiting: CloudStack reports for template {template} in zone 'zone-1': "
                                    "Failed to download template, error: HTTP Server returned 404")


def test_timeout_names_the_setting_and_last_status(cloud):
    template = cloud.templates.add("t", status="UploadInProgress")
    with pytest.raises(CloudError, match=r"within 5 s \(cloudstack.timeout.poll_template\); last status: "
                                         r"UploadInProgress"):
        waiter(cloud, timeout=5).wait(template, "z1", what="Waiting")
    assert sum(cloud.client.sleeps) == pytest.approx(5)  # the last pause ends at the deadline, not beyond it


def test_a_template_vanishing_while_waiting(cloud):
    template = cloud.templates.add("t", status="Processing")
    cloud.templates.show(template, "Processing", GONE)
    with pytest.raises(CloudError, match=f"template {template} disappeared from zone 'z1' .last status: Processing"):
        waiter(cloud).wait(template, "z1", what="Waiting")


# --- create_stemcell on the fake gateway: zones, strategies, cleanup -------------------------------------------

PROPS = {"name": "bosh-kvm", "version": "1", "hypervisor": "kvm", "os_distro": "ubuntu"}


@pytest.fixture
def image_path(tmp_path) -> str:
    return str(qcow2_file(tmp_path / "image"))


def answering(status: int, text: str):
    """A secondary storage VM (``cloud.templates.ssvm``) that answers every upload slot's POST so."""
    return lambda request: (status, {}, text)


@pytest.fixture
def ssvm(cloud) -> FakeHttp:
    """The secondary storage VM the post strategy streams to: every upload slot answers "upload successful."."""
    cloud.templates.ssvm = answering(200, "upload successful.")
    return cloud.http


def test_the_post_strategy_uploads_to_the_slot_and_tags_the_ready_template(cloud, ctx, image_path, ssvm):
    cloud.catalogue.os_type_list = list(OS_TYPES_NEW)
    cid = stemcells.create_stemcell(ctx, image_path, PROPS, {"tags": {"team": "ci"}})
    assert cloud.templates.made() == [cid]
    (slot,) = cloud.called("templates.request_upload")
    (new,) = slot["args"]
    assert re.fullmatch(r"bosh-kvm-1-[0-9a-f]{8}", new.name) and new.display_text == "bosh-kvm 1"
    assert new.os_type_id == "os-3" and new.bits == 64 and new.password_enabled is False  # Ubuntu 24.04 LTS
    assert new.requires_hvm is True and new.public is False  # stemcell.requires_hvm, stemcell.public_visibility
    assert (slot["image_format"], slot["hypervisor"], slot["zone_id"]) == ("QCOW2", "KVM", "z1")
    assert cloud.tags.of("Template", cid) == dict(new.tags) == {  # tagged beside the create; nothing more at the end
        "team": "ci", "stemcell_name": "bosh-kvm", "stemcell_version": "1", "director_uuid": "director-uuid-1"}
    (post,) = ssvm.calls
    assert post.request.url == f"{UPLOAD_URL}{cid}" and post.request.headers["X-signature"] == f"signature-of-{cid}"
    assert f"signature-of-{cid}" not in cloud.log_text and f"metadata-of-{cid}" not in cloud.log_text
    assert "templates.register" not in cloud.methods() and "templates.discard" not in cloud.methods()


def test_without_a_hypervisor_the_zones_only_one_is_used(cloud, ctx, image_path, ssvm):
    props = {key: value for key, value in PROPS.items() if key != "hypervisor"}
    cid = stemcells.create_stemcell(ctx, image_path, props)
    assert cloud.called("templates.request_upload")[0]["hypervisor"] == "KVM"
    assert cloud.tags.of("Template", cid) == {"stemcell_name": "bosh-kvm", "stemcell_version": "1",
                                              "director_uuid": "director-uuid-1"}


def test_without_a_hypervisor_a_zone_running_several_is_refused(cloud, ctx, image_path):
    cloud.catalogue.zone_hypervisors["z1"] = ["KVM", "XenServer"]
    props = {key: value for key, value in PROPS.items() if key != "hypervisor"}
    with pytest.raises(CloudError, match="name no hypervisor .xen, kvm or vmware. and zone 'zone-1' runs KVM, "
                                         "XenServer"):
        stemcells.create_stemcell(ctx, image_path, props)
    assert cloud.templates.made() == []


def test_the_template_is_made_in_the_first_zone_and_copied_to_the_others(cloud, make_ctx, image_path, ssvm):
    cloud.catalogue.zone_hypervisors["z2"] = ["KVM"]
    ctx = make_ctx(stemcell={"zones": ["zone-1", "zone-2", "z1"]})  # by name or id; once each
    cid = stemcells.create_stemcell(ctx, image_path, PROPS)
    assert [call["zone_id"] for call in cloud.called("templates.request_upload")] == ["z1"]
    (copy,) = cloud.called("templates.start_copy")
    assert copy["args"] == (cid,) and (copy["source_zone_id"], copy["zone_id"]) == ("z1", "z2")
    assert {row.zone_id for row in cloud.templates.rows_by_id[cid].values()} == {"z1", "z2"}
    assert cloud.called("templates.in_zone")[-1]["args"] == (cid, "z2")  # the copy was waited for
    assert "Copying template to zone 'zone-2': from zone 'zone-1'" in cloud.log_text


def test_a_zone_without_the_stemcells_hypervisor_is_refused_before_anything_is_made(cloud, make_ctx, image_path):
    ctx = make_ctx(stemcell={"zones": ["zone-1", "zone-2"]})
    with pytest.raises(CloudError) as caught:
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert caught.value.message == ("Creating stemcell 'bosh-kvm 1': Zone 'zone-2' has no KVM hosts (its "
                                    "hypervisors: XenServer); the stemcell is for KVM")
    assert not [method for method in cloud.methods() if method.startswith("templates.")]


def test_hypervisors_the_account_may_not_list_are_left_to_cloudstack(cloud, ctx, image_path, ssvm):
    cloud.fail("catalogue.hypervisors", api_error("listHypervisors", "The user is not allowed to request the API "
                                                                     "command or the API command does not exist", 401),
               times=None)
    assert stemcells.create_stemcell(ctx, image_path, PROPS) in cloud.templates.made()
    assert "Cannot list the hypervisors of zone 'zone-1'" in cloud.log_text and "not checking them" in cloud.log_text


def test_without_stemcell_zones_or_a_default_zone_the_operator_is_told(cloud, make_ctx, image_path):
    with pytest.raises(CloudError, match="No zone for stemcells: set cloudstack.stemcell.zones or "
                                         "cloudstack.default_zone"):
        stemcells.create_stemcell(make_ctx(default_zone=None), image_path, PROPS)
    with pytest.raises(CloudError, match=r"Zone 'zone-9' not found \(available: zone-1, zone-2\)"):
        stemcells.create_stemcell(make_ctx(stemcell={"zones": ["zone-9"]}), image_path, PROPS)
    assert cloud.templates.made() == []


def test_an_image_that_is_no_disk_is_refused_before_anything_is_made(cloud, ctx, tmp_path):
    text = tmp_path / "image"
    text.write_bytes(b"not a vm\n")
    with pytest.raises(CloudError, match=r"^Creating stemcell 'bosh-kvm 1': image .*9 bytes"):
        stemcells.create_stemcell(ctx, str(text), PROPS)
    assert not [method for method in cloud.methods() if method.startswith("templates.")]


def test_the_url_strategy_registers_the_staged_files_url_and_removes_the_file(cloud, make_ctx, image_path,
                                                                               tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    ctx = make_ctx(stemcell={"url": {"base_url": "http://web.test/stemcells/", "serve_directory": str(served)}})
    cid = stemcells.create_stemcell(ctx, image_path, PROPS)
    (register,) = cloud.called("templates.register")
    name = register["args"][0].name
    assert register["url"] == f"http://web.test/stemcells/{name}.qcow2" and register["image_format"] == "QCOW2"
    assert cloud.templates.made() == [cid] and "templates.request_upload" not in cloud.methods()
    assert list(served.iterdir()) == []  # staged for the download, removed once the template is ready


def test_the_url_strategy_with_a_base_url_needs_a_directory_to_serve_from(cloud, make_ctx, image_path):
    ctx = make_ctx(stemcell={"url": {"base_url": "http://web.test/stemcells"}})
    with pytest.raises(CloudError, match="base_url needs cloudstack.stemcell.url.serve_directory"):
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert cloud.templates.made() == [] and "templates.register" not in cloud.methods()


# Cleanup: whatever stops create_stemcell once the template exists removes it (the director never learns its id).


def test_a_failed_upload_status_deletes_the_template(cloud, ctx, image_path, ssvm):
    cloud.templates.new_statuses = ("NotUploaded", "UploadInProgress", "Upload Error: checksum mismatch")
    with pytest.raises(CloudError) as caught:
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert caught.value.message.startswith("Creating stemcell 'bosh-kvm 1': Waiting for the template: ")
    assert caught.value.message.endswith("Upload Error: checksum mismatch") and not caught.value.ok_to_retry
    (discarded,) = cloud.called("templates.discard")
    assert cloud.templates.made() == [] and discarded["args"] == (cloud.called("templates.in_zone")[0]["args"][0],)
    assert "tags.confirm" not in cloud.methods() and "Removing half-made template" in cloud.log_text


def test_a_timeout_deletes_the_template(cloud, make_ctx, image_path, ssvm):
    cloud.templates.new_statuses = ("Installing Template",)
    ctx = make_ctx(timeout={"poll_template": 30})
    with pytest.raises(CloudError, match=r"not ready in zone 'zone-1' within 30 s \(cloudstack.timeout.poll_template\)"
                                         r"; last status: Installing Template"):
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert cloud.templates.made() == [] and "templates.discard" in cloud.methods()
    assert sum(cloud.client.sleeps) == pytest.approx(30)  # on the fake's clock


def test_an_upload_the_secondary_storage_refuses_deletes_the_template(cloud, ctx, image_path):
    cloud.templates.ssvm = answering(
        500, "Upload failed: format mismatch, declared QCOW2 but the file is not a valid QCOW2 image")
    with pytest.raises(CloudError, match="HTTP 500: Upload failed: format mismatch"):
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert len(cloud.http.calls) == 1
    assert cloud.templates.made() == [] and "templates.discard" in cloud.methods()


def test_an_interrupted_upload_deletes_the_template_and_goes_on(cloud, ctx, image_path):
    def sigterm(request):
        raise Interrupted("SIGTERM")

    cloud.templates.ssvm = sigterm
    with pytest.raises(Interrupted):
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert len(cloud.http.calls) == 1
    assert cloud.templates.made() == [] and "templates.discard" in cloud.methods()


def test_a_failed_copy_to_another_zone_deletes_the_template_in_every_zone(cloud, make_ctx, image_path, ssvm):
    cloud.catalogue.zone_hypervisors["z2"] = ["KVM"]
    cloud.fail("templates.start_copy", job_failure("copyTemplate", "Failed to copy template to zone-2"))
    with pytest.raises(CloudError, match="^Creating stemcell 'bosh-kvm 1': Copying template to zone 'zone-2': "
                                         "copyTemplate job job-9 failed") as caught:
        stemcells.create_stemcell(make_ctx(stemcell={"zones": ["zone-1", "zone-2"]}), image_path, PROPS)
    assert caught.value.ok_to_retry  # errorcode 530
    assert cloud.templates.made() == [] and "templates.discard" in cloud.methods()


def test_a_cleanup_that_fails_once_is_tried_again(cloud, ctx, image_path, ssvm):
    cloud.templates.new_statuses = ("Upload Error",)
    cloud.fail("templates.delete", CloudStackError("deleteTemplate", "Internal Server Error", http_status=500))
    with pytest.raises(CloudError, match="Upload Error"):
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert cloud.templates.made() == [] and cloud.methods().count("templates.delete") == 2
    assert "trying again" in cloud.log_text


@pytest.mark.parametrize("error, message", [
    (CloudStackError("getUploadParamsForTemplate", "no answer from https://cs.test/client/api: read timed out",
                     kind="transport", outcome_unknown=True),
     "getUploadParamsForTemplate: no answer from https://cs.test/client/api: read timed out"),
    (CloudStackError("getUploadParamsForTemplate", "answered without 'postURL'", kind="transport"),
     "getUploadParamsForTemplate: answered without 'postURL'"),
])
def test_an_upload_slot_gone_wrong_is_reported_retryable_and_not_asked_again(cloud, ctx, image_path, error, message):
    """The gateway has removed the record such a call made (found by its unique name: test_templates.py in
    tests/unit/cloudstack); the action passes the error on, retryable, and sends nothing more."""
    cloud.fail("templates.request_upload", error)
    with pytest.raises(CloudError) as caught:
        stemcells.create_stemcell(ctx, image_path, PROPS)
    assert caught.value.message == f"Creating stemcell 'bosh-kvm 1': {message}" and caught.value.ok_to_retry
    assert cloud.methods().count("templates.request_upload") == 1
    assert not {"templates.discard", "templates.delete", "templates.in_zone"} & set(cloud.methods())


# The post strategy decompresses a tgz's root.img from before the requests that make the upload slot: they wait for
# CloudStack meanwhile (bench/README.md, "Stemcell uploads").  The thread goes with the call, whatever ends it.


@pytest.fixture
def tgz_image(tmp_path) -> tuple[str, bytes]:
    """The OpenStack/KVM stemcell layout: ``image``, a gzipped tar holding root.img (a qcow2); and root.img's bytes."""
    root = qcow2_file(tmp_path / "root.img", 256 * 1024)
    return str(tar_of(tmp_path / "image", {"root.img": root}, "gzip")), root.read_bytes()


@pytest.fixture
def read_aheads(cloud, monkeypatch) -> list[dict]:
    """Every ``upload_post.reading_ahead`` the call opens: the gateway methods called before it, its ReadAhead."""
    opened: list[dict] = []
    real = upload_post.reading_ahead

    @contextlib.contextmanager
    def recording(plan):
        with real(plan) as ahead:
            opened.append({"after": list(cloud.methods()), "ahead": ahead, "switch": sys.getswitchinterval()})
            yield ahead

    monkeypatch.setattr(upload_post, "reading_ahead", recording)
    return opened


def test_a_tgz_is_read_ahead_from_before_the_zones_are_listed(cloud, ctx, tgz_image, read_aheads):
    image_path, root = tgz_image
    switch_interval = sys.getswitchinterval()
    received = []

    def ssvm(request):
        received.append(request.body)
        return 200, {}, "upload successful."

    cloud.templates.ssvm = ssvm
    cid = stemcells.create_stemcell(ctx, image_path, PROPS)
    assert len(cloud.http.calls) == 1
    (opened,) = read_aheads
    assert opened["after"] == [] and isinstance(opened["ahead"], ReadAhead)  # the stemcell names its hypervisor
    assert not opened["ahead"]._thread.is_alive()
    assert opened["switch"] == upload_post.SWITCH_INTERVAL and sys.getswitchinterval() == switch_interval
    assert root in received[0] and cloud.templates.made() == [cid]
    (slot,) = cloud.called("templates.request_upload")
    assert slot["image_format"] == "QCOW2" and "steps: decompress, untar" in cloud.log_text


def test_without_a_hypervisor_the_tgz_is_read_ahead_once_the_zone_has_told_it(cloud, ctx, tgz_image, read_aheads,
                                                                              ssvm):
    props = {key: value for key, value in PROPS.items() if key != "hypervisor"}
    stemcells.create_stemcell(ctx, tgz_image[0], props)
    (opened,) = read_aheads
    assert opened["after"] == ["catalogue.zones", "catalogue.hypervisors"]
    assert not opened["ahead"]._thread.is_alive()


def test_a_call_failing_before_its_post_stops_the_read_ahead(cloud, ctx, tgz_image, read_aheads):
    cloud.fail("templates.request_upload", CloudStackError(
        "getUploadParamsForTemplate", "no answer from https://cs.test/client/api: read timed out", kind="transport",
        outcome_unknown=True))
    with pytest.raises(CloudError, match="read timed out"):
        stemcells.create_stemcell(ctx, tgz_image[0], PROPS)
    (opened,) = read_aheads
    assert not opened["ahead"]._thread.is_alive() and cloud.templates.made() == []
    assert sys.getswitchinterval() != upload_post.SWITCH_INTERVAL  # put back


def test_detecting_early_for_the_read_ahead_keeps_a_zones_error_first(cloud, make_ctx, tmp_path, read_aheads):
    """The image is looked at before the zones are listed, but what is wrong with it is said after their checks,
    as before: a zone without the stemcell's hypervisor is reported rather than the image."""
    text = tmp_path / "image"
    text.write_bytes(b"not a vm\n")
    ctx = make_ctx(stemcell={"zones": ["zone-1", "zone-2"]})
    with pytest.raises(CloudError, match="Zone 'zone-2' has no KVM hosts"):
        stemcells.create_stemcell(ctx, str(text), PROPS)
    with pytest.raises(CloudError, match=r"^Creating stemcell 'bosh-kvm 1': image .*9 bytes"):
        stemcells.create_stemcell(make_ctx(), str(text), PROPS)
    assert read_aheads == []


def test_a_passed_through_image_is_not_read_ahead(cloud, ctx, image_path, read_aheads, ssvm):
    stemcells.create_stemcell(ctx, image_path, PROPS)
    assert [opened["ahead"] for opened in read_aheads] == [None]


# --- light stemcells ---------------------------------------------------------------------------------------


def test_a_light_stemcell_names_an_existing_template_by_id_or_name(cloud, make_ctx):
    template = cloud.templates.add("bosh-light", zones=("z1", "z2"), owned=False)
    ctx = make_ctx(stemcell={"zones": ["zone-1", "zone-2"]})
    light = {"name": "bosh-kvm", "version": "1"}
    assert stemcells.create_stemcell(ctx, "/no/image", dict(light, template_id=template)) == f"{template} light"
    assert stemcells.create_stemcell(ctx, "/no/image", dict(light, template_name="bosh-light")) == f"{template} light"
    assert stemcells.create_stemcell(ctx, "/no/image", dict(light, light_template="bosh-light")) == f"{template} light"
    creates = {"templates.request_upload", "templates.register", "templates.create_from_snapshot", "tags.confirm"}
    assert not creates & set(cloud.methods()) and cloud.templates.made() == [template]


def test_a_light_stemcell_must_be_ready_in_every_zone(cloud, make_ctx):
    template = cloud.templates.add("bosh-light", zones=("z1",), status="45% Downloaded", owned=False)
    ctx = make_ctx(stemcell={"zones": ["zone-1", "zone-2"]})
    with pytest.raises(CloudError) as caught:
        stemcells.create_stemcell(ctx, "/no/image", {"name": "bosh-kvm", "version": "1", "template_id": template})
    assert caught.value.message == (f"Creating stemcell 'bosh-kvm 1': Light stemcell: template '{template}' is not "
                                    "ready in zone 'zone-1' (status: 45% Downloaded); not found in zone 'zone-2'")


def test_light_stemcell_cids_are_not_deleted(cloud, ctx):
    template = cloud.templates.add("bosh-light", owned=False)
    assert stemcells.delete_stemcell(ctx, f"{template} light") is None
    assert cloud.calls == [] and cloud.templates.made() == [template]
    assert "is a light stemcell: its template is left in place" in cloud.log_text


# --- delete_stemcell -----------------------------------------------------------------------------------------


def test_delete_stemcell_and_again(cloud, ctx):
    template = cloud.templates.add("bosh-kvm-1-0a1b2c3d", zones=("z1", "z2"))
    assert stemcells.delete_stemcell(ctx, template) is None
    assert cloud.templates.made() == []
    assert stemcells.delete_stemcell(ctx, template) is None  # BOSH: deleting what is gone is not an error
    assert stemcells.delete_stemcell(ctx, "never-existed") is None
    assert cloud.methods() == ["templates.delete"] * 3
    assert f"Stemcell '{template}': template already gone" in cloud.log_text


@pytest.mark.parametrize("error, retryable", [
    (job_failure("deleteTemplate", "Failed to delete template in secondary storage"), True),
    (api_error("deleteTemplate", "Account bosh does not have permission to delete template"), False),
])
def test_delete_stemcell_failure_is_reported_with_its_breadcrumb(cloud, ctx, error, retryable):
    template = cloud.templates.add("bosh-kvm-1-0a1b2c3d")
    cloud.fail("templates.delete", error)
    with pytest.raises(CloudError) as caught:
        stemcells.delete_stemcell(ctx, template)
    assert caught.value.message == f"Deleting stemcell '{template}': {error}"
    assert caught.value.ok_to_retry is retryable


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
        http = HttpTransport(False)  # what CloudStack does here, over the CPI's own transport: a real local server
        try:
            head = http.request("HEAD", server.url, timeout=(5, 5))
            assert head.status == 200 and head.header("Content-Length") == str(len(data))
            assert head.header("Accept-Ranges") == "bytes"
            assert http.request("GET", server.url, timeout=(5, 5)).body == data
            part = http.request("GET", server.url, headers={"Range": "bytes=1000-1999"}, timeout=(5, 5))
            assert part.status == 206 and part.body == data[1000:2000]
            assert part.header("Content-Range") == f"bytes 1000-1999/{len(data)}"
            assert http.request("GET", server.url, headers={"Range": f"bytes={len(data)}-"},
                                timeout=(5, 5)).status == 416
            assert http.request("GET", server.url.rsplit("/", 2)[0] + "/other/t.qcow2", timeout=(5, 5)).status == 404
        finally:
            http.close()
    with pytest.raises(TransportError):
        HttpTransport(False).request("GET", server.url, timeout=(2, 2))
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




# --- the volume strategy on the fake gateway: what it makes, and what it leaves after a failure ---------------


@pytest.fixture
def volume_ctx(cloud, make_ctx, tmp_path):
    """The CPI's own VM in zone-1, whose attached volumes appear under ``devices`` as block devices."""
    devices = tmp_path / "devices"
    cloud.volumes.device_dir = str(devices)
    vm = cloud.vms.add(zone="z1", hypervisor="KVM")
    return make_ctx(stemcell={"upload_strategy": "volume", "volume": {"vm_id": vm, "device_dir": str(devices)}})


@pytest.fixture
def raw_image(tmp_path) -> str:
    return str(write_raw(tmp_path / "image", 4 * MIB, sample_blocks(4 * MIB)))


RAW_PROPS = dict(PROPS, disk_format="raw")


def work_left(cloud) -> tuple[list[str], list[str]]:
    return cloud.volumes.data_volumes(), sorted(cloud.snapshots.items)


def test_the_volume_strategy_templates_a_snapshot_of_the_work_volume_and_removes_both(cloud, volume_ctx, raw_image):
    cid = stemcells.create_stemcell(volume_ctx, raw_image, RAW_PROPS)
    (volume,) = cloud.called("volumes.create")
    (snapshot,) = cloud.called("snapshots.create")
    (template,) = cloud.called("templates.create_from_snapshot")
    assert volume["name"] == snapshot["name"] == template["args"][1].name + "-work" and volume["size_gib"] == 1
    assert cloud.templates.made() == [cid] and work_left(cloud) == ([], [])
    assert cloud.tags.of("Template", cid)["stemcell_name"] == "bosh-kvm"
    assert "templates.request_upload" not in cloud.methods()


@pytest.mark.parametrize("method, step", [
    ("volumes.create", "Creating the stemcell work volume: "),
    ("volumes.attach", "Attaching the work volume "),
    ("snapshots.create", "Snapshotting the work volume "),
    ("templates.create_from_snapshot", "Creating a template from snapshot "),
])
def test_the_volume_strategy_leaves_nothing_when_a_step_fails(cloud, volume_ctx, raw_image, method, step):
    """Issue 16: the gateway removes what a create whose answer was lost made (found by its unique name: tests in
    tests/unit/cloudstack/); the strategy removes the work volume and snapshot it already has, detached first,
    and says which step failed."""
    command = {"volumes.create": "createVolume", "volumes.attach": "attachVolume", "snapshots.create": "createSnapshot",
               "templates.create_from_snapshot": "createTemplate"}[method]
    cloud.fail(method, CloudStackError(command, "no answer from https://cs.test/client/api: read timed out",
                                       kind="transport", outcome_unknown=True))
    with pytest.raises(CloudError) as caught:
        stemcells.create_stemcell(volume_ctx, raw_image, RAW_PROPS)
    assert caught.value.message.startswith(f"Creating stemcell 'bosh-kvm 1': {step}") and caught.value.ok_to_retry
    assert work_left(cloud) == ([], []) and cloud.templates.made() == []
    assert cloud.methods().count(method) == 1


def test_the_volume_strategy_tries_a_failed_snapshot_removal_again(cloud, volume_ctx, raw_image):
    cloud.fail("snapshots.delete", CloudStackError("deleteSnapshot", "Internal Server Error", http_status=500))
    cid = stemcells.create_stemcell(volume_ctx, raw_image, RAW_PROPS)
    assert cloud.templates.made() == [cid] and work_left(cloud) == ([], [])
    assert cloud.methods().count("snapshots.delete") == 2 and "trying again" in cloud.log_text


def test_a_failure_after_the_volume_strategys_template_exists_removes_everything(cloud, make_ctx, volume_ctx,
                                                                                raw_image):
    cloud.catalogue.zone_hypervisors["z2"] = ["KVM"]
    cloud.fail("templates.start_copy", job_failure("copyTemplate", "Failed to copy template to zone-2"))
    stemcell = volume_ctx.config.cloudstack.stemcell
    ctx = make_ctx(stemcell={"zones": ["zone-1", "zone-2"], "upload_strategy": "volume", "volume": {
        "vm_id": stemcell.volume.vm_id, "device_dir": stemcell.volume.device_dir}})
    with pytest.raises(CloudError, match="copyTemplate job job-9 failed"):
        stemcells.create_stemcell(ctx, raw_image, RAW_PROPS)
    assert work_left(cloud) == ([], []) and cloud.templates.made() == []
    assert "templates.discard" in cloud.methods()


def test_the_plain_reading_of_stemcell_cloud_properties_agrees_with_the_model():
    """create_stemcell reads what a stemcell builder writes without pydantic (stemcells._stemcell_props); it must
    have the model's fields and read them as the model does, and leave everything else to the model."""
    import dataclasses

    from cloudstack_cpi import models

    assert [f.name for f in dataclasses.fields(stemcells._StemcellProps)] == list(
        models.StemcellCloudProperties.model_fields)
    plain = {"name": "bosh-kvm", "version": "1.622", "hypervisor": "kvm", "disk": 5120, "os_distro": "ubuntu",
             "extra": ["kept"]}
    read = stemcells._stemcell_props(plain)
    assert isinstance(read, stemcells._StemcellProps)
    model = models.StemcellCloudProperties.model_validate(plain)
    assert {name: getattr(read, name) for name in models.StemcellCloudProperties.model_fields} == {
        name: getattr(model, name) for name in models.StemcellCloudProperties.model_fields}
    converted = stemcells._stemcell_props({"name": "bosh-kvm", "disk": "5120"})  # pydantic's business
    assert isinstance(converted, models.StemcellCloudProperties) and converted.disk == 5120
    with pytest.raises(CloudError, match="Invalid stemcell cloud_properties: version"):
        stemcells._stemcell_props({"version": 1.5})
