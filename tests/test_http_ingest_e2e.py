"""``custsync serve`` for real: a gunicorn subprocess (two worker processes, so a repeated
webhook-id races across processes as across replicas), real Redis, a real worker and the
sandbox. Signed requests made with the standardwebhooks library's own signer."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from custsync import exitcodes
from custsync.demo.webhook import signed_headers
from custsync.embedded.server import EphemeralRedis
from custsync.http.app import create_app
from custsync.http.operators import add_api_key
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings
from tests.conftest import WorkerProcess, custsync_env, db_url, run_cli, wait_for
from tests.dlq_support import queued_count, queued_raw
from tests.events import MINTED_EXAMPLE, envelope, minted_customer
from tests.serving import serving

DB = 24
OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-of-crm-eu-32-bytes!!!").decode()
SECRET = "whsec_" + base64.b64encode(b"new-secret-of-crm-eu-32-bytes!!!").decode()
RETIRED = "whsec_" + base64.b64encode(b"a-secret-that-was-rotated-out!!!").decode()
API_KEY = "batch-job-key-0123456789abcdef"
SOURCES = {
    "crm-eu": {"webhook_secrets": [SECRET, OLD_SECRET]},
    "batch-job": {"api_keys": [API_KEY]},
    "chatty": {"api_keys": ["chatty-key-0123456789abcdef"], "rate_per_s": 1, "burst": 2},
}


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    queue: redis.Redis
    log: Path
    operator_key: str

    def queued(self) -> int:
        return queued_count(self.queue)


@pytest.fixture(scope="module")
def server(
    redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The server on its own database, with no worker: what it enqueues stays countable."""
    client = redis.Redis.from_url(db_url(redis_server, DB))
    client.flushdb()
    folder = tmp_path_factory.mktemp("serve")
    operators = folder / "operators.json"
    operator_key = add_api_key(operators, "fuzzer", "operator")
    env = custsync_env(
        redis_server,
        sandbox,
        DB,
        CUSTSYNC_INGEST_SOURCES=json.dumps(SOURCES),
        CUSTSYNC_OPERATORS_FILE=str(operators),
    )
    log = folder / "serve.log"
    with serving(env, log, workers=2) as (url, proc):  # two processes: as two replicas
        yield Server(url, proc, client, log, operator_key)


