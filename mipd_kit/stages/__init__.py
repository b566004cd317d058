"""The stage app: one module per pipeline stage, on top of the ``mipd_kit`` library.

Each module declares ``INPUTS`` (the stages whose artefacts it reads; the teacher comes from the run's ``teacher:``
block, see ``USES_TEACHER``) and ``OUTPUTS`` (run-folder artefacts it writes). The runner (``mipd_kit.pipeline``)
derives each stage's fingerprint from its own parameters and the fingerprints of its INPUTS, so a change re-runs
that stage and its dependants only. The migrated stages (``alignment``, ``distillation``) also carry a typed
``Config`` (with ``smoke()``), ``run(cfg, run_dir)`` and ``main(argv)``; the notebooks call them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: stage name -> module of this package (pipeline order).
STAGE_MODULES: dict[str, str] = {
    "data": "data",
    "teacher": "teacher",
    "rationales": "rationales",
    "judge": "judge",
    "alignment": "alignment",
    "distillation": "distillation",
    "cl_hoi": "cl_hoi",
    "analysis": "analysis",
}


def stage_module(name: str) -> ModuleType:
    """The module of a standard stage.

    Raises:
        KeyError: ``name`` is not a standard stage (the message lists them).
    """
    if name not in STAGE_MODULES:
        raise KeyError(f"{name!r} is not a standard stage; stages: {list(STAGE_MODULES)}")
    return importlib.import_module(f"{__name__}.{STAGE_MODULES[name]}")


def stage_inputs(name: str) -> tuple[str, ...] | None:
    """The declared INPUTS of a standard stage, or None for a stage this package does not know (a custom notebook,
    which the runner then treats as reading every earlier stage)."""
    if name not in STAGE_MODULES:
        return None
    return tuple(stage_module(name).INPUTS)
