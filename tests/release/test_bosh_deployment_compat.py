"""release/manifests/cpi.yml is a drop-in for bosh-deployment's cloudstack/cpi.yml.

bosh_deployment_cloudstack_vars.json records bosh-deployment's file as data
(its source path and the commit it was read at are in the file): the
((variables)) it asks for, the paths it replaces and the value each path ends
up with.  A vars file that worked with bosh-deployment's ops file must work
with ours, so cpi.yml asks for exactly those variables, no more (a new
variable would stop `bosh create-env` with "Expected to find variables"), and
replaces the same paths, so that bosh-deployment's other ops files (which
address /instance_groups/name=bosh/properties/cloudstack/..., ...) still apply.
Optional features live in ops files of their own (cpi-release-url.yml).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import RELEASE, load_yaml

BOSH_DEPLOYMENT = json.loads(Path(__file__).with_name("bosh_deployment_cloudstack_vars.json").read_text())
MANIFESTS = RELEASE / "manifests"
VARIABLE = re.compile(r"\(\(([^()]+)\)\)")
# The release itself is the one thing the ops file exists to change.
RELEASE_PATHS = {"/releases/-", "/instance_groups/name=bosh/jobs/-", "/cloud_provider/template?"}


def variables(value) -> set[str]:
    """The ((variables)) of a parsed YAML document, as bosh interpolates them (comments are not read)."""
    if isinstance(value, dict):
        return {name for child in value.values() for name in variables(child)}
    if isinstance(value, list):
        return {name for child in value for name in variables(child)}
    if isinstance(value, str):
        return set(VARIABLE.findall(value))
    return set()


def effective_values(ops: list[dict]) -> dict[str, object]:
    values: dict[str, object] = {}
    for op in ops:
        values[op["path"]] = op["value"]
    return values


def test_the_recorded_data_says_where_it_comes_from():
    assert BOSH_DEPLOYMENT["path"] == "cloudstack/cpi.yml"
    assert re.fullmatch(r"[0-9a-f]{40}", BOSH_DEPLOYMENT["commit"])
    assert BOSH_DEPLOYMENT["commit"] in BOSH_DEPLOYMENT["source"]
    assert variables(BOSH_DEPLOYMENT["values"]) == set(BOSH_DEPLOYMENT["variables"])


def test_ops_file_asks_for_exactly_bosh_deployments_variables():
    ours = variables(load_yaml(MANIFESTS / "cpi.yml"))
    theirs = set(BOSH_DEPLOYMENT["variables"])
    assert ours - theirs == set(), "variables a bosh-deployment vars file does not have"
    assert theirs - ours == set(), "bosh-deployment variables our ops file ignores"


def test_ops_file_replaces_the_same_paths():
    ops = load_yaml(MANIFESTS / "cpi.yml")
    assert all(op["type"] == "replace" for op in ops)
    assert {op["path"] for op in ops} == set(BOSH_DEPLOYMENT["paths"])


def test_ops_file_sets_the_same_values_except_the_release():
    ours = effective_values(load_yaml(MANIFESTS / "cpi.yml"))
    theirs = BOSH_DEPLOYMENT["values"]
    for path in set(theirs) - RELEASE_PATHS:
        assert ours[path] == theirs[path], path
    # The job keeps its name (director.cpi_job and cloud_provider.template name it), only the release changes.
    assert ours["/instance_groups/name=bosh/jobs/-"]["name"] == theirs["/instance_groups/name=bosh/jobs/-"]["name"]
    assert ours["/cloud_provider/template?"]["name"] == theirs["/cloud_provider/template?"]["name"]
    assert ours["/releases/-"]["name"] == ours["/cloud_provider/template?"]["release"]
    assert ours["/releases/-"]["url"].startswith("file://"), "no published release yet: a local tarball, no sha1 needed"


def test_release_url_ops_file_is_optional_and_only_adds_its_own_variable():
    ops = load_yaml(MANIFESTS / "cpi-release-url.yml")
    release = load_yaml(MANIFESTS / "cpi.yml")[0]["value"]["name"]
    assert [op["path"] for op in ops] == [f"/releases/name={release}/url"]
    assert variables(ops) == {"cloudstack_cpi_release_url"}


def test_docs_and_readme_use_bosh_deployments_variable_names():
    root = RELEASE.parent
    for doc in (root / "README.md", root / "docs" / "release.md"):
        text = doc.read_text()
        assert "cloudstack_default_zone" not in text, f"{doc}: bosh-deployment's variable is cloudstack_zone"
        assert "cloudstack_zone" in text, doc
        if "cloudstack_cpi_release_url" in text:
            assert "cpi-release-url.yml" in text, f"{doc}: the variable exists only with that ops file"
