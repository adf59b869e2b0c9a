"""Choosing the CloudStack OS type (``listOsTypes``) a new stemcell template is registered with.

CloudStack needs an ``ostypeid`` for every template; the hypervisor uses it to
pick drivers and defaults (on XenServer it decides PV versus HVM).  The
operator may name one in ``cloudstack.stemcell.os_type``; otherwise the
stemcell's ``os_distro`` (``ubuntu``), its name (``...-ubuntu-jammy-...``) and
``architecture`` are mapped onto what this cloud actually offers, because OS
type catalogues differ between CloudStack versions ("Ubuntu 22.04 LTS" in
recent ones, "Ubuntu 20.04 (64-bit)" style in older ones).

Everything here is pure: it takes the cloud's OS types (``Catalogue.os_types``) and returns one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import CloudError

if TYPE_CHECKING:
    from ..cloudstack.models import OsType

# Fallbacks, in order of preference, when the distribution is not in the catalogue.
FALLBACKS = ("Other Linux (64-bit)", "Other PV (64-bit)", "Other Linux 64-bit", "Other (64-bit)")

# How distributions appear at the start of CloudStack OS type descriptions.
DISTRO_PREFIXES = {
    "ubuntu": ("Ubuntu",),
    "debian": ("Debian GNU/Linux", "Debian"),
    "centos": ("CentOS",),
    "rhel": ("Red Hat Enterprise Linux",),
    "redhat": ("Red Hat Enterprise Linux",),
    "rocky": ("Rocky Linux",),
    "almalinux": ("AlmaLinux",),
    "alma": ("AlmaLinux",),
    "opensuse": ("openSUSE", "SUSE Linux Enterprise"),
    "suse": ("SUSE Linux Enterprise",),
    "sles": ("SUSE Linux Enterprise",),
    "fedora": ("Fedora",),
    "oracle": ("Oracle Linux", "Oracle Enterprise Linux"),
}

# Ubuntu code names as they appear in stemcell names (bosh-...-ubuntu-jammy-go_agent).
UBUNTU_RELEASES = {
    "trusty": "14.04", "xenial": "16.04", "bionic": "18.04", "focal": "20.04", "jammy": "22.04", "noble": "24.04",
}

_VERSION = re.compile(r"(\d+(?:\.\d+)*)")
_32_BIT = re.compile(r"32-bit|\bi[3-6]86\b|\bx86\)", re.IGNORECASE)
_64_BIT_ARCHES = {None, "", "x86_64", "amd64", "x64", "64", "64-bit", "arm64", "aarch64"}


def choose(os_types: Iterable[OsType], *, configured: str | None = None, os_distro: str | None = None,
           os_type: str | None = None, architecture: str | None = None,
           stemcell_name: str | None = None) -> OsType:
    """The OS type for a new template.

    ``configured`` (a description, or an id) wins and must exist.  Otherwise the
    distribution's entries are considered: the release named in the stemcell
    (``jammy`` -> 22.04) when the cloud has it, else the newest release; 32-bit
    entries only for 32-bit stemcells.  Without a match, "Other Linux (64-bit)"
    then "Other PV (64-bit)".
    """
    items = [item for item in os_types if item.description]
    if configured:
        return _configured(items, configured)
    want_64 = (architecture or "").strip().lower() in _64_BIT_ARCHES
    distro = _distro(os_distro, os_type, stemcell_name)
    if distro:
        candidates = [item for item in items if _is_distro(item.description, distro)
                      and _bits_match(item.description, want_64)]
        if candidates:
            return _best_release(candidates, distro, stemcell_name)
    for description in FALLBACKS if want_64 else ("Other Linux (32-bit)", *FALLBACKS):
        for item in items:
            if item.description.lower() == description.lower():
                return item
    raise CloudError(
        "No suitable CloudStack OS type for the stemcell "
        f"(os_distro {os_distro!r}, architecture {architecture!r}) and no 'Other Linux (64-bit)' fallback; "
        f"set cloudstack.stemcell.os_type to one of: {_listing(items)}"
    )


def _configured(items: list[OsType], configured: str) -> OsType:
    for item in items:
        if item.id == configured or item.description == configured:
            return item
    matches = [item for item in items if item.description.lower() == configured.strip().lower()]
    if matches:
        return matches[0]
    raise CloudError(f"OS type '{configured}' (cloudstack.stemcell.os_type) not found in listOsTypes "
                     f"(available: {_listing(items)})")


def _distro(os_distro: str | None, os_type: str | None, stemcell_name: str | None) -> str | None:
    for value in (os_distro, os_type):
        key = (value or "").strip().lower()
        if key in DISTRO_PREFIXES:
            return key
    name = (stemcell_name or "").lower()
    for key in DISTRO_PREFIXES:
        if re.search(rf"(^|[-_]){re.escape(key)}([-_]|$)", name):
            return key
    return None


def _is_distro(description: str, distro: str) -> bool:
    lowered = description.lower()
    return any(lowered.startswith(prefix.lower()) for prefix in DISTRO_PREFIXES[distro])


def _bits_match(description: str, want_64: bool) -> bool:
    is_32 = bool(_32_BIT.search(description))
    return is_32 != want_64


def _version(description: str) -> tuple[int, ...]:
    match = _VERSION.search(description)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _best_release(candidates: list[OsType], distro: str, stemcell_name: str | None) -> OsType:
    if distro == "ubuntu" and stemcell_name:
        for codename, release in UBUNTU_RELEASES.items():
            if re.search(rf"(^|[-_]){codename}([-_]|$)", stemcell_name.lower()):
                named = [item for item in candidates if _version(item.description)[:2] == _version(release)]
                if named:
                    return _prefer_plain(named)
    newest = max(_version(item.description) for item in candidates)
    return _prefer_plain([item for item in candidates if _version(item.description) == newest])


def _prefer_plain(items: list[OsType]) -> OsType:
    """Among equal releases prefer "Ubuntu 22.04 LTS" or "(64-bit)" over variants (e.g. "... PV")."""
    return sorted(items, key=lambda item: (len(item.description), item.description))[0]


def _listing(items: list[OsType]) -> str:
    names = sorted(item.description for item in items)
    return ", ".join(names[:25]) + (" ..." if len(names) > 25 else "") if names else "none"
