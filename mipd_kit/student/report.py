"""Tables and figures of the MIPD ablation (pure functions over metric rows / loss histories).

The table follows the issue's "Evidence": rows teacher (zero-shot reference), baseline, mipd-feat, mipd-feat-kd
(feature + logit distillation without rationales), mipd-glimpse, mipd-gaze, mipd-neg, mipd, mipd-unlabeled;
seed-aggregated ``mean ± std`` (sample std over seeds) of per-image means.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..metrics import MetricRow, markdown_table, seed_stats
from .ingredients import ROWS

#: the models of the tables, in report order: every row of the ingredients table
#: (``mipd_kit.student.ingredients.ROWS``)
MODEL_ORDER: tuple[str, ...] = tuple(ROWS)
SPLITS = ("seen", "rare", "unseen_compositional", "unseen_novel", "unseen", "all")


def _collect(rows: Iterable[MetricRow], setting: str, metric: str, mean: str = "image") -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r.seed is None or r.setting != setting or r.metric != metric or r.mean != mean:
            continue
        out.setdefault((r.model, r.split), []).append(r.value)
    return out


def _fmt(vals: Optional[list[float]]) -> str:
    return seed_stats(vals).fmt(1, show_n=False) if vals else "–"


def ablation_table(rows: Sequence[MetricRow], setting: str = "top1", metric: str = "verb",
                   splits: Sequence[str] = SPLITS, models: Sequence[str] = MODEL_ORDER, mean: str = "image") -> str:
    """Markdown table: one line per model, one column per split, ``mean ± std`` over seeds (n seeds shown)."""
    got = _collect(rows, setting, metric, mean)
    present = [m for m in models if any(k[0] == m for k in got)] + sorted({k[0] for k in got} - set(models))
    body = [[m, max((len(got.get((m, s), [])) for s in splits), default=0), *(_fmt(got.get((m, s))) for s in splits)]
            for m in present]
    return markdown_table([f"model ({setting}, {metric}, per-{mean})", "n", *splits], body)


def frame_table(rows: Sequence[MetricRow], split: str = "unseen", setting: str = "top1",
                metrics: Sequence[str] = ("verb", "value", "value_all", "grnd_value", "grnd_value_all"),
                models: Sequence[str] = MODEL_ORDER) -> str:
    """Markdown table of the five SWiG metrics for one split and setting (``gt_verb`` for nouns and boxes)."""
    cols = {mt: _collect(rows, setting, mt) for mt in metrics}
    present = [m for m in models if any((m, split) in c for c in cols.values())]
    return markdown_table([f"model ({split}, {setting})", *metrics],
                          [[m, *(_fmt(cols[mt].get((m, split))) for mt in metrics)] for m in present])


def load_curves(run_dir: str | Path) -> dict[str, dict]:
    """``run_dir/curves/*.json`` -> {tag: curve record}."""
    out = {}
    for p in sorted((Path(run_dir) / "curves").glob("*.json")):
        out[p.stem] = json.loads(p.read_text())
    return out


def plot_loss_curves(curves: dict[str, dict], path: str | Path, smooth: int = 10):
    """Training loss per step (moving average) and dev verb top-1 per epoch, one colour per model: the mean over its
    seeds (tags ``<model>-seed<k>``) with a min-max band, the legend outside the axes; saves a PNG (and leaves the
    figure open for a notebook to show)."""
    import re

    import matplotlib.pyplot as plt  # the caller's backend: inline in a notebook, Agg without a display

    from ..viz.figures import plot_mean_band

    by_model: dict[str, list[dict]] = {}
    for tag, c in curves.items():
        m = re.fullmatch(r"(.+)-seed\d+", tag)
        by_model.setdefault(m.group(1) if m else tag, []).append(c)
    models = list(by_model)  # the order of the curve files
    colours = [plt.cm.tab20(i % 20) for i in range(len(models))]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), layout="constrained")
    plot_mean_band(axes[0], {m: [[h["loss"] for h in c["history"]] for c in by_model[m]] for m in models},
                   smooth=smooth, colours=colours)
    plot_mean_band(axes[1], {m: [c.get("dev_curve") or [] for c in by_model[m]] for m in models}, colours=colours)
    axes[0].get_legend().remove()  # one legend, outside the right panel
    axes[0].set(xlabel="step", ylabel="training loss (moving avg)", title="student losses (mean, band: min-max over seeds)")
    axes[1].set(xlabel="epoch", ylabel="dev verb top-1 (trainable verbs) %", title="model selection on dev")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def study_table(rows: Sequence[MetricRow], setting: str = "top1", metric: str = "verb", mean: str = "image",
                splits: Sequence[str] = ("seen", "rare", "unseen_compositional", "unseen_novel", "unseen",
                                         "unseen_dev")) -> str:
    """Markdown table of study rows (task ``*-study``, ``mipd_kit.metrics.paired_difference_rows``): one line per
    pair of models, one column per split, ``difference [lo, hi]``."""
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        if not r.task.endswith("-study") or r.setting != setting or r.metric != f"{metric}_diff" or r.mean != mean:
            continue
        lo = "?" if r.lo is None else f"{r.lo:+.1f}"
        hi = "?" if r.hi is None else f"{r.hi:+.1f}"
        cells.setdefault(r.model, {})[r.split] = f"{r.value:+.1f} [{lo}, {hi}]"
    if not cells:
        return "(no paired differences: fewer than two models of a pair, or no seeds)"
    return markdown_table([f"difference ({setting}, {metric}, per-{mean})", *splits],
                          [[model, *(c.get(s, "–") for s in splits)] for model, c in cells.items()])
