"""Where the stemcell's agent will find a disk: the attach_disk hint and the ephemeral disk setting.

CloudStack stemcells run the agent with ``DevicePathResolutionType: virtio``
and no disk-id transform.  For a persistent disk the agent first globs
``/dev/disk/by-id/*<disk CID>`` for 500 ms: the CID is the 36-character volume
UUID, which never matches a CloudStack disk (see below), so that step always
fails.  It then resolves ``path``: a ``/dev/sdX`` path is tried as
``/dev/xvdX``, ``/dev/vdX`` and ``/dev/sdX``; any other path is used as it is,
following it when it is a symlink.  The ``id`` key of a hint is read into a
field that this resolver never uses, so hints carry no ``id``.
(bosh-agent: infrastructure/devicepathresolver/virtio_device_path_resolver.go,
id_device_path_resolver.go, mapped_device_path_resolver.go;
settings/settings.go populatePersistentDiskSettings.)

- KVM: a guest names virtio disks in the order it finds them (``vda``, ``vdb``,
  ...), not by CloudStack's device id, and the order changes: a hot-plugged
  disk takes the lowest free name, after a restart the names follow the PCI
  slots, and device id 3 (the CD-ROM, on IDE) never takes a virtio name.  A
  name is therefore not a stable hint.  CloudStack gives every KVM disk the
  serial "volume UUID without dashes, first 20 characters"
  (LibvirtComputingResource.diskUuidToSerial), and udev links each disk
  under ``/dev/disk/by-id/`` by that serial: ``virtio-<serial>`` on the
  virtio bus, ``scsi-0QEMU_QEMU_HARDDISK_<serial>`` on virtio-scsi (a VM whose
  root disk controller is ``scsi``: hot-plugged data disks go on the root
  disk's bus, KVMStorageProcessor.attachOrDetachDisk).  The hint's path is that
  link, which names the same disk whatever the order.
- XenServer: the device id is the VBD's userdevice, and the PV block driver
  names a disk by it (userdevice 4 is ``xvde``) whatever the attach order.
- VMware: SCSI disks; the CD-ROM (id 3) sits on the IDE controller and takes
  no SCSI name, so ids above 3 move down one letter.  Linux names SCSI disks in
  probe order, so this holds while the data disks' ids are contiguous (see
  docs/disks.md for what remains).
"""

from __future__ import annotations

from collections.abc import Mapping

KVM = "kvm"
XEN = "xenserver"
VMWARE = "vmware"

SYSTEM_DISK = {KVM: "/dev/vda", XEN: "/dev/xvda", VMWARE: "/dev/sda"}
CDROM_DEVICE_ID = 3
SERIAL_LENGTH = 20  # virtio-blk serials hold at most 20 bytes (VIRTIO_BLK_ID_BYTES)
BY_ID = "/dev/disk/by-id/"
KVM_LINK_PREFIX = {"virtio": "virtio-", "scsi": "scsi-0QEMU_QEMU_HARDDISK_"}
# The longest hint any disk can get, to size the agent settings before the disk exists.
_LONGEST_VOLUME = "ffffffff-ffff-ffff-ffff-ffffffffffff"


def hypervisor_family(hypervisor: str | None) -> str:
    name = (hypervisor or "").lower()
    if name.startswith("xen"):
        return XEN
    if name.startswith("vmware"):
        return VMWARE
    return KVM  # KVM, and the Simulator hypervisor behaves the same way


def kvm_serial(volume_id: str) -> str:
    """The disk serial CloudStack gives a KVM volume (LibvirtComputingResource.diskUuidToSerial)."""
    return str(volume_id).replace("-", "")[:SERIAL_LENGTH]


def root_disk_controller(details: Mapping[str, object] | None) -> str:
    """The ``rootDiskController`` detail of a VM or template, lowercased ("" when it sets none)."""
    return next((str(value).strip().lower() for key, value in (details or {}).items()
                 if str(key).lower() == "rootdiskcontroller"), "")


def kvm_bus(vm_details: Mapping[str, object] | None) -> str:
    """``scsi`` when the VM's root disk is on virtio-scsi (detail ``rootDiskController``), else ``virtio``."""
    return "scsi" if root_disk_controller(vm_details) == "scsi" else "virtio"


def kvm_path(volume_id: str, vm_details: Mapping[str, object] | None = None) -> str:
    return f"{BY_ID}{KVM_LINK_PREFIX[kvm_bus(vm_details)]}{kvm_serial(volume_id)}"


def device_letter(device_id: int, hypervisor: str | None) -> str:
    position = int(device_id)
    if hypervisor_family(hypervisor) == VMWARE and position > CDROM_DEVICE_ID:
        position -= 1
    return chr(ord("a") + position)


