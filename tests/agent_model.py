"""What the real bosh-agent and a Linux guest do with the CPI's settings: a model for tests.

Restated from the sources, not from the CPI's code, so that the CPI's tests can
check its output against what the agent will do with it:

- bosh-agent v2.695.0 (the version CloudStack stemcells pin) and main as of
  2026: settings/settings.go (``Network.IsDHCP``, ``populatePersistentDiskSettings``),
  settings/service.go (``GetSettings``/``resolveNetwork``: DHCP networks with
  an empty prefix get the default network's address),
  platform/net/interface_configuration_creator.go (``CreateInterfaceConfigurations``),
  infrastructure/devicepathresolver/{virtio,id,mapped}_device_path_resolver.go.
- The guest: Linux virtio_blk takes the lowest free index for a new disk
  (``ida_alloc`` in drivers/block/virtio_blk.c), so a hot-plugged disk gets the
  lowest free ``vdX`` name; after a (re)start the guest names disks in PCI slot
  order, and CloudStack lays disks out in device-id order when it starts a VM
  (LibvirtComputingResource.createVbd sorts by disk sequence).  udev links
  ``/dev/disk/by-id/virtio-<serial>`` (60-persistent-storage.rules), and
  CloudStack's KVM serial is the volume UUID without dashes, cut to 20
  characters (LibvirtComputingResource.diskUuidToSerial).
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field

# -- networks ------------------------------------------------------------------------------------------------------


def is_dhcp(network: dict) -> bool:
    """settings.Network.IsDHCP."""
    if network.get("type") == "vip":
        return False
    if network.get("type") == "dynamic" or network.get("use_dhcp"):
        return True
    is_static = bool(network.get("ip")) and bool(network.get("netmask"))
    return bool(network.get("resolved")) or not is_static


def resolved_networks(networks: dict[str, dict], default_ip: str) -> dict[str, dict]:
    """settings.service.GetSettings: every DHCP network with an empty (or /32) prefix takes the default address."""
    result = {}
    for name, network in networks.items():
        network = dict(network)
        if is_dhcp(network) and network.get("prefix", "") in ("", "32", "128"):
            network.update(ip=default_ip, resolved=True)
        result[name] = network
    return result


@dataclass
class InterfaceConfig:
    name: str
    dhcp: bool
    address: str | None
    routes: list = field(default_factory=list)


def interface_configurations(networks: dict[str, dict], interfaces_by_mac: dict[str, str]) -> list[InterfaceConfig]:
    """interfaceConfigurationCreator.CreateInterfaceConfigurations (VIP networks are not passed in by the agent)."""
    networks = {name: n for name, n in networks.items() if n.get("type") != "vip"}
    if len(networks) == 1 and len(interfaces_by_mac) == 1:
        (network,) = networks.values()
        if not network.get("mac"):
            (iface,) = interfaces_by_mac.values()
            return [_config(iface, network)]
    for name, network in networks.items():
        if network.get("mac") and network["mac"] not in interfaces_by_mac:
            raise ValueError(f"No device found for network '{name}' with MAC address '{network['mac']}'")
    configs = []
    for mac, iface in interfaces_by_mac.items():
        matched = [n for n in networks.values() if n.get("mac") == mac] or [{}]
        configs.extend(_config(iface, network) for network in matched)
    for network in networks.values():
        if network.get("mac") or not network.get("alias"):
            continue
        configs.append(_config(network["alias"], network))
    return configs


def _config(iface: str, network: dict) -> InterfaceConfig:
    dhcp = (is_dhcp(network) or not network.get("mac")) and not network.get("alias")
    return InterfaceConfig(iface, dhcp, network.get("ip"), list(network.get("routes") or []))


# -- disks ---------------------------------------------------------------------------------------------------------


def kvm_serial(volume_id: str) -> str:
    return volume_id.replace("-", "")[:20]


class KvmGuest:
    """The block devices a Linux guest on KVM shows for CloudStack volumes (virtio-blk)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}   # volume id -> vdX
        self.device_ids: dict[str, int] = {}

    def boot(self, volumes: dict[str, int]) -> None:
        """A start: CloudStack lays the disks out in device-id order; the guest names them in that order."""
        self.device_ids = dict(volumes)
        ordered = sorted(volumes, key=lambda volume: volumes[volume])
        self.names = {volume: "vd" + chr(ord("a") + i) for i, volume in enumerate(ordered)}

    def hotplug(self, volume_id: str, device_id: int) -> None:
        used = set(self.names.values())
        index = next(i for i in range(26) if "vd" + chr(ord("a") + i) not in used)
        self.names[volume_id] = "vd" + chr(ord("a") + index)
        self.device_ids[volume_id] = device_id

    def unplug(self, volume_id: str) -> None:
        self.names.pop(volume_id)
        self.device_ids.pop(volume_id)

    def restart(self) -> None:
        self.boot(dict(self.device_ids))

    def files(self) -> dict[str, str]:
        """Every path under /dev that exists, with its symlink target (or None for a device node)."""
        files: dict[str, str | None] = {f"/dev/{name}": None for name in self.names.values()}
        for volume, name in self.names.items():
            files[f"/dev/disk/by-id/virtio-{kvm_serial(volume)}"] = f"../../{name}"
        return files


def agent_resolve(disk_cid: str | None, hint: dict | str, files: dict[str, str | None]) -> str | None:
    """virtioDevicePathResolver.GetRealDevicePath with the CloudStack stemcell's settings (no ID transform).

    The by-id step globs ``/dev/disk/by-id/*<disk CID>`` (the ID is the disk CID,
    not the hint's ``id``); then the mapped resolver tries ``path``.  Returns the
    real device, or None where the agent would time out.
    """
    if isinstance(hint, str):
        hint = {"path": hint}
    if disk_cid and len(disk_cid) >= 20:
        matches = [path for path in files if fnmatch.fnmatch(path, f"/dev/disk/by-id/*{disk_cid}")]
        if len(matches) == 1:
            return _follow(matches[0], files)
    path = hint.get("path") or ""
    if path.startswith("/dev/sd"):
        suffix = path[len("/dev/sd"):]
        for prefix in ("/dev/xvd", "/dev/vd", "/dev/sd"):
            if prefix + suffix in files:
                return prefix + suffix
        return None
    if path in files:
        return _follow(path, files)
    return None


def _follow(path: str, files: dict[str, str | None]) -> str:
    link = files[path]
    if link is None:
        return path
    if ".." in link:
        link = posixpath.join(path, "..", link)
    return posixpath.normpath(link)
