"""Removing what a failed call half-created, for actions whose cleanup steps may also raise BOSH errors.

The director never learns the ids of resources a failed call made, so giving
up at the first 5xx or lost answer would leak them for good.  The retry rules
are the gateway's (``Gateway.discard``); a BOSH error raised by a step ends its
tries like a definite CloudStack refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import BoshError

if TYPE_CHECKING:
    from .context import CallContext


def remove(ctx: CallContext, label: str, action: Callable[[], object], *,
           gone: Callable[[], bool] | None = None) -> bool:
    """Run ``action`` until it succeeds or fails for good; True when ``label`` is gone.  Never raises."""
    return ctx.cloud.discard(label, action, gone, refusals=(BoshError,))
