"""Packaging contracts: environment.yml mirrors pyproject.toml, the CLI dispatches, the layout exists."""

from __future__ import annotations

import importlib
import re
import tomllib

import pytest
import yaml

from mipd_kit.app import cli


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_matches_pyproject(root):
    py = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in py["dependencies"]} | {_norm(r) for r in py["optional-dependencies"]["dev"]}
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    have = {_norm(r) for r in pip_block if not r.startswith("-e")}
    assert have == wanted, f"only in environment.yml: {sorted(have - wanted)}; only in pyproject.toml: {sorted(wanted - have)}"


def test_cli_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_cli_unknown_command_is_an_error(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_module_exists(name):
    module, func, _ = cli.COMMANDS[name]
    mod = importlib.import_module(module)
    assert callable(getattr(mod, func)), f"{module}.{func} is missing"


def test_layout(root):
    for p in ["mipd_kit", "notebooks", "data", "reports", "tests", "configs", "environment.yml", "README.md",
              "Makefile", ".ci/run", "pyproject.toml"]:
        assert (root / p).exists(), p


def test_machine_facts_name_what_decides_float_results():
    import json
    import subprocess
    import sys

    from mipd_kit.machine import machine_facts

    f = machine_facts()
    assert f["cpu"]["machine"] and f["torch"]["threads"] >= 1 and f["torch"]["cpu_capability"]
    assert f["zlib"] and f["pillow"] and "OMP_NUM_THREADS" in f["env"]
    out = subprocess.run([sys.executable, "-m", "mipd_kit.machine"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["torch"]["version"] == f["torch"]["version"]


def test_package_data_is_declared_for_every_asset(root):
    """Files under mipd_kit/**/assets ship in a wheel only if pyproject's package-data names them."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mipd_kit"]
    assets = [p.relative_to(root / "mipd_kit").as_posix() for p in (root / "mipd_kit").rglob("assets/*") if p.is_file()]
    assert assets and all(any(fnmatch.fnmatch(a, pat) for pat in patterns) for a in assets), (assets, patterns)


def _third_party_imports(pkg) -> dict[str, str]:
    """Top-level third-party modules imported anywhere under ``pkg`` -> one file importing it. Imports inside a
    ``try`` whose handler catches ``ImportError`` are optional (the code runs without them) and left out."""
    import ast
    import sys

    def optional(node: ast.AST, parents: dict) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.Try) and any(
                    h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers):
                return True
        return False

    found: dict[str, str] = {}
    for path in sorted(pkg.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "mipd_kit" or optional(node, parents):
                    continue
                found.setdefault(top, str(path.relative_to(pkg.parent)))
    return found


def test_every_imported_package_is_declared(root):
    """Each third-party module that ``mipd_kit/`` imports belongs to a distribution named in pyproject.toml (the
    dependencies or an extra; environment.yml equals them, see above), not only to something a declared package
    happens to pull in."""
    from importlib.metadata import packages_distributions

    py = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs = [*py["dependencies"], *(r for extra in py["optional-dependencies"].values() for r in extra)]
    declared = {re.split(r"[<>=!~\[; ]", _norm(r))[0] for r in reqs}
    dists = packages_distributions()
    imports = _third_party_imports(root / "mipd_kit")
    assert {"torch", "numpy", "PIL"} <= set(imports), sorted(imports)  # the walk sees the package's imports
    missing = {}
    for module, where in sorted(imports.items()):
        names = {_norm(d) for d in dists.get(module, [module])}
        if not names & declared:
            missing[module] = f"{where} (distribution {sorted(names)})"
    assert not missing, f"imported but not declared in pyproject.toml / environment.yml: {missing}"
