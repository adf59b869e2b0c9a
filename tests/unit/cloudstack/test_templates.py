"""The template service against the simulator: rows per zone, the three creates and what a failure leaves, deletes,
and what a row's status says.

Every create carries its caller's unique name; when its answer is lost, its job fails or the answer names no
template, the record is found by that name and deleted before the error goes on, and the create is never sent
twice (getUploadParamsForTemplate makes a record on every call).
"""

from __future__ import annotations

import dataclasses

import pytest
import requests

from cloudstack_cpi.cloudstack.errors import CloudStackError
from cloudstack_cpi.cloudstack.templates import NewTemplate, Template, TemplateUpload


def new(name: str, sim) -> NewTemplate:
    with sim.state.lock:
        ostype = next(o["id"] for o in sim.state.ostypes.values() if o["description"] == "Other Linux (64-bit)")
    return NewTemplate(name=name, display_text=f"{name} 1", os_type_id=ostype, requires_hvm=True, public=False)


def named_in_sim(sim, name: str) -> list[str]:
    with sim.state.lock:
        return [t["id"] for t in sim.state.templates.values() if t["name"] == name]


def sent(sim, command: str) -> int:
    return [c for c, _ in sim.request_log].count(command.lower())


def upload(gateway, arranged, sim, name: str) -> TemplateUpload:
    return gateway.templates.request_upload(new(name, sim), image_format="QCOW2", hypervisor="KVM",
                                            zone_id=arranged.zone)


def test_an_upload_slot_is_a_named_template_record_whose_secrets_stay_out_of_the_log(sim, gateway, arranged,
                                                                                     log_stream):
    slot = upload(gateway, arranged, sim, "tpl-slot")
    assert named_in_sim(sim, "tpl-slot") == [slot.id] and slot.post_url.endswith(slot.id)
    assert set(slot.headers) == {"X-signature", "X-metadata", "X-expires"}
    gateway.log.info(f"signature {slot.signature} metadata {slot.metadata}")
    assert slot.signature not in log_stream.getvalue() and slot.metadata not in log_stream.getvalue()
    row = gateway.templates.in_zone(slot.id, arranged.zone)
    assert isinstance(row, Template) and row.name == "tpl-slot" and not row.ready and not row.failed
    assert [t.id for t in gateway.templates.named("tpl-slot")] == [slot.id]
    assert gateway.templates.delete(slot.id) is True and named_in_sim(sim, "tpl-slot") == []


def test_a_lost_upload_slot_answer_is_not_asked_again_and_leaves_no_record(sim, gateway, arranged):
    sim.clear_request_log()
    sim.script_fault("getUploadParamsForTemplate", "drop_after_action")
    with pytest.raises(CloudStackError) as caught:
        upload(gateway, arranged, sim, "tpl-slot-lost")
    assert caught.value.outcome_unknown and caught.value.command == "getUploadParamsForTemplate"
    assert sent(sim, "getUploadParamsForTemplate") == 1
    assert named_in_sim(sim, "tpl-slot-lost") == []


def test_a_lost_register_answer_leaves_no_record(sim, gateway, arranged):
    sim.clear_request_log()
    sim.script_fault("registerTemplate", "drop_after_action")
    with pytest.raises(CloudStackError) as caught:
        gateway.templates.register(new("tpl-reg-lost", sim), image_format="QCOW2", hypervisor="KVM",
                                   zone_id=arranged.zone, url="http://127.0.0.1:9/nothing.qcow2")
    assert caught.value.outcome_unknown and sent(sim, "registerTemplate") == 1
    assert named_in_sim(sim, "tpl-reg-lost") == []


def snapshot_of_a_volume(gateway, arranged, name: str) -> str:
    volume = gateway.volumes.create(name=f"{name}-vol", zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                    size_gib=1, tags={})
    vm_id = arranged.vm()
    gateway.volumes.attach(volume.id, vm_id)  # a snapshot needs a Ready volume: attaching makes it one
    return gateway.snapshots.create(volume.id, name=f"{name}-snap", tags={}).id


def test_a_template_from_a_snapshot_is_ready_in_the_snapshots_zone(sim, gateway, arranged):
    snapshot_id = snapshot_of_a_volume(gateway, arranged, "tpl-from-snap")
    template = gateway.templates.create_from_snapshot(snapshot_id, new("tpl-from-snap", sim))
    assert template.name == "tpl-from-snap" and template.zone_id == arranged.zone and template.ready
    assert gateway.templates.delete(template.id) is True


