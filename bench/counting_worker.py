"""``custsync worker`` that counts its own Redis round trips (for the round_trips benchmark).

Every write of a command or a pipeline to a Redis socket is one round trip; it is counted
per server port and per shape (the command names it carried) and written as JSON to
``$BENCH_ROUND_TRIPS_FILE`` a few times a second. Only benchmarks start this module.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.connection import AbstractConnection

_lock = threading.Lock()
_counts: dict[str, Counter[str]] = {}
_original: Callable[..., None] = AbstractConnection.send_packed_command


def command_names(packed: bytes) -> list[str]:
    """The command name of each RESP array in ``packed`` (SCRIPT and CLIENT keep their verb)."""
    names: list[str] = []
    i = 0
    while i < len(packed) and packed[i : i + 1] == b"*":
        end = packed.index(b"\r\n", i)
        argc, i = int(packed[i + 1 : end]), end + 2
        args: list[bytes] = []
        for k in range(argc):
            end = packed.index(b"\r\n", i)
            size, i = int(packed[i + 1 : end]), end + 2
            if k < 2:
                args.append(packed[i : i + size])
            i += size + 2
        name = args[0].decode(errors="replace").upper()
        if name in ("SCRIPT", "CLIENT") and len(args) > 1:
            name += " " + args[1].decode(errors="replace").upper()
        names.append(name)
    return names


def shape(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    runs: list[list[Any]] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return "[" + " ".join(n if c == 1 else f"{n}x{c}" for n, c in runs) + "]"


def _counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
    chunks = [command] if isinstance(command, bytes | str) else list(command)
    data = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
    key = str(getattr(self, "port", "?"))
    try:
        label = shape(command_names(data))
    except (ValueError, IndexError):
        label = "?"
    with _lock:
        _counts.setdefault(key, Counter())[label] += 1
    _original(self, command, check_health)


def _dump_forever(path: Path) -> None:
    while True:
        with _lock:
            snapshot = {port: dict(c) for port, c in _counts.items()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot))
        tmp.replace(path)
        threading.Event().wait(0.2)


def main() -> None:
    path = Path(os.environ["BENCH_ROUND_TRIPS_FILE"])
    AbstractConnection.send_packed_command = _counting  # type: ignore[method-assign]
    threading.Thread(target=_dump_forever, args=(path,), daemon=True).start()
    from custsync.cli import main as cli

    sys.argv[0] = "custsync"
    cli()


if __name__ == "__main__":
    main()
