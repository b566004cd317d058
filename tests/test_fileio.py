"""The atomic-write helpers of mipd_kit.fileio, and that the package writes atomically through them only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mipd_kit.fileio import (atomic_open, atomic_path, atomic_symlink, atomic_write_bytes, move_into_place,
                             replace_dir)


def test_atomic_path_and_open_replace_on_success_and_leave_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_replace_dir_swaps_a_folder_and_moves_finished_files(tmp_path: Path) -> None:
    dest, new = tmp_path / "world", tmp_path / ".world.tmp"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    assert replace_dir(new, dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"] and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]  # the old folder is gone
    with pytest.raises(FileNotFoundError):  # a failed swap puts the old folder back
        replace_dir(tmp_path / "missing", dest)
    assert (dest / "new.txt").read_text() == "new"
    part = tmp_path / "f.part"
    part.write_text("x")
    assert move_into_place(part, tmp_path / "f").read_text() == "x" and not part.exists()
    atomic_symlink(tmp_path / "latest", "world")
    atomic_symlink(tmp_path / "latest", "f")
    assert (tmp_path / "latest").resolve() == (tmp_path / "f").resolve()


def test_os_replace_is_written_in_fileio_only(root: Path) -> None:
    """Every atomic write of the package and its benchmarks goes through mipd_kit.fileio."""
    hits = [f"{p.relative_to(root)}:{i}" for base in ("mipd_kit", "benchmarks") for p in sorted((root / base).rglob("*.py"))
            if p != root / "mipd_kit" / "fileio.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bos\.(replace|rename)\(", line)]
    assert not hits, f"os.replace / os.rename outside mipd_kit/fileio.py (use its helpers): {hits}"
