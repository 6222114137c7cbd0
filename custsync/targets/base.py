"""The contract every partner target implements, and the answer table every partner shares.

Adding a partner means one module with a Target subclass, registered as an entry point of
the ``custsync.targets`` group (see custsync/targets/__init__.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import requests
from marshmallow import Schema, fields
from requests.adapters import HTTPAdapter

from custsync.errors import (
    AuthFailed,
    NotFound,
    PartnerUnavailable,
    Rejected,
    Throttled,
)
from custsync.schemas.envelope import Event
from custsync.state.keys import Keys
from custsync.version import VERSION

if TYPE_CHECKING:
    from custsync.settings import TargetConfig

USER_AGENT = f"custsync/{VERSION}"


class TargetMetrics(Protocol):
    """What a target reports; the runtime hands it the observability hooks (no import)."""

    def partner_call(self, target: str, status: int | None, duration_s: float) -> None: ...

    def token_renewal(self, target: str) -> None: ...


class NoMetrics:
    def partner_call(self, target: str, status: int | None, duration_s: float) -> None:
        pass

    def token_renewal(self, target: str) -> None:
        pass


@dataclass(frozen=True)
class PartnerRequest:
    method: str
    url: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Applied:
    """What a successful call tells the pipeline."""

    status: int
    customer_id: str  # the key the customer has now (a vendor rename changes it)


def trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def partner_message(response: requests.Response) -> str:
    """The partner's own explanation, from its JSON body when it has one."""
    try:
        data = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(data, Mapping):
        for key in ("message", "error", "detail", "title"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
    return response.reason or ""


def retry_after_s(response: requests.Response, default_s: float = 1.0) -> float:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default_s
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default_s

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Target:
    """A partner API: schema, request builder, auth and response classifier."""

    name: ClassVar[str]
    changes_schema: ClassVar[type[Schema]]
    # Partial-update partners keep a version per field (ordering, issue 4).
    field_level: ClassVar[bool] = False
    # Fields sent on every call whatever their version (a partial update's identifiers).
    always_sent: ClassVar[frozenset[str]] = frozenset()
    # Fields of the changes known not to be personal: the only values ever shown in clear
    # (logs, errors, DLQ views, Sentry). Everything else, unknown fields included, is masked.
    public_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        config: TargetConfig,
        redis: Any,
        keys: Keys,
        *,
        trust_env: bool = False,
        response_max_bytes: int = 2048,
        metrics: TargetMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or NoMetrics()
        self.redis = redis
        self.keys = keys
        self.trust_env = trust_env
        self.response_max_bytes = response_max_bytes
        self._local = threading.local()

    # -- hooks a partner module may override -------------------------------------------
    @classmethod
    def settings_fields(cls) -> dict[str, fields.Field[Any]]:
        """Partner-specific settings, with data_key = the environment variable."""
        return {}

    @classmethod
    def check_options(cls, base_url: str, options: Mapping[str, Any]) -> str | None:
        """A one-line problem with the partner's settings, naming the variable, or None."""
        return None

    @classmethod
    def check_event(cls, event: Event) -> dict[str, list[str]]:
        """Cross-field rules between the envelope and the changes."""
        return {}

    def build_request(self, event: Event) -> PartnerRequest:
        raise NotImplementedError

    def configure_session(self, session: requests.Session) -> None:
        """Attach auth and fixed headers to a new per-thread session."""

    def check_success(self, response: requests.Response) -> None:
        """A 2xx may still be a refusal (Minted ``success: false``)."""

    def customer_after(self, event: Event) -> str:
        return event.customer_id

    # -- shared machinery ---------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        """One session per thread: requests.Session is not thread-safe."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = self.trust_env  # re-reading proxy variables costs +30-40 % CPU
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            self.configure_session(session)
            self._local.session = session
        return session

    def send(self, event: Event) -> requests.Response:
        """Send the event once; network failures become PartnerUnavailable."""
        req = self.build_request(event)
        return self.http(req, event.event_id)

    def http(
        self, req: PartnerRequest, idempotency_key: str, extra_headers: Mapping[str, str] = {}
    ) -> requests.Response:
        headers = {**req.headers, **extra_headers, "Idempotency-Key": idempotency_key}
        started = time.perf_counter()
        status: int | None = None
        try:
            response = self.session.request(
                req.method, req.url, json=req.body, headers=headers, timeout=self.config.timeout
            )
            status = response.status_code
            return response
        except requests.Timeout as exc:
            raise PartnerUnavailable(f"{self.name}: timed out ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            raise PartnerUnavailable(f"{self.name}: connection failed") from exc
        except requests.RequestException as exc:
            raise PartnerUnavailable(f"{self.name}: {type(exc).__name__}") from exc
        finally:
            self.metrics.partner_call(self.name, status, time.perf_counter() - started)

    def not_found_advice(self, partner_says: str) -> str:
        """What an operator should do about this partner's 404, from what it said."""
        return "the partner does not know this customer: create it there, then replay"

    def classify(self, response: requests.Response) -> None:
        """The README's answer table: raise the error class that says what to do, or return."""
        status = response.status_code
        body = trim(response.text, self.response_max_bytes)
        if 200 <= status < 300:
            self.check_success(response)
            return
        message = f"{self.name} answered {status}: {partner_message(response)}".rstrip(": ")
        if status == 429:
            raise Throttled(message, retry_after_s=retry_after_s(response))
        if status in (401, 403):
            raise AuthFailed(message, status=status, response_body=body)
        if status == 404:
            advice = self.not_found_advice(partner_message(response))
            raise NotFound(f"{message}; {advice}", status=status, response_body=body)
        if status == 408 or status >= 500:
            raise PartnerUnavailable(message, status=status, response_body=body)
        raise Rejected(message, status=status, response_body=body)

    def apply(self, event: Event) -> Applied:
        response = self.send(event)
        self.classify(response)
        return Applied(status=response.status_code, customer_id=self.customer_after(event))
