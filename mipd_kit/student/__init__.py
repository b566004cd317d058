"""student: the Ov-GSR student of MIPD, its losses and its training (single process or torchrun DDP).

Public API: :func:`~mipd_kit.student.model.build_student`, :class:`~mipd_kit.student.train.StudentConfig`,
:func:`~mipd_kit.student.train.prepare_world`, :func:`~mipd_kit.student.train.fit`,
:func:`~mipd_kit.student.train.run_variant`, :func:`~mipd_kit.student.train.predict_swig`,
``mipd train-student`` (:func:`~mipd_kit.student.train.main`); tables in :mod:`mipd_kit.student.report`.
"""
