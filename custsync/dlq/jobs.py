"""Background replay jobs: a replay the console or the operator API starts, then follows.

A job is a scope (a filter, a group or ids) and its progress, in one Redis hash. Every
``custsync serve`` process runs a ``JobRunner``: it takes a waiting job's lease, replays in
chunks at the job's rate, writes progress after each chunk and renews the lease. The work
left is the DLQ itself (what was replayed has left it), so a job that stopped (cancelled,
its server restarted or died) resumes by planning its scope again. The scope is pinned to
the job's creation: an event that fails again during the job is dead-lettered after it and
is not replayed in a loop. One active job per scope.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import LockError, LockNotOwnedError

from custsync.dlq.query import Filter
from custsync.dlq.replay import Replayer, plan_replay
from custsync.privacy import mask_id
from custsync.redis_errors import cause
from custsync.runtime import Runtime
from custsync.state.audit import Audit

QUEUED, RUNNING, CANCELLED, DONE, FAILED = "queued", "running", "cancelled", "done", "failed"
ACTIVE = frozenset({QUEUED, RUNNING})
LEASE_S = 60.0  # a runner renews it after every chunk; a dead runner's job waits this long
KEEP_S = 7 * 86_400  # finished jobs stay listed this long

log = logging.getLogger("custsync.replay_jobs")


class JobError(Exception):
    """An action on a job that cannot be done; the message says why."""


class JobConflict(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"replay job {job_id} is already replaying this selection")
        self.job_id = job_id


@dataclass(frozen=True)
class Scope:
    """What a job replays: a filter, or ids narrowed by a filter."""

    filter: Filter
    ids: tuple[str, ...] = ()
    force: bool = False

    def as_dict(self) -> dict[str, Any]:
        kept = {k: v for k, v in dataclasses.asdict(self.filter).items() if v is not None}
        return {"filter": kept, "ids": list(self.ids), "force": self.force}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scope:
        return cls(Filter(**data["filter"]), tuple(data["ids"]), bool(data["force"]))

    @property
    def key(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class Job:
    job_id: str
    scope: Scope
    by: str
    created_at: float
    rate: float | None = None  # events a second; None: as fast as the queue takes them
    state: str = QUEUED
    total: int = 0  # replayed so far plus what the latest plan would send
    replayed: int = 0
    left: int = 0  # superseded or invalid at the latest plan: they stay in the DLQ
    skipped: int = 0  # gone meanwhile (another replay, a purge) or failed again
    runs: int = 0
    run_started_at: float = 0.0
    run_replayed: int = 0  # ``replayed`` when this run began: the rate is measured from it
    updated_at: float = 0.0
    finished_at: float = 0.0
    cancel: bool = False
    error: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def percent(self) -> int:
        return 100 if self.state == DONE else int(100 * self.replayed / max(self.total, 1))

    @property
    def measured_rate(self) -> float:
        """Events a second replayed by the current (or last) run."""
        end = self.finished_at if not self.active and self.finished_at else time.time()
        elapsed = end - self.run_started_at
        done = self.replayed - self.run_replayed
        return round(done / elapsed, 1) if self.run_started_at and elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _FIELDS if k != "scope"}
        out["scope"] = _shown_scope(self.scope)
        out.update(percent=self.percent, measured_rate=self.measured_rate)
        return out


_FIELDS = [f.name for f in dataclasses.fields(Job)]


def _shown_scope(scope: Scope) -> dict[str, Any]:
    """The scope as shown and audited: a customer id becomes its pseudonym."""
    shown = scope.as_dict()
    if "customer_id" in shown["filter"]:
        shown["filter"]["customer_id"] = mask_id(shown["filter"]["customer_id"])
    return shown


def _encode(job: Job) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _FIELDS:
        value = getattr(job, name)
        if name == "scope":
            out[name] = json.dumps(value.as_dict(), sort_keys=True)
        elif value is None:
            out[name] = ""
        elif isinstance(value, bool):
            out[name] = "1" if value else ""
        else:
            out[name] = str(value)
    return out


def _decode(raw: dict[str, str]) -> Job:
    kinds = {f.name: f.type for f in dataclasses.fields(Job)}
    values: dict[str, Any] = {}
    for name in _FIELDS:
        text = raw.get(name, "")
        kind = str(kinds[name])
        if name == "scope":
            values[name] = Scope.from_dict(json.loads(text))
        elif kind == "bool":
            values[name] = bool(text)
        elif kind == "int":
            values[name] = int(text or 0)
        elif kind.startswith("float | None"):
            values[name] = float(text) if text else None
        elif kind == "float":
            values[name] = float(text or 0)
        else:
            values[name] = text
    return Job(**values)


class Jobs:
    """Replay jobs in Redis: create, read, cancel, resume."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.redis = rt.redis
        self.keys = rt.keys

    def create(self, scope: Scope, by: str, rate: float | None = None) -> Job:
        job = Job(uuid.uuid4().hex[:12], scope, by, time.time(), rate)
        self._hold_scope(job)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.replay_job(job.job_id), mapping=_encode(job))
        pipe.zadd(self.keys.replay_jobs, {job.job_id: job.created_at})
        pipe.execute()
        self._forget_old()
        return job

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(self.keys.replay_job(job_id))
        return _decode(raw) if raw else None

    def recent(self, limit: int = 20) -> list[Job]:
        ids = self.redis.zrevrange(self.keys.replay_jobs, 0, limit - 1)
        return [j for j in self._load(ids) if j is not None]

    def waiting(self) -> list[Job]:
        """Active jobs, oldest first (a runner takes each whose lease is free)."""
        ids = self.redis.zrange(self.keys.replay_jobs, 0, -1)
        return [j for j in self._load(ids) if j is not None and j.active]

    def _load(self, ids: Sequence[str]) -> list[Job | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.keys.replay_job(job_id))
        return [_decode(raw) if raw else None for raw in pipe.execute()]

    def cancel(self, job_id: str) -> Job:
        """A waiting job ends now; a running one at its next chunk (the runner ends it)."""
        job = self._must(job_id)
        if not job.active:
            raise JobError(f"replay job {job_id} is {job.state}: nothing to cancel")
        self.update(job, cancel=True)  # a runner that took it meanwhile stops at once
        if job.state == QUEUED:
            self.end(job, CANCELLED)
        return job

    def resume(self, job_id: str) -> Job:
        job = self._must(job_id)
        if job.state not in (CANCELLED, FAILED):
            raise JobError(
                f"replay job {job_id} is {job.state}: only a cancelled or failed job resumes"
            )
        self._hold_scope(job)
        self.update(job, state=QUEUED, cancel=False, error="", finished_at=0.0)
        return job

    def update(self, job: Job, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(job, name, value)
        job.updated_at = time.time()
        encoded = _encode(job)
        fields = {k: encoded[k] for k in (*changes, "updated_at")}
        self.redis.hset(self.keys.replay_job(job.job_id), mapping=fields)

    def end(self, job: Job, state: str, error: str = "") -> None:
        self.update(job, state=state, error=error, finished_at=time.time())
        self._release_scope(job)

    def cancel_requested(self, job: Job) -> bool:
        return bool(self.redis.hget(self.keys.replay_job(job.job_id), "cancel"))

    def _must(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobError(f"no replay job {job_id}")
        return job

    def _hold_scope(self, job: Job) -> None:
        key = self.keys.replay_job_scope(job.scope.key)
        if self.redis.set(key, job.job_id, nx=True):
            return
        holder = self.redis.get(key)
        if holder and holder != job.job_id:
            other = self.get(holder)
            if other is not None and other.active:
                raise JobConflict(holder)
        self.redis.set(key, job.job_id)  # its holder ended without letting go (a crash)

    def _release_scope(self, job: Job) -> None:
        key = self.keys.replay_job_scope(job.scope.key)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) == job.job_id:
                    pipe.multi()
                    pipe.delete(key)
                    pipe.execute()
            except redis.WatchError:
                pass  # another job took the scope meanwhile: it is theirs

    def _forget_old(self) -> None:
        """Finished jobs older than KEEP_S leave the list."""
        old = self.redis.zrangebyscore(self.keys.replay_jobs, "-inf", time.time() - KEEP_S)
        for job in self._load(old):
            if job is not None and not job.active:
                self.redis.delete(self.keys.replay_job(job.job_id))
                self.redis.zrem(self.keys.replay_jobs, job.job_id)


class _Stop(Exception):
    def __init__(self, cancelled: bool) -> None:
        self.cancelled = cancelled


class JobRunner:
    """Runs waiting jobs in a background thread of a server process."""

    def __init__(
        self, rt: Runtime, app: Any, *, poll_s: float = 1.0, lease_s: float = LEASE_S
    ) -> None:
        self.rt = rt
        self.app = app
        self.jobs = Jobs(rt)
        self.poll_s = poll_s
        self.lease_s = lease_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._down = False

    def start(self) -> JobRunner:
        self._thread = threading.Thread(target=self._loop, name="replay-jobs", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """A job running here goes back to waiting, for this or another server to resume."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stopping.wait(self.poll_s):
            try:
                self.run_waiting()
                if self._down:
                    log.info("replay jobs: Redis is back")
                self._down = False
            except (redis.RedisError, OSError) as exc:
                if not self._down:  # one line per outage
                    log.warning("replay jobs: Redis unavailable (%s); trying again", cause(exc))
                self._down = True

    def run_waiting(self) -> int:
        """Run every waiting job no other runner holds; how many were run."""
        ran = 0
        for job in self.jobs.waiting():
            if self._stopping.is_set():
                break
            lease = self.rt.redis.lock(
                self.rt.keys.replay_job_lease(job.job_id),
                timeout=self.lease_s,
                blocking=False,
                thread_local=False,
            )
            if not lease.acquire():
                continue
            try:
                self._run(job.job_id, lease)
                ran += 1
            finally:
                with contextlib.suppress(LockError):
                    lease.release()
        return ran

    def _run(self, job_id: str, lease: Any) -> None:
        job = self.jobs.get(job_id)
        if job is None or not job.active:
            return
        if job.cancel:
            self.jobs.end(job, CANCELLED)
            return
        flt = job.scope.filter
        pinned = min(flt.until if flt.until is not None else job.created_at, job.created_at)
        plan = plan_replay(
            self.rt, dataclasses.replace(flt, until=pinned), job.scope.ids, job.scope.force
        )
        lease.reacquire()  # planning a large scope takes a while
        base = job.replayed
        self.jobs.update(
            job,
            state=RUNNING,
            runs=job.runs + 1,
            run_started_at=time.time(),
            run_replayed=base,
            total=base + len(plan.replay),
            left=len(plan.superseded) + len(plan.invalid),
        )
        replayer = Replayer(self.rt, self.app, force=job.scope.force)
        skipped = job.skipped

        def progress(_: int) -> None:
            s = replayer.summary
            moved = len(s.gone) + len(s.changed) + len(s.superseded) + len(s.invalid)
            self.jobs.update(job, replayed=base + s.total, skipped=skipped + moved)
            lease.reacquire()  # LockNotOwnedError: another runner took over; stop here
            if self.jobs.cancel_requested(job) or self._stopping.is_set():
                raise _Stop(cancelled=not self._stopping.is_set())

        try:
            replayer.run(plan.replay, job.rate, progress)
        except _Stop as stop:
            if stop.cancelled:
                self.jobs.end(job, CANCELLED)
            else:
                self.jobs.update(job, state=QUEUED)  # this server stops: another resumes it
            return
        except LockNotOwnedError:
            log.warning("replay job %s: lease lost; another server continues it", job.job_id)
            return
        except (redis.RedisError, OSError):
            raise  # the loop reports it once; the job resumes when Redis is back
        except Exception as exc:
            log.exception("replay job %s failed", job.job_id)
            self.jobs.end(job, FAILED, f"{type(exc).__name__}: see the server log")
            return
        self.jobs.end(job, DONE)
        scope = {"job": job.job_id, **_shown_scope(job.scope)}
        Audit(self.rt.redis, self.rt.keys).record(job.by, "replay", scope, job.replayed)
