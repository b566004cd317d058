"""align: MIPD scene-aware / instance-perception prompts and NMPA (negative-guided multimodal prompting alignment).

Public API: :class:`~mipd_kit.align.nmpa.NMPAConfig`, :func:`~mipd_kit.align.nmpa.build_align_data`,
:func:`~mipd_kit.align.nmpa.train_nmpa`, :func:`~mipd_kit.align.nmpa.aligned_targets`,
:func:`~mipd_kit.align.nmpa.alignment_report`; prompts in :mod:`mipd_kit.align.prompts`.
"""
