"""A fast accept path for marshmallow schemas: plain Python that vouches only for valid data.

``fast_loader(schema)`` reads the schema's fields, validators and hooks once and returns a
function that gives what ``schema.load(data)`` gives when ``data`` is one of the shapes it
recognises, and raises ``Unsure`` for anything else. It never reports an error: the caller
then runs ``schema.load``, which names each fault. Every rule comes from the schema object
(validators are read or called, never restated), and a schema using anything this module
does not mirror gets no fast loader at all (None).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, missing, validate
from marshmallow import fields as ma
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA

from custsync.schemas import fields as ours

# The field's value after loading; raises Unsure when it cannot vouch for the input.
ValueCheck = Callable[[Any], Any]
# What schema.load returns for data it vouches for; raises Unsure otherwise.
Loader = Callable[[Any], Any]


class Unsure(Exception):
    """The fast path cannot vouch for this input; marshmallow must load it."""


# Both fail exactly when one of the field's validators raises (custsync's just skips And).
_VALIDATE_METHODS = (ma.Field._validate, ours.String._validate)

# Schema methods whose behaviour the loader below mirrors; an override may differ.
_SCHEMA_METHODS = (
    "load",
    "_do_load",
    "_deserialize",
    "_call_and_store",
    "_invoke_field_validators",
    "_invoke_load_processors",
    "_invoke_processors",
)


def fast_loader(schema: Schema) -> Loader | None:
    """A loader equal to ``schema.load`` on the data it accepts; None if none can be built."""

    if not _loads_like_marshmallow(schema):
        return None
    # (key in the data, key in the result, required, load_default, check), in field order
    plan: list[tuple[str, str, bool, Any, ValueCheck]] = []
    for name, field in schema.load_fields.items():
        check = _value_check(field)
        key = field.attribute or name
        if check is None or "." in key:  # a dotted key is set as a nested path
            return None
        data_key = field.data_key if field.data_key is not None else name
        plan.append((data_key, key, field.required, field.load_default, check))
    known = frozenset(data_key for data_key, *_ in plan)
    field_hooks = _field_hooks(schema)
    if field_hooks is None:
        return None
    post_loads = _post_load_hooks(schema)
    dict_class = schema.dict_class

    def load(data: Any) -> Any:
        # Exactly a dict: a Mapping subclass may answer get() and iteration its own way.
        if type(data) is not dict or not known.issuperset(data):  # unknown = RAISE
            raise Unsure
        out = dict_class()
        for data_key, key, required, default, check in plan:
            value = data.get(data_key, missing)
            if value is missing:
                if required:
                    raise Unsure
                value = default() if callable(default) else default  # not validated, as there
                if value is not missing:
                    out[key] = value
            else:
                out[key] = check(value)
        for key, hook in field_hooks:
            if key in out:
                _call_vouched(hook, out[key])
        for post_load in post_loads:
            out = _call_post_load(post_load, out, data)
        return out

    return load


def _loads_like_marshmallow(schema: Schema) -> bool:
    cls = type(schema)
    hooks = schema._hooks
    return (
        all(getattr(cls, m) is getattr(Schema, m) for m in _SCHEMA_METHODS)
        and not schema.many
        and not schema.partial
        and schema.unknown == RAISE
        and not hooks[PRE_LOAD]
        and not hooks[VALIDATES_SCHEMA]
    )


def _field_hooks(schema: Schema) -> list[tuple[str, Callable[[Any], Any]]] | None:
    """The ``@validates`` methods as (key in the loaded dict, call); None if misdeclared."""

    hooks: list[tuple[str, Callable[[Any], Any]]] = []
    for attr_name, _, options in schema._hooks[VALIDATES]:
        method = getattr(schema, attr_name)
        for field_name in options["field_names"]:
            field = schema.fields.get(field_name)
            if field is None:
                if field_name in schema.declared_fields:
                    continue  # excluded by only/exclude: marshmallow skips it too
                return None  # marshmallow raises ValueError on load: let it
            data_key = field.data_key if field.data_key is not None else field_name
            key = field.attribute or field_name
            hooks.append((key, functools.partial(method, data_key=data_key)))
    return hooks


def _call_vouched(hook: Callable[[Any], Any], value: Any) -> None:
    try:
        result = hook(value)
    except Exception:  # its error, or its crash, is marshmallow's to report
        raise Unsure from None
    if result is missing:  # marshmallow would drop the field from the result
        raise Unsure


def _post_load_hooks(schema: Schema) -> list[Callable[[Any, Any], Any]]:
    """``@post_load`` methods in marshmallow's order, each called as (data, original)."""

    hooks = schema._hooks[POST_LOAD]
    ordered = [h for h in hooks if h[1]] + [h for h in hooks if not h[1]]  # collection first
    keywords = {"many": False, "partial": schema.partial, "unknown": schema.unknown}
    return [
        _post_load_call(getattr(schema, attr_name), keywords, bool(options.get("pass_original")))
        for attr_name, _, options in ordered
    ]


def _post_load_call(
    method: Callable[..., Any], keywords: dict[str, Any], pass_original: bool
) -> Callable[[Any, Any], Any]:
    if pass_original:
        return lambda data, original: method(data, original, **keywords)
    return lambda data, _original: method(data, **keywords)


def _call_post_load(hook: Callable[[Any, Any], Any], data: Any, original: Any) -> Any:
    try:
        return hook(data, original)
    except Exception:  # its error, or its crash, is marshmallow's to report
        raise Unsure from None


# -- one field --------------------------------------------------------------------------


