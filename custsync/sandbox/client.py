"""A small client of the sandbox's ``/_sandbox/`` control API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests


class SandboxError(RuntimeError):
    """The control API refused a call; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"sandbox answered {status}: {message}")
        self.status = status


def _seg(value: str) -> str:
    return quote(value, safe="")


class SandboxClient:
    """Drives a running sandbox: customers, faults, scripts, the request record, stats."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.trust_env = False  # proxy variables must not reroute loopback calls

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        response = self._session.request(
            method,
            f"{self.base_url}/_sandbox/{path}",
            json=body,
            params=params,
            timeout=self.timeout_s,
        )
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SandboxError(response.status_code, str(message))
        return response.json()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def reset(self) -> None:
        self._call("POST", "reset")

    def put_customer(
        self, target: str, customer_id: str, record: Mapping[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "PUT", f"customers/{target}/{_seg(customer_id)}", dict(record)
        )
        return result

    def put_customers(self, target: str, customers: Mapping[str, Mapping[str, Any]]) -> int:
        body = {"customers": {cid: dict(r) for cid, r in customers.items()}}
        return int(self._call("POST", f"customers/{target}", body)["count"])

    def get_customer(self, target: str, customer_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call(
            "GET", f"customers/{target}/{_seg(customer_id)}", missing_ok=True
        )
        return result

    def customers(self, target: str) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = self._call("GET", f"customers/{target}")["customers"]
        return result

    def set_faults(self, target: str, **faults: Any) -> dict[str, Any]:
        """Merge fault settings, e.g. ``set_faults("minted", error_rate=0.2)``."""
        result: dict[str, Any] = self._call("POST", f"faults/{target}", faults)
        return result

    def get_faults(self, target: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"faults/{target}")
        return result

    def clear_faults(self, target: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"faults/{target}")
        return result

    def script(self, target: str, customer_id: str, responses: Sequence[Mapping[str, Any]]) -> int:
        """Append scripted answers for one customer; returns how many are pending."""
        body = {"responses": list(responses)}
        return int(self._call("POST", f"script/{target}/{_seg(customer_id)}", body)["pending"])

    def expire_tokens(self) -> int:
        return int(self._call("POST", "vendor/expire-tokens")["expired"])

    def add_payment_sets(self, ids: Iterable[str]) -> list[str]:
        result: list[str] = self._call("POST", "vendor/payment-sets", {"ids": list(ids)})[
            "payment_sets"
        ]
        return result

    def requests(
        self,
        target: str | None = None,
        *,
        key: str | None = None,
        customer_id: str | None = None,
        since_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        params = {"target": target, "key": key, "customer_id": customer_id, "since_seq": since_seq}
        found: list[dict[str, Any]] = self._call(
            "GET", "requests", params={k: v for k, v in params.items() if v is not None}
        )["requests"]
        return found

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "stats")
        return result
