"""The overview's chart: applied, retried and dead-lettered per minute over the last hour,
for one partner, drawn as server-side SVG geometry (no chart library, no inline script)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from custsync.outcomes import Outcome
from custsync.runtime import Runtime

MINUTES = 60
WIDTH, HEIGHT = 600, 100  # the plot area, in SVG units
SERIES = ("applied", "retried", "dead_lettered")
_OUTCOMES = (Outcome.APPLIED, Outcome.RETRY_SCHEDULED, Outcome.DEAD_LETTERED)  # SERIES' order


@dataclass(frozen=True)
class Chart:
    labels: list[str]  # HH:MM per minute, oldest first
    counts: dict[str, list[int]]  # per series
    top: int  # the y axis' maximum

    def points(self, series: str) -> str:
        """An SVG polyline's points for one series."""
        step = WIDTH / (MINUTES - 1)
        return " ".join(
            f"{i * step:.1f},{HEIGHT - HEIGHT * n / self.top:.1f}"
            for i, n in enumerate(self.counts[series])
        )

    def total(self, series: str) -> int:
        return sum(self.counts[series])


def per_minute(rt: Runtime, target: str, now: float | None = None) -> Chart:
    """Counts from the workers' per-minute hashes (kept two hours), one round trip."""
    current = int((now if now is not None else time.time()) // 60)
    minutes = [current - i for i in range(MINUTES - 1, -1, -1)]
    pipe = rt.redis.pipeline(transaction=False)
    for minute in minutes:
        pipe.hmget(rt.keys.minute(target, minute), *_OUTCOMES)
    counts: dict[str, list[int]] = {name: [] for name in SERIES}
    for row in pipe.execute():
        for name, value in zip(SERIES, row, strict=True):
            counts[name].append(int(value or 0))
    labels = [time.strftime("%H:%M", time.gmtime(m * 60)) for m in minutes]
    top = max(1, *(max(values) for values in counts.values()))
    return Chart(labels, counts, top)
