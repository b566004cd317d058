"""Parameter checks before anything runs: one validator for every dataclass config, driven by its type hints and a
table of range rules by field name.

:func:`config_problems` lists every problem of a config (or of a mapping of values for a config class) at once:

- **types** from the dataclass annotations: ``int`` (not ``bool``), ``float`` (an ``int`` is accepted; finite),
  ``str``, ``bool``, ``list``, ``dict``, ``Optional[...]`` (``None`` allowed), ``Literal[...]`` (one of the values);
- **ranges** from :data:`RANGE_RULES` by field name (``epochs >= 1``, ``lr > 0``, ``batch_size >= 1``, ``top_k >=
  1``, ``concurrency >= 1``, ``rounds >= 1``, ``workers >= 1``...), and the fields with a meaning of their own:
  ``device`` (:data:`DEVICE_PATTERN`), ``seeds`` (a non-empty list of integers), ``api_key_env`` (a variable
  name, never a key: :func:`mipd_kit.redaction.check_api_key_env`), ``base_url`` (an ``http(s)://host`` URL);
- the same range rules inside the nested mappings of the dict fields a config lists in ``CHECKED_BLOCKS`` (a stage's
  ``generator:`` / ``judge:`` sampler blocks).

:func:`check_config` raises one ``ValueError`` naming them all; stage configs call it from ``__post_init__``, so the
notebooks, ``python -m mipd_kit.app.stages.<name>`` and ``mipd run`` (also ``--dry-run``) refuse the same values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import typing
from typing import Any, Literal, Mapping, Optional, Union
from urllib.parse import urlsplit

from .redaction import check_api_key_env

#: a device spec that ``machine.resolve_device`` understands (whether CUDA is present is checked when it runs)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")

#: (field-name pattern, operator, bound): the first matching rule applies; ``None`` values are never ranged
RANGE_RULES: tuple[tuple[str, str, float], ...] = (
    (r"(.*_)?epochs", ">=", 1),
    (r"(.*_)?rounds", ">=", 1),
    (r"(.*_)?batch(_size|_images)?", ">=", 1),
    (r"top_k|concurrency|workers|hidden|n_attention|check_n", ">=", 1),
    (r"(.*_)?lr|learning_rate", ">", 0),
    (r"kd_temperature", ">", 0),
    (r"temperature", ">=", 0),
    (r"top_p", ">", 0),
    (r"threads|jitter|max_images|max_unlabeled|per_verb|n_samples|study_bootstrap|w_.*|weight_decay|warmup.*",
     ">=", 0),
    (r"(.*_)?dropout|label_smoothing|unlabeled_ratio|max_failure_rate", "[0,1]", 0),
)

_OPS = {">=": lambda v, b: v >= b, ">": lambda v, b: v > b, "[0,1]": lambda v, b: 0 <= v <= 1}
_SAY = {">=": "must be >= {b:g}", ">": "must be > {b:g}", "[0,1]": "must be between 0 and 1"}


def _type_ok(v: Any, tp: Any) -> Optional[bool]:
    """Whether ``v`` has type ``tp``; None when the annotation is not one this validator checks."""
    origin = typing.get_origin(tp)
    if tp is Any or isinstance(tp, typing.TypeVar):
        return None
    if origin is Union or (sys.version_info >= (3, 10) and type(tp).__name__ == "UnionType"):
        results = [_type_ok(v, a) for a in typing.get_args(tp)]
        if any(r is None for r in results):
            return None
        return any(results)
    if origin is Literal:
        return v in typing.get_args(tp)
    if tp is type(None):
        return v is None
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if tp is str:
        return isinstance(v, str)
    base = origin or tp
    if base in (list, tuple, dict, set):
        return isinstance(v, base)
    return None


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    s = getattr(tp, "__name__", None) or str(tp)
    return s.replace("typing.", "")


def value_problems(name: str, v: Any) -> list[str]:
    """Range and meaning problems of one value by its field name (empty when fine or not ruled)."""
    if v is None:
        return []
    out: list[str] = []
    if name == "device":
        if not isinstance(v, str) or not DEVICE_PATTERN.fullmatch(v.strip().lower()):
            out.append(f"device must be auto, cpu, cuda or cuda:N, got {v!r}")
        return out
    if name == "api_key_env":
        try:
            check_api_key_env(v, name)
        except ValueError as e:
            out.append(str(e))
        return out
    if name == "base_url":
        if isinstance(v, str) and v:
            try:
                u = urlsplit(v)
                u.port  # noqa: B018 - raises ValueError on a bad port
                ok = u.scheme in ("http", "https") and bool(u.hostname)
            except ValueError:
                ok = False
            if not ok:
                out.append(f"base_url must be an http(s)://host[:port]/path URL, got an unparseable value"
                           f" ({len(v)} characters, not shown)")
        return out
    if name == "seeds":
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(s, int) and not isinstance(s, bool)
                                                               for s in v):
            out.append(f"seeds must be a non-empty list of integers, got {v!r}")
        return out
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return out
    for pattern, op, bound in RANGE_RULES:
        if re.fullmatch(pattern, name):
            if not (math.isfinite(v) and _OPS[op](v, bound)):
                say = "must be a positive integer" if (op, bound) == (">=", 1) and isinstance(v, int) else \
                    _SAY[op].format(b=bound)
                out.append(f"{name} {say}, got {v!r}")
            break
    return out


def config_problems(cfg: Any, values: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Every problem of a dataclass config: ``cfg`` an instance, or a dataclass type with ``values`` (a mapping of
    field -> value, e.g. a stage's params; fields not given are not checked)."""
    cls = cfg if isinstance(cfg, type) else type(cfg)
    if values is None:
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved: check ranges only
        hints = {}
    names = {f.name for f in dataclasses.fields(cls)}
    out: list[str] = []
    for name, v in values.items():
        if name not in names:
            continue
        tp = hints.get(name)
        ok = _type_ok(v, tp) if tp is not None else None
        if ok is False:
            out.append(f"{name} must be {_type_name(tp)}, got {v!r}"[:300])
            continue
        out += value_problems(name, v)
        if name in getattr(cls, "CHECKED_BLOCKS", ()) and isinstance(v, Mapping):
            out += block_problems(v, name)
    return out


def block_problems(block: Mapping[str, Any], where: str) -> list[str]:
    """The range and meaning problems (:func:`value_problems`) of every value in a nested mapping by its key, each
    named by its path (``generator.openai.concurrency must be ...``). A config class lists the dict fields checked
    this way in ``CHECKED_BLOCKS``."""
    out: list[str] = []
    for k, v in block.items():
        if isinstance(v, Mapping):
            out += block_problems(v, f"{where}.{k}")
        else:
            out += [f"{where}.{p}" for p in value_problems(str(k), v)]
    return out


def check_config(cfg: Any, where: str = "") -> None:
    """Raise one ``ValueError`` listing every problem of ``cfg`` (see :func:`config_problems`)."""
    problems = config_problems(cfg)
    if problems:
        prefix = f"{where}: " if where else ""
        raise ValueError(prefix + "; ".join(problems))
