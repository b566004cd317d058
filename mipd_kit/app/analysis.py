"""Analysis of a run folder: results tables, the rare-bias picture, unseen-verb confusion, grounding by role,
resources.

Everything notebook ``06_analysis`` shows comes from here (logic lives in the package, not in notebooks); the pure
analyses over cases are the library's (:mod:`mipd_kit.viz.analyses`):

- :func:`render_results_md` -- pure: metrics rows (``metrics.json``, see :mod:`mipd_kit.metrics`) + figures + run status ->
  the markdown of ``results.md``: GSR tables per setting (teacher / baseline / mipd, then the ablations ``mipd-*``)
  by seen / rare / unseen (+ unseen kinds), HOI tables, JRG and bench rows, embedded figures (relative PNG links).
  Seeds are aggregated as ``mean ± sample std (n)``.
- :func:`run_analysis` -- reads a run folder, draws the figures into ``run_dir/figures/``, records what was absent
  in ``run_dir/analysis.json`` and writes ``results.md``; it degrades gracefully, naming each missing input and the
  stage that writes it.

The analysis stays one file (about 670 lines, most of it plotting): ``results.md``'s tables and the figures it
embeds are written together by :func:`run_analysis`, and notebook ``06_analysis`` imports both from here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..fileio import atomic_write_text
from ..metrics import MetricRow, SeedStats, aggregate_seeds, group_seeds, merge_rows, read_rows, seed_stats
from ..student.report import MODEL_ORDER as STUDENT_MODEL_ORDER
from ..student.report import SPLITS as STUDENT_SPLITS
from ..viz.analyses import (grounding_by_role, per_verb_accuracy, prediction_concentration, primitive_neighbours,
                            unseen_confusion)
from ..viz.cases import Case, build_cases, load_situations, load_split

MAIN_MODELS: tuple[str, ...] = ("teacher", "baseline", "mipd")
HOI_MODELS: tuple[str, ...] = ("teacher", "spatial_prior", "icn", "clhoi")
GSR_SPLITS: tuple[str, ...] = ("seen", "rare", "unseen", "unseen_compositional", "unseen_novel", "all")
GSR_METRICS: tuple[str, ...] = ("verb", "value", "value_all", "grnd_value", "grnd_value_all")
GSR_SETTINGS: tuple[str, ...] = ("top1", "top5", "gt_verb")
HOI_SPLITS: tuple[str, ...] = ("full", "rare", "non_rare", "seen", "unseen")
ANALYSIS_FILE = "analysis.json"


# -- results.md ----------------------------------------------------------------------------------------------------
#: an aggregated number (mean over seeds, sample std, number of seeds); the one type of :mod:`mipd_kit.metrics`
Cell = SeedStats


def aggregate(rows: Iterable[MetricRow]) -> dict[tuple, Cell]:
    """Key without the seed -> :class:`Cell`. Per-seed rows are aggregated (:func:`mipd_kit.metrics.seed_stats`);
    rows with ``seed=None`` are taken as they are, except the ``*_mean`` / ``*_std`` rows of seed aggregation, which
    are recomputed from the seeds."""
    rows = list(rows)
    out = {(r.task, r.model, r.split, r.setting, r.metric, r.mean): Cell(r.value, 0.0, 1)
           for r in rows if r.seed is None and not r.metric.endswith(("_mean", "_std"))}
    for k, vals in group_seeds(rows).items():
        out[k] = seed_stats(vals)
    return out


def model_sort_key(model: str, order: Sequence[str] = MAIN_MODELS) -> tuple:
    """teacher, baseline, mipd first, then the ablations ``mipd-*``, then the rest, alphabetically."""
    if model in order:
        return (0, order.index(model), model)
    if model.startswith("mipd-"):
        return (1, 0, model)
    return (2, 0, model)


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    from ..metrics import markdown_table

    return markdown_table(header, body).splitlines() + [""]


#: per-model statistics of the predictions, not accuracies: their own section (:func:`_concentration_section`)
CONCENTRATION_METRICS: tuple[str, ...] = ("mode_share", "verbs_used")


def _gsr_tables(cells: dict[tuple, Cell]) -> list[str]:
    keys = [k for k in cells if k[0] == "gsr" and k[4] not in CONCENTRATION_METRICS]
    if not keys:
        return []
    out = ["## Grounded situation recognition (Ov-GSR)", "",
           "Percent. Splits: seen / rare (few training labels) / unseen (never labelled; SynthSitu also splits them "
           "into compositional and novel). Seeds: mean ± sample std (n seeds).", ""]
    settings = [s for s in GSR_SETTINGS if any(k[3] == s for k in keys)] + sorted(
        {k[3] for k in keys} - set(GSR_SETTINGS))
    means = [m for m in ("image", "verb", None) if any(k[5] == m for k in keys)]
    for mean in means:
        for setting in settings:
            sub = [k for k in keys if k[3] == setting and k[5] == mean]
            if not sub:
                continue
            metrics = [m for m in GSR_METRICS if any(k[4] == m for k in sub)] + sorted(
                {k[4] for k in sub} - set(GSR_METRICS))
            splits = [s for s in GSR_SPLITS if any(k[2] == s for k in sub)] + sorted(
                {k[2] for k in sub} - set(GSR_SPLITS))
            models = sorted({k[1] for k in sub}, key=model_sort_key)
            mean_txt = {"image": "per-image means", "verb": "per-verb means", None: "means"}[mean]
            for title, group in (("main", [m for m in models if not m.startswith("mipd-")]),
                                 ("ablations", ([m for m in models if m == "mipd"]
                                                + [m for m in models if m.startswith("mipd-")]))):
                if title == "ablations" and not any(m.startswith("mipd-") for m in group):
                    continue
                body = []
                for model in group:
                    for split in splits:
                        row = [model, split] + [cells[k].fmt() if (k := ("gsr", model, split, setting, m, mean))
                                                in cells else "–" for m in metrics]
                        if any(c != "–" for c in row[2:]):
                            body.append(row)
                if body:
                    out += [f"### {setting}, {mean_txt} — {title}", ""]
                    out += _md_table(["model", "split", *metrics], body)
    return out


def _hoi_tables(cells: dict[tuple, Cell]) -> list[str]:
    keys = [k for k in cells if k[0] == "hoi"]
    if not keys:
        return []
    out = ["## HOI detection (CL-HOI)", "", "mAP in percent (HICO-DET protocol; see docs/evaluation.md).", ""]
    metrics = sorted({k[4] for k in keys}, key=lambda m: (m != "map", m))
    for metric in metrics:
        sub = [k for k in keys if k[4] == metric]
        splits = [s for s in HOI_SPLITS if any(k[2] == s for k in sub)] + sorted(
            {k[2] for k in sub} - set(HOI_SPLITS))
        settings = sorted({k[3] for k in sub}, key=lambda s: (s != "default", s))
        models = sorted({k[1] for k in sub}, key=lambda m: model_sort_key(m, HOI_MODELS))
        body = []
        for setting in settings:
            for model in models:
                row = [model, setting] + [_first(cells, ("hoi", model, s, setting, metric)) for s in splits]
                if any(c != "–" for c in row[2:]):
                    body.append(row)
        out += [f"### {metric}", ""] + _md_table(["model", "setting", *splits], body)
    return out


def _first(cells: dict[tuple, Cell], key: tuple, digits: int = 2) -> str:
    for mean in (None, "image", "verb"):
        if (*key, mean) in cells:
            return cells[(*key, mean)].fmt(digits)
    return "–"


def _concentration_section(cells: dict[tuple, Cell], verbs: Optional[Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Top-1 verb concentration per GSR model: share of test images given its most predicted verb and the distinct
    top-1 verbs (mean ± std over seeds), and that verb per seed when ``verbs`` (``analysis.json``) has it."""
    models = sorted({k[1] for k in cells if k[0] == "gsr" and k[4] == "mode_share"}, key=model_sort_key)
    if not models:
        return []
    verbs = verbs or {}
    body = []
    for m in models:
        named = [f"{v['verb']} ({k.rpartition('-seed')[2]})" for k, v in sorted(verbs.items())
                 if k.rpartition("-seed")[0] == m]
        body.append([m] + [cells[k].fmt() if (k := ("gsr", m, "all", "top1", x, None)) in cells else "–"
                           for x in CONCENTRATION_METRICS] + [", ".join(named) or "–"])
    return ["## Top-1 verb concentration (test)", "",
            "How many test images get each model's most predicted top-1 verb (percent), and how many distinct verbs "
            "it predicts at top-1. SynthSitu spreads its test images evenly over its test verbs, so a large share "
            "means the open-vocabulary head has collapsed onto one hub verb; an accuracy gain on that verb's split is "
            "then the collapse, not transfer.", ""] + _md_table(["model", *CONCENTRATION_METRICS, "verb (seed)"], body) + [""]


