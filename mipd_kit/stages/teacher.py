"""Stage ``teacher`` (notebook ``01_teacher_features.ipynb``): build (train or load) the run's teacher, evaluate it
zero-shot, write ``teacher_evidence.json`` and fill the feature cache.

The teacher is the run config's ``teacher:`` block, built by :func:`build` (``mipd_kit.teachers.build_teacher``);
every stage that uses a teacher builds it the same way, so all of them use one teacher.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

INPUTS: tuple[str, ...] = ("data",)
OUTPUTS: tuple[str, ...] = ("teacher_evidence.json",)
USES_TEACHER = True

#: the notebooks' default ``teacher_config`` (smoke-sized embedded teacher, seed 0).
SMOKE_TEACHER: dict[str, Any] = {"backend": "embedded", "size": "smoke", "seed": 0}


def build(teacher_config: Optional[Mapping[str, Any]], world_dir: str | os.PathLike, cache_dir: str | os.PathLike,
          progress: bool = False) -> Any:
    """The run's teacher from its ``teacher:`` block (a dict of ``TeacherConfig`` fields) and the run's folders."""
    from ..teachers import TeacherConfig, build_teacher

    cfg = TeacherConfig.from_dict(dict(teacher_config or {}), where="teacher_config")
    return build_teacher(cfg.with_paths(world_dir, cache_dir), progress=progress)
