"""Exponential backoff with jitter, shared by the relay and the consumer."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, min_s: float, max_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): doubling from ``min_s``, capped at ``max_s``.

    Jitter (50-100 % of the step) keeps several replicas that failed together from retrying in lockstep.
    """
    step = min(max_s, min_s * 2.0 ** max(0, attempt - 1))
    return step * random.uniform(0.5, 1.0)