def _ingredients_section(rows: Sequence[MetricRow]) -> list[str]:
    """The ingredients table of the GSR rows present (``mipd_kit.student.ingredients.ROWS``)."""
    from ..student.ingredients import ROWS, markdown_table
    present = [m for m in ROWS if any(r.task == "gsr" and r.model == m for r in rows)]
    return ["## Rows and their ingredients", "", markdown_table(present), ""] if present else []


def _study_section(study: Sequence[MetricRow]) -> list[str]:
    """Paired differences (task ``*-study``) with their 95% intervals."""
    from ..student.report import study_table
    if not study:
        return []
    return ["## Paired differences (95% paired bootstrap interval)", "", study_table(study), ""]


def _other_tables(cells: dict[tuple, Cell]) -> list[str]:
    keys = sorted((k for k in cells if k[0] not in ("gsr", "hoi")), key=lambda k: tuple(str(x) for x in k))
    if not keys:
        return []
    out = []
    for task in sorted({k[0] for k in keys}):
        title = {"jrg": "Rationale generation and judging (JRG)", "bench": "Resources (benchmarks)"}.get(task, task)
        body = [[k[1], k[2], k[3], k[4], k[5] or "", cells[k].fmt(3)] for k in keys if k[0] == task]
        out += [f"## {title}", ""] + _md_table(["model", "split", "setting", "metric", "mean", "value"], body)
    return out


