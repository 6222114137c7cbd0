"""The fast accept path: the same Event or the same InvalidEvent as marshmallow, on every input.

The differential tests build thousands of envelopes from the seeds' examples, each mutated
field by field (missing, wrong type, boundary lengths derived from the schemas' own
validators, odd datetimes, unknown keys), and compare ``validate_event`` with the pure
marshmallow path it falls back to.
"""

from __future__ import annotations

import copy
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)
from marshmallow import fields as ma

from custsync import validation
from custsync.errors import InvalidEvent
from custsync.fast_validation import Unsure, fast_loader
from custsync.schemas import fields
from custsync.schemas.envelope import EnvelopeSchema
from custsync.schemas.minted import MintedChangesSchema
from custsync.schemas.vendor import VendorChangesSchema
from custsync.settings import Settings, load_settings
from custsync.validation import _validate_by_schemas, validate_event
from tests.events import MINTED_EXAMPLE, VENDOR_EXAMPLE
from tests.rules import SEED_RULES, accepted_changes, refused_changes

MINTED_ENV = {
    "CUSTSYNC_MINTED_BASE_URL": "http://127.0.0.1:9",
    "CUSTSYNC_MINTED_USERNAME": "u",
    "CUSTSYNC_MINTED_PASSWORD": "p",
}
VENDOR_ENV = {
    "CUSTSYNC_VENDOR_BASE_URL": "http://127.0.0.1:9",
    "CUSTSYNC_VENDOR_ACCESS_TOKEN": "static",
}
# (settings, require_configured): the worker's view with each configuration, the producer's.
VIEWS: list[tuple[Settings, bool]] = [
    (load_settings({**MINTED_ENV, **VENDOR_ENV}), True),
    (load_settings(MINTED_ENV), True),
    (load_settings({}), False),
]

DELETE = object()  # a mutation's value that removes the key


class Text(str):
    """A str subclass: marshmallow copies it to a str, the fast path must not guess."""


def envelope(target: str, customer_id: str, changes: Any, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "event_id": "ev-0001",
        "target": target,
        "customer_id": customer_id,
        "occurred_at": "2024-05-01T10:00:00+03:00",
        "changes": changes,
    }
    env.update(extra)
    return env


BASES: dict[str, dict[str, Any]] = {
    "minted-seed": envelope("minted", "MTD0018232", dict(MINTED_EXAMPLE)),
    "minted-every-key": envelope(
        "minted", "MTD0018232", dict(MINTED_EXAMPLE), sequence=7, source="crm",
        correlation_id="c-1",
    ),
    "vendor-seed": envelope("vendor", "501", dict(VENDOR_EXAMPLE)),
    "vendor-email-only": envelope(
        "vendor", "501", {"code": "501", "erpCode": "501", "email": "new.address@example.com"}
    ),
    "vendor-update-code": envelope(
        "vendor", "501", {"code": "502", "erpCode": "E1", "updateCode": "501"}, sequence=0,
        source=None, correlation_id=None,
    ),
}  # fmt: skip

