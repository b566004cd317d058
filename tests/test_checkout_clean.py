"""The suite's own guard: ``git status --porcelain`` before and after the session (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import git_porcelain, porcelain_changes


def test_porcelain_changes_names_modified_and_new_paths() -> None:
    before = " M README.md\n?? notes.txt\n"
    after = " M README.md\n?? notes.txt\n M reports/browser/inspector.png\n?? scratch.png\n"
    assert porcelain_changes(before, after) == [" M reports/browser/inspector.png", "?? scratch.png"]
    assert porcelain_changes(after, after) == []


def test_git_porcelain_sees_a_new_file(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert git_porcelain(tmp_path) == ""
    (tmp_path / "x.txt").write_text("x")
    assert porcelain_changes("", git_porcelain(tmp_path) or "") == ["?? x.txt"]
