"""``custsync publish FILE|-``: validate and enqueue NDJSON events."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from custsync import exitcodes
from custsync.cli.common import echo_json, handle_errors, plural, runtime
from custsync.errors import InvalidEvent
from custsync.producer import BATCH, enqueue
from custsync.validation import validate_event

MAX_SHOWN = 20  # per-line errors printed before the rest are only counted


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def _parse(line: bytes) -> Any:
    text = line.rstrip(b"\r\n")  # else a cut-off line's error points past its end
    try:
        return json.loads(text)
    except UnicodeDecodeError:
        raise InvalidEvent("not UTF-8 text", details={"_line": ["Not UTF-8 text."]}) from None
    except json.JSONDecodeError as exc:
        cut = " (the line ends early: truncated?)" if exc.pos >= len(exc.doc) else ""
        msg = f"Not valid JSON ({exc.msg} at column {exc.colno}){cut}."
        raise InvalidEvent(msg, details={"_line": [msg]}) from None


@click.command("publish")
@click.argument("source", type=click.File("rb"), metavar="FILE|-")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--dry-run", is_flag=True, help="Validate only; enqueue nothing.")
@handle_errors
def publish_command(source: IO[bytes], as_json: bool, dry_run: bool) -> None:
    """Validate every line of an NDJSON file and enqueue the valid ones.

    Invalid lines are reported by line number with the field at fault and are not
    enqueued; the exit code is then 2, but the valid lines still go.
    """
    rt = runtime()
    settings = rt.settings
    total_bytes = _size(source)
    show_bar = sys.stderr.isatty() and not as_json and total_bytes is not None
    published = invalid = 0
    batch: list[tuple[Any, None]] = []
    problems: list[dict[str, Any]] = []
    sink: Any = sys.stderr if show_bar else _Null()
    with click.progressbar(length=total_bytes or 0, label="publishing", file=sink) as bar:
        for number, line in _lines(source):
            bar.update(len(line))
            try:
                envelope = _parse(line)
                validate_event(envelope, settings, require_configured=False)
            except InvalidEvent as exc:
                invalid += 1
                problems.append({"line": number, "errors": exc.details or {"_line": [str(exc)]}})
                if not as_json and len(problems) <= MAX_SHOWN:
                    click.echo(f"line {number}: {exc}", err=True)
                continue
            published += 1
            if not dry_run:
                batch.append((envelope, None))
            if len(batch) >= BATCH:
                enqueue(batch)
                batch = []
        if batch:
            enqueue(batch)
    if as_json:
        counted = "would_publish" if dry_run else "published"
        echo_json({counted: published, "invalid": invalid, "errors": problems})
    else:
        if invalid > MAX_SHOWN:
            click.echo(f"... and {invalid - MAX_SHOWN} more invalid lines", err=True)
        verb = "would publish" if dry_run else "published"
        refused = plural(invalid, "invalid line")
        click.echo(f"{verb} {plural(published, 'event')}; {refused} not enqueued", err=True)
    if invalid:
        sys.exit(exitcodes.INVALID_INPUT)


def _size(stream: IO[bytes]) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size or None
    except (OSError, ValueError):
        return None


class _Null:
    """A file that swallows the progress bar when stderr is not a terminal."""

    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