def signed(
    body: bytes, secret: str = SECRET, msg_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    return signed_headers(body, secret, msg_id, at)


def _event(cid: str = "C-http", **changes: Any) -> dict[str, Any]:
    return envelope("minted", cid, {**MINTED_EXAMPLE, **changes})


def _post(server: Server, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{server.url}/v1/events", data=body, headers=headers, timeout=30)


def test_signed_and_keyed_requests_are_enqueued_with_their_source(server: Server) -> None:
    before = server.queued()
    one = json.dumps(_event()).encode()
    answer = _post(server, one, signed(one))
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1
    rotated = json.dumps(_event()).encode()
    assert _post(server, rotated, signed(rotated, OLD_SECRET)).status_code == 202
    batch = json.dumps([_event(), _event()]).encode()
    keyed = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    assert _post(server, batch, keyed).json()["accepted"] == 2
    ndjson = b"".join(json.dumps(_event()).encode() + b"\n" for _ in range(3))
    nd_headers = {**keyed, "Content-Type": "application/x-ndjson"}
    assert _post(server, ndjson, nd_headers).json()["accepted"] == 3
    assert server.queued() == before + 7
    sources = {json.loads(raw)["source"] for raw in _queued_envelopes(server)[-7:]}
    assert sources == {"crm-eu", "batch-job"}


def _queued_envelopes(server: Server) -> list[str]:
    """The envelopes on the queue, oldest last (kombu LPUSHes, BRPOPs the other end)."""
    from custsync.broker.reading import envelopes_in

    return [json.dumps(e) for raw in reversed(queued_raw(server.queue)) for e in envelopes_in(raw)]


@pytest.mark.parametrize(
    "case", ["bad signature", "expired", "rotated out", "no credentials", "bad key"]
)
def test_bad_credentials_get_401_and_enqueue_nothing(server: Server, case: str) -> None:
    before = server.queued()
    body = json.dumps(_event()).encode()
    headers = {
        "bad signature": {**signed(body), "webhook-signature": "v1,AAAA"},
        "expired": signed(body, at=datetime.now(UTC) - timedelta(minutes=10)),
        "rotated out": signed(body, RETIRED),
        "no credentials": {"Content-Type": "application/json"},
        "bad key": {"Content-Type": "application/json", "Authorization": "Bearer nope" * 3},
    }[case]
    answer = _post(server, body, headers)
    assert answer.status_code == 401
    assert set(answer.json()) == {"error", "detail"}
    assert server.queued() == before


def test_a_repeated_webhook_id_enqueues_once_and_gets_the_first_answer(server: Server) -> None:
    before = server.queued()
    body = json.dumps(_event()).encode()
    headers = signed(body)
    first = _post(server, body, headers)
    again = _post(server, body, headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert server.queued() == before + 1

    racing = json.dumps(_event()).encode()
    same = signed(racing)
    answers: list[requests.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_post(server, racing, same)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [202] * 4
    assert server.queued() == before + 2


def test_one_bad_event_refuses_the_batch_naming_index_and_field(server: Server) -> None:
    before = server.queued()
    bad = _event(gender="X", identity_number="12345677938")
    batch = json.dumps([_event(), bad, _event()]).encode()
    answer = _post(server, batch, signed(batch))
    assert answer.status_code == 422
    (problem,) = answer.json()["events"]
    assert problem["index"] == 1 and problem["event_id"] == bad["event_id"]
    assert "changes.gender" in problem["errors"]
    assert "12345677938" not in answer.text  # field errors never echo values
    assert server.queued() == before


def test_size_type_and_json_errors_are_json_answers(server: Server) -> None:
    before = server.queued()
    big = b"[" + b" " * (2 * 1024 * 1024) + b"]"
    keyed = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    assert _post(server, big, keyed).status_code == 413
    text = _post(server, b"hello", {**keyed, "Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"] == "unsupported media type"
    broken = b'{"event_id": "x", "changes": {"email": "secret@example.com"'
    malformed = _post(server, broken, keyed)
    assert malformed.status_code == 400 and "secret@example.com" not in malformed.text
    assert server.queued() == before


def test_a_source_over_its_rate_gets_429_with_retry_after(server: Server) -> None:
    keyed = {
        "Content-Type": "application/json",
        "Authorization": "Bearer " + "chatty-key-0123456789abcdef",
    }
    codes = []
    for _ in range(4):
        body = json.dumps(_event()).encode()
        answer = _post(server, body, keyed)
        codes.append(answer.status_code)
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) >= 1
    assert codes[:2] == [202, 202] and 429 in codes[2:]


def test_health_readiness_metrics_and_openapi(server: Server) -> None:
    keyed = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    body = json.dumps(_event()).encode()
    assert _post(server, body, keyed).status_code == 202
    assert _post(server, body, {"Content-Type": "application/json"}).status_code == 401
    assert requests.get(f"{server.url}/readyz", timeout=5).json() == {"status": "ready"}
    spec = requests.get(f"{server.url}/v1/openapi.json", timeout=5).json()
    assert "/v1/events" in spec["paths"]
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'custsync_http_requests_total{route="/v1/events",status="202"}' in metrics
    assert 'custsync_ingest_events_total{outcome="accepted",source="batch-job"}' in metrics
    assert 'custsync_ingest_events_total{outcome="unauthorized",source="-"}' in metrics
    access = [
        json.loads(x) for x in server.log.read_text().splitlines() if '"custsync.http.access"' in x
    ]
    assert any(line["path"] == "/v1/events" and line["status"] == 202 for line in access)
    seen = server.log.read_text().count('"path":"/healthz"')
    requests.get(f"{server.url}/healthz?token=query-secret-1234", timeout=5)
    wait_for(lambda: server.log.read_text().count('"path":"/healthz"') > seen)
    assert "query-secret-1234" not in server.log.read_text()  # paths only, never queries


@pytest.mark.timeout(300)
@pytest.mark.parametrize("who", ["ingest source", "operator"])
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    server: Server, who: str
) -> None:
    """Generated requests (valid and not) with a key, so bodies get past authentication:
    the ingest source's for /v1/events, an operator's for the operator API."""
    key = API_KEY if who == "ingest source" else server.operator_key
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/v1/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--header",
            f"Authorization: Bearer {key}",
            "--max-examples",
            "60",
            "--seed",
            "20261204",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "/v1/events" in done.stdout and "Test cases:" in done.stdout, done.stdout


def test_no_source_refuses_to_start_off_loopback(
    redis_server: EphemeralRedis, sandbox: Sandbox
) -> None:
    env = custsync_env(redis_server, sandbox, DB)
    done = run_cli(env, "serve", "--bind", "0.0.0.0:1")
    assert done.returncode == exitcodes.CONFIG_ERROR
    assert done.stderr.count("\n") == 1 and "CUSTSYNC_INGEST_SOURCES" in done.stderr


NODE_CLIENT = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def node_client() -> Path:
    """tests/node with its locked npm packages installed (npm ci, once)."""
    if not (NODE_CLIENT / "node_modules" / "standardwebhooks").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_CLIENT,
            check=True,
            timeout=300,
        )
    return NODE_CLIENT / "send.mjs"


def test_a_signed_event_is_applied_at_the_partner(
    redis_server: EphemeralRedis,
    sandbox: Sandbox,
    sandbox_client: SandboxClient,
    tmp_path: Path,
    node_client: Path,
) -> None:
    """One event from Python's standardwebhooks signer, one from Node's fetch signing with
    the npm standardwebhooks package: both applied at the partner."""
    db = DB + 1
    redis.Redis.from_url(db_url(redis_server, db)).flushdb()
    env = custsync_env(redis_server, sandbox, db, CUSTSYNC_INGEST_SOURCES=json.dumps(SOURCES))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        with serving(env, tmp_path / "serve.log") as (url, _):
            cid, node_cid = minted_customer(sandbox_client), minted_customer(sandbox_client)
            event = _event(cid, external_id=cid, lastname="Webhooked")
            body = json.dumps(event).encode()
            answer = requests.post(f"{url}/v1/events", data=body, headers=signed(body), timeout=30)
            assert answer.status_code == 202, answer.text
            from_node = json.dumps(_event(node_cid, external_id=node_cid, lastname="Nodesent"))
            sent = subprocess.run(
                ["node", str(node_client), f"{url}/v1/events", SECRET],
                input=from_node,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert json.loads(sent.stdout)["status"] == 202, sent.stdout + sent.stderr

            def lastname(customer: str) -> Any:
                return (sandbox_client.get_customer("minted", customer) or {}).get("lastname")

            wait_for(lambda: lastname(cid) == "Webhooked" and lastname(node_cid) == "Nodesent")
    finally:
        worker.stop()


def test_with_no_source_a_loopback_server_takes_unsigned_events(
    redis_server: EphemeralRedis, sandbox: Sandbox
) -> None:
    env = custsync_env(redis_server, sandbox, DB)
    app = create_app(Runtime(load_settings(env)), open_without_sources=True)
    queue = redis.Redis.from_url(db_url(redis_server, DB))
    before = queued_count(queue)
    answer = app.test_client().post("/v1/events", json=_event())
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert queued_count(queue) == before + 1
    closed = create_app(Runtime(load_settings(env)))  # what a non-loopback bind would get
    assert closed.test_client().post("/v1/events", json=_event()).status_code == 401
