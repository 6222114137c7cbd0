"""How a DLQ entry is shown outside Redis (CLI, HTTP API): personal data masked by
allow-list, customers as pseudonyms, partner bodies hidden, unless revealed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from custsync.dlq.entry import DeadLetter, customer_label
from custsync.privacy import redact_envelope
from custsync.targets import REGISTRY, public_fields

HIDDEN = "(hidden: --show-payload, or Reveal in the console, shows it)"


def shown_envelope(envelope: Any, show_payload: bool) -> Any:
    """The envelope by allow-list (only fields known not to be personal), unless asked for."""
    if show_payload or envelope is None:
        return envelope
    target = envelope.get("target") if isinstance(envelope, dict) else None
    return redact_envelope(envelope, public_fields(target), REGISTRY)


def shown(entry: DeadLetter, show_payload: bool) -> dict[str, Any]:
    """Every field of an entry; the envelope's personal data and partner bodies on request."""
    data = asdict(entry)
    data["envelope"] = shown_envelope(entry.envelope, show_payload)
    if not show_payload:
        data["customer"] = customer_label(data.pop("customer_id"))
        data["response"] = HIDDEN if entry.response else None
        data["raw"] = HIDDEN if entry.raw else None  # a malformed message's body
        data["headers"] = HIDDEN if entry.headers else None
        data["history"] = [
            {
                **{k: v for k, v in h.items() if k != "customer_id"},
                "response": HIDDEN if h.get("response") else None,
            }
            for h in entry.history
        ]
    return data
