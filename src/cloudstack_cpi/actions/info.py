"""info and ping: answered without the config or the network."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import CallContext

# One format per kind of image create_stemcell accepts (see docs/stemcells.md).
STEMCELL_FORMATS = [
    "cloudstack-vhdx",   # bosh-linux-stemcell-builder's XenServer stemcell (a bzip2 VHD, despite the name)
    "cloudstack-vhd",
    "cloudstack-qcow2",  # KVM
    "cloudstack-raw",
    "cloudstack-ova",    # VMware
    "cloudstack-light",  # an existing template named in the stemcell's cloud_properties
]


def info(ctx: CallContext) -> dict:
    """Report the highest CPI API version spoken and the stemcell formats accepted.

    The director and bosh-cli call this before other methods; the result must
    carry ``api_version`` (a number) and ``stemcell_formats`` (an array).
    """
    from ..rpc import MAX_API_VERSION

    return {"api_version": MAX_API_VERSION, "stemcell_formats": list(STEMCELL_FORMATS)}


def ping(ctx: CallContext) -> str:
    """Answer "pong": the director's liveness probe of the external CPI."""
    return "pong"