#: metric tasks measured outside a run (``reports/bench``): never part of a run's report.
OUTSIDE_TASKS: tuple[str, ...] = ("bench",)


def render_results_md(rows: Iterable[MetricRow], figures: Sequence[str] = (), status: Optional[Mapping] = None,
                      notes: Sequence[str] = (), title: Optional[str] = None,
                      concentration: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """The markdown of ``results.md`` (pure).

    Args:
        rows: metric rows (any tasks; rows of :data:`OUTSIDE_TASKS` are left out, with a note).
        figures: figure paths relative to the run folder (``figures/x.png``), embedded in this order.
        status: the run's ``status.json`` mapping (the config's description, shown under the title; state, failed
            stage and error, per-stage states).
        notes: remarks, e.g. which inputs were absent.
        title: heading (default: ``Run <run_id>``).
        concentration: ``{"<model>-seed<k>": {"verb": ...}}`` (``analysis.json``): the most predicted verbs.
    """
    status = status or {}
    run_id = status.get("run_id", "")
    lines = [f"# {title or ('Run ' + run_id if run_id else 'Results')}", ""]
    if status.get("description"):  # the run config's own words, e.g. that its weights are random
        lines += [f"> {status['description']}", ""]
    state = status.get("state")
    if state:
        lines.append(f"**State: {state}**" + (f" — failed at stage `{status.get('failed_stage')}`: "
                                              f"{status.get('error')}" if state == "failed" else ""))
        lines.append("")
    rows = list(rows)
    bench = [r for r in rows if r.task in OUTSIDE_TASKS]
    rows = [r for r in rows if r.task not in OUTSIDE_TASKS]
    study = [r for r in rows if r.task.endswith("-study")]
    cells = aggregate(r for r in rows if not r.task.endswith("-study"))
    # the study's tables first (main rows, paired differences), then the rest, then how the run went
    tables = _gsr_tables(cells) + _study_section(study) + _hoi_tables(cells) + _ingredients_section(rows) \
        + _concentration_section(cells, concentration) + _other_tables(cells)
    lines += tables if tables else ["_No metrics yet (metrics.json is empty or absent)._", ""]
    stages = status.get("stages") or {}
    if stages:
        body = [[n, s.get("state", "pending"), s.get("reason", "") or (s.get("error") or "")[:120],
                 f"{s['seconds']:.1f}" if isinstance(s.get("seconds"), (int, float)) else "", s.get("notebook", "")]
                for n, s in stages.items()]
        lines += ["## Stages", ""] + _md_table(["stage", "state", "note", "seconds", "notebook"], body)
    if bench:
        notes = [*notes, f"{len(bench)} benchmark rows (task `bench`, measured outside this run: `reports/bench`) "
                 "are left out of this report; the resources figure draws them."]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            name = Path(f).stem.replace("_", " ")
            lines += [f"### {name}", "", f"![{name}]({Path(f).as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"


def weights_note(env: Mapping) -> Optional[str]:
    """The results.md note on which teacher weights a run used, from its ``environment.json`` (pure); None when
    the environment does not say."""
    w = (env.get("weights") or {}).get("teacher") if isinstance(env.get("weights"), Mapping) else None
    if not isinstance(w, Mapping):
        return None
    if w.get("source") == "release":
        sha = ", ".join(f"{f} {h[:12]}" for f, h in sorted((w.get("sha256") or {}).items()))
        return f"Teacher weights: released `{w.get('name')}` ({w.get('dtype')}; sha256 {sha})."
    if w.get("source") == "trained":
        return f"Teacher weights: trained on this run's world ({w.get('reason')})."
    return f"Teacher weights: backend `{w.get('source')}`" + (f", `{w['model']}`" if w.get("model") else "") + "."


def write_results(run_dir: str | os.PathLike, status: Optional[Mapping] = None) -> Path:
    """Render ``run_dir/results.md`` from ``metrics.json``, ``figures/*.png``, ``status.json``, the notes in
    ``analysis.json`` and the teacher weights of ``environment.json`` (atomically); returns its path."""
    run = Path(run_dir)
    if status is None:
        sp = run / "status.json"
        status = json.loads(sp.read_text()) if sp.is_file() else {"run_id": run.name}
    info = json.loads((run / ANALYSIS_FILE).read_text()) if (run / ANALYSIS_FILE).is_file() else {}
    figs = sorted(p.relative_to(run).as_posix() for p in (run / "figures").glob("*.png")) \
        if (run / "figures").is_dir() else []
    order = info.get("figures", [])
    figs = [f for f in order if f in figs] + [f for f in figs if f not in order]
    notes = list(info.get("notes", []))
    env = json.loads((run / "environment.json").read_text()) if (run / "environment.json").is_file() else {}
    note = weights_note(env) if isinstance(env, dict) else None
    notes += [note] if note else []
    text = render_results_md(read_rows(run / "metrics.json"), figs, status, notes,
                             concentration=info.get("concentration"))
    out = run / "results.md"
    atomic_write_text(out, text)
    return out


# -- run analysis ------------------------------------------------------------------------------------------------
def read_bench(bench_dir: str | os.PathLike) -> list[MetricRow]:
    """All rows of ``bench_dir/*.json`` (tidy rows, task ``bench``)."""
    rows: list[MetricRow] = []
    d = Path(bench_dir)
    if d.is_dir():
        for p in sorted(d.glob("*.json")):
            rows += read_rows(p)
    return rows


# -- the notebook's driver ------------------------------------------------------------------------------------------
@dataclass
class AnalysisResult:
    """What :func:`run_analysis` produced."""

    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    results_md: Optional[Path] = None


def concentration_rows(run: Path) -> tuple[list[MetricRow], dict[str, dict[str, Any]], list[str]]:
    """Rows ``task gsr, split all, setting top1, metric mode_share | verbs_used, mean null`` for every GSR
    prediction file of the run (:func:`prediction_concentration`), ``{"<model>-seed<k>": {verb, share,
    verbs_used}}``, and a note naming each file left out (unreadable, or no image with a predicted verb)."""
    rows: list[MetricRow] = []
    table: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for (model, seed), p in sorted(_pred_files(run).items()):
        try:
            verb, share, used = prediction_concentration(json.loads(p.read_text()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
            notes.append(f"{p}: not a readable GSR prediction file ({e}); left out of the top-1 concentration table")
            continue
        rows += [MetricRow("gsr", model, seed, "all", "top1", "mode_share", None, share),
                 MetricRow("gsr", model, seed, "all", "top1", "verbs_used", None, float(used))]
        table[f"{model}-seed{seed}"] = {"verb": verb, "share": round(share, 2), "verbs_used": used}
    return rows, table, notes


def _pred_files(run: Path) -> dict[tuple[str, int], Path]:
    """GSR prediction files ``predictions/<model>-seed<k>.json`` (the HOI ``hoi-*`` / ``vcoco-*`` files left out)."""
    out = {}
    for p in sorted((run / "predictions").glob("*-seed*.json")) if (run / "predictions").is_dir() else []:
        if p.name.startswith(("hoi-", "vcoco-")):
            continue
        model, _, seed = p.stem.rpartition("-seed")
        if seed.isdigit():
            out[(model, int(seed))] = p
    return out


def _find_primitives(meta: Mapping[str, Any], verbs: Iterable[str]) -> dict[str, Mapping[str, Any]]:
    verbs = set(verbs)
    for key in ("verb_primitives", "primitives", "verbs"):
        d = meta.get(key)
        if isinstance(d, Mapping) and verbs & set(d) and all(isinstance(v, Mapping) for v in d.values()):
            return dict(d)
    return {}


def _savefig(fig: Any, run: Path, name: str, out: AnalysisResult) -> None:
    (run / "figures").mkdir(parents=True, exist_ok=True)
    p = run / "figures" / f"{name}.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    out.figures.append(f"figures/{name}.png")


def run_analysis(run_dir: str | os.PathLike, world_dir: str | os.PathLike,
                 bench_dir: Optional[str | os.PathLike] = None, models: Sequence[str] = ("baseline", "mipd"),
                 test_file: str = "test.json", train_file: str = "train.json") -> AnalysisResult:
    """Draw every figure of the run into ``run_dir/figures``, aggregate seeds into ``metrics.json``, note what was
    absent (``analysis.json``) and write ``results.md``.

    Args:
        run_dir: the run folder.
        world_dir: the data folder (``test.json``, ``train.json``, ``ov_split.json``, ``meta.json``).
        bench_dir: folder of benchmark JSONs (``reports/bench``); None or absent: no resource section.
        models: GSR models drawn in the per-verb and confusion figures (those with predictions).
    """
    import matplotlib.pyplot as plt  # the caller's backend: inline in a notebook, Agg without a display

    run, world = Path(run_dir), Path(world_dir)
    res = AnalysisResult()
    split, train_counts, cases_by_model = _read_inputs(run, world, res, models, test_file, train_file)
    _rare_bias_figure(plt, run, res, cases_by_model, train_counts, split)
    _confusion_figure(plt, run, world, res, cases_by_model, split)
    _grounding_figure(plt, run, res, cases_by_model)
    _resources_figure(plt, run, res, bench_dir)
    info = {"figures": res.figures, "notes": res.notes, "concentration": res.tables.get("concentration", {})}
    from mipd_kit.fileio import write_json
    write_json(run / ANALYSIS_FILE, info)
    res.results_md = write_results(run)
    return res


def _read_inputs(run: Path, world: Path, res: AnalysisResult, models: Sequence[str], test_file: str,
                 train_file: str) -> tuple[Any, dict[str, int], dict[str, list[Case]]]:
    """Merge the concentration rows and the seed aggregates into ``metrics.json``, then read the OV split, the
    training counts per verb and the cases of each shown model (noting every absent input)."""
    note = res.notes.append

    # metrics: how concentrated each GSR model's top-1 verbs are (rows of its own), then seed aggregates
    conc_rows, conc_table, conc_notes = concentration_rows(run)
    for n in conc_notes:
        note(n)
    if conc_rows:
        merge_rows(run / "metrics.json", conc_rows)
        res.tables["concentration"] = conc_table
    rows = read_rows(run / "metrics.json")
    if rows:
        agg = aggregate_seeds([r for r in rows if r.seed is not None])
        if agg:
            rows = merge_rows(run / "metrics.json", agg)
    else:
        note(f"no metrics: {run / 'metrics.json'} is absent or empty (written by the evaluation cells of "
             "05_distillation and 07_cl_hoi)")

    split_path = run / "ov_split.json" if (run / "ov_split.json").is_file() else world / "ov_split.json"
    split = load_split(split_path) if split_path.is_file() else None
    if split is None:
        note(f"no ov split ({run / 'ov_split.json'} nor {world / 'ov_split.json'}; written by 00_data): "
             "figures are not broken down by seen / rare / unseen")
    gt = load_situations(world / test_file) if (world / test_file).is_file() else None
    if gt is None:
        note(f"no ground truth {world / test_file} (written by 00_data): per-verb, confusion and grounding "
             "figures skipped")
    train_counts: dict[str, int] = {}
    if (world / train_file).is_file():
        for s in load_situations(world / train_file).values():
            train_counts[s.verb] = train_counts.get(s.verb, 0) + 1
    elif split is not None and getattr(split, "counts", None):
        note(f"{world / train_file} absent: training counts are not known per verb")
    pred_files = _pred_files(run)
    if not pred_files:
        note(f"no GSR predictions in {run / 'predictions'} (written by 05_distillation): per-verb, confusion and "
             "grounding figures skipped")
    present = sorted({m for m, _ in pred_files})
    shown = [m for m in models if m in present] or present[:2]
    missing_models = [m for m in models if m not in present]
    if pred_files and missing_models:
        note(f"no predictions for model(s) {missing_models} (have {present})")

    cases_by_model: dict[str, list[Case]] = {}
    if gt is not None:
        for m in shown:
            cs: list[Case] = []
            for (model, seed), p in sorted(pred_files.items()):
                if model == m:
                    cs += build_cases(gt, json.loads(p.read_text()), split)
            cases_by_model[m] = cs

    return split, train_counts, cases_by_model


def _rare_bias_figure(plt: Any, run: Path, res: AnalysisResult, cases_by_model: dict[str, list[Case]],
                      train_counts: dict[str, int], split: Any) -> None:
    """Figure 1, rare bias: per-verb accuracy vs training-set size (``rare_bias``, table ``per_verb``)."""
    tags = (lambda v: _tags(split, v))

    # 1. rare bias: per-verb accuracy vs training-set size
    if cases_by_model:
        fig, axes = plt.subplots(1, len(cases_by_model), figsize=(5 * len(cases_by_model), 4), squeeze=False,
                                 layout="constrained")
        colours = {"seen": "tab:blue", "rare": "tab:orange", "unseen": "tab:red", "unknown": "tab:gray",
                   "all": "tab:gray"}
        table = {}
        for ax, (m, cs) in zip(axes[0], cases_by_model.items()):
            acc = per_verb_accuracy(cs)
            table[m] = {v: {"train": train_counts.get(v, 0), "test": n, "acc": 100.0 * k / n}
                        for v, (n, k) in acc.items()}
            for grp in ("seen", "rare", "unseen", "unknown", "all"):
                vs = [v for v in acc if tags(v) == grp]
                if not vs:
                    continue
                ax.scatter([train_counts.get(v, 0) + 1 for v in vs], [table[m][v]["acc"] for v in vs],
                           label=grp, color=colours[grp], alpha=0.75, s=[12 + 3 * acc[v][0] ** 0.5 for v in vs])
            ax.set_xscale("log")
            ax.set_xlabel("training images of the verb + 1 (log)")
            ax.set_ylabel("top-1 verb accuracy (%)")
            ax.set_title(f"{m}: per-verb accuracy vs training size")
            ax.set_ylim(-3, 103)
            ax.legend(fontsize=8)
        res.tables["per_verb"] = table
        _savefig(fig, run, "rare_bias", res)
        plt.close(fig)


def _confusion_figure(plt: Any, run: Path, world: Path, res: AnalysisResult, cases_by_model: dict[str, list[Case]],
                      split: Any) -> None:
    """Figure 2, unseen confusion: unseen verbs -> top-1 prediction, nearest seen verb boxed (``unseen_confusion``)."""
    note = res.notes.append

    # 2. unseen confusion
    unseen = list(getattr(split, "unseen", []) or []) if split is not None else []
    if cases_by_model and unseen:
        meta = json.loads((world / "meta.json").read_text()) if (world / "meta.json").is_file() else {}
        prims = _find_primitives(meta, unseen)
        trainable = list(getattr(split, "seen", [])) + list(getattr(split, "rare", []))
        nearest = primitive_neighbours(unseen, trainable, prims) if prims else {}
        if not prims:
            note("no verb primitives in meta.json: nearest seen verbs are not marked in the confusion figure")
        fig, axes = plt.subplots(1, len(cases_by_model), figsize=(7 * len(cases_by_model), 1.2 + 0.45 * len(unseen)),
                                 squeeze=False, layout="constrained")
        res.tables["confusion"] = {}
        for ax, (m, cs) in zip(axes[0], cases_by_model.items()):
            conf = unseen_confusion(cs, unseen, nearest)
            if not conf.rows:
                ax.set_axis_off()
                continue
            mat = [[conf.rate(i, j) * 100 for j in range(len(conf.cols))] for i in range(len(conf.rows))]
            im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=100, aspect="auto")
            ax.set_yticks(range(len(conf.rows)),
                          [f"{u} (≈{conf.nearest[u]})" if conf.nearest.get(u) else u for u in conf.rows], fontsize=8)
            ax.set_xticks(range(len(conf.cols)), conf.cols, rotation=60, ha="right", fontsize=8)
            for i, u in enumerate(conf.rows):
                for j, c in enumerate(conf.cols):
                    if c == conf.nearest.get(u):
                        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="white", lw=1.5))
            ax.set_title(f"{m}: unseen verbs -> top-1 prediction (% of images; box = nearest seen verb)", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.03)
            res.tables["confusion"][m] = {u: {c: conf.counts[i][j] for j, c in enumerate(conf.cols)}
                                          for i, u in enumerate(conf.rows)}
        _savefig(fig, run, "unseen_confusion", res)
        plt.close(fig)
    elif cases_by_model:
        note("no unseen verbs in the split: confusion figure skipped")


def _grounding_figure(plt: Any, run: Path, res: AnalysisResult, cases_by_model: dict[str, list[Case]]) -> None:
    """Figure 3, grounding quality by role (``grounding_by_role``)."""
    note = res.notes.append

    # 3. grounding by role
    if cases_by_model:
        by_role = {m: grounding_by_role(cs) for m, cs in cases_by_model.items()}
        roles = sorted({r for d in by_role.values() for r in d})
        if roles:
            width_in = min(16.0, max(5.0, 0.6 * len(roles) * len(by_role)))
            fig, ax = plt.subplots(figsize=(width_in, 3.8), layout="constrained")
            width = 0.8 / len(by_role)
            for k, (m, d) in enumerate(by_role.items()):
                xs = [i + k * width for i in range(len(roles))]
                ax.bar(xs, [d.get(r, {}).get("grounded", 0.0) for r in roles], width, label=f"{m} grounded")
                ax.scatter(xs, [d.get(r, {}).get("noun", 0.0) for r in roles], marker="_", s=200, color="k")
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(roles))], roles, rotation=30, ha="right")
            ax.set_ylabel("% of roles (frame of the gt verb)")
            ax.set_title("grounding quality by role (bars: noun + box correct; ticks: noun correct)")
            ax.set_ylim(0, 100)
            ax.legend(fontsize=8)
            res.tables["grounding_by_role"] = by_role
            _savefig(fig, run, "grounding_by_role", res)
            plt.close(fig)
        else:
            note("no predicted frames for the ground-truth verbs: grounding figure skipped")


