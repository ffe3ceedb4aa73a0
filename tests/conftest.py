"""Shared fixtures: a fresh lake per test, the real sample data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from saleslake import api
from saleslake.lake import Lake

from helpers import SHARED_DATA

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@pytest.fixture
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"expected the real sample data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no stray saleslake.toml from the developer's folder
    for name in list(os.environ):
        if name.startswith("SALESLAKE_"):
            monkeypatch.delenv(name)
    return api.settings(home=tmp_path / "lake")


@pytest.fixture
def lake(settings) -> Lake:
    return Lake(settings.home)


