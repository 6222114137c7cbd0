"""The limit for bench/ingest.py: a Flask app under the same gunicorn settings that reads
the body and answers 202 with a small JSON body, doing nothing else."""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask("bare")


@app.post("/v1/events")
def events() -> Response:
    request.get_data()
    return Response('{"accepted":1}', status=202, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response('{"status":"ok"}', mimetype="application/json")
