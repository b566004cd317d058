"""Run configuration of the notebook pipeline: YAML in/out, ``--set`` overrides, validation and fingerprints.

A run config (``configs/default.yaml``, ``configs/smoke.yaml``) looks like::

    seed: 0                      # seeds everything unless a stage sets its own `seed` param
    run_id: null                 # null -> <UTC timestamp>-<config hash>; an existing run of the same config is resumed
    root: null                   # base of relative paths; null -> the config's project (see project_root_of)
    world_dir: data/synthsitu/default-seed${seed}
    cache_dir: data/cache
    reports_dir: reports
    notebooks_dir: notebooks
    teacher:                     # the one teacher of every stage (mipd_kit.teachers.TeacherConfig fields)
      backend: embedded          # embedded | checkpoint | open_clip | transformers | tiny
      size: default              # embedded: smoke | default
      seed: 0                    # the teacher's own seed; ${seed} ties it to the run seed
    stages:                      # ordered: executed top to bottom
      data:
        params: {size: default}  # keys must be parameters of the notebook's `parameters` cell
        enabled: true            # optional
      my_stage:                  # a stage of one's own (not in the stage registry, mipd_kit.app.registry)
        notebook: 09_mine.ipynb  # required for it; a standard stage's notebook comes from the registry
        outputs: [mine.json]     # optional: files it must leave behind, besides a standard stage's declared ones

``${seed}``, ``${root}``, ``${world_dir}``, ``${cache_dir}`` and ``${run_dir}`` are substituted in strings.
Overrides use dotted paths with YAML-typed values: ``seed=1``, ``stages.teacher.params.epochs=3``,
``stages.judge.params.backend="openai"``.

Stage configs of the individual stages (teacher, student, ...) live with their stages; this module only knows the
pipeline around them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..overrides import ConfigError, parse_value  # noqa: F401  (re-exported: the app's names)
from .registry import stage_order, stage_specs

#: project root: the folder holding the ``mipd_kit`` package (an editable install keeps it in the repository).
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: parameters the runner injects into every notebook (absolute paths).
COMMON_PARAMS: tuple[str, ...] = ("run_dir", "world_dir", "cache_dir", "seed")

TOP_LEVEL_KEYS: tuple[str, ...] = ("seed", "run_id", "root", "world_dir", "cache_dir", "reports_dir",
                                   "notebooks_dir", "description", "teacher", "stages")

#: the notebook parameter through which a stage receives the run's ``teacher:`` block (a dict of TeacherConfig
#: fields); injected by the runner into every notebook that declares it.
TEACHER_PARAM = "teacher_config"
STAGE_KEYS: tuple[str, ...] = ("notebook", "params", "outputs", "enabled")

_VAR = re.compile(r"\$\{(\w+)\}")



@dataclass
class StageConfig:
    """One pipeline stage.

    Attributes:
        name: stage name (``data``, ``teacher``, ...).
        notebook: notebook file name inside ``notebooks_dir`` (a standard stage's: from the stage registry).
        params: parameters passed to papermill (besides the common ones).
        outputs: files or folders the stage must produce besides the declared outputs of a standard stage on its
            own notebook (``${run_dir}``-relative unless absolute; :meth:`RunConfig.stage_outputs` joins both).
        enabled: a disabled stage is not executed (state ``skipped``).
    """

    name: str
    notebook: str
    params: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    enabled: bool = True


@dataclass
class RunConfig:
    """The pipeline config (see the module docstring for the YAML form)."""

    seed: int = 0
    run_id: Optional[str] = None
    root: Optional[str] = None
    world_dir: str = "data/synthsitu/default-seed${seed}"
    cache_dir: str = "data/cache"
    reports_dir: str = "reports"
    notebooks_dir: str = "notebooks"
    description: str = ""
    teacher: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, StageConfig] = field(default_factory=dict)
    source: str = "<dict>"
    base: Optional[str] = field(default=None, compare=False)  # the config file's project (set by load)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "RunConfig":
        """Validate a raw mapping (as read from YAML) and build the config.

        Raises:
            ConfigError: unknown keys (listing the valid ones), wrong types.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the config must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; valid keys: {list(TOP_LEVEL_KEYS)}")
        seed = raw.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"{source}: 'seed' must be an integer, got {seed!r}")
        stages_raw = raw.get("stages") or {}
        if not isinstance(stages_raw, dict):
            raise ConfigError(f"{source}: 'stages' must be a mapping stage-name -> {{notebook, params}}")
        stages: dict[str, StageConfig] = {}
        for name, s in stages_raw.items():
            where = f"{source}: stages.{name}"
            if s is None:
                s = {}
            if not isinstance(s, dict):
                raise ConfigError(f"{where} must be a mapping with keys {list(STAGE_KEYS)}")
            bad = sorted(set(s) - set(STAGE_KEYS))
            if bad:
                raise ConfigError(f"{where}: unknown key(s) {bad}; valid keys: {list(STAGE_KEYS)}")
            notebook = s.get("notebook") or dict(stage_order()).get(name)
            if not notebook:
                raise ConfigError(f"{where}: no 'notebook' given and {name!r} is not a standard stage "
                                  f"({[n for n, _ in stage_order()]})")
            params = s.get("params") or {}
            if not isinstance(params, dict):
                raise ConfigError(f"{where}.params must be a mapping, got {type(params).__name__}")
            outputs = s.get("outputs") or []
            if isinstance(outputs, str):
                outputs = [outputs]
            enabled = s.get("enabled", True)
            if not isinstance(enabled, bool):
                raise ConfigError(f"{where}.enabled must be true or false, got {enabled!r}")
            stages[str(name)] = StageConfig(str(name), str(notebook), dict(params), [str(o) for o in outputs], enabled)
        for key in ("run_id", "root", "world_dir", "cache_dir", "reports_dir", "notebooks_dir"):
            v = raw.get(key)
            if v is not None and not isinstance(v, (str, int)):
                raise ConfigError(f"{source}: {key!r} must be a string, got {v!r}")
        teacher = raw.get("teacher") or {}
        if not isinstance(teacher, dict):
            raise ConfigError(f"{source}: 'teacher' must be a mapping of teacher config fields, got {teacher!r}")
        d = cls()
        out = cls(
            seed=seed,
            run_id=None if raw.get("run_id") is None else str(raw["run_id"]),
            root=raw.get("root"),
            world_dir=str(raw.get("world_dir", d.world_dir)),
            cache_dir=str(raw.get("cache_dir", d.cache_dir)),
            reports_dir=str(raw.get("reports_dir", d.reports_dir)),
            notebooks_dir=str(raw.get("notebooks_dir", d.notebooks_dir)),
            description=str(raw.get("description", "") or ""),
            teacher=dict(teacher),
            stages=stages,
            source=source,
        )
        out.teacher_config()  # validates the block
        return out

    @classmethod
    def load(cls, path: str | Path, overrides: Optional[list[str]] = None) -> "RunConfig":
        """Read a YAML config and apply ``--set`` overrides (``key.path=value``)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from e
        raw = apply_overrides(raw, overrides or [], source=str(p))
        out = cls.from_dict(raw, source=str(p))
        out.base = str(project_root_of(p))
        return out

    @classmethod
    def smoke(cls) -> "RunConfig":
        """The smoke pipeline (``configs/smoke.yaml``): the same stages in about 2 minutes."""
        return cls.load(PROJECT_ROOT / "configs" / "smoke.yaml")

    # -- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The YAML-able mapping (the inverse of :meth:`from_dict`)."""
        return {
            "seed": self.seed,
            "run_id": self.run_id,
            "root": self.root,
            "world_dir": self.world_dir,
            "cache_dir": self.cache_dir,
            "reports_dir": self.reports_dir,
            "notebooks_dir": self.notebooks_dir,
            "description": self.description,
            "teacher": copy.deepcopy(self.teacher),
            "stages": {n: {"notebook": s.notebook, "params": copy.deepcopy(s.params), "outputs": list(s.outputs),
                           "enabled": s.enabled} for n, s in self.stages.items()},
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config_hash(self) -> str:
        """Short digest of everything but ``run_id`` and ``description`` (names a run folder)."""
        d = self.to_dict()
        d.pop("run_id")
        d.pop("description")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]

    # -- teacher -------------------------------------------------------------------------------------------------
    def teacher_config(self) -> dict[str, Any]:
        """The resolved ``teacher:`` block: every ``TeacherConfig`` field but the folders (which each stage fills
        from its ``world_dir`` / ``cache_dir``), ``${seed}`` substituted.

        Raises:
            ConfigError: unknown keys or choices, naming the config file.
        """
        from ..teachers.backends import TeacherConfig

        raw = self.substitute(copy.deepcopy(self.teacher))
        if isinstance(raw.get("seed"), str) and raw["seed"].lstrip("-").isdigit():
            raw["seed"] = int(raw["seed"])
        for k in ("world_dir", "cache_dir"):
            if k in raw:
                raise ConfigError(f"{self.source}: teacher.{k}: set the run's top-level {k} instead")
        try:
            d = TeacherConfig.from_dict(raw, where=f"{self.source}: teacher").to_dict()
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from e
        d.pop("world_dir")
        d.pop("cache_dir")
        return d

    def teacher_fingerprint(self) -> str:
        """Identity of the run's teacher: its config (without device, threads, folders) and the world it is trained
        on; the same for every stage that uses the teacher."""
        from ..teachers.backends import TeacherConfig

        ident = TeacherConfig.from_dict(self.teacher_config()).identity()
        return fingerprint({"teacher": ident, "world_dir": str(self.path("world_dir"))})

    # -- paths ---------------------------------------------------------------------------------------------------
    def root_path(self) -> Path:
        """The base of relative paths: ``root``, else the project of the config file it was loaded from
        (:func:`project_root_of`), else the folder holding the ``mipd_kit`` package."""
        if self.root:
            return Path(self.root).resolve()
        return Path(self.base) if self.base else PROJECT_ROOT

    def substitute(self, value: Any, run_dir: Optional[Path] = None) -> Any:
        """Replace ``${seed}``, ``${root}``, ``${world_dir}``, ``${cache_dir}``, ``${run_dir}`` in strings
        (recursively in lists and dicts)."""
        if isinstance(value, dict):
            return {k: self.substitute(v, run_dir) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v, run_dir) for v in value]
        if not isinstance(value, str):
            return value
        env = {"seed": str(self.seed), "root": str(self.root_path())}
        if "${world_dir}" in value:
            env["world_dir"] = str(self.path("world_dir"))
        if "${cache_dir}" in value:
            env["cache_dir"] = str(self.path("cache_dir"))
        if run_dir is not None:
            env["run_dir"] = str(run_dir)

        def sub(m: re.Match) -> str:
            if m.group(1) not in env:
                raise ConfigError(f"{self.source}: unknown variable ${{{m.group(1)}}} in {value!r}; "
                                  f"known: {sorted(env)}")
            return env[m.group(1)]

        return _VAR.sub(sub, value)

    def path(self, key: str) -> Path:
        """Absolute path of ``world_dir`` / ``cache_dir`` / ``reports_dir`` / ``notebooks_dir``."""
        raw = str(getattr(self, key))
        env = {"seed": str(self.seed), "root": str(self.root_path())}

        def sub(m: re.Match) -> str:
            if m.group(1) not in env:
                raise ConfigError(f"{self.source}: {key}: only ${{seed}} and ${{root}} may be used here, "
                                  f"got {raw!r}")
            return env[m.group(1)]

        p = Path(_VAR.sub(sub, raw)).expanduser()
        if p.is_absolute():
            return p
        out = (self.root_path() / p).resolve()
        if key == "notebooks_dir" and not out.is_dir() and (PROJECT_ROOT / p).is_dir():
            return (PROJECT_ROOT / p).resolve()  # a project of one's own without notebooks: the package's
        return out

    def stage_outputs(self, name: str) -> list[str]:
        """The files a stage must leave behind: the declared outputs of a standard stage run on its own notebook
        (stage registry), then the config's own ``outputs``, without repeats (unsubstituted)."""
        st, spec = self.stages[name], stage_specs().get(name)
        declared = spec.outputs if spec is not None and st.notebook == spec.notebook else ()
        return list(dict.fromkeys([*declared, *st.outputs]))

    def stage_params(self, name: str, run_dir: Path, teacher: bool = False) -> dict[str, Any]:
        """All parameters papermill receives for a stage: the common ones, the run's teacher block as
        ``teacher_config`` when ``teacher`` (the notebook declares it), then the stage's own."""
        st = self.stages[name]
        params: dict[str, Any] = {
            "run_dir": str(run_dir),
            "world_dir": str(self.path("world_dir")),
            "cache_dir": str(self.path("cache_dir")),
            "seed": self.seed,
        }
        if teacher:
            params[TEACHER_PARAM] = self.teacher_config()
        params.update(self.substitute(copy.deepcopy(st.params), run_dir))
        return params


