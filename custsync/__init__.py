"""custsync: apply CRM customer-change events to partner APIs, exactly once in effect."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from custsync.version import VERSION as __version__

__all__ = ["__version__", "publish", "publish_many"]

if TYPE_CHECKING:
    from custsync.producer import publish, publish_many


def __getattr__(name: str) -> Any:
    # Importing any custsync module must not load Celery: the producer loads on first use.
    if name in __all__:
        from custsync import producer  # noqa: PLC0415  loaded on first use, not at import

        return getattr(producer, name)
    raise AttributeError(f"module 'custsync' has no attribute {name!r}")
