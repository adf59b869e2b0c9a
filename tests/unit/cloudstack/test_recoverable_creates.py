"""``Gateway.create_recoverable`` through the volume and snapshot services, against the simulator.

CloudStack facts these rest on (apache/cloudstack): an async create answers the new resource's id together with
its job id (ApiServer.queueCommand: ``objectId`` in the response of a BaseAsyncCreateCmd), so the tags can go on
while the create job runs; createTags is its own async job (CreateTagsCmd); a job that fails after its create()
leaves the row, which the job's ``jobinstanceid`` names.
"""

from __future__ import annotations

import pytest

from cloudstack_cpi.cloudstack.errors import CloudStackError

TAGS = {"cpi_role": "persistent", "director_uuid": "d-1"}


def live_volumes(sim, name: str) -> list[dict]:
    with sim.state.lock:
        return [v for v in sim.state.volumes.values() if v.get("name") == name and v.get("state") != "Expunged"]


def create(gateway, arranged, name: str):
    return gateway.volumes.create(name=name, zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                  size_gib=2, tags=TAGS)


def test_the_tags_go_on_beside_the_create(sim, gateway, arranged):
    sim.clear_request_log()
    volume = create(gateway, arranged, "rc-tags")
    # createTags went out before the create's job was asked about: no wait between them; the mark of a volume
    # not yet handed over went on with them and came off last
    assert [command for command, _ in sim.request_log] == ["createvolume", "createtags", "queryasyncjobresult",
                                                           "queryasyncjobresult", "deletetags", "queryasyncjobresult"]
    assert dict(gateway.volumes.get(volume.id).tags) == TAGS
    assert gateway.volumes.unconfirmed() == []


def test_a_failed_tagging_removes_the_volume_and_says_so(sim, gateway, arranged):
    sim.script_fault("createTags", "job_failure")
    with pytest.raises(CloudStackError) as caught:
        create(gateway, arranged, "rc-tag-fails")
    assert str(caught.value).startswith("tagging volume '") and "createTags job" in str(caught.value)
    assert live_volumes(sim, "rc-tag-fails") == []


def test_removing_the_half_made_volume_survives_a_transient_failure(sim, gateway, arranged, log_stream):
    sim.script_fault("createTags", "job_failure")
    sim.script_fault("deleteVolume", "error")  # HTTP 500 once: a mutation is not repeated by the client itself
    with pytest.raises(CloudStackError):
        create(gateway, arranged, "rc-delete-retried")
    assert live_volumes(sim, "rc-delete-retried") == []
    assert "trying again" in log_stream.getvalue()


def test_a_failed_create_job_leaves_nothing(sim, gateway, arranged):
    sim.script_fault("createVolume", "job_failure")
    with pytest.raises(CloudStackError) as caught:
        create(gateway, arranged, "rc-job-fails")
    assert caught.value.kind == "job"
    assert live_volumes(sim, "rc-job-fails") == []


def test_a_lost_create_answer_is_found_by_its_name_and_removed(sim, gateway, arranged):
    """The director never learns an id from a call that failed: what the lost answer made must go."""
    sim.script_fault("createVolume", "drop_after_action")
    with pytest.raises(CloudStackError) as caught:
        create(gateway, arranged, "rc-lost")
    assert caught.value.outcome_unknown and caught.value.is_transient
    assert live_volumes(sim, "rc-lost") == []


def test_a_snapshot_whose_tagging_fails_is_removed(sim, gateway, arranged):
    volume = create(gateway, arranged, "rc-snap-source")
    gateway.volumes.attach(volume.id, arranged.vm())  # a snapshot needs a Ready volume: attaching makes it one
    sim.script_fault("createTags", "job_failure")
    with pytest.raises(CloudStackError, match=r"^tagging snapshot '"):
        gateway.snapshots.create(volume.id, name="rc-snap", tags={"director_uuid": "d-1"})
    with sim.state.lock:
        assert [s for s in sim.state.snapshots.values() if s.get("name") == "rc-snap"] == []


def test_a_snapshot_is_tagged_and_found_by_name(sim, gateway, arranged):
    volume = create(gateway, arranged, "rc-snap-source-2")
    gateway.volumes.attach(volume.id, arranged.vm())
    snapshot = gateway.snapshots.create(volume.id, name="rc-snap-2", tags={"job": "db"})
    assert gateway.snapshots.named(volume.id, "rc-snap-2") == [gateway.snapshots.get(snapshot.id)]
    assert dict(gateway.snapshots.get(snapshot.id).tags) == {"job": "db"}
    assert gateway.snapshots.delete(snapshot.id) is True
    assert gateway.snapshots.delete(snapshot.id) is False  # gone: done


def test_a_create_that_cannot_take_its_mark_off_is_not_handed_over(sim, gateway, arranged):
    """The mark goes only once everything else is done; a failure there discards the volume like any other."""
    sim.script_fault("deleteTags", "job_failure")
    with pytest.raises(CloudStackError):
        create(gateway, arranged, "rc-confirm-fails")
    assert live_volumes(sim, "rc-confirm-fails") == []


def test_confirming_again_is_harmless(sim, gateway, arranged):
    """deleteTags of a tag that is no longer there fails (TaggedResourceManagerImpl.deleteTags: "Unable to find any
    tags which conform to specified delete parameters"): confirm reads the tags then, and the mark gone is done."""
    volume = create(gateway, arranged, "rc-confirm-twice")
    gateway.tags.confirm("Volume", volume.id)
    assert gateway.volumes.get(volume.id) is not None


def test_unconfirmed_lists_what_still_carries_the_mark(sim, gateway, arranged):
    marked = gateway.volumes.start_create(name="rc-marked", zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                          size_gib=1, made=lambda volume_id: None).wait()
    gateway.tags.start("Volume", marked.id, {"cpi_unconfirmed": "true"}).wait()
    assert [v.id for v in gateway.volumes.unconfirmed()] == [marked.id]
    gateway.tags.confirm("Volume", marked.id)
    assert gateway.volumes.unconfirmed() == []


def test_a_lost_snapshot_answer_is_found_by_its_name_and_removed(sim, gateway, arranged):
    """createSnapshot is not sent again after a lost answer (a mutation); the snapshot it made is found by its
    unique name among the volume's snapshots and removed, since the director never learns its id."""
    volume = create(gateway, arranged, "rc-snap-lost-source")
    gateway.volumes.attach(volume.id, arranged.vm())
    sim.clear_request_log()
    sim.script_fault("createSnapshot", "drop_after_action")
    with pytest.raises(CloudStackError) as caught:
        gateway.snapshots.create(volume.id, name="rc-snap-lost", tags={})
    assert caught.value.outcome_unknown
    assert [command for command, _ in sim.request_log].count("createsnapshot") == 1
    with sim.state.lock:
        assert [s for s in sim.state.snapshots.values() if s.get("name") == "rc-snap-lost"] == []


def test_meanwhile_runs_once_the_create_and_its_tags_are_sent_and_before_their_jobs_are_waited_for(
        sim, gateway, arranged):
    """The caller's ``meanwhile`` (create_disk's sweep of killed calls' disks) runs while the create's job does: after
    createVolume and createTags are sent, before the first queryAsyncJobResult."""
    sim.clear_request_log()
    seen: list[str] = []
    volume = gateway.volumes.create(name="vol-meanwhile", zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                    size_gib=2, tags=TAGS,
                                    meanwhile=lambda: seen.extend(name for name, _ in sim.request_log))
    assert seen == ["createvolume", "createtags"] and volume.name == "vol-meanwhile"
    gateway.volumes.delete(volume.id)
