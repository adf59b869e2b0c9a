"""The closed set of errors the BOSH director understands.

Director side (bosh-director ``lib/clouds/errors.rb``)::

    CpiError
      NotImplemented        caller skips the feature (metadata, snapshots, has_disk ...)
      NotSupported          resize_disk/update_disk: director falls back to copying
    CloudError              task fails with the message
      VMNotFound            delete_vm treats it as success
      NetworkNotFound
      NoDiskSpace           \
      DiskNotAttached        |  "retriable": the response's ok_to_retry is honoured
      DiskNotFound           |
      VMCreationFailed      /   create_vm is retried when ok_to_retry is true

Any other type string makes the director raise ``UnknownError``, so every error
that leaves this process is one of these ten classes.
"""

from __future__ import annotations


class BoshError(Exception):
    """Base of the ten wire-level error types; never raised itself."""

    bosh_type = "Bosh::Clouds::CloudError"

    def __init__(self, message: str, ok_to_retry: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.ok_to_retry = ok_to_retry

    def to_wire(self) -> dict:
        return {"type": self.bosh_type, "message": self.message, "ok_to_retry": bool(self.ok_to_retry)}


class CpiError(BoshError):
    bosh_type = "Bosh::Clouds::CpiError"


class NotImplemented_(CpiError):  # trailing underscore: do not shadow the builtin
    bosh_type = "Bosh::Clouds::NotImplemented"


class NotSupported(CpiError):
    bosh_type = "Bosh::Clouds::NotSupported"


class CloudError(BoshError):
    bosh_type = "Bosh::Clouds::CloudError"


class VMNotFound(CloudError):
    bosh_type = "Bosh::Clouds::VMNotFound"


class NetworkNotFound(CloudError):
    bosh_type = "Bosh::Clouds::NetworkNotFound"


class NoDiskSpace(CloudError):
    bosh_type = "Bosh::Clouds::NoDiskSpace"


class DiskNotAttached(CloudError):
    bosh_type = "Bosh::Clouds::DiskNotAttached"


class DiskNotFound(CloudError):
    bosh_type = "Bosh::Clouds::DiskNotFound"


class VMCreationFailed(CloudError):
    bosh_type = "Bosh::Clouds::VMCreationFailed"


NotImplemented = NotImplemented_  # noqa: A001 - the BOSH name, for `errors.NotImplemented`

ALL_TYPES = frozenset(
    cls.bosh_type
    for cls in (
        CpiError, NotImplemented_, NotSupported, CloudError, VMNotFound,
        NetworkNotFound, NoDiskSpace, DiskNotAttached, DiskNotFound, VMCreationFailed,
    )
)
