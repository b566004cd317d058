"""The README and docs/: short README, result tables generated from the committed run (not typed in), links that
resolve, and no citation of documents outside the repository."""

from __future__ import annotations

import re

from mipd_kit.app.analysis import readme_tables
from mipd_kit.metrics import read_rows

#: linked from the README, written on other branches of the same change (remove once merged)


def _generated(root, report: str = "latest-default") -> str:
    return readme_tables(read_rows(root / "reports" / report / "metrics.json"))


def test_readme_is_short_and_starts_with_the_two_commands(root):
    text = (root / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move reference material to docs/"
    first_screen = "\n".join(lines[:12])
    assert "make reproduce" in first_screen and "make test" in first_screen


def test_results_doc_holds_exactly_the_generated_tables(root):
    """docs/results.md holds the tables of the default run (make reproduce) and of the full-size run."""
    text = (root / "docs" / "results.md").read_text()
    assert _generated(root) in text
    assert _generated(root, "latest-full") in text


def test_readme_table_rows_are_copied_from_the_generated_table(root):
    """The README's rows come from the default run's generated table or from the study's report, verbatim."""
    generated = set(_generated(root).splitlines())
    study = set((root / "reports" / "study" / "study.md").read_text().splitlines())
    section = (root / "README.md").read_text().split("## What you get", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert sum(line in generated for line in rows) >= 4, "the README shows a short results table"
    for line in rows:
        assert line in generated or line in study, \
            f"README row neither in the table generated from reports/latest-default nor in reports/study/study.md: {line}"


def test_relative_links_resolve(root):
    files = [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))]
    for f in files:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", f.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path = (f.parent / target).resolve()
            assert path.exists(), f"{f.relative_to(root)}: broken link {target}"


def test_nothing_cites_documents_outside_the_repository(root):
    """Code, docstrings, configs, notebooks and docs state facts instead of citing design notes kept elsewhere
    (run folders under reports/ keep their executed notebooks as they were)."""
    pattern = re.compile(r"DESIGN\.md|STYLE\.md|TEAM\.md")
    files = [root / n for n in ("README.md", "CONTRIBUTING.md", "Makefile", "pyproject.toml", "environment.yml")]
    for folder in ("mipd_kit", "tests", "docs", "configs", "notebooks", "benchmarks"):
        files += [p for p in (root / folder).rglob("*")
                  if p.suffix in (".py", ".md", ".yaml", ".yml", ".ipynb") and ".ipynb_checkpoints" not in p.parts]
    hits = [f"{f.relative_to(root)}:{i + 1}" for f in files if f.exists()
            for i, line in enumerate(f.read_text(errors="replace").splitlines()) if pattern.search(line)]
    assert not hits, f"citations of files that are not in the repository: {hits}"
