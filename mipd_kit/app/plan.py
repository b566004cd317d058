"""Config resolution and validation of ``mipd run``: the parameters each notebook declares, the check of a run
config against them and against each stage's ``Config``, the stage graph (who reads whom), which stages get the
run's teacher, and the stages' resume fingerprints. Nothing here writes a file.
"""

from __future__ import annotations

import dataclasses
import io
import tokenize
from pathlib import Path
from typing import Any

from .config import COMMON_PARAMS, TEACHER_PARAM, ConfigError, RunConfig, file_hash, fingerprint
from .registry import stage_specs

#: stage parameter names whose settings the run config's ``teacher:`` block holds -> where (for the error message).
MOVED_TO_TEACHER_BLOCK: dict[str, str] = {
    "teacher_smoke": "teacher.size: smoke | default", "teacher_size": "teacher.size: smoke | default",
    "teacher": "teacher.backend", "teacher_checkpoint": "teacher.backend: checkpoint + teacher.checkpoint",
    "teacher_epochs": "teacher.embedded.epochs", "teacher_max_pairs": "teacher.embedded.max_pairs",
    "teacher_threads": "teacher.threads",
}


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """Parameters declared in a notebook's ``parameters`` cell: every name assigned there, with its annotation,
    literal default and help comment.

    This is the list ``papermill.inspect_notebook`` gives, read with ``ast`` instead of papermill's line parser,
    which is slower and skips valid lines (e.g. a help comment containing ``=``). Empty without a parameters cell.
    """
    import ast

    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    specs: dict[str, dict[str, Any]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as e:
            raise ConfigError(f"{path}: the parameters cell is not valid Python ({e})") from e
        comments: dict[int, str] = {}
        try:
            for tok in tokenize.generate_tokens(io.StringIO(cell.source).readline):
                if tok.type == tokenize.COMMENT:
                    comments[tok.start[0]] = tok.string.lstrip("#").strip()
        except (tokenize.TokenError, SyntaxError):  # already parsed by ast; comments are only help text
            pass
        for node in tree.body:
            if isinstance(node, ast.AnnAssign):
                targets, ann = [node.target], ast.unparse(node.annotation)
            elif isinstance(node, ast.Assign):
                targets, ann = node.targets, ""
            else:
                continue
            help_ = comments.get(node.end_lineno or node.lineno, "")
            default = ast.unparse(node.value) if node.value is not None else None
            for t in targets:
                if isinstance(t, ast.Name):
                    specs[t.id] = {"name": t.id, "inferred_type_name": ann or "None", "default": default,
                                   "help": help_}
        break
    return specs


def validate(cfg: RunConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Check that every enabled stage's notebook exists and that its params are parameters of the notebook.

    Returns:
        stage -> the notebook's parameter specs.

    Raises:
        ConfigError: missing notebooks (all named at once); else every unknown parameter key (listing the valid
            ones), every value a stage's ``Config`` refuses (types, ranges, :func:`stage_value_problems`) and a bad
            ``teacher:`` block, all in one message.
    """
    nb_dir = cfg.path("notebooks_dir")
    if not cfg.stages:
        raise ConfigError(f"{cfg.source}: no stages configured")
    missing = [f"{s.notebook} (stage {n})" for n, s in cfg.stages.items()
               if s.enabled and not (nb_dir / s.notebook).is_file()]
    if missing:
        raise ConfigError(f"{cfg.source}: notebook(s) not found in {nb_dir}: {', '.join(missing)}. "
                          f"Write them, or disable the stages with --set stages.<name>.enabled=false")
    specs: dict[str, dict[str, dict[str, Any]]] = {}
    problems: list[str] = []
    for name, st in cfg.stages.items():
        if not st.enabled:
            continue
        spec = notebook_parameters(nb_dir / st.notebook)
        specs[name] = spec
        if "run_dir" in st.params:
            raise ConfigError(f"{cfg.source}: stages.{name}.params.run_dir: run_dir is set by the runner (use --out)")
        if TEACHER_PARAM in st.params:
            raise ConfigError(f"{cfg.source}: stages.{name}.params.{TEACHER_PARAM}: the teacher is chosen once, in "
                              "the run config's top-level teacher: block")
        unknown = sorted(set(st.params) - set(spec) - set(COMMON_PARAMS))
        moved = sorted(set(unknown) & set(MOVED_TO_TEACHER_BLOCK))
        stage_moved = _moved_params(name)  # flat keys that a stage's nested blocks hold (its MOVED_PARAMS)
        if set(unknown) & set(stage_moved):
            problems.append(f"stages.{name}.params: " + "; ".join(
                f"{k} is set in {stage_moved[k]}" for k in unknown if k in stage_moved))
        elif moved:
            problems.append(
                f"stages.{name}.params: {moved} moved to the run config's teacher: block ("
                + "; ".join(f"{k} -> {MOVED_TO_TEACHER_BLOCK[k]}" for k in moved) + ")")
        elif unknown:
            valid = sorted(k for k in spec if k not in COMMON_PARAMS)
            problems.append(
                f"stages.{name}.params: unknown key(s) {unknown} for notebook {st.notebook}; "
                f"valid keys: {valid if valid else '(the notebook has no stage parameters)'}"
                + ("" if spec else " -- the notebook has no cell tagged 'parameters'"))
        else:
            problems += [f"stages.{name}.params: {p}" for p in stage_value_problems(name, st.params)]
    try:
        cfg.teacher_config()
    except ConfigError as e:
        problems.append(str(e).replace(f"{cfg.source}: ", "", 1))
    if problems:
        raise ConfigError(f"{cfg.source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return specs


def _moved_params(name: str) -> dict[str, str]:
    """A standard stage's ``MOVED_PARAMS``: flat keys its nested blocks hold -> where to set them (for the error)."""
    from .registry import stage_specs
    from .stages import stage_module

    return dict(getattr(stage_module(name), "MOVED_PARAMS", {})) if name in stage_specs() else {}


def stage_value_problems(name: str, params: dict[str, Any]) -> list[str]:
    """Every problem of a standard stage's params by its ``Config``'s own checks (types and ranges,
    :mod:`mipd_kit.checks`, then the config's ``__post_init__``); for a stage this package does not know (a custom
    notebook), the range rules by parameter name (``epochs``, ``lr``, ``api_key_env``...) only."""
    from ..checks import config_problems, value_problems
    from .stages import stage_module

    if name not in stage_specs():
        return [p for k, v in params.items() for p in value_problems(k, v)]
    cls = stage_module(name).Config
    problems = config_problems(cls, params)
    if not problems:
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            cls(**{k: v for k, v in params.items() if k in known})
        except (TypeError, ValueError) as e:
            problems.append(str(e).removeprefix(f"{name}: "))
    return problems


def stage_graph(cfg: RunConfig) -> dict[str, tuple[str, ...]]:
    """Stage -> the configured stages it reads (its registry ``inputs``); a stage the registry does
    not know reads every earlier stage.

    Raises:
        ConfigError: a stage is configured before one of its inputs.
    """
    from .stages import stage_inputs

    names = list(cfg.stages)
    graph: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        declared = stage_inputs(name)
        if declared is None:
            graph[name] = tuple(names[:i])
            continue
        late = [d for d in declared if d in cfg.stages and names.index(d) > i]
        if late:
            raise ConfigError(f"{cfg.source}: stage {name!r} reads {late} but is configured before them; "
                              f"order: {names}")
        graph[name] = tuple(d for d in declared if d in cfg.stages)
    return graph


def dependants(cfg: RunConfig, stage: str) -> list[str]:
    """``stage`` and every stage that reads it, directly or through others (config order)."""
    graph = stage_graph(cfg)
    out = {stage}
    for name in cfg.stages:
        if any(d in out for d in graph[name]):
            out.add(name)
    return [n for n in cfg.stages if n in out]


def uses_teacher(cfg: RunConfig, name: str) -> bool:
    """Whether an enabled stage gets the run's teacher: its registry entry's ``uses_teacher`` (a standard stage on
    its own notebook), else whether its notebook declares the ``teacher_config`` parameter."""
    st = cfg.stages[name]
    spec = stage_specs().get(name)
    if st.enabled and spec is not None and st.notebook == spec.notebook:
        return spec.uses_teacher
    nb = cfg.path("notebooks_dir") / st.notebook
    return st.enabled and nb.is_file() and TEACHER_PARAM in notebook_parameters(nb)


def stage_fingerprints(cfg: RunConfig) -> dict[str, str]:
    """Graph fingerprints: a stage's params, the common params, its notebook's hash, the run's teacher fingerprint
    (stages that use the teacher) and the fingerprints of its inputs (:func:`stage_graph`) -- not every earlier
    stage, so e.g. a judge parameter re-runs neither the teacher nor CL-HOI."""
    nb_dir = cfg.path("notebooks_dir")
    common = {"seed": cfg.seed, "world_dir": str(cfg.path("world_dir")), "cache_dir": str(cfg.path("cache_dir"))}
    graph = stage_graph(cfg)
    out: dict[str, str] = {}
    for name, st in cfg.stages.items():
        inputs = {d: out[d] for d in graph[name]}
        if not st.enabled:
            out[name] = fingerprint({"stage": name, "disabled": True, "inputs": inputs})
            continue
        nb = nb_dir / st.notebook
        out[name] = fingerprint({
            "stage": name, "notebook": st.notebook,
            "notebook_sha256": file_hash(nb) if nb.is_file() else None,
            "params": cfg.substitute(st.params, Path("<run_dir>")), "common": common, "inputs": inputs,
            "teacher": cfg.teacher_fingerprint() if uses_teacher(cfg, name) else None,
        })
    return out


