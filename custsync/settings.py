"""Settings: parsed once from the environment into one typed object (README, "Configuration").

Every variable may instead be read from a file named by ``<NAME>_FILE`` (Docker and
Kubernetes secrets). Errors name the variable at fault, never its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from custsync.errors import SettingsError
from custsync.redis_connect import SentinelUrl, is_sentinel
from custsync.state.keys import BATCH_ITEMS_MAX, DEFAULT_PREFIX, Keys
from custsync.targets import REGISTRY

ENV_PREFIX = "CUSTSYNC_"
_URL_SCHEMES = ("redis", "rediss", "unix", "amqp", "amqps", "pyamqp", "sentinel")


def _url(schemes: tuple[str, ...]) -> validate.Validator:
    return validate.URL(schemes=set(schemes), require_tld=False)


def _redis_url(value: str) -> None:
    """redis://, rediss://, unix:// or sentinel://HOST:PORT[,HOST:PORT…]/MASTER[/DB]."""
    if not is_sentinel(value):
        _url(("redis", "rediss", "unix", "sentinel"))(value)
        return
    try:
        SentinelUrl.parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _positive(**kw: Any) -> fields.Float:
    return fields.Float(validate=validate.Range(min=0, min_inclusive=False), **kw)


class _GlobalSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    redis_url = fields.String(data_key="CUSTSYNC_REDIS_URL", validate=_redis_url)
    broker_url = fields.String(data_key="CUSTSYNC_BROKER_URL", validate=_url(_URL_SCHEMES))
    data_dir = fields.String(data_key="CUSTSYNC_DATA_DIR", validate=validate.Length(min=1))
    embedded_db = fields.Integer(
        data_key="CUSTSYNC_EMBEDDED_DB", load_default=0, validate=validate.Range(0, 15)
    )
    key_prefix = fields.String(
        data_key="CUSTSYNC_KEY_PREFIX", load_default=DEFAULT_PREFIX, validate=validate.Length(1)
    )
    concurrency = fields.Integer(
        data_key="CUSTSYNC_CONCURRENCY", load_default=8, validate=validate.Range(1, 512)
    )
    batch_max = fields.Integer(
        data_key="CUSTSYNC_BATCH_MAX", load_default=50, validate=validate.Range(1, BATCH_ITEMS_MAX)
    )
    redis_timeout_s = fields.Float(
        data_key="CUSTSYNC_REDIS_TIMEOUT_S", load_default=5.0, validate=validate.Range(0.5, 300)
    )
    poll_interval_s = _positive(data_key="CUSTSYNC_POLL_INTERVAL_S", load_default=0.5)
    visibility_timeout_s = _positive(data_key="CUSTSYNC_VISIBILITY_TIMEOUT_S", load_default=3600)
    task_time_limit_s = _positive(data_key="CUSTSYNC_TASK_TIME_LIMIT_S", load_default=120)
    retry_after_max_s = _positive(data_key="CUSTSYNC_RETRY_AFTER_MAX_S", load_default=300)
    ledger_ttl_s = fields.Integer(
        data_key="CUSTSYNC_LEDGER_TTL_S", load_default=7 * 86_400, validate=validate.Range(60)
    )
    poison_deliveries = fields.Integer(
        data_key="CUSTSYNC_POISON_DELIVERIES", load_default=5, validate=validate.Range(1, 100)
    )
    max_event_bytes = fields.Integer(
        data_key="CUSTSYNC_MAX_EVENT_BYTES",
        load_default=256 * 1024,
        validate=validate.Range(1024, 64 * 1024 * 1024),
    )
    response_max_bytes = fields.Integer(
        data_key="CUSTSYNC_DLQ_RESPONSE_MAX_BYTES",
        load_default=2048,
        validate=validate.Range(0, 1_000_000),
    )
    dlq_retention_s = fields.Integer(
        data_key="CUSTSYNC_DLQ_RETENTION_S", load_default=30 * 86_400, validate=validate.Range(60)
    )
    dlq_max_entries = fields.Integer(
        data_key="CUSTSYNC_DLQ_MAX_ENTRIES", load_default=1_000_000, validate=validate.Range(1)
    )
    trust_env = fields.Boolean(data_key="CUSTSYNC_TRUST_ENV", load_default=False)
    log_format = fields.String(
        data_key="CUSTSYNC_LOG_FORMAT",
        load_default="auto",
        validate=validate.OneOf(["auto", "json", "text"]),
    )
    log_level = fields.String(
        data_key="CUSTSYNC_LOG_LEVEL",
        load_default="INFO",
        validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"]),
    )
    sentry_dsn = fields.String(data_key="SENTRY_DSN", validate=_url(("http", "https")))
    sentry_environment = fields.String(
        data_key="SENTRY_ENVIRONMENT", validate=validate.Length(1, 64)
    )
    metrics_port = fields.Integer(
        data_key="CUSTSYNC_METRICS_PORT", validate=validate.Range(1, 65535)
    )
    http_bind = fields.String(
        data_key="CUSTSYNC_HTTP_BIND",
        load_default="127.0.0.1:8080",
        validate=validate.Regexp(r"^(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}$", error="Not HOST:PORT."),
    )
    ingest_sources = fields.String(data_key="CUSTSYNC_INGEST_SOURCES")
    operators_file = fields.String(
        data_key="CUSTSYNC_OPERATORS_FILE", validate=validate.Length(min=1)
    )
    ingest_max_events = fields.Integer(
        data_key="CUSTSYNC_INGEST_MAX_EVENTS", load_default=1000, validate=validate.Range(1)
    )
    ingest_max_bytes = fields.Integer(
        data_key="CUSTSYNC_INGEST_MAX_BYTES",
        load_default=1024 * 1024,
        validate=validate.Range(1024, 64 * 1024 * 1024),
    )


