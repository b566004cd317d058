"""The one notebook builder: ``python notebooks/build.py`` (``--check``: only report what would change, exit 1 then).

For every ``notebooks/NN_*.ipynb``:

* the notebook of a stage of the stage registry (``mipd_kit.app.registry``) gets its ``parameters`` cell generated from
  ``Config.smoke()`` (one line per field: name, type, smoke default, the field's help from the Config docstring),
  so a notebook parameter cannot drift from its config field;
* cell ids become ``c00``, ``c01``, ... and outputs / execution counts are cleared,

so building twice gives the same bytes (and the same stage fingerprint). The other cells are the notebook's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import sys
import typing
from pathlib import Path

import nbformat as nbf

from mipd_kit.app.registry import notebook_modules

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"

#: notebook -> the stage module whose Config generates its parameters cell (from the stage registry).
GENERATED: dict[str, str] = notebook_modules()

#: the common parameters every notebook declares first (the runner injects absolute paths).
COMMON = [
    ("run_dir", "str", '"../reports/nb-smoke"', "run folder (metrics.json, figures/, ...)"),
    ("world_dir", "str", '"../data/synthsitu/smoke-seed0"', "the SynthSitu world (or a real dataset folder)"),
    ("cache_dir", "str", '"../data/cache"', "checkpoints and feature caches"),
]
#: optional types as quoted annotations: papermill's parameter parser reads neither ``int | None`` nor an unquoted
#: ``Optional[int]`` (which the kernel would also evaluate without the import)
_TYPES = {f"Optional[{t}]": f'"Optional[{t}]"' for t in ("int", "float", "str", "list")}


def field_help(config: type) -> dict[str, str]:
    """Field -> its entry in the Config docstring's ``Attributes:`` section, on one line (``a / b: text``
    documents several fields)."""
    doc = config.__doc__ or ""
    body = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    entries: list[tuple[list[str], str]] = []
    for line in body.splitlines():
        m = re.match(r"^ {8}(\w+(?: / \w+)*): (.*)$", line)
        if m:
            entries.append((m.group(1).split(" / "), m.group(2).strip()))
        elif entries and line.strip():
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
    return {n: text.rstrip(".") for names, text in entries for n in names}


def parameters_source(module: str) -> str:
    """The parameters cell of a stage: the common parameters, then every Config field with its smoke default."""
    mod = importlib.import_module(module)
    cfg = mod.Config.smoke()
    helps = field_help(mod.Config)
    hints = typing.get_type_hints(mod.Config)
    lines = [f"{n}: {t} = {v}  # {h}" for n, t, v, h in COMMON]
    for f in dataclasses.fields(cfg):
        if f.name in ("world_dir", "cache_dir"):
            continue
        t = getattr(hints[f.name], "__name__", None) or str(hints[f.name])
        t = _TYPES.get(str(f.type), t)
        # papermill skips (and then calls unknown) a parameter whose line holds a second "=": none in the help
        h = re.sub(r"\s*=\s*", ": ", helps.get(f.name, ""))
        lines.append(f"{f.name}: {t} = {getattr(cfg, f.name)!r}  # {h}".rstrip())
    return "\n".join(lines)


def build(path: Path) -> nbf.NotebookNode:
    """The notebook as the builder writes it (see the module docstring)."""
    nb = nbf.read(str(path), as_version=4)
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if path.name in GENERATED and "parameters" in cell.metadata.get("tags", []):
                cell.source = parameters_source(GENERATED[path.name])
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a notebook would change")
    a = ap.parse_args(argv)
    changed = []
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        text = nbf.writes(build(path)) + "\n"
        if path.read_text() != text:
            changed.append(path.name)
            if not a.check:
                path.write_text(text)
    if changed:
        print(("would change: " if a.check else "rebuilt: ") + ", ".join(changed))
    return 1 if (a.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
