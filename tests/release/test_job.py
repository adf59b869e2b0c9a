"""The cloudstack_cpi job: its spec, and config/cpi.json and bin/cpi rendered as the director and create-env do."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from cloudstack_cpi import config as cpi_config
from cloudstack_cpi.schema import Nested, Prop, Section

from .conftest import JOB, RenderError, load_yaml

REQUIRED = {"cloudstack.endpoint", "cloudstack.api_key", "cloudstack.secret_access_key"}
NOT_IN_CONFIG = {"env.http_proxy", "env.https_proxy", "env.no_proxy"}

# bosh-deployment bosh.yml + cloudstack/cpi.yml, create-env side: cloud_provider.properties.
CREATE_ENV = {
    "cloudstack": {
        "endpoint": "https://cloud.example.com/client/api",
        "api_key": "api-key-1",
        "secret_access_key": "secret-key-1",
        "default_key_name": "bosh",
        "default_zone": "zone-1",
    },
    "agent": {
        "mbus": "https://mbus:mbus-password@0.0.0.0:6868",
        "blobstore": {"provider": "local", "options": {"blobstore_path": "/var/vcap/micro_bosh/data/cache"}},
    },
    "ntp": ["time1.google.com", "time2.google.com"],
}

# The same on the director's instance group, plus our additions and proxies.
DIRECTOR = {
    "cloudstack": {
        "endpoint": "https://cloud.example.com/client/api/",
        "api_key": "api-key-1",
        "secret_access_key": "secret-key-1",
        "default_key_name": "bosh",
        "default_zone": "zone-1",
        "expunge_vm": False,
        "default_security_groups": ["bosh", "default"],
        "log_level": "debug",
        "api_retries": 3,
        "timeout": {"global": 1200, "create_vm": 1800},
        "default_offer": {"disk": "shared.custom", "compute": "Medium Instance"},
        "stemcell": {"upload_strategy": "url", "url": {"listen_port": 8181, "advertise_host": "10.0.0.6"}},
        "enable_auto_anti_affinity": True,
        "ca_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "private_key": "",
    },
    "agent": {
        "mbus": "nats://10.0.0.6:4222",
        "blobstore": {
            "provider": "dav",
            "options": {
                "endpoint": "http://10.0.0.6:25250",
                "user": "agent",
                "password": "agent-blobstore-password",
                "tls": {"cert": {"ca": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"}},
            },
        },
    },
    "ntp": ["0.pool.ntp.org"],
    "env": {"http_proxy": "http://proxy:3128", "https_proxy": "http://proxy:3128", "no_proxy": "10.0.0.0/8,.internal"},
    # What the director sends a job whose spec does not declare it is never seen.
    "nats": {"password": "ignored"},
}


def rendered_config(job_dir):
    raw = json.loads((job_dir / "config" / "cpi.json").read_text())
    return raw, cpi_config.parse(raw, source="config/cpi.json")


def check_bash(job_dir):
    script = job_dir / "bin" / "cpi"
    completed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    return script.read_text()


def test_create_env_properties_render_a_config_the_model_loads(render):
    job_dir = render(CREATE_ENV)
    raw, cfg = rendered_config(job_dir)

    assert cfg.cloudstack.endpoint == "https://cloud.example.com/client/api"
    assert cfg.cloudstack.api_key == "api-key-1"
    assert cfg.cloudstack.secret_access_key.get_secret_value() == "secret-key-1"
    assert cfg.cloudstack.default_zone == "zone-1"
    assert cfg.cloudstack.default_key_name == "bosh"
    assert cfg.agent.mbus == "https://mbus:mbus-password@0.0.0.0:6868"
    assert cfg.agent.blobstore.provider == "local"
    assert cfg.agent.blobstore.options == {"blobstore_path": "/var/vcap/micro_bosh/data/cache"}
    assert cfg.agent_ntp == ["time1.google.com", "time2.google.com"]
    # Only what the manifest set is in the file; the model's defaults apply to the rest.
    assert set(raw) == {"cloudstack", "agent", "ntp"}
    assert set(raw["cloudstack"]) == {"endpoint", "api_key", "secret_access_key", "default_key_name", "default_zone"}
    assert cfg.cloudstack.expunge_vm is True
    assert cfg.cloudstack.timeout.create_vm == 900
    assert cfg.cloudstack.default_offer.custom_disk == "shared.custom"

    script = check_bash(job_dir)
    assert "proxy" not in script.replace("# ", "").split("set -e", 1)[1].split("BOSH_PACKAGES_DIR", 1)[0]


def test_director_properties_render_a_config_the_model_loads(render):
    job_dir = render(DIRECTOR)
    raw, cfg = rendered_config(job_dir)
    cs = cfg.cloudstack

    assert cs.endpoint == "https://cloud.example.com/client/api"
    assert cs.expunge_vm is False
    assert cs.default_security_groups == ["bosh", "default"]
    assert cs.log_level == "debug" and cs.api_retries == 3
    assert cs.timeout.global_ == 1200 and cs.timeout.create_vm == 1800 and cs.timeout.delete_vm == 600
    assert cs.default_offer.disk == "shared.custom" and cs.default_offer.compute == "Medium Instance"
    assert cs.stemcell.upload_strategy == "url"
    assert cs.stemcell.url.listen_port == 8181 and cs.stemcell.url.advertise_host == "10.0.0.6"
    assert cs.stemcell.url.listen_host == "0.0.0.0"
    assert cs.enable_auto_anti_affinity is True and cs.auto_anti_affinity_type == "host anti-affinity"
    assert cs.ca_cert.startswith("-----BEGIN CERTIFICATE-----")
    assert "private_key" not in raw["cloudstack"], "empty strings count as unset"
    assert cfg.agent.mbus == "nats://10.0.0.6:4222"
    assert cfg.agent.blobstore.provider == "dav"
    assert cfg.agent.blobstore.options["password"] == "agent-blobstore-password"
    assert cfg.agent.blobstore.options["tls"]["cert"]["ca"].startswith("-----BEGIN CERTIFICATE-----")
    assert cfg.agent_ntp == ["0.pool.ntp.org"]
    assert "nats" not in raw and "env" not in raw

    script = check_bash(job_dir)
    for variable, value in [("http_proxy", "http://proxy:3128"), ("HTTPS_PROXY", "http://proxy:3128"),
                            ("no_proxy", "10.0.0.0/8,.internal"), ("NO_PROXY", "10.0.0.0/8,.internal")]:
        assert f"export {variable}={value}\n" in script
    assert "BOSH_PACKAGES_DIR=${BOSH_PACKAGES_DIR:-/var/vcap/packages}" in script
    assert "BOSH_JOBS_DIR=${BOSH_JOBS_DIR:-/var/vcap/jobs}" in script
    assert re.search(r"^export LC_ALL=C\.UTF-8$", script, re.M)
    assert 'exec "$BOSH_PACKAGES_DIR/cloudstack_cpi/bin/python3" -I -c' in script
    assert '"$BOSH_JOBS_DIR/cloudstack_cpi/config/cpi.json"' in script
    assert "2>" not in script and "/var/vcap/sys/log" not in script, "stderr must reach the director"


def test_proxy_values_are_quoted_for_the_shell(render, tmp_path):
    hostile = "http://proxy:3128/$(touch pwned) 'x'"
    script = check_bash(render({**CREATE_ENV, "env": {"https_proxy": hostile}}))
    body = script.split("BOSH_PACKAGES_DIR=", 1)[0]
    completed = subprocess.run(["bash", "-c", body + '\nprintf %s "$https_proxy"'], cwd=tmp_path,
                               capture_output=True, text=True)
    assert completed.stdout == hostile
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_required_properties_fail_the_render(render, missing):
    properties = json.loads(json.dumps(CREATE_ENV))
    del properties["cloudstack"][missing.split(".")[1]]
    with pytest.raises(RenderError, match=re.escape(missing)):
        render(properties)


def test_empty_required_property_fails_the_render(render):
    properties = json.loads(json.dumps(CREATE_ENV))
    properties["cloudstack"]["api_key"] = ""
    with pytest.raises(RenderError, match="cloudstack.api_key"):
        render(properties)


# --- the spec against config.py ------------------------------------------------------


def _leaves(section: type[Section], prefix: str):
    """(property name, schema.Prop) for every leaf of the config schema."""
    for name, prop in section.__props__.items():
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(prop, Nested) and not prop.optional:
            yield from _leaves(prop.section, key)
        else:
            yield key, prop


def _default(prop: Prop):
    return None if prop.required else prop.default_value()


def config_leaves():
    leaves = dict(_leaves(cpi_config.Config, ""))
    # agent.blobstore is one object: provider + free-form options.
    leaves.pop("agent.blobstore")
    # Keys of the Go CPI's config.json that the model accepts and ignores: a manifest that still sets the Go
    # release's job properties needs no declaration (BOSH drops undeclared properties), private_key excepted.
    return {key: field for key, field in leaves.items()
            if key == "cloudstack.private_key" or not field.doc.startswith(cpi_config.GO_CPI_COMPAT)}


def spec_properties():
    return load_yaml(JOB / "spec")["properties"]


def test_spec_declares_every_config_field_and_only_those():
    declared = set(spec_properties())
    expected = set(config_leaves()) | {"agent.blobstore.provider", "agent.blobstore.options"} | NOT_IN_CONFIG
    assert declared == expected


def test_spec_documents_every_property_and_its_cpi_default():
    leaves = config_leaves()
    for name, definition in spec_properties().items():
        description = (definition or {}).get("description", "")
        assert description, f"{name} has no description"
        # Defaults live in the CPI, so that cpi.json carries only what the manifest sets.
        assert "default" not in definition, f"{name}: no BOSH default, state it as (CPI default: ...)"
        field = leaves.get(name)
        if field is None:
            continue
        default = _default(field)
        match = re.search(r"\(CPI default: (.+)\)$", description)
        if default is None:
            assert match is None, f"{name} has no default in config.py"
        else:
            assert match, f"{name}: description must end with (CPI default: {json.dumps(default)})"
            assert json.loads(match.group(1)) == default, f"{name}: spec says {match.group(1)}, config.py {default!r}"


def _sample(name: str, field):
    default = _default(field)
    if default == []:
        return [f"sample-{name}"]
    if default is not None:
        return default
    if name == "cloudstack.ca_cert":  # the config refuses anything but PEM text
        return f"-----BEGIN CERTIFICATE-----\nsample-{name}\n-----END CERTIFICATE-----\n"
    return f"sample-{name}"


def test_every_declared_property_reaches_its_place_in_cpi_json(render):
    properties: dict = {}

    def put(name, value):
        node = properties
        *parents, last = name.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    values = {name: _sample(name, field) for name, field in config_leaves().items()}
    values["cloudstack.endpoint"] = "https://cloud.example.com/client/api"
    for name, value in values.items():
        put(name, value)
    put("agent.blobstore.provider", "s3")
    put("agent.blobstore.options", {"bucket_name": "b"})

    raw, cfg = rendered_config(render(properties))
    for name, value in values.items():
        node = raw
        for key in name.split("."):
            node = node[key]
        assert node == value, name
    assert raw["agent"]["blobstore"] == {"provider": "s3", "options": {"bucket_name": "b"}}
    assert cfg.cloudstack.stemcell.volume.vm_id == "sample-cloudstack.stemcell.volume.vm_id"


def test_docs_list_every_job_property():
    docs = (JOB.parents[2] / "docs" / "release.md").read_text()
    missing = [name for name in spec_properties() if f"| `{name}` |" not in docs]
    assert not missing, f"docs/release.md lacks {missing}"
