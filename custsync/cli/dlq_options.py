"""What the ``dlq`` commands share: the filter options, time and table formatting, confirmation."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click

from custsync import exitcodes
from custsync.cli.common import fail
from custsync.dlq.entry import REASONS, DeadLetter, customer_label
from custsync.dlq.groups import GROUP_ID
from custsync.dlq.query import Filter, parse_time

F = TypeVar("F", bound=Callable[..., Any])

_FILTER_OPTIONS = (
    click.option("--target", metavar="NAME", help="Only this target (minted, vendor)."),
    click.option("--reason", metavar="REASON", help=f"Only this reason: {', '.join(REASONS)}."),
    click.option("--customer", metavar="ID", help="Only this customer id."),
    click.option("--status", metavar="CODE", help="Only this partner HTTP status, e.g. 404."),
    click.option(
        "--since",
        metavar="WHEN",
        help="Dead-lettered at or after WHEN: 30m, 2h, 1d (ago) or ISO-8601 (UTC unless zoned).",
    ),
    click.option("--until", metavar="WHEN", help="Dead-lettered at or before WHEN (same forms)."),
    click.option("--grep", metavar="TEXT", help="Error message contains TEXT (any case)."),
    click.option("--group", metavar="ID", help="Only this failure group (`dlq groups` shows ids)."),
)


def filter_options(func: F) -> F:
    """Add the filter options; the command receives them as one ``flt: Filter``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kw: Any) -> Any:
        names = ("target", "reason", "customer", "status", "since", "until", "grep", "group")
        kw["flt"] = build_filter(**{n: kw.pop(n) for n in names})
        return func(*args, **kw)

    for option in reversed(_FILTER_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def build_filter(
    target: str | None,
    reason: str | None,
    customer: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    grep: str | None,
    group: str | None = None,
) -> Filter:
    """The options as a Filter; a bad value is one line and exit 2."""
    if reason is not None and reason not in REASONS:
        bad_input(f"--reason {reason!r} is not one of {', '.join(REASONS)}")
    if group is not None and not GROUP_ID.match(group):
        bad_input(f"--group {group!r} is not a group id (16 hex digits, as `dlq groups` shows)")
    code = None
    if status is not None:
        if not (status.isdigit() and 100 <= int(status) <= 599):
            bad_input(f"--status {status!r} is not an HTTP status code (100-599)")
        code = int(status)
    now = time.time()
    when: dict[str, float | None] = {}
    for name, text in (("since", since), ("until", until)):
        try:
            when[name] = parse_time(text, now) if text is not None else None
        except ValueError as exc:
            bad_input(f"--{name}: {exc}")
    return Filter(
        target=target or None,
        reason=reason,
        customer_id=customer or None,
        status=code,
        since=when["since"],
        until=when["until"],
        grep=grep or None,
        group=group or None,
    )


def bad_input(message: str) -> NoReturn:
    fail(message, exitcodes.INVALID_INPUT)


def require_selection(ids: Sequence[str], flt: Filter, select_all: bool, verb: str) -> None:
    """Acting on the whole DLQ must be asked for by name."""
    if select_all and (ids or not flt.is_empty()):
        bad_input("--all cannot be combined with event ids or filters")
    if not (ids or select_all or not flt.is_empty()):
        bad_input(f"nothing selected: give event ids, a filter, or --all to {verb} every entry")


def need_yes(yes: bool) -> None:
    """Without a terminal nobody can answer a question: --yes is required (exit 2)."""
    if not yes and not sys.stdin.isatty():
        bad_input("stdin is not a terminal, so I cannot ask for confirmation: add --yes")


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, --yes is required (exit 2 otherwise)."""
    if yes:
        return
    need_yes(yes)
    if not click.confirm(question, default=False, err=True):
        fail("aborted; nothing changed", exitcodes.FAILURE)


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when_and_age(ts: float | None) -> str:
    return f"{when(ts)} ({age(ts)} ago)" if ts else "-"


def short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(entries: Sequence[DeadLetter], reveal: bool = False) -> list[str]:
    """Rows sized to this page, ids never cut (they are what an operator copies); customers
    as their pseudonyms unless ``reveal``."""
    now = time.time()
    rows = [
        (
            e.label,
            e.target or "-",
            (e.customer_id if reveal else customer_label(e.customer_id)) or "-",
            e.reason,
            str(e.status or "-"),
            str(e.attempts),
            age(e.dead_lettered_at, now),
            short(e.error, 70),
        )
        for e in entries
    ]
    header = ("EVENT ID", "TARGET", "CUSTOMER", "REASON", "HTTP", "TRIES", "AGE", "ERROR")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    right = {4, 5, 6}
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]))
    return lines
