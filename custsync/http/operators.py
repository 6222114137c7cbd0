"""Who may use the operator API: ``CUSTSYNC_OPERATORS_FILE``, a JSON file of users (hashed
passwords, via Werkzeug's scrypt) and API keys (SHA-256; they are long random strings),
each with a role: ``viewer`` reads, ``operator`` also acts. Written by
``custsync operators add``; read on each request, so an added operator needs no restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from custsync.errors import SettingsError

VARIABLE = "CUSTSYNC_OPERATORS_FILE"
ROLES = ("viewer", "operator")


@dataclass(frozen=True)
class Operator:
    name: str
    role: str

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"users": {}, "api_keys": {}}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{VARIABLE}: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{VARIABLE}: {path} must hold a JSON object")
    data.setdefault("users", {})
    data.setdefault("api_keys", {})
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # readers never see half a file


def add_user(path: Path, name: str, role: str, password: str) -> None:
    data = _read(path)
    data["users"][name] = {"role": role, "password": generate_password_hash(password)}
    _write(path, data)


def add_api_key(path: Path, name: str, role: str) -> str:
    """A new key for ``name``, returned once; only its hash is stored."""
    key = "cso_" + secrets.token_urlsafe(32)
    data = _read(path)
    data["api_keys"][name] = {"role": role, "sha256": hashlib.sha256(key.encode()).hexdigest()}
    _write(path, data)
    return key


def check_password(path: Path, name: str, password: str) -> Operator | None:
    user = _read(path)["users"].get(name)
    if not isinstance(user, dict) or not check_password_hash(user.get("password", ""), password):
        return None
    return Operator(name, str(user.get("role")))


def check_api_key(path: Path, key: str) -> Operator | None:
    digest = hashlib.sha256(key.encode()).hexdigest()
    for name, entry in _read(path)["api_keys"].items():
        if isinstance(entry, dict) and hmac.compare_digest(str(entry.get("sha256", "")), digest):
            return Operator(name, str(entry.get("role")))
    return None
