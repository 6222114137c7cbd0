"""Commands from Debian packages that some tests run (``.ci/run`` installs them)."""

from __future__ import annotations

import os
import shutil

import pytest


def debian_tool(name: str, package: str) -> str:
    """The command's path. Missing: such a test skips on a laptop and fails in CI (``CI`` set),
    so a CI image without it cannot pass by skipping."""
    path = shutil.which(name)
    if path is not None:
        return path
    why = f"{name} is not installed (Debian package {package}; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)