def target_base_fields(name: str) -> dict[str, fields.Field[Any]]:
    """Fields every target has, with defaults documented in the README."""
    p = f"{ENV_PREFIX}{name.upper()}_"
    return {
        "base_url": fields.String(data_key=f"{p}BASE_URL", validate=_url(("http", "https"))),
        "max_attempts": fields.Integer(
            data_key=f"{p}MAX_ATTEMPTS", load_default=8, validate=validate.Range(1, 1000)
        ),
        "max_age_s": _positive(data_key=f"{p}MAX_AGE_S", load_default=86_400),
        "backoff_base_s": _positive(data_key=f"{p}BACKOFF_BASE_S", load_default=1.0),
        "backoff_cap_s": _positive(data_key=f"{p}BACKOFF_CAP_S", load_default=300.0),
        "connect_timeout_s": _positive(data_key=f"{p}CONNECT_TIMEOUT_S", load_default=3.05),
        "read_timeout_s": _positive(data_key=f"{p}READ_TIMEOUT_S", load_default=10.0),
        "rate_limit_per_s": fields.Float(
            data_key=f"{p}RATE_LIMIT_PER_S", load_default=0.0, validate=validate.Range(min=0)
        ),
        "breaker_failures": fields.Integer(
            data_key=f"{p}BREAKER_FAILURES", load_default=5, validate=validate.Range(1, 10_000)
        ),
        "breaker_cooldown_s": _positive(data_key=f"{p}BREAKER_COOLDOWN_S", load_default=5.0),
        "breaker_cooldown_max_s": _positive(
            data_key=f"{p}BREAKER_COOLDOWN_MAX_S", load_default=60.0
        ),
    }


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_age_s: float = 86_400.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5  # customers failing target-wide, no success between, that open it
    cooldown_s: float = 5.0  # first pause; doubles each time a probe fails
    cooldown_max_s: float = 60.0


