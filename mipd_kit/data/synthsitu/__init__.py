"""SynthSitu: the embedded grounded-situation world (GSR + HOI + a web-like image-caption pretraining corpus).

Modules: ``world`` (ontology: verbs as combinations of primitives, nouns with synonyms, places, HOI classes),
``render`` (PIL drawing of scenes with exact boxes), ``captions`` (pretraining captions), ``generate``
(:class:`~mipd_kit.data.synthsitu.generate.SynthConfig`, ``generate``, ``ensure_world``, the ``mipd synth`` CLI),
``stats`` (tables and contact sheets for the data notebook), ``baselines`` (the two difficulty baselines).
No I/O at import time.
"""
