"""Partners are plugins: each registers its Target class under the entry point group
``custsync.targets`` (the built-in ones too, in pyproject.toml), so a new partner is one
installed module and no edit to custsync. ``REGISTRY`` loads them on first use."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from custsync.targets.base import Target

GROUP = "custsync.targets"


class PluginError(RuntimeError):
    """An entry point of the group does not name a usable Target."""


class _Registry(Mapping[str, "type[Target]"]):
    """Target classes by name, from the installed entry points, loaded once."""

    def __init__(self) -> None:
        self._loaded: dict[str, type[Target]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, type[Target]]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = _discover()
        return self._loaded

    def __getitem__(self, name: str) -> type[Target]:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def _discover() -> dict[str, type[Target]]:
    from custsync.targets.base import Target  # noqa: PLC0415  plugins load on first use

    found: dict[str, type[Target]] = {}
    for point in entry_points(group=GROUP):
        cls = point.load()
        if not (isinstance(cls, type) and issubclass(cls, Target)):
            raise PluginError(f"entry point {GROUP}:{point.name} is not a Target subclass")
        if cls.name != point.name:
            raise PluginError(f"entry point {GROUP}:{point.name} names target {cls.name!r}")
        found[point.name] = cls
    if not found:
        raise PluginError(f"no partner registered under {GROUP}: is custsync installed?")
    return dict(sorted(found.items()))


REGISTRY: Mapping[str, type[Target]] = _Registry()


def public_fields(target: object) -> frozenset[str]:
    """The fields of a target's changes known not to be personal; none for an unknown one."""
    cls = REGISTRY.get(target) if isinstance(target, str) else None
    return cls.public_fields if cls is not None else frozenset()


def declared_fields() -> frozenset[str]:
    """Every changes field some partner declares and does not call public (Sentry's keys)."""
    out: set[str] = set()
    for cls in REGISTRY.values():
        out |= set(cls.changes_schema().fields) - cls.public_fields
    return frozenset(out)


__all__ = ["GROUP", "REGISTRY", "PluginError", "declared_fields", "public_fields"]
