"""JSON answers: every error is ``{"error": …, "detail": …}`` and never echoes the body."""

from __future__ import annotations

import json
from typing import Any

from flask import Response


def answer(status: int, body: Any) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), default=str),
        status=status,
        mimetype="application/json",
    )


def problem(status: int, error: str, detail: str) -> Response:
    return answer(status, {"error": error, "detail": detail})