# Wrong or odd values for any field: every JSON type, and what a Python producer may pass.
ODD_VALUES: list[Any] = [
    None, 0, 1, -1, True, False, 1.5, 0.0, float("nan"), 10**30, [], ["a"], {}, {"a": 1},
    b"bytes", b"\xff\xfe", bytearray(b"x"), ("a",), "", " ", "x", "ü", "名前", "😀",
    "\u200b", "a\nb", "  padded  ", Text("abc"), date(2024, 5, 1),
]  # fmt: skip
SIZES = {0, 1, 2, 3, 4, 39, 40, 41, 63, 64, 65, 109, 110, 111, 127, 128, 129, 255, 256, 257}
EVENT_IDS = [
    " ev", "ev ", "e v", "ev\n", "ev\t1", "\u00a0ev", "ev\u200b", "ev\x00", "év-1",
    "ev-😀", "\u3000ev", "ev\u2028", "-", "ev/1?x=2",
]  # fmt: skip
TARGETS = ["minted", "vendor", "MINTED", "minted ", "salesforce", "", "minted\x00"]
SEQUENCES = [-1, 0, 1, True, False, 1.0, -0.0, 2**63, 10**40, -(10**40), "3", None, [1]]
DATETIMES: list[Any] = [
    "2024-05-01T10:00:00+03:00", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00z",
    "2024-05-01T10:00:00+00:00", "2024-05-01T10:00:00-00:00", "2024-05-01T10:00:00-05:30",
    "2024-05-01T10:00:00.1+00:00", "2024-05-01T10:00:00.123Z", "2024-05-01T10:00:00.1234Z",
    "2024-05-01T10:00:00.123456+01:00", "2024-05-01T10:00:00.1234567+00:00",
    "2024-05-01T10:00:00,5+00:00", "2024-05-01T10:00:00", "2024-05-01T10:00:00.5",
    "2024-05-01", "2024-05-01T10:00Z", "2024-05-01T10Z", "2024-05-01T10:00:00+0300",
    "2024-05-01T10:00:00+03", "2024-05-01T10:00:00+03:00:30", "2024-05-01T10:00:00+24:00",
    "2024-05-01T10:00:00-23:59", "2024-05-01 10:00:00+00:00", " 2024-05-01T10:00:00+00:00",
    "2024-05-01T10:00:00+00:00 ", "2024-05-01T10:00:00 +00:00", "20240501T100000Z",
    "2024-W18-3T10:00:00Z", "2024-123T10:00:00Z", "2024-05-01T24:00:00Z",
    "2024-02-29T10:00:00Z", "2023-02-29T10:00:00Z", "0001-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59.999999-14:00", "2024-05-01T10:00:00+00:00[UTC]",
    "2024-05-01T10:00:00UTC", "yesterday", "", "2024-05-01T10:00:00+03:00\n",
    "\uff12\uff10\uff12\uff14-05-01T10:00:00Z", "2024-05-01T10:00:00.Z", "T10:00:00Z",
    datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 10),
    datetime(2024, 5, 1, 10, tzinfo=timezone(timedelta(hours=3))), date(2024, 5, 1),
    1714557600, 1714557600.0,
]  # fmt: skip
EMAILS = [
    "john.due@example.com", "a@b.co", "user+tag@sub.example.com.tr", "no-at-sign",
    "@example.com", "a@", "a@localhost", "a@[127.0.0.1]", "a@[999.0.0.1]", "a b@example.com",
    '"quoted"@example.com', "çağrı@örnek.com", "a@example", "a..b@example.com",
    "a@-example.com", " a@example.com", "A@EXAMPLE.COM", "a@b@example.com", "a@example.c",
]  # fmt: skip
DATES = [
    "1970-01-31", "1999-12-31", "2024-02-29", "2023-02-29", "1970-02-31", "31/01/1970",
    "19700131", "1970-1-31", "1970-01-31T00:00", "0000-01-01", "9999-12-31", " 1970-01-31",
    "1970-01-3\uff11", "1970-W05-6",
]  # fmt: skip
BOOLEANS = [True, False, 0, 1, "true", "false", None]
INTEGERS = [0, -1, 494, 10**20, True, 1.0, "494", None]
LISTS: list[Any] = [[], ["a"], ["a", "b"], ["a", 1], ["a", None], [b"x"], "a", ("a",), [[]]]
UNKNOWN_KEYS: list[Any] = ["priority", 7, "", "Event_id", ("t",)]

Mutation = tuple[tuple[Any, ...], Any]  # (path of keys, new value or DELETE)


def sized_strings(field: ma.Field[Any]) -> list[str]:
    """Strings at every length edge: the field's own Length bounds, and common ones."""
    sizes = set(SIZES)
    for validator in field.validators:
        if isinstance(validator, validate.Length):
            for bound in (validator.min, validator.max, validator.equal):
                if bound is not None:
                    sizes |= {bound - 1, bound, bound + 1}
    return [char * n for n in sorted(s for s in sizes if s >= 0) for char in ("a", "é")]


def values_for(field: ma.Field[Any]) -> list[Any]:
    """Values to try in one field: wrong types, and edges of its own kind."""
    values: list[Any] = [*ODD_VALUES, *sized_strings(field)]
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            values += [*validator.choices, *(str(c).lower() for c in validator.choices)]
    if isinstance(field, ma.Email) or field.name == "email":
        values += EMAILS
    if isinstance(field, ma.AwareDateTime):
        values += DATETIMES
    if isinstance(field, ma.Boolean):
        values += BOOLEANS
    if isinstance(field, ma.Integer):
        values += INTEGERS
    if isinstance(field, ma.List):
        values += LISTS
    if field.name == "birthdate":
        values += DATES
    return values


def schema_mutations(schema: Schema, prefix: tuple[Any, ...]) -> Iterator[Mutation]:
    for name, field in schema.fields.items():
        yield (*prefix, name), DELETE
        for value in values_for(field):
            yield (*prefix, name), value
    for key in UNKNOWN_KEYS:
        yield (*prefix, key), "x"


