"""A worker whose partner call kills the process for customers named CRASH-*: a stand-in for
a segfault or an OOM kill, to prove such a message ends in the DLQ as poison."""

from __future__ import annotations

import os
from typing import Any

from custsync.targets.minted import MintedTarget

_apply = MintedTarget.apply


def _crashing_apply(self: MintedTarget, event: Any) -> Any:
    if event.customer_id.startswith("CRASH-"):
        os._exit(137)
    return _apply(self, event)


MintedTarget.apply = _crashing_apply  # type: ignore[method-assign]

if __name__ == "__main__":
    from custsync.cli import main

    main(prog_name="custsync")
