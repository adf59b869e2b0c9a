"""The agent's settings document and its user-data encoding (registry-less, bosh-cpi-contract §4).

CloudStack stemcells read settings over HTTP from the virtual router's
``/latest/user-data`` (via mdproxy4cs), which serves the user data decoded:
the agent gets plain JSON.  The API wants it base64 (standard alphabet) and
refuses more than ``vm.userdata.max.length`` characters, so the CPI checks the
size against ``cloudstack.user_data_limit`` before it creates anything.

The document holds secrets (mbus and blobstore credentials, ``env``): it is
never logged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import disk_hints
from .errors import CloudError
from .networks import DYNAMIC, VIP, BoshNetwork, dns_network

if TYPE_CHECKING:
    from .cloudstack.models import Nic


def network_settings(networks: list[BoshNetwork], nics: Mapping[str, Nic],
                     vm_routes: dict[str, list]) -> dict[str, dict]:
    """Each BOSH network as the agent wants it: the director's fields plus mac, use_dhcp and routes.

    ``nics`` maps NIC-bearing network names to their CloudStack NIC.  Network
    cloud_properties are CPI input, not agent settings, and are left out.

    The agent matches a network to its interface by ``mac``.  No network carries
    an ``alias``: bosh-agent configures a network with an alias statically
    whatever its type, so a dynamic network would get a static copy of an
    address, and a second dynamic NIC the default network's address (bosh-agent
    platform/net/interface_configuration_creator.go, settings/service.go
    resolveNetwork).  Which NIC is eth0 matters to the deploy (the default NIC),
    not to what the agent reads.
    """
    result: dict[str, dict] = {}
    for network in networks:
        entry = {key: value for key, value in network.spec.items() if key != "cloud_properties"}
        entry["type"] = network.type
        if network.type != VIP:
            nic = nics.get(network.name)
            if nic is not None and network.type == DYNAMIC:
                for key, value in (("ip", nic.ip), ("netmask", nic.netmask), ("gateway", nic.gateway)):
                    if value:
                        entry[key] = value
            if nic is not None and nic.mac:
                entry["mac"] = nic.mac
            entry["use_dhcp"] = network.type == DYNAMIC
            routes = [_route(r) for r in network.props.routes] + [_route(r) for r in vm_routes.get(network.name, [])]
            if routes:
                entry["routes"] = routes
        result[network.name] = entry
    return result


def build(*, agent_id: str, vm_name: str, networks: dict[str, dict], dns: list[str], hypervisor: str | None,
          ephemeral: dict | None, env: dict | None, config) -> dict[str, Any]:
    """The settings document the agent reads from user data."""
    settings: dict[str, Any] = {
        "agent_id": agent_id,
        "vm": {"name": vm_name},
        "server": {"name": vm_name},
    }
    if config.agent.mbus:
        settings["mbus"] = config.agent.mbus
    settings["ntp"] = list(config.agent_ntp)
    if config.agent.blobstore is not None:
        settings["blobstore"] = {"provider": config.agent.blobstore.provider,
                                 "options": dict(config.agent.blobstore.options)}
    settings["networks"] = networks
    disks: dict[str, Any] = {"system": disk_hints.system_disk(hypervisor)}
    if ephemeral:
        disks["ephemeral"] = ephemeral
    disks["persistent"] = {}
    settings["disks"] = disks
    settings["env"] = env or {}
    if dns:
        settings["dns"] = {"nameserver": list(dns)}
    return settings


def default_dns(order: list[BoshNetwork]) -> list[str]:
    """The DNS servers of the network whose ``default`` holds "dns" (else eth0's)."""
    if not order:
        return []
    dns = dns_network(order).spec.get("dns") or []
    return [str(server) for server in dns] if isinstance(dns, list) else []


def encode(settings: dict) -> str:
    """Compact JSON, standard base64 (what the API accepts; the virtual router serves it decoded)."""
    text = json.dumps(settings, separators=(",", ":"), sort_keys=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def check_size(encoded: str, limit: int) -> None:
    size = len(encoded)
    if size > limit:
        raise CloudError(
            f"Agent settings are {size - limit} bytes over the user data limit ({size} bytes of base64, "
            f"cloudstack.user_data_limit is {limit}): raise cloudstack.user_data_limit together with CloudStack's "
            "global setting vm.userdata.max.length, or shrink env (e.g. fewer certificates in env.bosh)"
        )


def _route(route) -> dict:
    return {"destination": route.destination, "netmask": route.netmask, "gateway": route.gateway}
