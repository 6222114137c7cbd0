"""Logging: one JSON line per record on stderr, or readable text on a terminal; scrubbed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from types import TracebackType
from typing import Any

from custsync.observability.scrub import ScrubFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(getattr(record, "custsync", {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            data["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "custsync", {})
        tail = " ".join(f"{k}={v}" for k, v in extra.items() if k not in ("event_id", "target"))
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        line = f"{line}  {tail}" if tail else line
        if record.exc_info and record.levelno >= logging.ERROR:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def say_as_json(msg: str, f: Any = None) -> None:
    """Celery's ``safe_say`` (its signal handlers' notices, e.g. "Warm shutdown") as one JSON
    record on stderr. Written with ``os.write`` as Celery does: a signal handler must not
    take logging's locks, which the interrupted code may hold."""
    record = logging.makeLogRecord(
        {"name": "celery.apps.worker", "levelno": logging.WARNING, "levelname": "WARNING"}
    )
    record.msg = msg.strip()
    line = JsonFormatter().format(record)
    # No stderr (closed, detached): a notice is not worth a crash in a signal handler.
    stderr = sys.__stderr__
    with contextlib.suppress(OSError, ValueError):
        if stderr is not None:
            os.write(stderr.fileno(), (line + "\n").encode())


def uses_json(fmt: str) -> bool:
    """``json``, or ``auto`` when stderr is not a terminal (a container, a file, a pipe)."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def _stderr_handler(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if uses_json(fmt) else TextFormatter())
    handler.addFilter(ScrubFilter())  # exception messages may echo personal data or secrets
    return handler


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """custsync's own records only (commands that leave the rest of logging alone)."""
    ours = logging.getLogger("custsync")
    ours.handlers[:] = [_stderr_handler(fmt)]
    ours.setLevel(level)
    ours.propagate = False


def configure_worker_logging(fmt: str, level: str, celery_level: int | str) -> None:
    """Every record of the process through one handler, so one format and one scrubbing:
    custsync's at ``level``, Celery's, kombu's and the libraries' at ``celery_level``;
    Python warnings and uncaught exceptions become records too."""
    root = logging.getLogger()
    root.handlers[:] = [_stderr_handler(fmt)]
    root.setLevel(celery_level)
    ours = logging.getLogger("custsync")
    ours.handlers.clear()
    ours.setLevel(level)
    ours.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


_crash_log = logging.getLogger("custsync.crash")


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    _crash_log.critical("uncaught %s", exc_type.__name__, exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # the thread's way to end, as the default hook treats it
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    _crash_log.critical("uncaught %s in thread %s", args.exc_type.__name__, name, exc_info=exc_info)
