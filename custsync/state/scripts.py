"""The Lua scripts of ``state/lua/``, loaded once and called by name with named keys and args.

Each file starts with a header naming its keys and arguments in order::

    -- KEYS: applied version inflight ...
    -- ARGV: holder version ... *fields

A trailing ``*name`` takes a list of any length. ``Scripts`` checks that a call names exactly
the declared ones and orders them; redis-py's ``Script`` sends EVALSHA and loads the script
again if Redis answers NOSCRIPT (after a restart or a SCRIPT FLUSH).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).parent / "lua"
_HEADER = re.compile(r"^-- (KEYS|ARGV):(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    keys: tuple[str, ...]  # in KEYS order; a last "*name" is a list
    args: tuple[str, ...]  # in ARGV order; a last "*name" is a list


@functools.cache
def load(name: str) -> LuaScript:
    source = (LUA_DIR / f"{name}.lua").read_text()
    declared = {kind: tuple(names.split()) for kind, names in _HEADER.findall(source)}
    return LuaScript(name, source, declared.get("KEYS", ()), declared.get("ARGV", ()))


def _ordered(kind: str, declared: tuple[str, ...], given: Mapping[str, Any]) -> list[Any]:
    fixed = [n for n in declared if not n.startswith("*")]
    rest = [n[1:] for n in declared if n.startswith("*")]
    expected = {*fixed, *rest}
    if set(given) != expected:
        missing, extra = sorted(expected - set(given)), sorted(set(given) - expected)
        raise TypeError(f"{kind}: missing {missing}, unexpected {extra}")
    out = [given[n] for n in fixed]
    for n in rest:
        out.extend(given[n])
    return out


class Scripts:
    """The scripts, registered on one Redis client."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._registered: dict[str, Any] = {}

    def __call__(
        self,
        name: str,
        *,
        keys: Mapping[str, str | Sequence[str]],
        args: Mapping[str, Any],
        client: Any = None,
    ) -> Any:
        script = load(name)
        registered = self._registered.get(name)
        if registered is None:
            registered = self._registered[name] = self.redis.register_script(script.source)
        return registered(
            keys=_ordered(f"{name} KEYS", script.keys, keys),
            args=_ordered(f"{name} ARGV", script.args, args),
            client=client,
        )
