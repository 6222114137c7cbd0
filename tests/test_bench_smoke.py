"""Every benchmark runs once in quick mode, so bench/ cannot rot (issue 6).

No assertion on the numbers: timing never belongs in a test. Only that each benchmark
finishes, exits 0 and writes a well-formed report whose every figure has a ratio.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_runs_quick_and_writes_a_report_with_ratios(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSYNC_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", name, "--quick", "--results", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert report["benchmark"] == name
    assert report["mode"] == "quick"
    assert {"cores", "cpu_model", "python", "redis_version"} <= set(report["machine"])
    assert report["machine"]["redis_version"]
    assert "commit" in report["git"]
    assert report["figures"]
    for figure in report["figures"]:
        assert {"name", "value", "unit", "limit", "limit_name", "ratio"} <= set(figure)
        assert figure["limit"] > 0, figure
        assert math.isfinite(figure["ratio"]), figure
        assert figure["ratio"] == pytest.approx(figure["value"] / figure["limit"]), figure


@pytest.mark.timeout(120)
def test_dlq_pages_reports_each_answer_in_ms_against_the_budget(tmp_path: Path) -> None:
    from bench import dlq_pages

    report, redis_version = dlq_pages.run(tmp_path, quick=True)
    assert redis_version
    cases = [name for name in report.details if isinstance(report.details[name], dict)]
    assert len(cases) == 6 and any("cursor followed" in name for name in cases)
    for name in cases:
        assert {"p50_ms", "max_ms", "budget_over_measured"} <= set(report.details[name])
        figures = {f.name: f for f in report.figures if f.name.startswith(f"{name}, ")}
        assert set(figures) == {f"{name}, p50", f"{name}, max"}
        assert all(f.unit == "ms" and f.limit == dlq_pages.BUDGET_MS for f in figures.values())
    assert report.details["one-off backfill of the group index, s"] > 0
