"""The embedded demo: a simulator, a CPI config pointing at it, a small stemcell, and the lifecycle."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .lifecycle import Target

if TYPE_CHECKING:
    from cloudstack_simulator import Simulator

DEMO_STEMCELL_PROPERTIES = {
    "name": "bosh-cloudstack-kvm-ubuntu-jammy-go_agent",
    "version": "0.0.1-demo",
    "infrastructure": "cloudstack",
    "hypervisor": "kvm",
    "disk": 5120,
    "disk_format": "raw",
    "container_format": "bare",
    "os_type": "linux",
    "os_distro": "ubuntu",
    "architecture": "x86_64",
}


def write_demo_image(path: Path, size: int = 16 << 20) -> Path:
    """A small sparse raw disk with an MBR: enough for every upload path to be real."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        mbr = bytearray(512)
        # one Linux partition from sector 2048 to the end
        mbr[446:462] = struct.pack("<B3sB3sII", 0x80, b"\x00\x00\x00", 0x83, b"\x00\x00\x00", 2048,
                                   size // 512 - 2048)
        mbr[510:512] = b"\x55\xaa"
        handle.write(mbr)
        handle.seek(2048 * 512)
        handle.write(b"cloudstack-cpi demo root filesystem\n" * 64)
    return path


def simulator_config(sim, directory: Path, **cloudstack) -> Path:
    config = {
        "cloudstack": {"endpoint": sim.endpoint, "api_key": sim.api_key, "secret_access_key": sim.secret_key,
                       "default_zone": "zone-1", "default_key_name": "bosh", **cloudstack},
        "agent": {"mbus": "nats://nats:demo-nats-password@10.1.0.6:4222", "ntp": ["0.pool.ntp.org"],
                  "blobstore": {"provider": "dav", "options": {"endpoint": "http://10.1.0.6:25250",
                                                                "user": "agent", "password": "demo-blob-password"}}},
    }
    path = directory / "cpi.json"
    path.write_text(json.dumps(config, indent=2))
    os.chmod(path, 0o600)
    return path


def simulator_target(directory: Path) -> Target:
    return Target(
        compute_offering="small",
        network="bosh-isolated",
        network_type="manual",
        ip="10.1.0.50",
        netmask="255.255.255.0",
        gateway="10.1.0.1",
        dns=["10.1.0.2"],
        disk_offering="shared.custom",
        ephemeral_disk_offering="shared.custom",
        ephemeral_disk_mib=4096,
        stemcell_image=str(write_demo_image(directory / "image")),
        stemcell_properties=dict(DEMO_STEMCELL_PROPERTIES),
    )


@contextmanager
def embedded_simulator(scenario: str = "advanced", job_seconds: float = 0.0) -> Iterator[Simulator]:
    from cloudstack_simulator import Simulator

    sim = Simulator(scenario=scenario, job_seconds=job_seconds).start()
    try:
        yield sim
    finally:
        sim.stop()
