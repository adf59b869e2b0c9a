import pytest

from cloudstack_cpi import lookups
from cloudstack_cpi.errors import CloudError

ITEMS = [{"id": "id-1", "name": "small"}, {"id": "id-2", "name": "medium"}, {"id": "id-3", "name": "twin"},
         {"id": "id-4", "name": "twin"}]


def test_pick_by_id_or_name():
    assert lookups.pick(ITEMS, "id-2", kind="Offering")["name"] == "medium"
    assert lookups.pick(ITEMS, "small", kind="Offering")["id"] == "id-1"


def test_pick_reports_what_exists():
    with pytest.raises(CloudError, match=r"Offering 'huge' not found in zone 'z' \(available: medium, small, twin\)"):
        lookups.pick(ITEMS, "huge", kind="Offering", where="zone 'z'")


def test_pick_refuses_ambiguous_names():
    with pytest.raises(CloudError, match="ambiguous.*id-3, id-4"):
        lookups.pick(ITEMS, "twin", kind="Offering")


@pytest.mark.parametrize("mib, gib", [(1, 1), (1024, 1), (1025, 2), (2048, 2), (10_000, 10), (25_000, 25)])
def test_gib_rounds_up(mib, gib):
    assert lookups.gib(mib) == gib


def test_light_stemcell_cids_name_their_template():
    assert lookups.stemcell_template_id("3f2a-tmpl light") == "3f2a-tmpl"
    assert lookups.stemcell_template_id("3f2a-tmpl") == "3f2a-tmpl"


def test_only_named_ignores_substring_matches():
    """listVirtualMachines and listSnapshots filter ``name`` with LIKE '%name%' on the real server
    (QueryManagerImpl / SnapshotManagerImpl): what the list answers is compared again, exactly."""
    answered = [{"id": "id-9", "name": "vm-1-ephemeral-old"}, {"id": "id-1", "name": "vm-1-ephemeral"}]
    assert lookups.only_named(answered, "vm-1-ephemeral", kind="Volume")["id"] == "id-1"
    assert lookups.only_named(answered, "vm-1", kind="Volume") is None


def test_only_named_refuses_two_exact_matches():
    with pytest.raises(CloudError, match=r"Volume name 'twin' is ambiguous: 2 have exactly that name \(id-3, id-4\)"):
        lookups.only_named(ITEMS, "twin", kind="Volume")


class _Templates:
    def __init__(self, rows):
        self.rows = rows

    def find(self, command, **params):
        return None

    def list(self, command, **params):
        return self.rows


def test_template_by_name_is_exact_and_one_row_per_zone_is_one_template():
    rows = [{"id": "t-2", "name": "stemcell-long"}, {"id": "t-1", "name": "stemcell", "zoneid": "z1"},
            {"id": "t-1", "name": "stemcell", "zoneid": "z2"}]
    assert lookups.template(_Templates(rows), "stemcell")["id"] == "t-1"
    with pytest.raises(CloudError, match="ambiguous"):
        lookups.template(_Templates([*rows, {"id": "t-3", "name": "stemcell"}]), "stemcell")
