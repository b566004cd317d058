"""Shared fixtures: the project root and the read-only reference annotation files (``MIPD_SHARED_DATA``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MIPD_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data folder (``MIPD_SHARED_DATA``, default ``shared/data`` beside the checkout); tests that
    need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (set MIPD_SHARED_DATA or place ../shared beside the project)")
    return SHARED_DATA


def shared_file(rel: str) -> Path:
    """Path of one reference file, skipping the test when it is absent."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"reference file {p} is absent")
    return p