def disk_hint(volume_id: str, device_id: int, hypervisor: str | None,
              vm_details: Mapping[str, object] | None = None) -> dict:
    """The v2 attach_disk result (and the ephemeral disk's agent setting).

    ``vm_details`` are the VM's ``details`` as listVirtualMachines answers them
    (they hold ``rootDiskController`` when a template or VM sets it).
    """
    family = hypervisor_family(hypervisor)
    if family == KVM:
        path = kvm_path(volume_id, vm_details)
    elif family == XEN:
        path = f"/dev/xvd{device_letter(device_id, hypervisor)}"
    else:
        path = f"/dev/sd{device_letter(device_id, hypervisor)}"
    return {"path": path, "volume_id": str(device_id)}


DEPLOYED_DATA_DISK_ID = 1  # VolumeOrchestrator.allocateRawVolume: a deploy's DATADISK is device 1
# The guest OS names whose KVM VMs get a virtio root disk (LibvirtComputingResource.isGuestPvEnabled, by prefix);
# any other OS gets an IDE root disk (getGuestDiskModel).
KVM_PV_OS_PREFIXES = (
    "Ubuntu", "Fedora", "CentOS", "Red Hat Enterprise Linux 5.3", "Red Hat Enterprise Linux 5.4",
    "Red Hat Enterprise Linux 5.5", "Red Hat Enterprise Linux 6", "Debian GNU/Linux", "FreeBSD 10", "Oracle",
    "Other PV",
)


def deployed_data_disk_is_second(hypervisor: str | None, os_type_name: str,
                                 template_details: Mapping[str, object] | None) -> bool:
    """Whether the guest finds a deploy's data disk as its second disk of the root disk's kind, which is what
    ``deployed_data_disk_hint`` says.  On XenServer and VMware it is (userdevice 1; SCSI 0:1).  On KVM only when the
    root disk is virtio: a guest OS that is paravirtualised for KVM (``KVM_PV_OS_PREFIXES``) and no other
    ``rootDiskController``.  With an IDE root disk (another OS) the data disk is the guest's first virtio disk
    (``vda``), and with a SCSI one CloudStack 4.11 still made it virtio (createVbd: a qcow2 DATADISK is always
    VIRTIO there; later versions put it on SCSI): neither is ``/dev/sdb``, so create_vm attaches the ephemeral disk
    itself and hints its by-id link, which names it on any bus."""
    if hypervisor_family(hypervisor) != KVM:
        return True
    controller = root_disk_controller(template_details) or "virtio"
    return controller == "virtio" and os_type_name.startswith(KVM_PV_OS_PREFIXES)


def deployed_data_disk_hint(hypervisor: str | None) -> dict:
    """The agent setting for the data disk a started deploy makes (the ephemeral disk), written before the disk
    exists, so without its volume UUID (which the KVM by-id link needs).

    It is device 1, and present from the VM's first boot: libvirt defines it right after the root disk (device 0),
    so the guest probes it second, on the root disk's bus (LibvirtComputingResource.createVbd: a data disk is
    virtio unless the root disk is on SCSI), and it stays second across restarts, as CloudStack lists a VM's disks
    by device id and persistent disks get 2 and up.  On KVM and VMware the hint is ``/dev/sdb``: bosh-agent's
    mapped resolver tries a ``/dev/sdX`` path as ``/dev/xvdX``, ``/dev/vdX`` and ``/dev/sdX`` in turn
    (infrastructure/devicepathresolver/mapped_device_path_resolver.go), which covers virtio (``vdb``) and
    virtio-scsi or VMware's SCSI (``sdb``); on XenServer ``/dev/xvdb`` (userdevice 1).
    """
    if hypervisor_family(hypervisor) == XEN:
        path = f"/dev/xvd{device_letter(DEPLOYED_DATA_DISK_ID, hypervisor)}"
    else:
        path = f"/dev/sd{device_letter(DEPLOYED_DATA_DISK_ID, hypervisor)}"
    return {"path": path, "volume_id": str(DEPLOYED_DATA_DISK_ID)}


def longest_hint(hypervisor: str | None) -> dict:
    """A hint at least as long as any real one for this hypervisor: sizes the draft agent settings."""
    if hypervisor_family(hypervisor) == KVM:
        return disk_hint(_LONGEST_VOLUME, 25, hypervisor, {"rootDiskController": "scsi"})
    return disk_hint(_LONGEST_VOLUME, 25, hypervisor)  # "z", two digits


def system_disk(hypervisor: str | None) -> str:
    return SYSTEM_DISK[hypervisor_family(hypervisor)]
