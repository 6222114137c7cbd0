"""One module per partner API; REGISTRY names them."""

from __future__ import annotations

from custsync.targets.base import Target
from custsync.targets.minted import MintedTarget
from custsync.targets.vendor import VendorTarget

REGISTRY: dict[str, type[Target]] = {t.name: t for t in (MintedTarget, VendorTarget)}

__all__ = ["REGISTRY", "Target"]