def _resources_figure(plt: Any, run: Path, res: AnalysisResult, bench_dir: Optional[str | os.PathLike]) -> None:
    """Figure 4, resources: the benchmarks of ``bench_dir`` (``resources``, table ``bench``)."""
    note = res.notes.append

    # 4. resources
    bench = read_bench(bench_dir) if bench_dir is not None else []
    if bench:
        shown = [r for r in bench if _is_resource_metric(r.metric)]
        metrics = sorted({r.metric for r in shown})
        if metrics:
            # one panel per family (throughput; memory and sizes), every bar labelled "metric: model / setting",
            # a log axis so that rows of very different magnitude stay readable side by side
            families = [(t, [m for m in metrics if _resource_family(m) == t]) for t in ("throughput", "memory")]
            families = [(t, ms) for t, ms in families if ms]
            heights = [sum(r.metric in ms for r in shown) for _, ms in families]
            fig, axes = plt.subplots(len(families), 1, figsize=(9, 1.0 + 0.17 * sum(heights) + 0.6 * len(families)),
                                     squeeze=False, gridspec_kw={"height_ratios": heights}, layout="constrained")
            for ax, (family, ms) in zip(axes[:, 0], families):
                rs = sorted((r for r in shown if r.metric in ms), key=lambda r: (r.metric, r.model, r.setting or ""))
                labels = [f"{r.metric}: {r.model}" + (f" / {r.setting}" if r.setting and r.setting != "-" else "")
                          for r in rs]
                colours = [plt.cm.tab20(ms.index(r.metric) % 20) for r in rs]
                ax.barh(range(len(rs)), [max(r.value, 1e-9) for r in rs], color=colours)
                ax.set_yticks(range(len(rs)), labels, fontsize=7)
                ax.invert_yaxis()
                ax.set_xscale("log")
                ax.set_title(family + (" (per second, higher is faster)" if family == "throughput"
                                       else " (MB / GB / bytes / ratios, lower is smaller)"), fontsize=9)
                for i, r in enumerate(rs):
                    ax.text(max(r.value, 1e-9), i, f" {r.value:.3g}", va="center", fontsize=6)
            fig.suptitle("resources: benchmarks measured outside this run (reports/bench)", fontsize=10)
            _savefig(fig, run, "resources", res)
            plt.close(fig)
        else:
            note(f"benchmarks in {bench_dir} have no speed / memory metrics to draw (rows listed in results.md)")
        res.tables["bench"] = [r.__dict__ for r in bench]  # drawn, never merged into the run's metrics.json
    else:
        note(f"no benchmark results in {bench_dir} (run `make bench`): resource comparison skipped"
             if bench_dir is not None else "no bench_dir given: resource comparison skipped")


