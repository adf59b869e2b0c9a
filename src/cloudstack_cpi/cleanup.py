"""Removing what a failed call half-created.

The director never learns the ids of resources a failed call made, so giving
up at the first 5xx or lost answer would leak them for good: each removal is
tried a few times on transient failures, and a removal whose answer was lost
counts as done once the resource is seen to be gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .cloudstack.errors import CloudStackError
from .errors import BoshError

if TYPE_CHECKING:
    from .context import CallContext

ATTEMPTS = 4   # tries per half-created resource
PAUSE = 0.5    # seconds, times the attempt number, between them


def remove(ctx: CallContext, label: str, action: Callable[[], object], *, gone: Callable[[], bool] | None = None,
           attempts: int = ATTEMPTS, pause: float = PAUSE) -> bool:
    """Run ``action`` until it succeeds or fails for good; True when ``label`` is gone.

    Failures are logged, never raised: the caller is already reporting the
    error that made the cleanup necessary.
    """
    for attempt in range(1, attempts + 1):
        try:
            action()
            ctx.log.info(f"Cleaned up {label}")
            return True
        except (BoshError, CloudStackError) as err:
            transient = isinstance(err, CloudStackError) and err.is_transient
            if (isinstance(err, CloudStackError) and err.is_transient
                    and gone is not None and _looks_gone(gone)):  # e.g. the removal's answer was lost
                ctx.log.info(f"Cleaned up {label} ({err.errortext})")
                return True
            if transient and attempt < attempts:
                ctx.log.warning(f"Cleaning up {label} failed ({err}); trying again")
                ctx.client.sleep(pause * attempt)
                continue
            ctx.log.error(f"Could not clean up {label} ({err}); delete it by hand")
            return False
    return False


def _looks_gone(gone: Callable[[], bool]) -> bool:
    try:
        return gone()
    except CloudStackError:
        return False
