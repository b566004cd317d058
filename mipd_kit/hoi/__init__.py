"""CL-HOI: label-free human-object interaction detection distilled from an image-level teacher.

Modules: ``proposals`` (known boxes / detector JSON / jittered boxes, measured error), ``features`` (teacher patch
grid, RoIAlign region features, relative geometry, zero-shot phrase logits), ``models`` (Visual Linguistic
Translator, Interaction Cognition Network), ``losses`` (pair pooling, per-image and cross-image KL distillation,
context InfoNCE), ``config`` (``CLHOIConfig``, the row names), ``world`` (the labels-stripped world), ``prepare``
(teacher, proposals, pair data, descriptions, control targets), ``scoring`` (baselines, student scores, predictions,
mAP rows), ``train`` (losses of a batch, ``train_student``), ``viz`` (top pairs, cases, drawing). The run folder half
(``run_clhoi``, ``mipd clhoi``) is ``mipd_kit.app.stages.clhoi_runs``.
"""
