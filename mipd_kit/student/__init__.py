"""student: the Ov-GSR student of MIPD, its losses and its training (single process or torchrun DDP).

One file per job: :mod:`~mipd_kit.student.config` (``StudentConfig``), :mod:`~mipd_kit.student.model`
(``build_student``), :mod:`~mipd_kit.student.data` (``prepare_world``), :mod:`~mipd_kit.student.targets`
(``attach_targets``), :mod:`~mipd_kit.student.train` (``fit``), :mod:`~mipd_kit.student.checkpoint` (checkpoint I/O),
:mod:`~mipd_kit.student.evaluate` (``predict_swig``), :mod:`~mipd_kit.student.predict` (``mipd predict``); tables in
:mod:`mipd_kit.student.report`. Run folders are written by the app (``mipd_kit.app.stages.student_runs``:
``run_variant``, ``mipd train-student``).
"""
