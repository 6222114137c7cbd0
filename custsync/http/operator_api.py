"""The operator API (README "Operator API"): the DLQ with the CLI's filters and a cursor,
its groups, replay and purge, the status and the audit trail. Personal data is masked as
in the CLI; ``reveal`` is an operator action and is audited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from custsync.dlq.entry import REASONS
from custsync.dlq.group_index import dlq_groups as groups_of
from custsync.dlq.groups import GROUP_ID
from custsync.dlq.purge import purge
from custsync.dlq.query import BadCursor, Filter, Position, Query, parse_time, select
from custsync.dlq.replay import Replayer, plan_replay
from custsync.dlq.views import shown
from custsync.erasure import forget_customer
from custsync.http.answers import answer, problem
from custsync.http.operator_auth import requires
from custsync.http.schemas import ProblemSchema
from custsync.runtime import Runtime
from custsync.state.audit import Audit
from custsync.status import collect

F = TypeVar("F", bound=Callable[..., Any])

blp = Blueprint("operators", __name__, url_prefix="/v1", description="Operators: DLQ and status")


# What each error answer of these endpoints means, for the OpenAPI document.
_ERRORS = {
    401: "no valid credentials",
    403: "a viewer may not",
    404: "no such entry",
    422: "no or bad selection",
}


def _errors(*codes: int) -> Callable[[F], F]:
    """Document these error answers (all ``ProblemSchema``) on one endpoint."""

    def wrap(view: F) -> F:
        for code in codes:
            view = blp.alt_response(code, schema=ProblemSchema, description=_ERRORS[code])(view)
        return view

    return wrap


class FilterSchema(Schema):
    # Lengths as the envelope allows; they also keep a query string within the server's
    # request-line limit (gunicorn answers a longer one itself, in HTML).
    target = fields.String(validate=validate.Length(max=64))
    reason = fields.String(validate=validate.OneOf(REASONS))
    customer = fields.String(
        validate=validate.Length(max=256), metadata={"description": "a customer id (the real one)"}
    )
    status = fields.Integer(validate=validate.Range(100, 599))
    since = fields.String(
        validate=validate.Length(max=40), metadata={"description": "30m, 2h, 1d (ago) or ISO-8601"}
    )
    until = fields.String(validate=validate.Length(max=40))
    grep = fields.String(
        validate=validate.Length(max=100),
        metadata={"description": "text in the (masked) error message"},
    )
    group = fields.String(
        validate=validate.Regexp(GROUP_ID, error="not a group id (16 hex digits)"),
        metadata={"description": "a group's id, as GET /v1/dlq/groups shows it"},
    )

    @validates_schema
    def _times(self, data: dict[str, Any], **_: Any) -> None:
        for name in ("since", "until"):
            if name in data:
                try:
                    parse_time(data[name], time.time())
                except ValueError as exc:
                    raise ValidationError(str(exc), field_name=name) from None


class ListArgs(FilterSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = fields.String(
        validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,400}$", error="cursor: not a next_cursor"),
        metadata={"description": "next_cursor of the previous page"},
    )

    @validates("cursor")
    def _cursor(self, value: str, **_: Any) -> None:
        try:
            Position.decode(value)
        except BadCursor as exc:
            raise ValidationError(str(exc)) from None


class ShowArgs(Schema):
    reveal = fields.Boolean(load_default=False, metadata={"description": "operators only"})


class ActionBody(Schema):
    ids = fields.List(fields.String(), load_default=list)
    filter = fields.Nested(FilterSchema, load_default=dict)
    all = fields.Boolean(load_default=False)


class ReplayBody(ActionBody):
    dry_run = fields.Boolean(load_default=False)
    force = fields.Boolean(load_default=False)
    rate = fields.Float(validate=validate.Range(min=0, min_inclusive=False))


def _rt() -> Runtime:
    rt: Runtime = current_app.config["CUSTSYNC_RUNTIME"]
    return rt


def _filter(args: dict[str, Any]) -> Filter:
    now = time.time()
    return Filter(
        target=args.get("target"),
        reason=args.get("reason"),
        customer_id=args.get("customer"),
        status=args.get("status"),
        since=parse_time(args["since"], now) if "since" in args else None,
        until=parse_time(args["until"], now) if "until" in args else None,
        grep=args.get("grep"),
        group=args.get("group"),
    )


def _audit(action: str, scope: dict[str, Any], count: int) -> None:
    Audit(_rt().redis, _rt().keys).record(g.operator.name, action, scope, count)


@blp.route("/dlq", methods=["GET"])
@blp.response(200, description="a page of entries and the next cursor")
@_errors(401, 422)
@blp.arguments(ListArgs, location="query", as_kwargs=True)
@requires("viewer")
def list_dlq(limit: int, cursor: str | None = None, **filters: Any) -> Response:
    """Entries, newest first, a page at a time (``next_cursor`` gives the next page, however
    deep, unshifted by entries that leave meanwhile); customers as pseudonyms."""
    page = Query(_rt().dlq, _filter(filters)).page(limit, cursor)
    rows = [e.summary() for e in page.entries]
    return answer(200, {"entries": rows, "total": page.total, "next_cursor": page.next_cursor})


@blp.route("/dlq/groups", methods=["GET"])
@blp.response(200, description="the groups, largest first")
@_errors(401)
@blp.arguments(FilterSchema, location="query", as_kwargs=True)
@requires("viewer")
def dlq_groups(**filters: Any) -> Response:
    """Failures grouped by target, reason, HTTP status and normalised error, each with the
    ``id`` the ``group`` filter takes (to list, replay or purge exactly that group)."""
    found = groups_of(_rt().dlq, _filter(filters))
    return answer(200, {"groups": [g_.as_dict() for g_ in found]})


@blp.route("/dlq/<some_id>", methods=["GET"])
@blp.response(200, description="the entries of that id")
@_errors(401, 403, 404)
@blp.arguments(ShowArgs, location="query", as_kwargs=True)
@requires("viewer")
def show_dlq(some_id: str, reveal: bool) -> Response:
    """Every entry of an event id (or one entry id), masked unless ``reveal``."""
    if reveal and not g.operator.may_act:
        return problem(403, "forbidden", f"{g.operator.name} is a viewer: reveal is for operators")
    store = _rt().dlq
    entries = store.load(store.resolve(some_id))
    if not entries:
        return problem(404, "not found", "no DLQ entry with that event id or entry id")
    if reveal:
        _audit("reveal", {"id": some_id}, len(entries))
    return answer(200, {"entries": [shown(e, reveal) for e in entries]})


def _scope(body: dict[str, Any]) -> dict[str, Any]:
    """What an action was asked to touch, for the audit (a customer filter: pseudonymised)."""
    return {"ids": len(body["ids"]), "filter": body["filter"], "all": body["all"]}


def _selection(body: dict[str, Any]) -> tuple[Filter, list[str]] | Response:
    flt = _filter(body["filter"])
    if not body["ids"] and flt.is_empty() and not body["all"]:
        return problem(422, "no selection", "give ids, a filter, or all: true")
    return flt, body["ids"]


@blp.route("/dlq/replay", methods=["POST"])
@blp.response(200, description="what was (or, with dry_run, would be) replayed")
@_errors(401, 403, 422)
@blp.arguments(ReplayBody)
@requires("operator")
def replay_dlq(body: dict[str, Any]) -> Response:
    """Put entries back on the queue (same event ids); ``dry_run`` only predicts."""
    chosen = _selection(body)
    if isinstance(chosen, Response):
        return chosen
    flt, ids = chosen
    rt = _rt()
    plan = plan_replay(rt, flt, ids, body["force"])
    prediction = {
        "replay": len(plan.replay),
        "superseded": len(plan.superseded),
        "still_invalid": len(plan.invalid),
        "missing": plan.missing,
    }
    if body["dry_run"]:
        return answer(200, {"dry_run": True, **prediction})
    summary = Replayer(rt, current_app.config["CUSTSYNC_PRODUCER"], force=body["force"]).run(
        plan.replay, body.get("rate")
    )
    _audit("replay", _scope(body), summary.total)
    return answer(200, {"dry_run": False, "replayed": summary.total, **prediction})


@blp.route("/dlq/purge", methods=["POST"])
@blp.response(200, description="how many were purged")
@_errors(401, 403, 422)
@blp.arguments(ActionBody)
@requires("operator")
def purge_dlq(body: dict[str, Any]) -> Response:
    """Delete entries for good."""
    chosen = _selection(body)
    if isinstance(chosen, Response):
        return chosen
    flt, ids = chosen
    store = _rt().dlq
    entries, missing = select(store, flt, ids)
    removed = purge(store, [e.entry_id for e in entries], flt)
    _audit("purge", _scope(body), len(removed))
    return answer(200, {"purged": len(removed), "missing": missing})


@blp.route("/customers/<customer_id>/forget", methods=["POST"])
@blp.response(200, description="where the customer's payloads were removed, with counts")
@_errors(401, 403)
@requires("operator")
def forget(customer_id: str) -> Response:
    """An erasure request: the customer's payloads leave the DLQ, retry sets, journal and
    queue; the audit keeps a pseudonym."""
    done = forget_customer(_rt(), customer_id)
    _audit("forget", {"customer": customer_id}, done.total)
    return answer(200, {"forgotten": done.counts})


@blp.route("/status", methods=["GET"])
@blp.response(200, description="per target state")
@_errors(401)
@requires("viewer")
def status() -> Response:
    """Per target: queue, retry set, DLQ by reason, pause, breaker, last success."""
    return answer(200, collect(_rt()))


@blp.route("/audit", methods=["GET"])
@blp.response(200, description="the newest actions")
@_errors(401)
@requires("viewer")
def audit() -> Response:
    """The newest operator actions: who, when, what, how many."""
    return answer(200, {"entries": Audit(_rt().redis, _rt().keys).newest(200)})
