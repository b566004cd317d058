"""Teachers (embedded, open_clip, transformers), text encoders and the feature cache.

``build_teacher(TeacherConfig)`` is the one way to get a teacher; a run config chooses it in its ``teacher:`` block.
"""

from .backends import TeacherConfig, build_teacher

__all__ = ["TeacherConfig", "build_teacher"]
