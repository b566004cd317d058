"""CL-HOI: label-free human-object interaction detection distilled from an image-level teacher.

Modules: ``proposals`` (known boxes / detector JSON / jittered boxes, measured error), ``features`` (teacher patch
grid, RoIAlign region features, relative geometry, zero-shot phrase logits), ``models`` (Visual Linguistic
Translator, Interaction Cognition Network), ``losses`` (pair pooling, per-image and cross-image KL distillation,
context InfoNCE), ``train`` (``CLHOIConfig``, ``run_clhoi``, ``mipd clhoi``), ``viz`` (top pairs, cases, drawing).
"""
