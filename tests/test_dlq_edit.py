"""``custsync dlq edit`` on a real Redis: a refused event, corrected, goes out as a new event
(new id, same time and sequence) while the original leaves the DLQ; the audit links the two
with a masked diff; invalid edits name the field and change nothing."""

from __future__ import annotations

import base64
import json

import pytest

from custsync import exitcodes
from custsync.dlq.entry import DeadLetter
from custsync.embedded.server import EphemeralRedis
from custsync.sandbox import Sandbox
from custsync.state.audit import Audit
from tests.dlq_support import Quiet, entry, queued_raw
from tests.events import MINTED_EXAMPLE

PLANTED = "Quillbarrowen"  # a last name no pattern would mask


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox) -> Quiet:
    return Quiet(redis_server, sandbox)


def _refused(quiet: Quiet) -> DeadLetter:
    """Minted refused a two-letter last name (its rule: 3 to 40 characters)."""
    refused = entry(
        "minted",
        "rejected",
        status=422,
        error="minted answered 422: lastname",
        changes={**MINTED_EXAMPLE, "lastname": "Qu"},
    )
    quiet.rt.dlq.add_many([refused])
    return refused


def _queued(quiet: Quiet) -> list[tuple[dict, dict]]:  # type: ignore[type-arg]
    out = []
    for raw in queued_raw(quiet.raw):
        args, kwargs, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        out.append((args[0], kwargs["delivery"]))
    return out


def test_an_edit_goes_out_as_a_new_event_and_the_audit_links_both(quiet: Quiet) -> None:
    original = _refused(quiet)
    dry = quiet.cli("dlq", "edit", original.entry_id, "--set", f"lastname={PLANTED}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert 'lastname: "***" -> "***"' in dry.stdout and PLANTED not in dry.stdout
    assert quiet.rt.dlq.count() == 1 and not _queued(quiet)

    sent = quiet.cli("dlq", "edit", original.entry_id, "--set", f"lastname={PLANTED}", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert quiet.rt.dlq.count() == 0
    ((envelope, delivery),) = _queued(quiet)
    assert envelope["event_id"] != original.event_id
    assert f"sent as new event {envelope['event_id']}" in sent.stdout
    assert envelope["changes"] == {**MINTED_EXAMPLE, "lastname": PLANTED}
    before = original.envelope
    assert (envelope["occurred_at"], envelope.get("sequence")) == (
        before["occurred_at"],
        before.get("sequence"),
    )
    assert delivery["replays"] == 1
    # The journal knows the new event: a broker that loses it gets it back from there.
    assert quiet.rt.redis.hexists(quiet.rt.keys.journal_body, envelope["event_id"])

    (line,) = Audit(quiet.rt.redis, quiet.rt.keys).newest()
    assert line["action"] == "edit" and line["count"] == 1
    assert line["scope"]["from"] == original.event_id
    assert line["scope"]["to"] == envelope["event_id"]
    assert line["scope"]["diff"] == {"lastname": ["***", "***"]}
    assert PLANTED not in json.dumps(line)


def test_an_invalid_edit_names_the_field_and_changes_nothing(quiet: Quiet) -> None:
    original = _refused(quiet)
    bad = quiet.cli("dlq", "edit", original.entry_id, "--set", "gender=X", "--yes")
    assert bad.returncode == exitcodes.INVALID_INPUT
    assert "gender" in bad.stderr and "Traceback" not in bad.stderr
    unknown = quiet.cli("dlq", "edit", original.entry_id, "--set", "shoe_size=44", "--yes")
    assert unknown.returncode == exitcodes.INVALID_INPUT and "shoe_size" in unknown.stderr
    same = quiet.cli("dlq", "edit", original.entry_id, "--set", "lastname=Qu", "--yes")
    assert same.returncode == exitcodes.INVALID_INPUT and "nothing changed" in same.stderr
    malformed = quiet.cli("dlq", "edit", original.entry_id, "--set", "lastname", "--yes")
    assert malformed.returncode == exitcodes.INVALID_INPUT and "FIELD=VALUE" in malformed.stderr
    assert quiet.rt.dlq.count() == 1 and not _queued(quiet)
    assert Audit(quiet.rt.redis, quiet.rt.keys).newest() == []


def test_a_changes_file_replaces_the_changes_and_an_ambiguous_id_is_refused(
    quiet: Quiet, tmp_path: object
) -> None:
    original = _refused(quiet)
    twin = entry("minted", "rejected", status=422, changes={**MINTED_EXAMPLE, "lastname": "Qu"})
    twin.envelope["event_id"] = original.event_id  # a producer's bug: one id, two failures
    quiet.rt.dlq.add_many([DeadLetter(**{**twin.__dict__, "event_id": original.event_id})])
    two = quiet.cli("dlq", "edit", original.event_id, "--set", "lastname=Quill", "--yes")
    assert two.returncode == exitcodes.INVALID_INPUT and "names 2 entries" in two.stderr

    path = tmp_path / "changes.json"  # type: ignore[operator]
    path.write_text(json.dumps({**MINTED_EXAMPLE, "lastname": "Quill", "gender": "F"}))
    done = quiet.cli("dlq", "edit", original.entry_id, "--changes-file", str(path), "--yes")
    assert done.returncode == 0, done.stderr
    ((envelope, _),) = _queued(quiet)
    assert envelope["changes"]["lastname"] == "Quill" and envelope["changes"]["gender"] == "F"
