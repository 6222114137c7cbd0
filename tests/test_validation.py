"""Validation: both seeds' examples pass, every rule fails with its field named."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from custsync.errors import InvalidEvent
from custsync.producer import EventValidationError, check
from custsync.settings import load_settings
from custsync.validation import validate_event
from tests.events import MINTED_EXAMPLE, VENDOR_EXAMPLE, envelope
from tests.rules import (
    INVALID_ENVELOPES,
    SEED_RULES,
    Rule,
    accepted_changes,
    refused_changes,
)

SETTINGS = load_settings(
    {
        "CUSTSYNC_MINTED_BASE_URL": "http://127.0.0.1:9",
        "CUSTSYNC_MINTED_USERNAME": "u",
        "CUSTSYNC_MINTED_PASSWORD": "p",
        "CUSTSYNC_VENDOR_BASE_URL": "http://127.0.0.1:9",
        "CUSTSYNC_VENDOR_ACCESS_TOKEN": "static",
    }
)


def with_fragment(fragment: dict[str, Any]) -> dict[str, Any]:
    env = envelope("minted", "MTD0018232", dict(MINTED_EXAMPLE))
    for key, value in fragment.items():
        if value is ...:
            env.pop(key)
        else:
            env[key] = value
    return env


def test_minted_seed_example_is_valid_including_empty_middlename() -> None:
    event = validate_event(envelope("minted", "MTD0018232", dict(MINTED_EXAMPLE)), SETTINGS)
    assert event.changes["middlename"] == ""


def test_vendor_seed_example_is_valid() -> None:
    event = validate_event(envelope("vendor", "501", dict(VENDOR_EXAMPLE)), SETTINGS)
    assert event.changes["sendMail"] is True


@pytest.mark.parametrize("rule", SEED_RULES, ids=[r.id for r in SEED_RULES])
def test_each_seed_rule_accepts_one_event_and_names_the_field_of_another(rule: Rule) -> None:
    accepted = accepted_changes(rule, "C1")
    assert validate_event(envelope(rule.target, "C1", accepted), SETTINGS).changes == accepted
    with pytest.raises(InvalidEvent) as info:
        validate_event(envelope(rule.target, "C1", refused_changes(rule, "C1")), SETTINGS)
    named = f"changes.{rule.field}"
    assert any(k == named or k.startswith(f"{named}.") for k in info.value.details)
    assert named in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"code": "501", "erpCode": "501", "email": "new.address@example.com"},
        {"code": "C900", "erpCode": "E900", "isCompany": True, "email": "c@example.com"},
        {"code": "C900", "erpCode": "E900", "isCompany": True},  # the partner's 422 decides
        {"code": "501", "erpCode": "501"},
    ],
    ids=["individual-email", "corporate-email", "kind-change-alone", "identifiers-only"],
)
def test_a_vendor_partial_update_needs_no_kind_fields(changes: dict[str, Any]) -> None:
    event = validate_event(envelope("vendor", changes["code"], changes), SETTINGS)
    assert event.changes == changes


@pytest.mark.parametrize(
    ("fragment", "field"),
    [case[1:] for case in INVALID_ENVELOPES],
    ids=[case[0] for case in INVALID_ENVELOPES],
)
def test_each_envelope_rule_names_its_field(fragment: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(with_fragment(fragment), SETTINGS)
    assert field in info.value.details


def test_envelope_and_changes_errors_are_reported_together() -> None:
    env = with_fragment({"occurred_at": "yesterday"})
    env["changes"]["gender"] = "X"
    with pytest.raises(InvalidEvent) as info:
        validate_event(env, SETTINGS)
    assert set(info.value.details) == {"occurred_at", "changes.gender"}


@pytest.mark.parametrize("target", ["minted", "vendor"])
def test_a_key_of_changes_that_is_not_a_field_name_is_named(target: str) -> None:
    changes = dict(MINTED_EXAMPLE) if target == "minted" else dict(VENDOR_EXAMPLE)
    changes[7] = "x"  # a Python producer's non-string key: the target schema names it
    with pytest.raises(InvalidEvent) as info:
        validate_event(envelope(target, "501", changes), SETTINGS)
    assert info.value.details == {"changes.7": ["Unknown field."]}


def test_unconfigured_target_is_invalid_for_the_worker_but_fine_for_a_producer() -> None:
    only_minted = load_settings(
        {
            "CUSTSYNC_MINTED_BASE_URL": "http://127.0.0.1:9",
            "CUSTSYNC_MINTED_USERNAME": "u",
            "CUSTSYNC_MINTED_PASSWORD": "p",
        }
    )
    env = envelope("vendor", "501", dict(VENDOR_EXAMPLE))
    with pytest.raises(InvalidEvent, match="CUSTSYNC_VENDOR_BASE_URL"):
        validate_event(env, only_minted)
    check(env, only_minted)  # producers need not know the partner's address


def test_vendor_update_code_must_match_customer_id() -> None:
    env = envelope("vendor", "501", {**VENDOR_EXAMPLE, "updateCode": "999"})
    with pytest.raises(InvalidEvent) as info:
        validate_event(env, SETTINGS)
    assert "changes.updateCode" in info.value.details


def test_error_messages_never_echo_values() -> None:
    secret = "98765432101"
    env = envelope("minted", "C1", {**MINTED_EXAMPLE, "identity_number": 98765432101})
    env["changes"]["email"] = f"{secret}@"
    with pytest.raises(InvalidEvent) as info:
        validate_event(env, SETTINGS)
    assert secret not in str(info.value)


def test_producer_error_is_a_marshmallow_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        check(with_fragment({"target": ...}), SETTINGS)
    assert isinstance(info.value, EventValidationError)
    assert "target" in info.value.messages


def test_our_fields_fail_like_marshmallows_own() -> None:
    from marshmallow import Schema, validate
    from marshmallow import fields as ma

    from custsync.schemas import fields

    def not_no(value: str) -> None:
        if value == "no":
            raise ValidationError("No is not an answer.")

    def schema(module: Any) -> Schema:
        return Schema.from_dict(
            {
                "a": module.String(validate=validate.Length(max=2)),
                "b": module.String(validate=[not_no, validate.Length(min=3)]),
                "c": module.List(module.String(validate=validate.OneOf(["x"]))),
                "d": module.Integer(),
            }
        )()

    ours, theirs = schema(fields), schema(ma)
    bad = {"a": "abc", "b": "no", "c": ["y"], "d": "z"}  # every field fails, b twice
    good = {"a": "ab", "b": "yes", "c": ["x"], "d": 4}

    def errors(s: Schema) -> Any:
        with pytest.raises(ValidationError) as info:
            s.load(bad)
        return info.value.messages

    mine = errors(ours)
    assert mine == errors(theirs)
    assert set(mine) == {"a", "b", "c", "d"}
    assert len(mine["b"]) == 2
    assert ours.load(good) == theirs.load(good) == good
