"""Exponential backoff with full jitter, capped (STYLE §4: one small helper)."""

from __future__ import annotations

import random


def full_jitter(attempt: int, base_s: float, cap_s: float, rand: float | None = None) -> float:
    """Delay before attempt ``attempt + 1``: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap_s, base_s * (2 ** max(0, min(attempt - 1, 62))))
    return float(ceiling * (random.random() if rand is None else rand))
