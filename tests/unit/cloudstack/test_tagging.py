"""The tagging service against the simulator.

CloudStack facts (apache/cloudstack TaggedResourceManagerImpl): createTags refuses a key the resource already has
(the job fails: "tag ... already on ..."), so changing a value is deleteTags then createTags; listed resources embed
their tags, so a caller that has them needs no listTags.
"""

from __future__ import annotations


def test_only_what_differs_is_changed(sim, gateway, arranged):
    volume = gateway.volumes.create(name="tag-diff", zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                    size_gib=1, tags={"keep": "1", "change": "old"})
    sim.clear_request_log()
    gateway.tags.apply("Volume", volume.id, {"keep": "1", "change": "new", "add": 5},
                       existing=gateway.volumes.get(volume.id).tags)
    sent = [(command, params) for command, params in sim.request_log if command in ("createtags", "deletetags")]
    assert [command for command, _ in sent] == ["deletetags", "createtags"]
    assert sent[0][1]["tags[0].key"] == "change" and "tags[1].key" not in sent[0][1]
    assert "listtags" not in [command for command, _ in sim.request_log]  # the listed tags were used
    assert dict(gateway.volumes.get(volume.id).tags) == {"keep": "1", "change": "new", "add": "5"}


def test_a_refusal_is_replanned_from_what_is_there_now(sim, gateway, arranged):
    """A lost first attempt's job may have set the tags meanwhile: the stale plan is refused, the new one holds."""
    volume = gateway.volumes.create(name="tag-replan", zone_id=arranged.zone, offering_id=arranged.custom_offering,
                                    size_gib=1, tags={})
    gateway.tags.apply("Volume", volume.id, {"job": "db"})  # what the lost attempt did
    gateway.tags.apply("Volume", volume.id, {"job": "db", "index": "0"}, existing={})  # planned from stale tags
    assert dict(gateway.tags.listed("Volume", volume.id)) == {"job": "db", "index": "0"}
