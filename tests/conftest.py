"""Shared test set-up: project root on sys.path and the location of the shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED_DIR = ROOT.parent / "shared"


def fixtures_root() -> Path:
    """Fixture root: $DISTILTRACK_FIXTURES when set, else ../shared/fixtures next to the project."""
    return Path(os.environ.get("DISTILTRACK_FIXTURES", SHARED_DIR / "fixtures"))


@pytest.fixture
def fixtures_dir() -> Path:
    return fixtures_root()


@pytest.fixture
def shared_dir() -> Path:
    return SHARED_DIR
