"""Builder test fixtures (the helpers themselves live in fakes.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import FakeEngine, make_lock, write_model
from mkserve.builder.wheels import Lock


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "tiny")


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_lock(tmp_path: Path) -> Lock:
    return make_lock(tmp_path / "wheelhouse")
