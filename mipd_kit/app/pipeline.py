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

The checks of the config and the fingerprints are :mod:`mipd_kit.app.plan`; the run folder's bookkeeping (where it
goes, its lock, ``status.json``, ``environment.json``, ``results.md``, ``reports/latest``) is
:mod:`mipd_kit.app.runfolder`; this module runs the stages.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import ConfigError, RunConfig
from .plan import dependants, stage_fingerprints, stage_graph, uses_teacher, validate
from .runfolder import (PipelineError, _atomic_write, _check_not_foreign, _copy_split, _lock, _now, _save_status,
                        _update_latest, _write_results, environment, missing_outputs, prepare_run_dir, read_status,
                        resolve_run_dir)
from ..fileio import dumps as strict_dumps
from ..fileio import redact_file
from ..redaction import redact
from ..progress import ConsoleFormatter, is_progress_line, stage_clock

LOG = logging.getLogger("mipd_kit.app.pipeline")


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
    plan = _plan(cfg, run_dir, prev, fps, forced)
    if dry_run:
        print(f"run folder: {run_dir}")
        for name, what in plan.items():
            print(f"  {name:<13} {cfg.stages[name].notebook:<28} {what}")
        return RunResult(run_dir, "dry-run", dict(plan))

    lock = _open_run_dir(cfg, run_dir, force)
    handlers = _setup_logging(run_dir, quiet)
    try:
        if any(p == "run" for p in plan.values()) or not (run_dir / "environment.json").exists():
            _record_environment(cfg, run_dir)
        status: dict[str, Any] = {
            "run_id": run_dir.name, "config": cfg.source, "config_hash": cfg.config_hash(),
            "description": cfg.description, "state": "running",
            "failed_stage": None, "error": None, "started": _now(), "finished": None,
            "stages": {n: prev.get("stages", {}).get(n, {}) for n in cfg.stages},
        }
        teacher_fp = cfg.teacher_fingerprint()
        LOG.info("run %s (%s) in %s", run_dir.name, cfg.source, run_dir)
        result = RunResult(run_dir, "running")
        ran: set[str] = set()
        for name, st in cfg.stages.items():
            rec = status["stages"].setdefault(name, {})
            if plan[name].startswith("skipped") and not any(d in ran for d in graph[name]):
                reason = plan[name][9:-1]
                rec.update({"state": "skipped", "reason": reason, "fingerprint": fps[name],
                            "notebook": st.notebook, "completed": reason == "unchanged",
                            **_graph_record(cfg, graph, teacher_fp, name)})
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
            error, nb_out = _run_stage(cfg, name, run_dir, status, fps[name],
                                       _graph_record(cfg, graph, teacher_fp, name))
            if error is not None:
                return _stage_failed(run_dir, status, result, name, error, nb_out, t0)
            rec.update({"state": "done", "completed": True})
            result.stages[name] = "done"
            _save_status(run_dir, status)
            LOG.info("stage %-13s done in %.1fs", name, rec["seconds"])
            if until == name:
                break
        return _finish(cfg, run_dir, status, result, ran, t0)
    except BaseException as e:  # the traceback goes to run.log; the CLI prints one line
        LOG.error("run stopped: %s: %s", type(e).__name__, e, exc_info=True)
        raise
    finally:
        _teardown_logging(handlers)
        lock.close()


def _plan(cfg: RunConfig, run_dir: Path, prev: dict[str, Any], fps: dict[str, str],
          forced: set[str]) -> dict[str, str]:
    """Stage -> ``run`` | ``skipped (disabled)`` | ``skipped (unchanged)``: a stage is skipped when its last record
    in ``prev`` completed with the same fingerprint and its declared outputs exist, unless ``forced``."""
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
    return plan


def _open_run_dir(cfg: RunConfig, run_dir: Path, force: bool) -> Any:
    """Create (or check) the run folder and take its lock; returns the lock (close it to release).

    Raises:
        PipelineError: ``run_dir`` is a file, a foreign folder or another config's run (without ``force``), or
            another ``mipd run`` holds it.
    """
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
    return lock


def _record_environment(cfg: RunConfig, run_dir: Path) -> None:
    """Write ``environment.json``: the environment that produces outputs (a run that only skips keeps the one of
    its last execution)."""
    env = environment(cfg)
    _atomic_write(run_dir / "environment.json", strict_dumps(env, indent=1) + "\n")
    w = env["weights"].get("teacher", env["weights"])
    LOG.info("teacher weights: %s", f"release {w['name']} (sha256 {w['sha256']})"
             if w.get("source") == "release" else strict_dumps(w))


def _graph_record(cfg: RunConfig, graph: dict[str, tuple[str, ...]], teacher_fp: str, name: str) -> dict[str, Any]:
    """What a stage's record says about the graph: its inputs and, if it uses one, the teacher."""
    return {"inputs": list(graph[name]),
            "teacher_fingerprint": teacher_fp if uses_teacher(cfg, name) else None}


def _run_stage(cfg: RunConfig, name: str, run_dir: Path, status: dict[str, Any], fp: str,
               graph_record: dict[str, Any]) -> tuple[Optional[str], Path]:
    """Execute stage ``name``'s notebook, recording it in ``status`` (saved when it starts); returns the error
    (None when it finished and wrote its declared outputs) and the executed notebook's path."""
    st = cfg.stages[name]
    rec = status["stages"][name]
    nb_dir = cfg.path("notebooks_dir")
    nb_in, nb_out = nb_dir / st.notebook, run_dir / "notebooks" / st.notebook
    params = cfg.stage_params(name, run_dir, teacher=uses_teacher(cfg, name))
    expected_s = expected_seconds(name, rec, cfg)  # the ETA of the stage clock
    rec.clear()
    rec.update({"state": "running", "fingerprint": fp, "notebook": st.notebook,
                "output": str(nb_out.relative_to(run_dir)), "params": params, "started": _now(),
                "completed": False, **graph_record})
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
    return error, nb_out


def _stage_failed(run_dir: Path, status: dict[str, Any], result: RunResult, name: str, error: str, nb_out: Path,
                  t0: float) -> RunResult:
    """Record that stage ``name`` failed (``status.json``, ``results.md``, the log) and return the run's result."""
    rec = status["stages"][name]
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


def _finish(cfg: RunConfig, run_dir: Path, status: dict[str, Any], result: RunResult, ran: set[str],
            t0: float) -> RunResult:
    """Close a run whose stages all finished (or stopped at ``--until``): its state (``done`` | ``partial``),
    ``results.md``, and for a complete run the inspector notebook and ``reports/latest``."""
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