# -- overrides ---------------------------------------------------------------------------------------------------
def project_root_of(config_file: str | Path) -> Path:
    """The project a config file belongs to: the folder holding it, or that folder's parent when it is named
    ``configs`` (a project's ``configs/`` folder, as this repository's). Relative paths of a config without a
    ``root:`` key (``world_dir``, ``cache_dir``, ``reports_dir``, ``notebooks_dir``, ``${root}``) start there, so a
    run writes into the config's project wherever ``mipd`` is installed or started from."""
    folder = Path(config_file).resolve().parent
    return folder.parent if folder.name == "configs" else folder


def parse_set(expr: str) -> tuple[list[str], Any]:
    """Parse one ``--set`` expression ``a.b.c=value`` into (``["a","b","c"]``, YAML-typed value).

    ``epochs=3`` gives ``3`` (int), ``lr=1e-4`` a float, ``names=[a, b]`` a list, ``x=null`` None,
    ``tag="007"`` the string ``"007"``.

    Raises:
        ConfigError: no ``=``, an empty key or an empty path component.
    """
    if "=" not in expr:
        raise ConfigError(f"--set {expr!r}: expected key=value, e.g. stages.teacher.params.epochs=3")
    key, _, text = expr.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"--set {expr!r}: bad key {key!r} (dotted path like stages.teacher.params.epochs)")
    try:
        value = parse_value(text)
    except ConfigError as e:
        raise ConfigError(f"--set {expr!r}: {e}") from e
    return parts, value


def apply_overrides(raw: dict[str, Any], sets: list[str], source: str = "<config>") -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``--set`` expression applied (missing mappings are created)."""
    out = copy.deepcopy(raw) if raw else {}
    for expr in sets:
        parts, value = parse_set(expr)
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {expr!r}: {'.'.join(parts[:i + 1])} in {source} is "
                                  f"{type(nxt).__name__}, not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def fingerprint(obj: Any) -> str:
    """Stable sha256 of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
