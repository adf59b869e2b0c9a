"""The generated reference pages match the models they come from."""

from cloudstack_cpi.operator import docs


def test_generated_reference_pages_are_current():
    assert docs.main(["--check"]) == 0, "run: .venv/bin/python -m cloudstack_cpi.operator.docs"


def test_every_config_and_cloud_property_is_documented():
    from cloudstack_cpi import config, models

    for model in (config.Config, models.VMCloudProperties, models.NetworkCloudProperties, models.DiskCloudProperties):
        for path, _, _, meaning in docs.field_rows(model):
            assert meaning, f"{model.__name__}: {path} has no description"


def test_rows_carry_nested_paths_and_defaults():
    from cloudstack_cpi import config

    rows = {path: (kind, default) for path, kind, default, _ in docs.field_rows(config.Config)}
    assert rows["cloudstack.timeout.create_vm"] == ("number", "`900`")
    assert rows["cloudstack.endpoint"][1] == "**required**"
    assert rows["cloudstack.skip_verify_ssl"] == ("boolean", "`false`")
