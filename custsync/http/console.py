"""The operator console at /console/: server-rendered pages (Jinja2) with htmx for partial
updates, on the same code as the operator API. No inline script or style: the CSP allows
only this server's files."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from custsync.dlq.edit import EditError, audit_scope, form_fields, prepare, send, typed_value
from custsync.dlq.entry import DeadLetter, customer_label
from custsync.dlq.group_index import dlq_groups
from custsync.dlq.groups import GROUP_ID
from custsync.dlq.jobs import JobConflict, JobError, Jobs, Scope
from custsync.dlq.query import BadCursor, Filter, Query, parse_time
from custsync.dlq.replay import plan_replay
from custsync.dlq.views import shown
from custsync.erasure import forget_customer
from custsync.http.chart import per_minute
from custsync.http.console_session import (
    check_csrf,
    csrf_token,
    current,
    log_in,
    signed_in,
)
from custsync.runtime import Runtime
from custsync.state.audit import Audit
from custsync.status import collect
from custsync.words import plural

bp = Blueprint("console", __name__, url_prefix="/console")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CONFIRM_OVER = 100  # a replay of more events asks for their number, typed
FILTERS = ("target", "reason", "customer", "status", "since", "until", "grep", "group")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def _context() -> dict[str, Any]:
    return {"who": current(), "csrf": csrf_token, "when": _when}


@bp.app_template_filter("pretty")
def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def error_page(code: int, name: str, detail: str) -> Response:
    """An error as a console page (with the console's security headers)."""
    page = render_template("console/error.html", code=code, name=name, detail=detail)
    return _headers(Response(page, status=code, mimetype="text/html"))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC" if ts else "never"


def _rt() -> Runtime:
    rt: Runtime = current_app.config["CUSTSYNC_RUNTIME"]
    return rt


def _filter(args: Any) -> Filter:
    now = time.time()
    try:
        status = int(args["status"]) if args.get("status") else None
        since = parse_time(args["since"], now) if args.get("since") else None
        until = parse_time(args["until"], now) if args.get("until") else None
    except ValueError as exc:
        abort(400, f"bad filter: {exc}")
    group = args.get("group") or None
    if group is not None and not GROUP_ID.match(group):
        abort(400, "bad filter: group is not a group id (16 hex digits)")
    return Filter(
        target=args.get("target") or None,
        reason=args.get("reason") or None,
        customer_id=args.get("customer") or None,
        status=status,
        since=since,
        until=until,
        grep=args.get("grep") or None,
        group=group,
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "POST":
        check_csrf()
        if log_in(request.form.get("name", ""), request.form.get("password", "")):
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/console/") else url_for(".overview"))
        flash("unknown user or wrong password")
    return render_template("console/login.html")


@bp.post("/logout")
@signed_in()
def logout() -> Any:
    session.clear()
    return redirect(url_for(".login"))


@bp.get("/")
@signed_in()
def overview() -> str:
    state = collect(_rt())
    charts = {name: per_minute(_rt(), name) for name in state["targets"]}
    return render_template("console/overview.html", state=state, charts=charts)


@bp.get("/dlq")
@signed_in()
def dlq() -> str:
    """A page of 50, newest first; "Older" follows the page's cursor, keeping the filters."""
    flt = _filter(request.args)
    cursor = request.args.get("cursor") or None
    try:
        page = Query(_rt().dlq, flt).page(50, cursor)
    except BadCursor as exc:
        abort(400, str(exc))
    kept = {k: request.args[k] for k in FILTERS if request.args.get(k)}
    template = "console/dlq_rows.html" if request.headers.get("HX-Request") else "console/dlq.html"
    return render_template(
        template, page=page, cursor=cursor, filters=kept, rows=[e.summary() for e in page.entries]
    )


@bp.route("/dlq/<some_id>", methods=["GET", "POST"])
@signed_in()
def entry(some_id: str) -> str:
    reveal = request.method == "POST" and request.form.get("action") == "reveal"
    who = current()
    if reveal and (who is None or not who.may_act):
        abort(403, "revealing personal data is an operator action")
    store = _rt().dlq
    entries = store.load(store.resolve(some_id))
    if not entries:
        abort(404, "no DLQ entry with that id")
    if reveal and who is not None:
        Audit(_rt().redis, _rt().keys).record(who.name, "reveal", {"id": some_id}, len(entries))
    return render_template(
        "console/entry.html", some_id=some_id, entries=[shown(e, reveal) for e in entries]
    )


@bp.route("/dlq/<entry_id>/edit", methods=["GET", "POST"])
@signed_in("operator")
def edit(entry_id: str) -> Any:
    """Edit one entry's changes in a form per the partner's schema; send it as a new event."""
    rt = _rt()
    (raw,) = rt.dlq.get_raw([entry_id])
    if raw is None:
        abort(404, "no DLQ entry with that entry id")
    entry = DeadLetter.from_json(raw)
    names = form_fields(entry.target or "")
    if not names:
        abort(404, "this entry has no known target: it cannot be edited")
    who = current()
    name = who.name if who else "?"
    if request.method == "GET":
        Audit(rt.redis, rt.keys).record(name, "reveal", {"id": entry_id, "for": "edit"}, 1)
        current_changes = entry.envelope.get("changes") if isinstance(entry.envelope, dict) else {}
        values = {k: _as_text(v) for k, v in (current_changes or {}).items()}
        return render_template("console/edit.html", entry=entry, names=names, values=values)
    values = {n: request.form.get(f"field.{n}", "") for n in names}
    before = entry.envelope.get("changes") if isinstance(entry.envelope, dict) else None
    sent = before if isinstance(before, dict) else {}
    # An empty input leaves a field out, unless it was sent empty: then it stays empty.
    changes = {
        n: typed_value(entry.target or "", n, v)
        for n, v in values.items()
        if v != "" or sent.get(n) == ""
    }
    page = functools.partial(render_template, "console/edit.html", entry=entry, names=names)
    try:
        prepared = prepare(rt, entry, changes)
    except EditError as exc:
        return page(values=values, problem=str(exc))
    if request.form.get("action") != "send":
        return page(values=values, diff=prepared.diff())
    if not send(rt, current_app.config["CUSTSYNC_PRODUCER"], prepared, raw):
        flash("the entry changed or left the DLQ meanwhile: nothing sent")
        return redirect(url_for(".dlq"))
    Audit(rt.redis, rt.keys).record(name, "edit", audit_scope(prepared), 1)
    flash(f"sent as new event {prepared.event_id} (replaces {entry.label})")
    return redirect(url_for(".dlq"))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@bp.post("/dlq/<some_id>/forget")
@signed_in("operator")
def forget(some_id: str) -> Any:
    """Forget the customer of this entry (erasure), after a typed confirmation."""
    store = _rt().dlq
    entries = store.load(store.resolve(some_id))
    customers = {e.customer_id for e in entries if e.customer_id}
    if len(customers) != 1:
        abort(404, "no single customer behind that id")
    if request.form.get("confirm") != "forget":
        flash('type "forget" to confirm the erasure')
        return redirect(url_for(".entry", some_id=some_id))
    (customer,) = customers
    done = forget_customer(_rt(), customer)
    who = current()
    Audit(_rt().redis, _rt().keys).record(
        who.name if who else "?", "forget", {"customer": customer}, done.total
    )
    flash(f"forgot customer {customer_label(customer)}: {plural(done.total, 'payload')} removed")
    return redirect(url_for(".dlq"))


@bp.get("/groups")
@signed_in()
def groups() -> str:
    found = dlq_groups(_rt().dlq, _filter(request.args))
    return render_template("console/groups.html", groups=found)


@bp.post("/replay")
@signed_in("operator")
def replay() -> Any:
    """A group, a filter or chosen events: the first POST previews (a dry run); the confirmed
    one starts a background job (typed confirmation above CONFIRM_OVER events)."""
    flt = _filter(request.form)
    ids = [i for i in request.form.getlist("id") if i]
    if not ids and flt.is_empty():
        abort(400, "nothing selected")
    rt = _rt()
    plan = plan_replay(rt, flt, ids, force=False)
    count = len(plan.replay)
    kept = {k: request.form[k] for k in FILTERS if request.form.get(k)}
    preview = functools.partial(
        render_template,
        "console/replay.html",
        plan=plan,
        filters=kept,
        ids=ids,
        confirm_over=CONFIRM_OVER,
        rate=request.form.get("rate", ""),
    )
    if request.form.get("confirm") != "yes":
        return preview()
    if count > CONFIRM_OVER and request.form.get("typed", "").strip() != str(count):
        flash(f"type {count} to confirm a replay of {plural(count, 'event')}")
        return preview()
    try:
        rate = float(request.form["rate"]) if request.form.get("rate") else None
    except ValueError:
        abort(400, "rate: a number of events a second")
    if rate is not None and rate <= 0:
        abort(400, "rate: a number of events a second above 0")
    who = current()
    name = who.name if who else "?"
    try:
        job = Jobs(rt).create(Scope(flt, tuple(ids)), name, rate)
    except JobConflict as exc:
        flash(str(exc))
        return redirect(url_for(".job", job_id=exc.job_id))
    Audit(rt.redis, rt.keys).record(
        name, "replay-job", {"job": job.job_id, **job.as_dict()["scope"]}, count
    )
    return redirect(url_for(".job", job_id=job.job_id))


@bp.get("/jobs")
@signed_in()
def jobs() -> str:
    return render_template("console/jobs.html", jobs=Jobs(_rt()).recent(50))


@bp.get("/jobs/<job_id>")
@signed_in()
def job(job_id: str) -> str:
    found = Jobs(_rt()).get(job_id)
    if found is None:
        abort(404, "no replay job with that id")
    partial = bool(request.headers.get("HX-Request"))
    return render_template(
        "console/job_progress.html" if partial else "console/job.html", job=found
    )


@bp.post("/jobs/<job_id>/<action>")
@signed_in("operator")
def job_action(job_id: str, action: str) -> Any:
    """Cancel a running job (what was replayed stays replayed) or resume a cancelled one."""
    if action not in ("cancel", "resume"):
        abort(404)
    jobs_ = Jobs(_rt())
    try:
        done = jobs_.cancel(job_id) if action == "cancel" else jobs_.resume(job_id)
    except JobError as exc:
        flash(str(exc))
        return redirect(url_for(".job", job_id=job_id))
    who = current()
    Audit(_rt().redis, _rt().keys).record(
        who.name if who else "?", f"{action}-replay", {"job": job_id}, done.replayed
    )
    return redirect(url_for(".job", job_id=job_id))


@bp.get("/audit")
@signed_in()
def audit() -> str:
    return render_template("console/audit.html", entries=Audit(_rt().redis, _rt().keys).newest())
