"""The wheel as published: built offline by the project's backend (hatchling), it ships the
license and py.typed, takes its version from custsync/version.py (the one the partner
User-Agent names), and caps kombu above the version the suite runs with."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from custsync.targets.base import USER_AGENT
from custsync.version import VERSION

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), *offline, "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("custsync-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


def test_the_wheel_ships_the_license_and_py_typed(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert "custsync/py.typed" in names
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(license_file).decode()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the custsync authors" in text
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert "Typing :: Typed" in meta.get_all("Classifier", [])


def test_one_version_for_the_wheel_and_the_partner_user_agent(wheel: zipfile.ZipFile) -> None:
    version = _metadata(wheel)["Version"]
    assert version == VERSION
    assert USER_AGENT.split("/") == ["custsync", version]


def test_kombu_is_capped_and_the_tested_version_is_inside_the_cap(
    wheel: zipfile.ZipFile,
) -> None:
    requires = [Requirement(r) for r in _metadata(wheel).get_all("Requires-Dist", [])]
    (kombu,) = [r for r in requires if r.name == "kombu"]
    assert any(spec.operator == "<" for spec in kombu.specifier)  # transport internals
    assert kombu.specifier.contains(metadata.version("kombu"))
