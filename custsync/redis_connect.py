"""Redis clients from a custsync URL, plain or through Sentinel.

``sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB]`` names the sentinels and the
master they watch: the client asks them where the master is and asks again after a
failover (redis-py's Sentinel support; kombu's sentinel transport for the broker). Redis
Cluster is not supported: custsync's scripts touch several keys of one customer, event
and queue at once, which Cluster allows only within one hash slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
from redis.sentinel import Sentinel

SENTINEL = "sentinel://"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = None  # the master's (and its replicas'); sentinels use none

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """Raises ValueError saying what is wrong (never echoing the password)."""
        rest = url[len(SENTINEL) :] if url.startswith(SENTINEL) else None
        if rest is None:
            raise ValueError("a Sentinel URL starts with sentinel://")
        password = None
        if "@" in rest:
            auth, rest = rest.rsplit("@", 1)
            password = unquote(auth.split(":", 1)[1]) if ":" in auth else None
        hosts, _, path = rest.partition("/")
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise ValueError("no master name: sentinel://HOST:PORT[,HOST:PORT…]/MASTER[/DB]")
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError("the path is /MASTER or /MASTER/DB (a number)")
        return cls(
            tuple(_host_port(h) for h in hosts.split(",") if h),
            unquote(parts[0]),
            int(parts[1]) if len(parts) == 2 else 0,
            password,
        )

    def __post_init__(self) -> None:
        if not self.sentinels:
            raise ValueError("no sentinel: sentinel://HOST:PORT[,HOST:PORT…]/MASTER[/DB]")

    def kombu_url(self) -> str:
        """kombu's form: one ``sentinel://`` URL per sentinel, joined by ``;``."""
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth}{h}:{p}/{self.db}" for h, p in self.sentinels)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"sentinel {text!r}: expected HOST:PORT")
    if port and not port.isdigit():
        raise ValueError(f"sentinel {host!r}: the port is not a number")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


def is_sentinel(url: str | None) -> bool:
    return bool(url) and str(url).startswith(SENTINEL)


def connect(url: str, **options: Any) -> Any:
    """A client for ``url``; through Sentinel, one that follows the master."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    where = SentinelUrl.parse(url)
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout") if k in options}
    sentinel = Sentinel(list(where.sentinels), sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        where.master, db=where.db, password=where.password, **options
    )
