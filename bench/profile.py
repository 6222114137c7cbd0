"""Optional py-spy profiles of the measured process, over the measured window only.

``python -m bench NAME --profile DIR`` turns it on: each window writes ``DIR/LABEL.txt``
(collapsed stacks, flamegraph input) and ``DIR/LABEL.top.txt`` (hottest functions by own and
by inclusive samples). Profiling slows the process it samples: never report figures from a
profiled run.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PROFILE_DIR: Path | None = None  # set by ``python -m bench --profile``
RATE_HZ = 250


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int, label: str) -> Iterator[None]:
    """Sample ``pid`` (GIL holders only: the CPU our threads spend) while the block runs."""
    exe = py_spy()
    if PROFILE_DIR is None or exe is None:
        yield
        return
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    raw = PROFILE_DIR / f"{label}.txt"
    args = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--gil",
        "--function",
        "--nonblocking",
    ]
    args += ["--rate", str(RATE_HZ), "--output", str(raw)]
    spy = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    if raw.exists():
        (PROFILE_DIR / f"{label}.top.txt").write_text(summarize(raw))


def summarize(raw: Path, top: int = 40) -> str:
    """The hottest frames of a collapsed-stack file, by own and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples (GIL held)", "", "own:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(out) + "\n"
