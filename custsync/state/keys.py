"""Every Redis key custsync writes, in one place (STYLE §8)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

QUEUE = "custsync"  # the public Celery queue: the entry for any client; kombu's list on Redis
# kombu's Redis transport: messages workers hold and have not acknowledged, by delivery tag.
UNACKED = "unacked"
TASK_NAME = "custsync.apply_update"
# Up to CUSTSYNC_BATCH_MAX envelopes in one message: what custsync's own producers send.
BATCH_TASK_NAME = "custsync.apply_batch"
BATCH_ITEMS_MAX = 1000  # the most events one batch message may carry (the guard's bound)
DEFAULT_PREFIX = "custsync:"


def partner_queue(target: str) -> str:
    """One partner's queue (``custsync.minted``): custsync's producers route there, and a
    worker started with ``--targets`` consumes only those."""
    return f"{QUEUE}.{target}"


def all_queues(targets: Iterable[str]) -> list[str]:
    """The public queue, then one per partner."""
    return [QUEUE, *(partner_queue(t) for t in sorted(targets))]


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix, so several deployments can share a Redis."""

    prefix: str = DEFAULT_PREFIX

    def retry(self, target: str) -> str:
        """Sorted set of events waiting for another attempt, scored by due time."""
        return f"{self.prefix}retry:{target}"

    def retry_claimed(self, target: str) -> str:
        """Events a poller took out of the retry set, scored by lease end."""
        return f"{self.prefix}retry-claimed:{target}"

    def dlq_entry(self, event_id: str) -> str:
        return f"{self.prefix}dlq:entry:{event_id}"

    @property
    def dlq_all(self) -> str:
        """Sorted set of every DLQ event id by dead-lettered time."""
        return f"{self.prefix}dlq:idx:all"

    def dlq_by(self, field: str, value: str) -> str:
        """Per-field index (target, reason, customer, status) of DLQ ids by time."""
        return f"{self.prefix}dlq:idx:{field}:{value}"

    def dlq_values(self, field: str) -> str:
        """Set of values seen for one indexed field, so stats need no scan."""
        return f"{self.prefix}dlq:values:{field}"

    @property
    def dlq_groups(self) -> str:
        """Hash of DLQ group id to its label (target, reason, status, normalised error)."""
        return f"{self.prefix}dlq:groups"

    def dlq_past(self, event_id: str) -> str:
        """History of a replayed event, kept so it is not lost if the event fails again."""
        return f"{self.prefix}dlq:past:{event_id}"

    def applied(self, event_id: str) -> str:
        """Ledger: set once the event was applied, with a TTL."""
        return f"{self.prefix}applied:{event_id}"

    def version(self, target: str, customer_id: str) -> str:
        """Hash of the highest applied version, event-wide (``_v``) and per field."""
        return f"{self.prefix}version:{target}:{customer_id}"

    def inflight(self, target: str, customer_id: str) -> str:
        """Held while one event of this customer is at the partner."""
        return f"{self.prefix}inflight:{target}:{customer_id}"

    def deliveries(self, event_id: str) -> str:
        """Deliveries that started and never finished: a poison-message counter."""
        return f"{self.prefix}deliveries:{event_id}"

    def breaker(self, target: str) -> str:
        return f"{self.prefix}breaker:{target}"

    def probe(self, target: str) -> str:
        """Held by the one event allowed through a half-open breaker."""
        return f"{self.prefix}probe:{target}"

    def rate(self, target: str) -> str:
        """GCRA theoretical arrival time of the target's shared rate limit."""
        return f"{self.prefix}rate:{target}"

    def replay_lock(self, event_id: str) -> str:
        return f"{self.prefix}replaying:{event_id}"

    @property
    def journal(self) -> str:
        """Sorted set of event ids handed to the Redis broker and not finished, by time."""
        return f"{self.prefix}journal"

    @property
    def journal_body(self) -> str:
        """Hash: event id -> what to enqueue again if the broker lost it."""
        return f"{self.prefix}journal-body"

    @property
    def journal_lock(self) -> str:
        return f"{self.prefix}journal-lock"

    @property
    def console_secret(self) -> str:
        """The console's session signing key, shared by every replica."""
        return f"{self.prefix}console:secret"

    @property
    def audit(self) -> str:
        """Every operator action (a stream, capped): who, when, what, how many."""
        return f"{self.prefix}audit"

    def ingest_seen(self, source: str, request_id: str) -> str:
        """The first answer to one webhook-id / Idempotency-Key of one source (24 h)."""
        return f"{self.prefix}ingest:seen:{source}:{request_id}"

    def ingest_rate(self, source: str) -> str:
        """One source's shared rate limit (GCRA arrival time), across replicas."""
        return f"{self.prefix}ingest:rate:{source}"

    def token(self, target: str) -> str:
        return f"{self.prefix}token:{target}"

    def token_lock(self, target: str) -> str:
        return f"{self.prefix}token-lock:{target}"

    def pause(self, target: str) -> str:
        """Set while a target is paused (429 or auth); the value says why."""
        return f"{self.prefix}pause:{target}"

    def last_success(self, target: str) -> str:
        return f"{self.prefix}last-success:{target}"

    def counters(self, target: str) -> str:
        """Hash of outcome counters per target, for status and the demo."""
        return f"{self.prefix}counters:{target}"

    @property
    def replay_jobs(self) -> str:
        """Sorted set of background replay job ids by creation time."""
        return f"{self.prefix}replay-jobs"

    def replay_job(self, job_id: str) -> str:
        """Hash: one replay job's scope, state and progress."""
        return f"{self.prefix}replay-job:{job_id}"

    def replay_job_scope(self, scope_key: str) -> str:
        """Held by the one active job of a scope (a filter, a group, a set of ids)."""
        return f"{self.prefix}replay-job-scope:{scope_key}"

    def replay_job_lease(self, job_id: str) -> str:
        """Held by the server process running the job; it expires if that process dies."""
        return f"{self.prefix}replay-job-lease:{job_id}"

    def minute(self, target: str, minute: int) -> str:
        """Hash of outcomes in one minute (epoch minute), for the console's chart."""
        return f"{self.prefix}minute:{target}:{minute}"
