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
