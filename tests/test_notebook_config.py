"""Every parameter of a stage notebook reaches the stage: the notebook's ``stage.Config(...)`` call passes every
field of the stage's ``Config`` (its parameters cell is generated from those fields by notebooks/build.py, so a field
left out of the call is a parameter that is silently ignored -- the default run's rationale controls were, once)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))

import build  # noqa: E402


def _config_calls(nb: Path) -> list[ast.Call]:
    calls = []
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] != "code" or "# Parameters" in "".join(cell["source"])[:20]:
            continue
        src = "\n".join(l for l in "".join(cell["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Config"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "stage"):
                calls.append(node)
    return calls


@pytest.mark.parametrize("notebook,module", sorted(build.GENERATED.items()))
def test_the_stage_config_call_passes_every_field(notebook, module):
    fields = {f.name for f in dataclasses.fields(importlib.import_module(module).Config)}
    calls = _config_calls(ROOT / "notebooks" / notebook)
    assert calls, f"{notebook}: no stage.Config(...) call"
    for call in calls:
        if any(k.arg is None for k in call.keywords):  # **kwargs: passes whatever it is given
            continue
        missing = fields - {k.arg for k in call.keywords}
        assert not missing, f"{notebook}: stage.Config(...) ignores the parameters {sorted(missing)}"


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_papermill_reads_every_declared_parameter(notebook):
    """papermill's own parser (``PythonTranslator.inspect``, what ``mipd run`` meets) finds every parameter the cell
    assigns: a line it cannot parse (a second "=" in a help comment) was reported as "Passed unknown parameter"."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{notebook}: {len(cells)} cells tagged parameters"
    body = ast.parse(cells[0].source).body
    declared = {t.target.id for t in body if isinstance(t, ast.AnnAssign)}
    declared |= {n.id for t in body if isinstance(t, ast.Assign) for n in t.targets if isinstance(n, ast.Name)}
    parsed = {p.name for p in PythonTranslator.inspect(cells[0])}
    assert declared and parsed == declared, f"{notebook}: papermill misses {sorted(declared - parsed)}"
