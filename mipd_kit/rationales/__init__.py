"""Judgmental Rationales Generator: glimpse/gaze rationales, judge, refinement, store.

``prompts.py`` (templates, ``parse_verdict``), ``jrg.py`` (the refinement loop ``run_jrg``, ``main``),
``jrg_config.py`` (``JRGConfig``), ``jrg_inputs.py`` (evidence, world, the judge's messages), ``jrg_stats.py``
(``jrg_statistics``), ``unlabeled_pool.py`` (captioner descriptions of the unlabeled pool), ``store.py``
(``rationales.jsonl``, ``read_rationales``, ``collect``, authors' four-field JSON), ``analysis.py`` (pure
helpers for notebooks), ``toy.py`` (a 3-verb toy world for tests).
"""