def mutations(base: dict[str, Any]) -> list[Mutation]:
    """Every single-field change of ``base``, envelope and changes."""
    found = list(schema_mutations(EnvelopeSchema(), ()))
    found += [(("event_id",), v) for v in EVENT_IDS]
    found += [(("target",), v) for v in TARGETS]
    found += [(("sequence",), v) for v in SEQUENCES]
    found += [(("customer_id",), v) for v in ("501", "502", "MTD0018232")]  # updateCode
    changes = base["changes"]
    found += [
        (("changes",), v)
        for v in (OrderedDict(changes), MappingProxyType(changes), list(changes), "{}")
    ]
    schema = {"minted": MintedChangesSchema, "vendor": VendorChangesSchema}[base["target"]]
    found += list(schema_mutations(schema(), ("changes",)))
    return found


def apply(base: dict[str, Any], changes: list[Mutation]) -> dict[str, Any]:
    env = copy.deepcopy(base)
    for path, value in changes:
        holder: Any = env
        for key in path[:-1]:
            if not isinstance(holder.get(key), dict):
                break  # an earlier mutation replaced the changes: nothing to change inside
            holder = holder[key]
        else:
            if value is DELETE:
                holder.pop(path[-1], None)
            else:
                holder[path[-1]] = value
    return env


def cases_for(base_name: str) -> list[Any]:
    base = BASES[base_name]
    single = mutations(base)
    cases: list[Any] = [base] + [apply(base, [m]) for m in single]
    rng = random.Random(base_name)  # the same cases on every run
    cases += [apply(base, rng.sample(single, rng.randint(2, 3))) for _ in range(600)]
    # Not a dict: marshmallow's path names it, and a Mapping that is not a dict is its own.
    cases += [OrderedDict(base), MappingProxyType(base), [base], None, "{}", 42]
    return cases


def outcome(check: Callable[..., Any], raw: Any, settings: Settings, configured: bool) -> Any:
    """What a validation gives, compared by value, type and representation."""
    try:
        event = check(raw, settings, require_configured=configured)
    except InvalidEvent as exc:
        return ("invalid", str(exc), exc.details)
    except Exception as exc:  # a crash must at least be the same crash
        return ("crash", type(exc), str(exc))
    return (
        "event",
        event,
        repr(event),  # types too: True is not 1, bytes are not str
        event.occurred_at.utcoffset(),
        type(event.changes),
        event.changes is raw["changes"],
    )


@pytest.mark.parametrize("base_name", list(BASES))
def test_validate_event_gives_what_marshmallow_gives(base_name: str) -> None:
    cases = cases_for(base_name)
    fast_accepted = 0
    for raw in cases:
        fast_accepted += validation._accept_fast(raw) is not None
        for settings, configured in VIEWS:
            expected = outcome(_validate_by_schemas, raw, settings, configured)
            assert outcome(validate_event, raw, settings, configured) == expected, raw
    # The comparison means something only if the fast path accepted a good share itself.
    assert fast_accepted > len(cases) // 10


@pytest.mark.parametrize("rule", SEED_RULES, ids=[r.id for r in SEED_RULES])
def test_each_seed_rule_gives_what_marshmallow_gives(rule: Any) -> None:
    for changes in (accepted_changes(rule, "C1"), refused_changes(rule, "C1")):
        raw = envelope(rule.target, "C1", changes)
        for settings, configured in VIEWS:
            expected = outcome(_validate_by_schemas, raw, settings, configured)
            assert outcome(validate_event, raw, settings, configured) == expected


