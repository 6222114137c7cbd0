"""The operator console at /console/: server-rendered pages (Jinja2) with htmx for partial
updates, on the same code as the operator API. No inline script or style: the CSP allows
only this server's files."""

from __future__ import annotations

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

from custsync.dlq.entry import customer_label
from custsync.dlq.groups import group
from custsync.dlq.query import Filter, Query, parse_time
from custsync.dlq.replay import Replayer, plan_replay
from custsync.dlq.views import shown
from custsync.erasure import forget_customer
from custsync.http.console_session import (
    check_csrf,
    csrf_token,
    current,
    log_in,
    shared_secret,
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
FILTERS = ("target", "reason", "customer", "status", "since", "until", "grep")


@bp.before_request
def _session_key() -> None:
    """The signing key from Redis on first use (not at start: /healthz must not need it)."""
    if not current_app.secret_key:
        current_app.secret_key = shared_secret(_rt())


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
    return Filter(
        target=args.get("target") or None,
        reason=args.get("reason") or None,
        customer_id=args.get("customer") or None,
        status=status,
        since=since,
        until=until,
        grep=args.get("grep") or None,
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
    return render_template("console/overview.html", state=state, chart=_dead_letter_chart())


def _dead_letter_chart() -> list[tuple[str, int]]:
    """Dead letters per minute over the last hour, from the DLQ's own time index."""
    now = int(time.time() // 60 * 60)
    pipe = _rt().redis.pipeline(transaction=False)
    starts = [now - 60 * i for i in range(59, -1, -1)]
    for start in starts:
        pipe.zcount(_rt().keys.dlq_all, start, f"({start + 60}")
    counts = pipe.execute()
    labels = [time.strftime("%H:%M", time.gmtime(s)) for s in starts]
    return [(label, int(n)) for label, n in zip(labels, counts, strict=True)]


@bp.get("/dlq")
@signed_in()
def dlq() -> str:
    flt = _filter(request.args)
    offset = int(request.args.get("offset", "0") or 0)
    page = Query(_rt().dlq, flt).page(50, offset)
    kept = {k: request.args[k] for k in FILTERS if request.args.get(k)}
    template = "console/dlq_rows.html" if request.headers.get("HX-Request") else "console/dlq.html"
    return render_template(
        template, page=page, offset=offset, filters=kept, rows=[e.summary() for e in page.entries]
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
    found = group(Query(_rt().dlq, _filter(request.args)).oldest_first())
    return render_template("console/groups.html", groups=found)


@bp.post("/replay")
@signed_in("operator")
def replay() -> Any:
    """A group or one event: the first POST previews (a dry run); the confirmed one replays."""
    flt = _filter(request.form)
    ids = [i for i in request.form.getlist("id") if i]
    if not ids and flt.is_empty():
        abort(400, "nothing selected")
    rt = _rt()
    plan = plan_replay(rt, flt, ids, force=False)
    if request.form.get("confirm") != "yes":
        kept = {k: request.form[k] for k in FILTERS if request.form.get(k)}
        return render_template("console/replay.html", plan=plan, filters=kept, ids=ids)
    who = current()
    summary = Replayer(rt, current_app.config["CUSTSYNC_PRODUCER"]).run(plan.replay)
    if who is not None:
        scope = {"ids": len(ids), "filter": {k: v for k, v in request.form.items() if k in FILTERS}}
        Audit(rt.redis, rt.keys).record(who.name, "replay", scope, summary.total)
    flash(f"replayed {plural(summary.total, 'event')}")
    return redirect(url_for(".groups"))


@bp.get("/audit")
@signed_in()
def audit() -> str:
    return render_template("console/audit.html", entries=Audit(_rt().redis, _rt().keys).newest())
