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

``ok_to_retry`` on the wire: the director reads it only for the four
retriable types (``handle_error`` in bosh-director's external_cpi.rb builds
those with the response's ok_to_retry and every other type from the message
alone), and bosh-cli never reads it.  So the wire carries ``true`` only on
those four types.  Inside the CPI, ``ok_to_retry`` still records that a
failure was transient; for the other types that is said in the log instead
(re-running the task may pass), never suggested to the director.
"""

from __future__ import annotations


class BoshError(Exception):
    """Base of the ten wire-level error types; never raised itself."""

    bosh_type = "Bosh::Clouds::CloudError"

    def __init__(self, message: str, ok_to_retry: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.ok_to_retry = ok_to_retry

    @property
    def director_retries(self) -> bool:
        """True when the director acts on this error's ok_to_retry (one of the four retriable types)."""
        return self.bosh_type in RETRIABLE_TYPES

    def to_wire(self) -> dict:
        return {"type": self.bosh_type, "message": self.message,
                "ok_to_retry": bool(self.ok_to_retry) and self.director_retries}


class Interrupted(BaseException):
    """SIGTERM or SIGINT during a call (entry.py raises it once): like KeyboardInterrupt, it passes the handlers
    that catch Exception, so every ``except BaseException`` cleanup on its way runs before the call answers."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


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


# -- quoting values in messages ------------------------------------------------------------------------------------

QUOTE_CHARS = 64  # the longest prefix of any value a message quotes


def shorten(value: str, limit: int = QUOTE_CHARS) -> str:
    """``value`` fit for a one-line message: at most ``limit`` characters of it, non-printables escaped.

    A longer value keeps its prefix, an ellipsis and its length, so a 100 MB
    argument costs a message 100 bytes.  Control characters and unpaired
    surrogates are written as escapes (``\\x00``, ``\\ud800``): the answer stays
    one line of valid UTF-8 whatever the input held.
    """
    head = value[:limit]
    if not head.isprintable():
        head = "".join(c if c.isprintable() else _escape(c) for c in head)
    if len(value) > limit:
        return f"{head}\u2026 [{len(value)} characters]"
    return head


def quote(value) -> str:
    """``'value'`` for a message, shortened as :func:`shorten` does; other values by their JSON form or type.

    Containers are never rendered (their text could be as large as the request).
    """
    if isinstance(value, str):
        return f"'{shorten(value)}'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        try:
            return shorten(repr(value))
        except ValueError:  # an int too long to print
            return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def one_line(text: str, limit: int) -> str:
    """A message as one printable line: line breaks and tabs become spaces, other controls escapes; cut at ``limit``."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " if c in "\r\n\t" else _escape(c) for c in text)
    return text if len(text) <= limit else shorten(text, limit)


def dotted(parts) -> str:
    """A path into the request for a message: ``networks.default.routes.0.netmask``; odd keys quoted."""
    text = ""
    for part in parts:
        if isinstance(part, int) or _plain_key(part):
            text += f".{part}" if text else str(part)
        else:
            text += f"[{quote(part)}]"
    return text


def _plain_key(part) -> bool:
    return (isinstance(part, str) and 0 < len(part) <= QUOTE_CHARS
            and part.replace("_", "a").replace("-", "a").isalnum() and part.isascii())


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# The types whose ok_to_retry the director honours (Bosh::Clouds::RetriableCloudError's subclasses).
RETRIABLE_TYPES = frozenset({
    "Bosh::Clouds::NoDiskSpace", "Bosh::Clouds::DiskNotAttached", "Bosh::Clouds::DiskNotFound",
    "Bosh::Clouds::VMCreationFailed",
})

ALL_TYPES = frozenset(
    cls.bosh_type
    for cls in (
        CpiError, NotImplemented_, NotSupported, CloudError, VMNotFound,
        NetworkNotFound, NoDiskSpace, DiskNotAttached, DiskNotFound, VMCreationFailed,
    )
)