@pytest.mark.parametrize("base_name", ["minted-seed", "vendor-seed", "vendor-email-only"])
def test_a_typical_valid_event_never_reaches_marshmallow(
    base_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = BASES[base_name]
    settings = VIEWS[0][0]
    expected = _validate_by_schemas(raw, settings)
    assert validation._accept_fast(raw) is not None  # builds the fast loaders, unpatched

    def marshmallow_load(*_: Any, **__: Any) -> Any:
        raise AssertionError("marshmallow's load ran")

    for schema_cls in (EnvelopeSchema, MintedChangesSchema, VendorChangesSchema):
        monkeypatch.setattr(schema_cls, "load", marshmallow_load)
    event = validate_event(raw, settings)
    assert event == expected
    assert repr(event) == repr(expected)


def test_the_fast_path_still_runs_the_cross_field_check() -> None:
    raw = envelope("vendor", "501", {"code": "501", "erpCode": "1", "updateCode": "999"})
    assert validation._accept_fast(raw) is not None
    with pytest.raises(InvalidEvent) as info:
        validate_event(raw, VIEWS[0][0])
    assert info.value.details == {
        "changes.updateCode": ["Must equal customer_id (the current code)."]
    }


# -- fast_loader on its own: what it declines, and equality on every feature it mirrors --


class _PreLoad(Schema):
    a = ma.String()

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        return data


class _SchemaCheck(Schema):
    a = ma.String()

    @validates_schema
    def _whole(self, data: Any, **_: Any) -> None:
        pass


class _Exclude(Schema):
    class Meta:
        unknown = EXCLUDE

    a = ma.String()


class _OwnString(ma.String):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return str(value).strip()


@pytest.mark.parametrize(
    "schema",
    [
        _PreLoad(),
        _SchemaCheck(),
        _Exclude(),
        Schema.from_dict({"a": ma.Float()})(),
        Schema.from_dict({"a": ma.NaiveDateTime()})(),
        Schema.from_dict({"a": ma.AwareDateTime(default_timezone=UTC)})(),
        Schema.from_dict({"a": ma.AwareDateTime(format="%Y-%m-%dT%H:%M%z")})(),
        Schema.from_dict({"a": ma.Dict(values=ma.String())})(),
        Schema.from_dict({"a": ma.Boolean()})(),
        Schema.from_dict({"a": _OwnString()})(),
        Schema.from_dict({"a": ma.String(pre_load=str.strip)})(),
        Schema.from_dict({"a": ma.List(ma.Float())})(),
        Schema.from_dict({"a": ma.String(attribute="b.c")})(),
        Schema.from_dict({"a": ma.String()})(partial=True),
    ],
    ids=[
        "pre_load", "validates_schema", "unknown-exclude", "float", "naive-datetime",
        "default-timezone", "strptime-format", "dict-values", "boolean-truthy-sets",
        "own-deserialize", "field-pre-load", "list-of-floats", "dotted-attribute", "partial",
    ],
)  # fmt: skip
def test_fast_loader_declines_what_it_does_not_mirror(schema: Schema) -> None:
    assert fast_loader(schema) is None


def _not_no(value: str) -> bool:
    if value == "no":
        raise ValidationError("No is not an answer.")
    return False  # marshmallow ignores a validator's return value


class _EveryFeature(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, data_key="Name", validate=validate.Length(2, 5))
    code = fields.String(validate=validate.Length(equal=3), attribute="the_code")
    kind = fields.String(validate=[validate.OneOf(["a", "b"]), _not_no])
    note = fields.String(allow_none=True, validate=[_not_no, validate.Length(max=4)])
    count = fields.Integer(validate=validate.Range(0, 10, min_inclusive=False), load_default=5)
    loose = ma.Integer(validate=validate.Range(max=3, max_inclusive=False))
    tags = fields.List(fields.String(validate=validate.OneOf(["x", "y"])), load_default=list)
    flag = fields.JsonBoolean(allow_none=True)
    mail = fields.Email()
    meta = fields.Dict(validate=validate.Length(max=1))
    at = fields.AwareDateTime(format="iso")
    shown = fields.String(dump_only=True)

    @validates("name")
    def _no_x(self, value: str, **_: Any) -> None:
        if "x" in value:
            raise ValidationError("No x.")

    @post_load(pass_original=True)
    def _with_keys(self, data: dict[str, Any], original: Any, **_: Any) -> dict[str, Any]:
        return {**data, "sent": sorted(original)}


def test_fast_loader_equals_load_on_every_feature_it_mirrors() -> None:
    schema = _EveryFeature()
    fast = fast_loader(schema)
    assert fast is not None
    good = {
        "Name": "Ada", "code": "abc", "kind": "a", "note": None, "count": 10, "loose": 2,
        "tags": ["x"], "flag": True, "mail": "a@b.co", "meta": {"k": 1},
        "at": "2024-05-01T10:00:00Z",
    }  # fmt: skip
    datas: list[Any] = [good, {"Name": "Bob"}]
    for name in [*good, "shown", "name", "the_code", 1]:
        datas.append({k: v for k, v in good.items() if k != name})
        field = schema.fields.get(name) or schema.fields["name"]
        extra = ["no", "b", "c", "x", "y", ["y", "x"], ["z"], -1, 0, 3, 11, {}, {"a": 1, "b": 2}]
        datas += [{**good, name: value} for value in [*values_for(field), *extra]]
    accepted = 0
    for data in datas:
        try:
            loaded = fast(data)
        except Unsure:
            continue
        accepted += 1
        expected = schema.load(data)
        assert repr(loaded) == repr(expected), data
    assert accepted > 20


def test_a_field_the_fast_path_does_not_mirror_leaves_its_schema_to_marshmallow() -> None:
    schema = Schema.from_dict({"a": fields.String(), "b": ma.Float()})()
    assert fast_loader(schema) is None
    assert fast_loader(Schema.from_dict({"a": fields.String()})()) is not None
