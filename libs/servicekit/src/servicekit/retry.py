"""The read–decide–write loop every command handler uses (optimistic concurrency, ADR 0004).

A handler reads one aggregate, lets it decide, and writes it back only if nobody changed it meanwhile
(the repository raises `ConcurrencyConflict` on a lost race). On a lost race the whole attempt runs
again on the new state, after a short random pause (jitter, so two writers do not collide again in
lock-step); after `attempts` lost races the command gives up with ABORTED (`ConcurrencyConflict`), which
a caller may simply retry.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from servicekit.errors import ConcurrencyConflict

__all__ = ["DEFAULT_ATTEMPTS", "read_decide_write"]

T = TypeVar("T")
DEFAULT_ATTEMPTS = 5


async def read_decide_write(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = DEFAULT_ATTEMPTS,
    retry_on: tuple[type[Exception], ...] = (ConcurrencyConflict,),
) -> T:
    """Runs `attempt` (read, decide, write) until it is not beaten by a concurrent writer.

    `retry_on`: the errors that mean "lost a race" (add `AlreadyExists` where two writers may create the
    same document). `what` names the record in the final error ("case 0c1…", "recording 7f…")."""
    for n in range(attempts):
        if n:
            await asyncio.sleep(random.uniform(0, 0.005 * 2**n))
        try:
            return await attempt()
        except retry_on:
            continue
    raise ConcurrencyConflict(f"{what} changed {attempts} times while this request was deciding; try again")
