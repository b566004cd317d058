"""Stage ``cl_hoi`` (notebook ``07_cl_hoi.ipynb``): CL-HOI students and baselines (``mipd_kit.hoi.train``).

It needs only the world and the teacher, so changes to the rationale / judge / MIPD stages do not re-run it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

INPUTS: tuple[str, ...] = ("data",)
OUTPUTS: tuple[str, ...] = ("clhoi/results.md",)
USES_TEACHER = True




def clhoi_teacher_fields(teacher_config: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``CLHOIConfig`` teacher fields (``teacher`` / ``teacher_size`` / ``teacher_checkpoint``) that describe the
    run's teacher block in CL-HOI's own records; empty for backends CL-HOI's fields cannot name (open_clip,
    transformers), whose teacher the notebook passes to ``run_clhoi`` directly as for every backend."""
    from ..teachers import TeacherConfig

    t = TeacherConfig.from_dict(dict(teacher_config or {}), where="teacher_config")
    if t.backend not in ("embedded", "checkpoint", "tiny"):
        return {}
    return {"teacher": t.backend, "teacher_size": t.size, "teacher_checkpoint": t.checkpoint}
