"""Where the stemcell's agent will find a disk, from CloudStack's device id.

CloudStack stemcells configure the agent with ``DevicePathResolutionType:
virtio``: it first globs ``/dev/disk/by-id/*<first 20 chars of id>`` (waiting
for it to appear), then falls back to ``path``, trying ``/dev/sdX`` as
``/dev/xvdX``, ``/dev/vdX`` and ``/dev/sdX``.  So:

- KVM: libvirt gives each disk the serial "volume UUID without dashes, first 20
  characters"; the by-id lookup finds it whatever order the guest saw the disks
  in (virtio names follow attach order, not CloudStack's device id).
- XenServer: the device id is the Xen userdevice, so id 1 is ``xvdb``; no by-id
  entry exists, so ``id`` is left out (otherwise the agent waits for it first).
- VMware: SCSI disks in unit order; the CD-ROM (id 3) is on IDE and takes no
  SCSI slot, so ids above 3 move down one letter.
"""

from __future__ import annotations

KVM = "kvm"
XEN = "xenserver"
VMWARE = "vmware"

SYSTEM_DISK = {KVM: "/dev/vda", XEN: "/dev/xvda", VMWARE: "/dev/sda"}


def hypervisor_family(hypervisor: str | None) -> str:
    name = (hypervisor or "").lower()
    if name.startswith("xen"):
        return XEN
    if name.startswith("vmware"):
        return VMWARE
    return KVM  # KVM, and the Simulator hypervisor behaves the same way


def kvm_serial(volume_id: str) -> str:
    return volume_id.replace("-", "")[:20]


def device_letter(device_id: int, hypervisor: str | None) -> str:
    position = int(device_id)
    if hypervisor_family(hypervisor) == VMWARE and position > 3:
        position -= 1
    return chr(ord("a") + position)


def disk_hint(volume_id: str, device_id: int, hypervisor: str | None) -> dict:
    """The v2 attach_disk result (and the ephemeral disk's agent setting)."""
    hint = {
        "path": f"/dev/sd{device_letter(device_id, hypervisor)}",
        "volume_id": str(device_id),
    }
    if hypervisor_family(hypervisor) == KVM:
        hint["id"] = kvm_serial(volume_id)
    return hint


def system_disk(hypervisor: str | None) -> str:
    return SYSTEM_DISK[hypervisor_family(hypervisor)]