def _resource_family(metric: str) -> str:
    """``throughput`` for speed metrics, ``memory`` for the rest of :func:`_is_resource_metric`'s metrics."""
    return "throughput" if metric.lower().endswith(("per_s", "per_second")) else "memory"


def _is_resource_metric(metric: str) -> bool:
    """Speed (``*_per_s``, ``*_per_second``) or memory (``*rss*``, ``*mem*``, ``*_mb``, ``*bytes*``) metrics."""
    m = metric.lower()
    return (m.endswith(("per_s", "per_second", "_mb", "_gb")) or "rss" in m or "mem" in m or "bytes" in m) \
        and not m.endswith(("_std",))


def _tags(split: Any, verb: str) -> str:
    if split is None:
        return "all"
    get = getattr(split, "get", None)
    v = get(verb) if callable(get) else None
    return v or "unknown"


def results_frame(rows: Iterable[MetricRow], task: str = "gsr", setting: str = "top1",
                  mean: Optional[str] = "image") -> Any:
    """A pandas table (models x split/metric, seeds aggregated as means) for display in a notebook."""
    import pandas as pd

    cells = aggregate(rows)
    recs = [{"model": k[1], "split": k[2], "metric": k[4], "value": c.mean, "std": c.std, "seeds": c.n}
            for k, c in cells.items() if k[0] == task and k[3] == setting and k[5] == mean]
    if not recs:
        return pd.DataFrame()
    df = pd.DataFrame(recs)
    table = df.pivot_table(index="model", columns=["split", "metric"], values="value")
    return table.loc[sorted(table.index, key=model_sort_key)].round(1)


