"""The config schema (schema.py): what each kind of property accepts, and that problems never quote values.

The wording follows pydantic's (the cloud_properties are pydantic models), so both kinds of mistake read alike.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cloudstack_cpi import config
from cloudstack_cpi.errors import CpiError
from cloudstack_cpi.schema import (
    Anything,
    Choice,
    Flag,
    Integer,
    Mapping,
    Nested,
    Number,
    Problem,
    Secret,
    SecretText,
    Section,
    Text,
    TextList,
    parse,
)


class Inner(Section):
    """An inner section."""

    size: int = Integer(3, ge=1, le=9, doc="size")


class Sample(Section):
    """A section with one property of each kind."""

    name: str = Text(doc="required text")
    label: str | None = Text(None, doc="optional text")
    secret: Secret = SecretText("", doc="a secret")
    ratio: float = Number(1.5, gt=0, doc="a number")
    on: bool = Flag(False, doc="a flag")
    mode: str = Choice("a", options=("a", "b", "c"), doc="a choice")
    items: list[str] = TextList(doc="texts")
    options: dict = Mapping(doc="a map")
    legacy: object = Anything(doc="ignored")
    inner: Inner = Nested(Inner)
    maybe: Inner | None = Nested(Inner, optional=True)
    global_: float = Number(2, key="global", doc="a keyword as key")


def problems(raw) -> str:
    with pytest.raises(Problem) as caught:
        parse(Sample, raw)
    return caught.value.message


def test_defaults_fill_what_is_absent_and_nested_sections_get_their_own():
    sample = parse(Sample, {"name": "n"})
    assert (sample.name, sample.label, sample.ratio, sample.on, sample.mode) == ("n", None, 1.5, False, "a")
    assert sample.items == [] and sample.options == {} and sample.legacy is None and sample.maybe is None
    assert sample.inner.size == 3 and sample.global_ == 2
    assert parse(Sample, {"name": "n"}).items is not sample.items  # no list shared between configs


def test_values_are_read_as_pydantic_reads_json():
    sample = parse(Sample, {"name": "n", "ratio": "2.5", "inner": {"size": 4.0}, "global": 7, "maybe": {},
                            "secret": "s3cret", "legacy": {"any": ["thing"]}, "items": ["x"], "mode": "c"})
    assert sample.ratio == 2.5 and sample.inner.size == 4 and isinstance(sample.inner.size, int)
    assert sample.global_ == 7.0 and isinstance(sample.global_, float) and sample.maybe == Inner(size=3)
    assert sample.secret.get_secret_value() == "s3cret" and "s3cret" not in repr(sample)
    assert sample.legacy == {"any": ["thing"]} and sample.items == ["x"] and sample.mode == "c"


@pytest.mark.parametrize("raw, says", [
    ({}, "name: Field required"),
    ({"name": 5}, "name: Input should be a valid string"),
    ({"name": "n", "label": 5}, "label: Input should be a valid string"),
    ({"name": "n", "ratio": 0}, "ratio: Input should be greater than 0"),
    ({"name": "n", "ratio": "fast"}, "ratio: Input should be a valid number, unable to parse string as a number"),
    ({"name": "n", "ratio": True}, "ratio: Input should be a valid number"),
    ({"name": "n", "ratio": 1e400}, "ratio: Input should be a finite number"),
    ({"name": "n", "on": "true"}, "on: must be true or false (a JSON boolean, not a string or number)"),
    ({"name": "n", "on": None}, "on: must be true or false"),
    ({"name": "n", "mode": "d"}, "mode: Input should be 'a', 'b' or 'c'"),
    ({"name": "n", "items": "x"}, "items: Input should be a valid list"),
    ({"name": "n", "items": ["x", 3]}, "items.1: Input should be a valid string"),
    ({"name": "n", "options": []}, "options: Input should be a valid dictionary"),
    ({"name": "n", "inner": 3}, "inner: Input should be a valid dictionary or instance of Inner"),
    ({"name": "n", "inner": {"size": 2.5}}, ("inner.size: Input should be a valid integer, got a number with a "
                                             "fractional part")),
    ({"name": "n", "inner": {"size": 0}}, "inner.size: Input should be greater than or equal to 1"),
    ({"name": "n", "inner": {"size": 10}}, "inner.size: Input should be less than or equal to 9"),
    ({"name": "n", "inner": {"szie": 2}}, "inner.szie: unknown property, did you mean 'size'?"),
    ({"name": "n", "zzz": 1}, ("zzz: unknown property (valid here: global, inner, items, label, legacy, maybe, mode, "
                               "name, on, options, ratio, secret)")),
])
def test_each_problem_names_its_path_and_reason(raw, says):
    assert says in problems(raw)


def test_every_problem_is_reported_at_once_and_no_value_is_quoted():
    message = problems({"name": "value-one", "ratio": "value-two", "on": "value-three", "inner": {"size": -77}})
    assert message.count(";") == 2
    assert "value-" not in message and "-77" not in message


def test_sections_are_frozen_and_compare_by_value():
    sample = parse(Sample, {"name": "n"})
    with pytest.raises(AttributeError, match="frozen"):
        sample.name = "other"
    assert sample == parse(Sample, {"name": "n"}) and sample != parse(Sample, {"name": "m"})


def test_a_config_check_failure_reads_as_a_value_error():
    with pytest.raises(CpiError, match="cloudstack.endpoint: Value error, must be an http:// or https:// URL"):
        config.parse({"cloudstack": {"endpoint": "ftp://x", "api_key": "k", "secret_access_key": "s"}})


def test_reading_the_config_imports_no_pydantic():
    """Issue 17: every call but info reads the config; pydantic's model machinery costs ~70 ms per process, more
    than has_vm's own work, so the config schema must not import it (the cloud_properties models still do)."""
    code = ("import sys, json; from cloudstack_cpi import config; "
            "config.parse(json.loads(sys.argv[1])); print(sorted(m for m in sys.modules if 'pydantic' in m))")
    raw = {"cloudstack": {"endpoint": "http://127.0.0.1:9/client/api", "api_key": "k", "secret_access_key": "s",
                          "timeout": {"global": 5}, "stemcell": {"zones": ["z"]}},
           "agent": {"mbus": "nats://a:b@c:4222", "blobstore": {"provider": "dav", "options": {}}}}
    completed = subprocess.run([sys.executable, "-I", "-c", code, json.dumps(raw)], capture_output=True, text=True,
                               check=True)
    assert completed.stdout.strip() == "[]"
