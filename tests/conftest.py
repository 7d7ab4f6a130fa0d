"""Shared test set-up: project root on sys.path and the location of the shared fixtures."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED_DIR = ROOT.parent / "shared"

# Annotation caches of the tests' tiny datasets go to a throw-away folder, never ~/.cache (inherited
# by the subprocesses of CLI tests).
os.environ.setdefault("DISTILTRACK_CACHE", tempfile.mkdtemp(prefix="distiltrack-test-cache-"))


def fixtures_root() -> Path:
    """Fixture root: $DISTILTRACK_FIXTURES when set, else ../shared/fixtures next to the project."""
    return Path(os.environ.get("DISTILTRACK_FIXTURES", SHARED_DIR / "fixtures"))


@pytest.fixture
def fixtures_dir() -> Path:
    return fixtures_root()


@pytest.fixture
def shared_dir() -> Path:
    return SHARED_DIR


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():
    """An in-process ``wandb.init`` exports WANDB_SERVICE so that child processes join its service; a later
    test's ``lightning`` subprocess would then log through this process's service, whose files are not
    flushed when the test reads them. Each test's subprocesses start their own service."""
    yield
    os.environ.pop("WANDB_SERVICE", None)
