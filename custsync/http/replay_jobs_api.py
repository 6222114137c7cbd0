"""Background replay jobs in the operator API: start one for ids or a filter, follow its
progress, cancel it, resume it. Any ``custsync serve`` process runs them (``dlq.jobs``)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from custsync.dlq.jobs import JobConflict, JobError, Jobs, Scope
from custsync.http.answers import answer, problem
from custsync.http.operator_api import ActionBody, _selection
from custsync.http.operator_auth import requires
from custsync.http.schemas import ProblemSchema
from custsync.runtime import Runtime
from custsync.state.audit import Audit

blp = Blueprint(
    "replay_jobs", __name__, url_prefix="/v1", description="Operators: background replay jobs"
)


class JobBody(ActionBody):
    force = fields.Boolean(load_default=False)
    rate = fields.Float(
        validate=validate.Range(min=0.1), metadata={"description": "events a second at most"}
    )


class ConflictSchema(ProblemSchema):
    job_id = fields.String(metadata={"description": "the job that already replays this scope"})


class ListJobsArgs(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 200))


def _rt() -> Runtime:
    rt: Runtime = current_app.config["CUSTSYNC_RUNTIME"]
    return rt


def _audit(action: str, scope: dict[str, Any], count: int) -> None:
    Audit(_rt().redis, _rt().keys).record(g.operator.name, action, scope, count)


@blp.route("/replay-jobs", methods=["POST"])
@blp.response(202, description="the job, waiting for a server to run it")
@blp.alt_response(401, schema=ProblemSchema, description="no valid credentials")
@blp.alt_response(403, schema=ProblemSchema, description="a viewer may not")
@blp.alt_response(409, schema=ConflictSchema, description="a job already replays this scope")
@blp.alt_response(422, schema=ProblemSchema, description="no or bad selection")
@blp.arguments(JobBody)
@requires("operator")
def start_job(body: dict[str, Any]) -> Response:
    """Replay ids or a filter in the background, at most ``rate`` events a second."""
    chosen = _selection(body)
    if isinstance(chosen, Response):
        return chosen
    flt, ids = chosen
    scope = Scope(flt, tuple(ids), body["force"])
    try:
        job = Jobs(_rt()).create(scope, g.operator.name, body.get("rate"))
    except JobConflict as exc:
        return answer(409, {"error": "conflict", "detail": str(exc), "job_id": exc.job_id})
    _audit("replay-job", {"job": job.job_id, **job.as_dict()["scope"]}, 0)
    return answer(202, job.as_dict())


@blp.route("/replay-jobs", methods=["GET"])
@blp.response(200, description="the newest jobs")
@blp.alt_response(401, schema=ProblemSchema, description="no valid credentials")
@blp.arguments(ListJobsArgs, location="query", as_kwargs=True)
@requires("viewer")
def list_jobs(limit: int) -> Response:
    """The newest replay jobs, with their progress."""
    return answer(200, {"jobs": [j.as_dict() for j in Jobs(_rt()).recent(limit)]})


@blp.route("/replay-jobs/<job_id>", methods=["GET"])
@blp.response(200, description="the job")
@blp.alt_response(401, schema=ProblemSchema, description="no valid credentials")
@blp.alt_response(404, schema=ProblemSchema, description="no such job")
@requires("viewer")
def show_job(job_id: str) -> Response:
    """One job: state, replayed of total, measured rate."""
    job = Jobs(_rt()).get(job_id)
    if job is None:
        return problem(404, "not found", f"no replay job {job_id}")
    return answer(200, job.as_dict())


@blp.route("/replay-jobs/<job_id>/<any(cancel, resume):action>", methods=["POST"])
@blp.response(200, description="the job after the action")
@blp.alt_response(401, schema=ProblemSchema, description="no valid credentials")
@blp.alt_response(403, schema=ProblemSchema, description="a viewer may not")
@blp.alt_response(409, schema=ProblemSchema, description="not in a state that allows it")
@requires("operator")
def act_on_job(job_id: str, action: str) -> Response:
    """Cancel (what was replayed stays replayed) or resume a cancelled or failed job."""
    jobs = Jobs(_rt())
    if jobs.get(job_id) is None:
        return problem(404, "not found", f"no replay job {job_id}")
    try:
        job = jobs.cancel(job_id) if action == "cancel" else jobs.resume(job_id)
    except JobError as exc:
        return problem(409, "conflict", str(exc))
    _audit(f"{action}-replay", {"job": job_id}, job.replayed)
    return answer(200, job.as_dict())
