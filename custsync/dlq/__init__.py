"""The dead-letter queue: failures as records an operator can read, filter and replay."""

from custsync.dlq.entry import DeadLetter
from custsync.dlq.query import Filter, Query
from custsync.dlq.retention import RetentionPolicy
from custsync.dlq.store import DlqStore

__all__ = ["DeadLetter", "DlqStore", "Filter", "Query", "RetentionPolicy"]
