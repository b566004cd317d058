"""The stage registry: one :class:`StageSpec` per pipeline stage, in pipeline order.

Everything that lists the stages reads this table: the standard stage order and notebooks of a run config
(:mod:`mipd_kit.app.config`), the stage graph and the check of declared outputs of the runner
(:mod:`mipd_kit.app.pipeline`), the stage modules (:mod:`mipd_kit.app.stages`), the notebook generator
(``notebooks/build.py``) and the stage table of ``docs/pipeline.md`` (:func:`docs_table`; a test keeps the page equal).
Adding a stage touches its module, its notebook and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage.

    Attributes:
        name: the stage's name in run configs (``stages.<name>``) and ``status.json``.
        module: the module holding its ``Config``, ``run(cfg, run_dir)`` and ``main(argv)`` (absolute dotted name).
        notebook: its notebook in ``notebooks_dir`` (parameters cell generated from ``Config`` by
            ``notebooks/build.py``).
        inputs: the stages whose artefacts it reads (its fingerprint covers theirs; the run's teacher comes from the
            ``teacher:`` block, see ``uses_teacher``).
        outputs: the artefacts it must leave behind (``${run_dir}``-relative unless they start with a ``${...}``
            folder or are absolute); the runner checks them after the stage and re-runs a stage whose outputs went
            missing.
        uses_teacher: its notebook receives the run's ``teacher:`` block as ``teacher_config``.
        also_writes: other artefacts, written under some settings only (not checked; shown in the docs table).
    """

    name: str
    module: str
    notebook: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    uses_teacher: bool
    also_writes: tuple[str, ...] = ()


_APP = "mipd_kit.app.stages"

#: the standard stages in pipeline order (analysis runs last: it reads every other stage).
STAGES: tuple[StageSpec, ...] = (
    StageSpec("data", f"{_APP}.data", "00_data.ipynb", (),
              ("${world_dir}/meta.json", "${world_dir}/ov_split.json"), False,
              also_writes=("the world folder",)),
    StageSpec("teacher", f"{_APP}.teacher", "01_teacher_features.ipynb", ("data",),
              ("teacher_evidence.json", "teacher_zero_shot.json"), True,
              also_writes=("feature cache",)),
    StageSpec("rationales", f"{_APP}.rationales", "02_rationales.ipynb", ("data", "teacher"),
              ("rationales.jsonl", "jrg_stats.json"), True,
              also_writes=("rationales-<control>.jsonl",)),
    StageSpec("judge", f"{_APP}.judge", "03_judge.ipynb", ("data", "teacher", "rationales"),
              (), False,
              also_writes=("rationales_authors.json", "figures")),
    StageSpec("alignment", f"{_APP}.alignment", "04_alignment.ipynb", ("data", "rationales"),
              ("nmpa/index.json",), True,
              also_writes=("nmpa/<fingerprint>.safetensors",)),
    StageSpec("distillation", f"{_APP}.distillation", "05_distillation.ipynb", ("data", "rationales", "alignment"),
              ("predictions", "predictions-dev", "curves", "checkpoints", "results_mipd.md"), True),
    StageSpec("cl_hoi", f"{_APP}.cl_hoi", "07_cl_hoi.ipynb", ("data",),
              ("clhoi/results.md",), True,
              also_writes=("predictions/hoi-*",)),
    StageSpec("analysis", f"{_APP}.analysis", "06_analysis.ipynb",
              ("data", "teacher", "rationales", "judge", "alignment", "distillation", "cl_hoi"),
              ("results.md",), False,
              also_writes=("figures", "analysis.json")),
)


def stage_specs() -> dict[str, StageSpec]:
    """Stage name -> its :class:`StageSpec`, in pipeline order."""
    return {s.name: s for s in STAGES}


def spec(name: str) -> StageSpec:
    """The :class:`StageSpec` of a standard stage.

    Raises:
        KeyError: ``name`` is not a standard stage (the message lists them).
    """
    specs = stage_specs()
    if name not in specs:
        raise KeyError(f"{name!r} is not a standard stage; stages: {list(specs)}")
    return specs[name]


def stage_order() -> tuple[tuple[str, str], ...]:
    """``(name, notebook)`` of every standard stage, in pipeline order."""
    return tuple((s.name, s.notebook) for s in STAGES)


def notebook_modules() -> dict[str, str]:
    """Notebook file name -> the stage module whose ``Config`` generates its parameters cell."""
    return {s.notebook: s.module for s in STAGES}


def docs_table() -> str:
    """The stage table of ``docs/pipeline.md`` (markdown), from the registry."""
    all_inputs = {s.name: s.inputs for s in STAGES}

    def inputs(s: StageSpec) -> str:
        if not s.inputs:
            return "-"
        others = [n for n in all_inputs if n != s.name]
        return "every other stage" if list(s.inputs) == others else ", ".join(s.inputs)

    def writes(s: StageSpec) -> str:
        checked = ", ".join(f"`{o}`" for o in s.outputs) or "-"
        also = ", ".join(w if " " in w or w == "figures" else f"`{w}`" for w in s.also_writes)
        return checked + (f" (also: {also})" if also else "")

    lines = ["| stage | notebook | inputs | uses the teacher | outputs (checked after the stage) |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{s.name}` | `{s.notebook}` | {inputs(s)} | {'yes' if s.uses_teacher else 'no'} | {writes(s)} |"
              for s in STAGES]
    return "\n".join(lines)