@pytest.mark.parametrize("fault", ["drop_after_action", "job_failure"])
def test_a_template_from_a_snapshot_that_fails_or_whose_answer_is_lost_leaves_nothing(sim, gateway, arranged, fault):
    name = f"tpl-snap-{fault}"
    snapshot_id = snapshot_of_a_volume(gateway, arranged, name)
    sim.clear_request_log()
    sim.script_fault("createTemplate", fault)
    with pytest.raises(CloudStackError):
        gateway.templates.create_from_snapshot(snapshot_id, new(name, sim))
    assert sent(sim, "createTemplate") == 1
    assert named_in_sim(sim, name) == []


def test_copies_run_side_by_side_and_each_zone_gets_a_row(sim, gateway, arranged):
    snapshot_id = snapshot_of_a_volume(gateway, arranged, "tpl-copy")
    template = gateway.templates.create_from_snapshot(snapshot_id, new("tpl-copy", sim))
    with sim.state.lock:
        other = next(z["id"] for z in sim.state.zones.values() if z["name"] == "zone-2")
    pending = gateway.templates.start_copy(template.id, source_zone_id=arranged.zone, zone_id=other, what="copying")
    assert pending.wait() is None
    assert {row.zone_id for row in gateway.templates.rows(template.id)} == {arranged.zone, other}
    assert gateway.templates.delete(template.id) is True
    assert gateway.templates.rows(template.id) == []


def test_deleting_is_idempotent_and_an_unknown_id_has_no_rows(sim, gateway, arranged):
    slot = upload(gateway, arranged, sim, "tpl-twice")
    assert gateway.templates.delete(slot.id) is True
    assert gateway.templates.delete(slot.id) is False
    assert gateway.templates.rows("no-such-template") == []
    assert gateway.templates.in_zone("no-such-template", arranged.zone) is None
    assert gateway.templates.discard("no-such-template") is True


def test_executable_templates_by_id_and_by_exact_name(gateway, arranged):
    by_id = gateway.templates.executable_by_id(arranged.template, arranged.zone)
    assert by_id is not None and by_id.name == "bosh-stemcell-existing" and by_id.ready
    assert by_id.os_type_name == "Ubuntu 22.04 LTS"  # ostypename: create_vm reads the KVM root disk's bus from it
    assert [t.id for t in gateway.templates.executable_named("bosh-stemcell-existing", arranged.zone)] == [
        arranged.template]
    assert gateway.templates.executable_named("bosh-stemcell", arranged.zone) == []  # names are exact
    assert gateway.templates.executable_by_id("no-such-template", arranged.zone) is None


# --- what a row's status says ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status, failed", [
    ("Download Complete", False), ("45% Downloaded", False), ("Installing Template", False), ("NotUploaded", False),
    ("UploadInProgress", False), ("Processing", False), ("Upload Error", True), ("UploadError", True),
    ("UploadAbandoned", True), ("Failed post upload script: checksum mismatch", True),
    ("Upload failed: format mismatch", True), ("DOWNLOAD_ERROR", True),
    ("Failed to download template, error: HTTP Server returned 404 (expected 200 OK)", True),
])
def test_status_texts(status, failed):
    """listTemplates' ``status`` is TemplateJoinDaoImpl.getTemplateStatus (apache/cloudstack, server/.../api/query/
    dao): "Download Complete" once downloaded; while downloading "<n>% Downloaded", then "Installing Template" at
    100 %; otherwise the store's error string when there is one (the SSVM's, e.g. NfsSecondaryStorageResource's
    "Failed post upload script: ...", HttpTemplateDownloader's "HTTP Server returned 404 (expected 200 OK)"), else
    the template's state name (VirtualMachineTemplate.State: NotUploaded, UploadInProgress, UploadError,
    UploadAbandoned).  Only texts naming an error mean the secondary storage gave up."""
    assert Template("tpl-1", status=status).failed is failed


def test_an_upload_slot_records_the_new_templates_settings(sim, gateway, arranged):
    """getUploadParamsForTemplate (GetUploadParamsForTemplateCmd) takes the template's settings with the slot
    request; the record is made then, with status NotUploaded (VirtualMachineTemplate.State) in the slot's zone."""
    slot = upload(gateway, arranged, sim, "tpl-settings")
    with sim.state.lock:
        record = dict(sim.state.templates[slot.id])
    assert (record["format"], record["hypervisor"], record["displaytext"]) == ("QCOW2", "KVM", "tpl-settings 1")
    assert record["isextractable"] is True and record["ispublic"] is False and record["passwordenabled"] is False
    assert record["bits"] == 64 and record["ostypeid"] == new("tpl-settings", sim).os_type_id
    row = gateway.templates.in_zone(slot.id, arranged.zone)
    assert row is not None and row.status == "NotUploaded" and not row.ready and not row.failed
    assert gateway.templates.delete(slot.id) is True


