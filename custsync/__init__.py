"""custsync: apply CRM customer-change events to partner APIs, exactly once in effect."""

from custsync.producer import publish, publish_many

__all__ = ["publish", "publish_many"]
__version__ = "0.1.0"
