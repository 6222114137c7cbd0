"""HTTP Digest authentication, server side (RFC 7616 / 2617: MD5, qop=auth).

Nonces are random and remembered with the nonce counts already used, so a
replayed (nonce, nc) pair is refused; a nonce older than its lifetime earns a
``stale=true`` challenge, which tells the client to retry with a fresh nonce.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import threading
import time

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_QUOTED_PAIR = re.compile(r"\\(.)")
_REQUIRED = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
_KEEP_COUNTS = 256  # nonce counts remembered exactly; older ones fall under a floor


class Verdict(enum.Enum):
    OK = "ok"
    STALE = "stale"
    DENIED = "denied"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def parse_params(header: str) -> dict[str, str]:
    """The key=value pairs of a Digest header, unquoted."""
    params = {}
    for match in _PARAM.finditer(header):
        quoted = match[2]
        if quoted is None:
            params[match[1].lower()] = match[3]
        else:
            params[match[1].lower()] = _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted
    return params


class _Nonce:
    __slots__ = ("counts", "created", "floor")

    def __init__(self, created: float) -> None:
        self.created = created
        self.counts: set[int] = set()
        self.floor = 0  # every nc at or below it counts as used

    def use(self, nc: int) -> bool:
        if nc <= self.floor or nc in self.counts:
            return False
        self.counts.add(nc)
        if len(self.counts) > _KEEP_COUNTS:
            ordered = sorted(self.counts)
            self.floor = ordered[len(ordered) // 2]
            self.counts = {n for n in ordered if n > self.floor}
        return True


class DigestAuth:
    """Issues challenges and checks Authorization headers for one user."""

    def __init__(self, realm: str, username: str, password: str, nonce_lifetime_s: float = 300.0):
        self.realm = realm
        self._username = username
        self._ha1 = _md5(f"{username}:{realm}:{password}")
        self._lifetime = nonce_lifetime_s
        self._opaque = secrets.token_hex(16)
        self._nonces: dict[str, _Nonce] = {}
        self._lock = threading.Lock()
        self._pruned_at = time.monotonic()

    def challenge(self, *, stale: bool = False) -> str:
        """A WWW-Authenticate value carrying a fresh nonce."""
        nonce = secrets.token_hex(16)
        now = time.monotonic()
        with self._lock:
            self._nonces[nonce] = _Nonce(now)
            if now - self._pruned_at > self._lifetime:
                self._prune(now)
        value = (
            f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", '
            f'algorithm=MD5, opaque="{self._opaque}"'
        )
        return value + ", stale=true" if stale else value

    def verify(self, method: str, uri: str, header: str | None) -> Verdict:
        if not header or header[:7].lower() != "digest ":
            return Verdict.DENIED
        p = parse_params(header[7:])
        if any(not p.get(name) for name in _REQUIRED):
            return Verdict.DENIED
        if (
            p["username"] != self._username
            or p["realm"] != self.realm
            or p["uri"] != uri
            or p["qop"] != "auth"
            or p.get("algorithm", "MD5").upper() != "MD5"
            or p.get("opaque") != self._opaque
        ):
            return Verdict.DENIED
        try:
            nc = int(p["nc"], 16)
        except ValueError:
            return Verdict.DENIED
        ha2 = _md5(f"{method}:{uri}")
        expected = _md5(f"{self._ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        if not hmac.compare_digest(expected, p["response"].lower()):
            return Verdict.DENIED
        now = time.monotonic()
        with self._lock:
            entry = self._nonces.get(p["nonce"])
            # Right password on a nonce we forgot or that expired: ask for a fresh one.
            if entry is None or now - entry.created > self._lifetime:
                return Verdict.STALE
            return Verdict.OK if entry.use(nc) else Verdict.DENIED

    def _prune(self, now: float) -> None:
        """Caller holds the lock; expired nonces are kept a while to answer stale."""
        horizon = now - 2 * self._lifetime
        self._nonces = {n: e for n, e in self._nonces.items() if e.created >= horizon}
        self._pruned_at = now
