"""A worker whose HTTP layer has a bug for customers named BUG-*: it raises an exception whose
message echoes the request body and headers (bearer token included), as careless libraries
do. Proves an unexpected error reaches Sentry and the logs with that data scrubbed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from custsync.targets.base import PartnerRequest, Target

_http = Target.http


def _buggy_http(
    self: Target, req: PartnerRequest, idempotency_key: str, extra_headers: Mapping[str, str] = {}
) -> Any:
    if "/BUG-" in req.url:
        password = self.config.options.get("password")
        raise RuntimeError(
            f"client bug sending {dict(req.body)!r} with headers {dict(extra_headers)!r}"
            f" as {{'username': 'custsync', 'password': '{password}'}}"
        )
    return _http(self, req, idempotency_key, extra_headers)


Target.http = _buggy_http  # type: ignore[method-assign]

if __name__ == "__main__":
    from custsync.cli import main

    main(prog_name="custsync")
