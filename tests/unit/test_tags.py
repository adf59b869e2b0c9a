from cloudstack_cpi import tags


def test_sanitise_makes_what_cloudstack_accepts():
    out = tags.sanitise({"director": "d", "index": 0, "empty": "", "none": None, "": "x", "k" * 300: "v" * 300,
                         "flag": True, "nested": {"a": 1}})
    assert out["director"] == "d" and out["index"] == "0" and out["flag"] == "true"
    assert out["empty"] == tags.EMPTY_VALUE and out["none"] == tags.EMPTY_VALUE
    assert "" not in out
    assert len(next(k for k in out if k.startswith("kkk"))) == 255 and out["k" * 255] == "v" * 255
    assert out["nested"] == '{"a": 1}'


def test_keys_differing_in_case_collapse():
    assert tags.sanitise({"Name": "a", "name": "b"}) == {"name": "b"}


def test_plan_touches_only_changes():
    existing = {"director": "d", "job": "old", "other": "keep"}
    wanted = {"director": "d", "job": "new", "index": "0"}
    to_delete, to_create = tags.plan(existing, wanted)
    assert to_delete == {"job": "old"}
    assert to_create == {"job": "new", "index": "0"}
    assert tags.plan({"a": "1"}, {"a": "1"}) == ({}, {})
