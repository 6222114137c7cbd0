"""Logging: one JSON line per record on stderr, or readable text on a terminal; scrubbed."""

from __future__ import annotations

import json
import logging
import sys
import time
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


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ScrubFilter())  # exception messages may echo personal data or secrets
    root = logging.getLogger("custsync")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
