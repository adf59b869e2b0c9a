"""What calls killed with SIGKILL left behind, removed by the next call of the same kind.

Everything a create makes carries ``gateway.UNCONFIRMED_TAG`` from its first tags on, and loses it just before the
call answers (``Tagging.confirm``).  So a resource that still has the mark was never handed to the director, and
once it is older than any call of its kind can take (every timeout that call waits for, added up, plus a margin),
no call is still working on it either: it is a leftover, and nothing else can match.  A call killed in the few
milliseconds between taking the mark off and answering leaves a resource this cannot see; that is the one window
left (docs/reliability.md, "Killed with SIGKILL").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from . import lookups
from .cloudstack.errors import CloudStackError

if TYPE_CHECKING:
    from .log import Logger

MARGIN = 600  # seconds beyond the added-up timeouts: API deadlines, retries and pauses between the steps


class _Dated(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created(self) -> str: ...


T = TypeVar("T", bound=_Dated)


def sweep(log: Logger, kind: str, listing: Callable[[], Iterable[T]], older_than: float,
          remove: Callable[[T], object]) -> None:
    """Remove every ``kind`` that ``listing`` answers (the unconfirmed ones) created more than ``older_than``
    seconds ago.  Best effort: a failure is logged and the call goes on (the next one tries again)."""
    try:
        stale = [item for item in listing() if lookups.older_than(item.created, older_than, time.time())]
    except CloudStackError as err:
        log.warning(f"Looking for {kind}s left by killed calls: {err}")
        return
    for item in stale:
        log.warning(f"{kind} '{item.id}' (created {item.created}) was made by a call that never answered "
                        f"(killed?) more than {older_than:g} s ago: removing it")
        remove(item)
