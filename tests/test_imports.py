"""Every module imports on its own in a fresh interpreter (an import cycle between top-level
imports fails here), and the light ones stay light."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "custsync"
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if p.name != "__main__.py"
)


def _import_alone(module: str) -> tuple[str, int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    return module, proc.returncode, proc.stderr[-600:]


def test_each_module_imports_alone_in_a_fresh_interpreter() -> None:
    assert len(MODULES) > 50
    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = [r for r in pool.map(_import_alone, MODULES) if r[1] != 0]
    assert failed == []


def test_state_and_schemas_load_without_celery() -> None:
    code = (
        "import sys, custsync.state.keys, custsync.state.guard, custsync.schemas.envelope;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
