"""Shared fixtures: the project root, the read-only reference annotation files (``MIPD_SHARED_DATA``) and the
check that the suite leaves the checkout's ``git status`` as it found it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator, Optional

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


def git_porcelain(root: Path) -> Optional[str]:
    """``git status --porcelain`` of the checkout at ``root``, or None outside a git checkout (or without git)."""
    try:
        r = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def porcelain_changes(before: str, after: str) -> list[str]:
    """The lines of ``git status --porcelain`` that the suite added or changed (paths it modified or created)."""
    old = set(before.splitlines())
    return sorted(line for line in after.splitlines() if line not in old)


@pytest.fixture(scope="session", autouse=True)
def checkout_unchanged() -> Iterator[None]:
    """Fails the session (an error at teardown of its last test) when the suite modified or created files of the
    checkout that git sees: tests write to ``tmp_path`` only. Outside a git checkout there is nothing to compare
    and the check is a no-op (``MIPD_SKIP_GIT_CHECK=1`` turns it off while editing files during a run)."""
    before = None if os.environ.get("MIPD_SKIP_GIT_CHECK") else git_porcelain(ROOT)
    yield
    if before is None:
        return
    after = git_porcelain(ROOT)
    changed = porcelain_changes(before, after or "")
    if changed:
        pytest.fail("the test suite modified tracked (or created untracked, not ignored) files of the checkout; "
                    "tests must write to tmp_path:\n" + "\n".join(changed), pytrace=False)