def test_an_upload_slot_answer_without_a_post_url_leaves_no_record(sim, gateway, arranged, monkeypatch):
    """GetUploadParamsResponse always names id, postURL, metadata, expires and signature (apache/cloudstack
    api/.../response/GetUploadParamsResponse.java); an answer that lacks one (a proxy, a different server) cannot
    be used, and the record it made is found by its name and deleted; the command is not sent again."""
    from cloudstack_simulator.commands import REGISTRY

    original = REGISTRY["getuploadparamsfortemplate"]

    def without_post_url(ctx):
        answer = original.handler(ctx)
        answer["getuploadparams"].pop("postURL")
        return answer

    monkeypatch.setitem(REGISTRY, "getuploadparamsfortemplate", dataclasses.replace(original, handler=without_post_url))
    sim.clear_request_log()
    with pytest.raises(CloudStackError, match="answered without 'postURL'") as caught:
        upload(gateway, arranged, sim, "tpl-no-url")
    assert caught.value.is_transient and sent(sim, "getUploadParamsForTemplate") == 1
    assert named_in_sim(sim, "tpl-no-url") == []


def test_the_slot_is_sent_to_before_the_templates_tags_are_waited_for(sim, gateway, arranged):
    """Issue 17: the POST need not wait for the createTags job that runs beside it (a tag job takes ~0.5 s on a
    real cloud, and the first poll 50 ms even on an instant one); the tags are on the server's queue before the
    POST starts, so a process killed during it leaves a template the next call's sweep finds by its mark."""
    sim.clear_request_log()
    seen: list[list[str]] = []

    def send(slot: TemplateUpload) -> None:
        seen.append([command for command, _ in sim.request_log])

    slot = gateway.templates.request_upload(new("tpl-send-early", sim), image_format="QCOW2", hypervisor="KVM",
                                            zone_id=arranged.zone, send=send)
    (before_send,) = seen
    assert before_send[-2:] == ["getuploadparamsfortemplate", "createtags"]
    assert "queryasyncjobresult" not in before_send
    assert sent(sim, "queryAsyncJobResult") >= 1  # then the tags were waited for
    assert gateway.templates.delete(slot.id) is True


def test_a_failed_send_deletes_the_template_it_was_for(sim, gateway, arranged):
    def send(slot: TemplateUpload) -> None:
        raise ValueError("the image is truncated")

    with pytest.raises(ValueError, match="truncated"):
        gateway.templates.request_upload(new("tpl-send-fails", sim), image_format="QCOW2", hypervisor="KVM",
                                         zone_id=arranged.zone, send=send)
    assert named_in_sim(sim, "tpl-send-fails") == []


QCOW2_HEADER = b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(16) + (1 << 20).to_bytes(8, "big") + bytes(480)


@pytest.mark.parametrize("content, status, ready, failed", [
    (QCOW2_HEADER, "Download Complete", True, False),
    (b"not a disk image" * 32, ("Upload failed: format mismatch, declared QCOW2 but the file is not a valid QCOW2 "
                                "image (bad magic)"), False, True),
], ids=["a-qcow2", "not-a-qcow2"])
def test_the_rows_status_after_the_bytes_are_posted(sim, gateway, arranged, content, status, ready, failed):
    """The SSVM checks what was posted to the slot, then marks the template downloaded or records its error string
    (NfsSecondaryStorageResource, UPLOAD_FINISHED -> postUpload); the row shows "Download Complete" or that text
    (TemplateJoinDaoImpl.getTemplateStatus).  The simulator's check and text are its own (uploads.py sniff_error);
    with its instant timing the verdict is there when the POST answers."""
    slot = upload(gateway, arranged, sim, f"tpl-posted-{ready}")
    answer = requests.post(slot.post_url, headers=slot.headers, files={"file": ("t.qcow2", content)}, timeout=5)
    assert answer.status_code == (200 if ready else 500)
    row = gateway.templates.in_zone(slot.id, arranged.zone)
    assert row is not None and (row.status, row.ready, row.failed) == (status, ready, failed)
    assert gateway.templates.delete(slot.id) is True
    assert gateway.templates.in_zone(slot.id, arranged.zone) is None  # what a waiter sees once it is gone


def test_a_template_in_several_zones_is_one_template_by_name(gateway, arranged):
    """Without a zone, listTemplates answers one row per zone the template is in (TemplateJoinDaoImpl: a row per
    template_zone_ref); choosing by name must see one template there, not one per zone."""
    rows = gateway.client.list("listTemplates", templatefilter="executable", name="bosh-stemcell-existing")
    assert len({row["zoneid"] for row in rows}) > 1, "the scenario's template is in more than one zone"
    [template] = gateway.templates.executable_named("bosh-stemcell-existing")
    assert template.id == arranged.template
