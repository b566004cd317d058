"""Judgmental Rationales Generator: glimpse/gaze rationales, judge, refinement, store.

``prompts.py`` (templates, ``parse_verdict``), ``jrg.py`` (``JRGConfig``, ``run_jrg``, ``main``), ``store.py``
(``rationales.jsonl``, ``read_rationales``, ``collect``, authors' four-field JSON), ``analysis.py`` (pure
helpers for notebooks), ``toy.py`` (a 3-verb toy world for tests).
"""
