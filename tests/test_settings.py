"""Settings: one typed object, `_FILE` variants, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from custsync.errors import SettingsError
from custsync.settings import load_settings

MINTED = {
    "CUSTSYNC_MINTED_BASE_URL": "https://partner.example/",
    "CUSTSYNC_MINTED_USERNAME": "user",
    "CUSTSYNC_MINTED_PASSWORD": "pass",
}


def test_defaults_and_documented_values() -> None:
    s = load_settings(MINTED)
    assert s.redis_url is None  # embedded Redis
    assert s.key_prefix == "custsync:"
    minted = s.targets["minted"]
    assert minted.base_url == "https://partner.example"
    assert minted.options["client_id"] == "web"
    assert minted.options["api_version"] == "2"
    assert minted.options["language"] == "tr"
    assert (minted.retry.max_attempts, minted.retry.max_age_s) == (8, 86_400)
    assert minted.timeout == (3.05, 10.0)
    assert "vendor" not in s.targets  # no base URL: not configured
    assert (s.metrics_port, s.sentry_dsn) == (None, None)  # both off unless asked for


def test_file_variant_reads_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    env = {**MINTED, "CUSTSYNC_MINTED_PASSWORD_FILE": str(secret)}
    del env["CUSTSYNC_MINTED_PASSWORD"]
    assert load_settings(env).targets["minted"].options["password"] == "from-a-file"


def test_both_value_and_file_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("x")
    with pytest.raises(SettingsError, match="CUSTSYNC_MINTED_PASSWORD: set either"):
        load_settings({**MINTED, "CUSTSYNC_MINTED_PASSWORD_FILE": str(secret)})


def test_unreadable_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CUSTSYNC_REDIS_URL_FILE: cannot read"):
        load_settings({"CUSTSYNC_REDIS_URL_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CUSTSYNC_REDIS_URL", "http://not-redis"),
        ("CUSTSYNC_CONCURRENCY", "0"),
        ("CUSTSYNC_MINTED_MAX_ATTEMPTS", "lots"),
        ("CUSTSYNC_MINTED_BACKOFF_CAP_S", "-1"),
        ("CUSTSYNC_MINTED_BASE_URL", "ftp://x"),
        ("CUSTSYNC_LOG_FORMAT", "xml"),
        ("SENTRY_DSN", "not a url"),
        ("CUSTSYNC_METRICS_PORT", "70000"),
        ("CUSTSYNC_METRICS_PORT", "http"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**MINTED, variable: value})
    message = str(info.value)
    assert message.startswith(f"{variable}:")
    assert "\n" not in message
    assert value not in message or len(value) < 3


def test_credentials_are_required_with_a_base_url() -> None:
    with pytest.raises(SettingsError, match="CUSTSYNC_VENDOR_USERNAME"):
        load_settings({"CUSTSYNC_VENDOR_BASE_URL": "http://v.example"})
    s = load_settings(
        {"CUSTSYNC_VENDOR_BASE_URL": "http://v.example", "CUSTSYNC_VENDOR_ACCESS_TOKEN": "t"}
    )
    assert s.targets["vendor"].options["access_token"] == "t"
