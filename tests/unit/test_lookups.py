import pytest

from cloudstack_cpi import lookups
from cloudstack_cpi.cloudstack.models import ServiceOffering, Volume
from cloudstack_cpi.errors import CloudError

ITEMS = [ServiceOffering("id-1", "small"), ServiceOffering("id-2", "medium"), ServiceOffering("id-3", "twin"),
         ServiceOffering("id-4", "twin")]


def test_pick_by_id_or_name():
    assert lookups.pick(ITEMS, "id-2", kind="Offering").name == "medium"
    assert lookups.pick(ITEMS, "small", kind="Offering").id == "id-1"


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
    answered = [Volume("id-9", name="vm-1-ephemeral-old"), Volume("id-1", name="vm-1-ephemeral")]
    assert lookups.only_named(answered, "vm-1-ephemeral", kind="Volume").id == "id-1"
    assert lookups.only_named(answered, "vm-1", kind="Volume") is None


def test_only_named_refuses_two_exact_matches():
    with pytest.raises(CloudError, match=r"Volume name 'twin' is ambiguous: 2 have exactly that name \(id-3, id-4\)"):
        lookups.only_named(ITEMS, "twin", kind="Volume")


def test_older_than_reads_cloudstacks_times_and_never_guesses():
    now = 1_780_000_000.0  # 2026-05-28T20:26:40Z
    assert lookups.older_than("2026-05-28T19:26:40+0000", 3000, now)
    assert not lookups.older_than("2026-05-28T19:26:40+0000", 4000, now)
    assert not lookups.older_than("", 1, now) and not lookups.older_than("yesterday", 1, now)
