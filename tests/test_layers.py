"""The library's layers and its freedom from import cycles, as declared in pyproject.toml ``[tool.importlinter]``.

``lint-imports`` reads every module of ``mipd_kit`` (imports inside functions included) and checks two contracts:
lower layers never import higher ones, and no package has an import cycle among its modules.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def _contracts(root) -> list[dict]:
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept(root):
    # A subprocess with this checkout first on the path: the graph is built from these files, not an installed copy.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    report = res.stdout + res.stderr
    assert res.returncode == 0, f"lint-imports found broken contracts:\n{report[-6000:]}"
    assert "2 kept, 0 broken" in report, report[-2000:]


def test_every_top_level_module_is_in_a_layer(root):
    """A new package or module of mipd_kit must be placed in the layer order, not slip past the contract."""
    layers = next(c for c in _contracts(root) if c["type"] == "layers")["layers"]
    named = {m.strip("() ") for layer in layers for m in re.split(r"[|:]", layer)}
    pkg = root / "mipd_kit"
    have = {f"mipd_kit.{p.stem}" for p in pkg.glob("*.py") if p.stem != "__init__"}
    have |= {f"mipd_kit.{p.name}" for p in pkg.iterdir() if (p / "__init__.py").exists()}
    assert have <= named, f"modules in no layer of pyproject.toml [tool.importlinter]: {sorted(have - named)}"


def test_no_cycle_contract_covers_the_whole_package(root):
    acyclic = [c for c in _contracts(root) if c["type"] == "acyclic_siblings"]
    assert acyclic and "mipd_kit" in acyclic[0]["ancestors"]
