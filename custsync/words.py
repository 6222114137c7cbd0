"""Counts in words, the same in the CLI and the console."""

from __future__ import annotations


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 entry``, ``2 entries``, ``1,024 events``."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"