#: the teacher, the two difficulty baselines of the data stage, then the students (``mipd_kit.student.report``)
README_GSR_MODELS = (STUDENT_MODEL_ORDER[0], "pixel_linear", "small_cnn", *STUDENT_MODEL_ORDER[1:])


def readme_tables(rows: Iterable[MetricRow], hoi_models: Sequence[str] = ("teacher", "spatial_prior", "teacher_crop",
                                                                           "icn", "clhoi-logitctx", "clhoi",
                                                                           "clhoi-oracle", "clhoi-oracle-shuffled",
                                                                           "weak-mil", "upper")) -> str:
    """The "Latest results" tables of docs/results.md (the README copies rows of the first) from a run's metric rows
    (per-image means, mean ± sample std over seeds).

    Up to five tables: GSR verb top-1 and grounded value (top-1 setting) per split; the ground-truth-verb setting on all
    images; HOI mAP (Default setting); V-COCO role AP when the run scored it. Models absent from ``rows`` are left
    out; a missing cell is ``–``.
    """
    cells = aggregate(r for r in rows if r.task in ("gsr", "hoi") and r.mean in ("image", None))

    def fmt(key: tuple) -> str:
        c = cells.get(key)
        if c is None:
            return "–"
        return c.fmt(1, show_n=False)

    gsr_models = [m for m in README_GSR_MODELS if any(k[0] == "gsr" and k[1] == m for k in cells)]
    out: list[str] = []
    for title, setting, metric in (("GSR verb top-1 (%), test, per-image mean (± sample std over seeds where there "
                                    "are several)", "top1", "verb"),
                                   ("GSR grounded value (%), top-1 setting, test", "top1", "grnd_value")):
        out += [f"**{title}**", ""]
        out += _md_table(["model", *STUDENT_SPLITS],
                         [[m] + [fmt(("gsr", m, s, setting, metric, "image")) for s in STUDENT_SPLITS]
                          for m in gsr_models if any(("gsr", m, s, setting, metric, "image") in cells
                                                     for s in STUDENT_SPLITS)])
    gt_metrics = ("value", "value_all", "grnd_value", "grnd_value_all")
    out += ["**GSR ground-truth-verb setting (%), all test images**", ""]
    out += _md_table(["model", *gt_metrics], [[m] + [fmt(("gsr", m, "all", "gt_verb", x, "image")) for x in gt_metrics]
                                              for m in gsr_models if ("gsr", m, "all", "gt_verb", "value", "image")
                                              in cells])
    hoi_splits = ("full", "rare", "non_rare", "unseen", "seen")
    hm = [m for m in hoi_models if ("hoi", m, "full", "default", "map", None) in cells]
    if hm:
        out += ["**HOI mAP (%), official protocol, Default setting, SynthSitu HOI test split**", ""]
        out += _md_table(["model", *hoi_splits], [[m] + [fmt(("hoi", m, s, "default", "map", None)) for s in hoi_splits]
                                                  for m in hm])
    vm = [m for m in hoi_models if ("hoi", m, "full", "scenario_1", "role_ap", None) in cells]
    if vm:
        vsplits = [s for s in hoi_splits if any(("hoi", m, s, "scenario_1", "role_ap", None) in cells for m in vm)]
        out += ["", "**HOI role AP (%), V-COCO scenario 1, the same predictions in the V-COCO format**", ""]
        out += _md_table(["model", *vsplits], [[m] + [fmt(("hoi", m, s, "scenario_1", "role_ap", None))
                                                     for s in vsplits] for m in vm])
    return "\n".join(out)