@dataclass(frozen=True)
class TargetConfig:
    name: str
    base_url: str
    retry: RetryPolicy
    connect_timeout_s: float
    read_timeout_s: float
    rate_limit_per_s: float = 0.0
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_s, self.read_timeout_s)


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    broker_url: str | None = None
    data_dir: Path | None = None
    embedded_db: int = 0
    key_prefix: str = DEFAULT_PREFIX
    concurrency: int = 8
    batch_max: int = 50  # events per message from custsync's producers; 1: one per message
    redis_timeout_s: float = 5.0  # connect and reply, every Redis client (state and broker)
    poll_interval_s: float = 0.5
    visibility_timeout_s: float = 3600.0
    task_time_limit_s: float = 120.0
    retry_after_max_s: float = 300.0
    ledger_ttl_s: int = 7 * 86_400
    poison_deliveries: int = 5
    max_event_bytes: int = 256 * 1024  # one envelope as JSON; larger is refused or malformed
    response_max_bytes: int = 2048
    dlq_retention_s: int = 30 * 86_400
    dlq_max_entries: int = 1_000_000
    trust_env: bool = False
    log_format: str = "auto"
    log_level: str = "INFO"
    sentry_dsn: str | None = None
    sentry_environment: str | None = None
    metrics_port: int | None = None  # unset: no metrics endpoint
    http_bind: str = "127.0.0.1:8080"
    ingest_sources: str | None = field(default=None, repr=False)  # JSON with secrets
    operators_file: str | None = None  # who may use the operator API, and their roles
    ingest_max_events: int = 1000
    ingest_max_bytes: int = 1024 * 1024
    targets: Mapping[str, TargetConfig] = field(default_factory=dict)

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    def target(self, name: str) -> TargetConfig | None:
        return self.targets.get(name)


def _read_env(
    schema_fields: Mapping[str, fields.Field[Any]], environ: Mapping[str, str]
) -> dict[str, str]:
    """Collect each declared variable, or the content of the file its ``_FILE`` twin names."""
    raw: dict[str, str] = {}
    for f in schema_fields.values():
        name = f.data_key
        assert name is not None
        file_var = f"{name}_FILE"
        if file_var in environ:
            if name in environ:
                raise SettingsError(f"{name}: set either {name} or {file_var}, not both")
            path = environ[file_var]
            try:
                raw[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(f"{file_var}: cannot read {path}: {exc.strerror}") from None
        elif name in environ and environ[name] != "":
            raw[name] = environ[name]
    return raw


def _load(schema: Schema, environ: Mapping[str, str]) -> dict[str, Any]:
    raw = _read_env(schema.fields, environ)
    try:
        return schema.load(raw)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise SettingsError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    messages = exc.normalized_messages()  # type: ignore[no-untyped-call]
    problems = [f"{var}: {' '.join(map(str, msgs))}" for var, msgs in sorted(messages.items())]
    return "; ".join(problems)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every setting; raise SettingsError naming the variable at fault."""

    env = os.environ if environ is None else environ
    values = _load(_GlobalSchema(), env)
    targets: dict[str, TargetConfig] = {}
    for name, target_cls in REGISTRY.items():
        schema_cls = Schema.from_dict(
            {**target_base_fields(name), **target_cls.settings_fields()}, name=f"{name}Settings"
        )
        tv = _load(schema_cls(unknown=EXCLUDE), env)
        if not tv.get("base_url"):
            continue  # an unconfigured target: its events dead-letter as invalid
        base_keys = set(target_base_fields(name))
        options = {k: v for k, v in tv.items() if k not in base_keys}
        problem = target_cls.check_options(tv["base_url"], options)
        if problem:
            raise SettingsError(problem)
        targets[name] = TargetConfig(
            name=name,
            base_url=tv["base_url"].rstrip("/"),
            retry=RetryPolicy(
                max_attempts=tv["max_attempts"],
                max_age_s=tv["max_age_s"],
                backoff_base_s=tv["backoff_base_s"],
                backoff_cap_s=tv["backoff_cap_s"],
            ),
            connect_timeout_s=tv["connect_timeout_s"],
            read_timeout_s=tv["read_timeout_s"],
            rate_limit_per_s=tv["rate_limit_per_s"],
            breaker=BreakerPolicy(
                failures=tv["breaker_failures"],
                cooldown_s=tv["breaker_cooldown_s"],
                cooldown_max_s=tv["breaker_cooldown_max_s"],
            ),
            options=options,
        )
    data_dir = values.pop("data_dir", None)
    return Settings(
        data_dir=Path(data_dir) if data_dir else None,
        targets=targets,
        **values,
    )
