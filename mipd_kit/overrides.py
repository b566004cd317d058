"""``--set KEY=VALUE`` overrides: the one reader of their values, used by ``mipd run`` and every subcommand.

It sits in the lowest layer of the package so that library entry points (``mipd train-student``, ``mipd clhoi``)
and the stage app read overrides the same way without importing the app's run-config module.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import yaml


class ConfigError(ValueError):
    """A bad run config or override: the message names the file (or override) and the offending key."""


def parse_value(text: str) -> Any:
    """The one reader of ``--set`` values (``mipd run`` and every subcommand with ``--set``): YAML-typed.

    ``3`` -> int, ``1e-4`` / ``2.5`` -> float, ``true`` -> bool, ``null`` -> None, ``[a, b]`` -> list,
    ``{"w": 1}`` -> dict, ``"007"`` -> the string ``"007"``, anything else -> the string itself; an empty value is
    the empty string. JSON values read the same (YAML is a superset of JSON for them); unlike a JSON reader,
    YAML 1.1 reads ``yes`` / ``no`` / ``on`` / ``off`` as booleans (quote them for strings).

    Raises:
        ConfigError: the value is not valid YAML (e.g. an unclosed bracket).
    """
    if not text.strip():
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"value {text!r} is not valid YAML ({e})") from e
    # YAML reads 1e-4 as a string (YAML 1.1 wants a dot); people mean a float.
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()):
        value = float(value)
    return value


def split_set(kv: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, parsed VALUE)``; raises :class:`ConfigError` without ``=``."""
    key, sep, value = kv.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {kv!r}: expected KEY=VALUE")
    return key.strip(), parse_value(value)


def apply_sets(fields: dict[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to a flat dict of config fields (a copy is returned).

    Raises:
        ConfigError: an override without ``=``, with a key that is not a field (the valid keys are named), or with
            a value that is not valid YAML.
    """
    out = dict(fields)
    for kv in sets:
        key, value = split_set(kv)
        if key not in out:
            raise ConfigError(f"--set {kv!r}: unknown key {key!r}; valid keys: {sorted(out)}")
        out[key] = value
    return out


def known_fields(config: type, d: dict[str, Any]) -> dict[str, Any]:
    """``d`` checked against the fields of the dataclass ``config`` (the one check behind every ``from_dict``).

    Raises:
        ConfigError: ``d`` names keys that are not fields (the valid ones are listed).
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(config)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown {config.__name__} keys {sorted(unknown)}; valid: {sorted(names)}")
    return dict(d)