def _value_check(field: ma.Field[Any]) -> ValueCheck | None:
    """What ``field.deserialize`` does to a present value, when this module mirrors it."""

    cls = type(field)
    if (
        cls.deserialize is not ma.Field.deserialize
        or cls._validate_missing is not ma.Field._validate_missing
        or cls._validate not in _VALIDATE_METHODS
        or getattr(field, "pre_load", None)  # marshmallow >= 4.3: value processors
        or getattr(field, "post_load", None)
    ):
        return None
    loading = _loading(field)
    if loading is None:
        return None
    checks = [_validator_check(v) for v in field.validators]
    if isinstance(loading, type):
        return _kept_value_check(loading, checks, allow_none=field.allow_none)
    return _loaded_value_check(loading, checks, allow_none=field.allow_none)


def _kept_value_check(
    kind: type, checks: list[Callable[[Any], None]], *, allow_none: bool
) -> ValueCheck:
    # The common case, a value kept as it is: one call per field instead of two.
    def check(value: Any) -> Any:
        if type(value) is not kind:
            if value is None and allow_none:
                return None
            raise Unsure
        for validator_check in checks:
            validator_check(value)
        return value

    return check


def _loaded_value_check(
    convert: ValueCheck, checks: list[Callable[[Any], None]], *, allow_none: bool
) -> ValueCheck:
    def check(value: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise Unsure
        loaded = convert(value)
        for validator_check in checks:
            validator_check(loaded)
        return loaded

    return check


def _loading(field: ma.Field[Any]) -> type | ValueCheck | None:
    """The field's ``_deserialize``: the one type it keeps as it is, or a conversion."""

    cls = type(field)
    method = cls._deserialize
    if method is ma.String._deserialize:
        return str  # bytes are decoded and str subclasses copied: marshmallow's path
    if method is ours.JsonBoolean._deserialize:
        return bool
    if isinstance(field, ma.Integer) and _is_plain_integer(field):
        return int  # bool is not exactly int; strict or not, int(value) is value
    if isinstance(field, ma.List) and method is ma.List._deserialize:
        return _list_converter(field)
    if isinstance(field, ma.Dict) and method is ma.Mapping._deserialize:
        if field.key_field is None and field.value_field is None and field.mapping_type is dict:
            return _dict_copy
        return None
    if isinstance(field, ma.AwareDateTime) and method is ma.AwareDateTime._deserialize:
        return _aware_datetime_converter(field)
    return None


def _is_plain_integer(field: ma.Integer) -> bool:
    cls = type(field)
    return (
        cls._deserialize is ma.Number._deserialize
        and cls._validated is ma.Integer._validated
        and cls._format_num is ma.Number._format_num
        and field.num_type is int
    )


def _dict_copy(value: Any) -> Any:
    if type(value) is not dict:
        raise Unsure
    return dict(value)  # marshmallow returns a copy too


def _list_converter(field: ma.List[Any]) -> ValueCheck | None:
    item_check = _value_check(field.inner)
    if item_check is None:
        return None

    def convert(value: Any) -> Any:
        if type(value) is not list:
            raise Unsure
        return [item_check(item) for item in value]

    return convert


def _aware_datetime_converter(field: ma.AwareDateTime) -> ValueCheck | None:
    parse = field.DESERIALIZATION_FUNCS.get(field.format or field.DEFAULT_FORMAT)
    if parse is None or field.default_timezone is not None:
        return None  # strptime formats and naive defaults stay marshmallow's

    def convert(value: Any) -> Any:
        if type(value) is not str:
            raise Unsure  # a datetime object passes unparsed: marshmallow's path
        try:
            parsed: datetime = parse(value)  # the very function marshmallow calls
        except Exception:
            raise Unsure from None
        if parsed.utcoffset() is None:  # marshmallow's is_aware, as one call
            raise Unsure
        return parsed

    return convert


# -- one validator ----------------------------------------------------------------------


def _validator_check(validator: Callable[[Any], Any]) -> Callable[[Any], None]:
    """A check that passes only where ``validator`` passes; inlined for the common ones."""

    kind = type(validator)
    if kind is validate.Length:
        return _length_check(validator)  # type: ignore[arg-type]
    if kind is validate.OneOf:
        choices: Sequence[Any] = list(validator.choices)  # type: ignore[attr-defined]
        if all(type(c) is str for c in choices):
            return _str_choice_check(frozenset(choices))
    if kind is validate.Range:
        return _range_check(validator)  # type: ignore[arg-type]
    return _called_check(validator)


def _length_check(length: validate.Length) -> Callable[[Any], None]:
    low, high, equal = length.min, length.max, length.equal

    def check(value: Any) -> None:
        try:
            size = len(value)
        except TypeError:
            raise Unsure from None
        if equal is not None:  # marshmallow ignores min and max then
            if size != equal:
                raise Unsure
        elif (low is not None and size < low) or (high is not None and size > high):
            raise Unsure

    return check


def _str_choice_check(allowed: frozenset[str]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if type(value) is not str or value not in allowed:
            raise Unsure

    return check


def _range_check(bounds: validate.Range) -> Callable[[Any], None]:
    low, high = bounds.min, bounds.max
    low_inclusive, high_inclusive = bounds.min_inclusive, bounds.max_inclusive

    def check(value: Any) -> None:
        try:
            too_low = low is not None and (value < low if low_inclusive else value <= low)
            too_high = high is not None and (value > high if high_inclusive else value >= high)
        except TypeError:
            raise Unsure from None
        if too_low or too_high:
            raise Unsure

    return check


def _called_check(validator: Callable[[Any], Any]) -> Callable[[Any], None]:
    # marshmallow ignores a validator's return value: only raising fails.
    def check(value: Any) -> None:
        try:
            validator(value)
        except Exception:
            raise Unsure from None

    return check
