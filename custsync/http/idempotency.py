"""The same webhook-id / Idempotency-Key from one source within 24 h enqueues nothing and
gets the first answer again, also when two copies reach two replicas at once: the first
claims the key with SET NX, the second waits for the first's answer."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app

from custsync.http.answers import answer, problem

KEEP_S = 24 * 3600
PENDING = "pending"
CLAIM_S = 60  # a replica that died mid-request frees the key after this
WAIT_S = 10.0  # how long a copy waits for the first one's answer


@dataclass
class Claim:
    key: str
    earlier: Response | None  # the first answer, when this request is a repeat

    def keep(self, response: Response) -> None:
        if response.status_code >= 500:
            return self.release()
        stored = {"status": response.status_code, "body": response.get_data(as_text=True)}
        _redis().set(self.key, json.dumps(stored), ex=KEEP_S)

    def release(self) -> None:
        _redis().delete(self.key)


def _redis() -> Any:
    return current_app.config["CUSTSYNC_RUNTIME"].redis


def claim(source: str, request_id: str) -> Claim:
    key = current_app.config["CUSTSYNC_RUNTIME"].keys.ingest_seen(source, request_id[:200])
    redis = _redis()
    if redis.set(key, PENDING, nx=True, ex=CLAIM_S):
        return Claim(key, None)
    deadline = time.monotonic() + WAIT_S
    while True:
        stored = redis.get(key)
        if stored is None:  # the first one failed and released it: this one goes
            if redis.set(key, PENDING, nx=True, ex=CLAIM_S):
                return Claim(key, None)
        elif stored != PENDING:
            first = json.loads(stored)
            replay = Response(first["body"], status=first["status"], mimetype="application/json")
            replay.headers["Idempotent-Replayed"] = "true"
            return Claim(key, replay)
        if time.monotonic() > deadline:
            busy = problem(409, "in progress", "the first request with this id is still running")
            busy.headers["Retry-After"] = "1"
            return Claim(key, busy)
        time.sleep(0.05)


__all__ = ["Claim", "answer", "claim"]
