"""The audit trail: one stream entry per operator action, without personal data."""

from __future__ import annotations

import json
import time
from typing import Any

from custsync.privacy import mask_id
from custsync.state.keys import Keys

MAX_ENTRIES = 100_000  # roughly: XADD trims with ~


def _pseudonymised(scope: Any) -> Any:
    """A customer id in a filter becomes its pseudonym: the trail holds no personal data."""
    if isinstance(scope, dict):
        return {
            k: (mask_id(v) if k == "customer" and isinstance(v, str) else _pseudonymised(v))
            for k, v in scope.items()
        }
    return scope


class Audit:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.audit

    def record(self, who: str, action: str, scope: dict[str, Any], count: int) -> None:
        scope = _pseudonymised(scope)
        fields = {
            "at": f"{time.time():.3f}",
            "who": who,
            "action": action,
            "scope": json.dumps(scope, sort_keys=True, default=str),
            "count": str(count),
        }
        self.redis.xadd(self.key, fields, maxlen=MAX_ENTRIES, approximate=True)

    def newest(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.redis.xrevrange(self.key, count=limit)
        return [
            {
                "id": entry_id,
                "at": float(f["at"]),
                "who": f["who"],
                "action": f["action"],
                "scope": json.loads(f["scope"]),
                "count": int(f["count"]),
            }
            for entry_id, f in rows
        ]
