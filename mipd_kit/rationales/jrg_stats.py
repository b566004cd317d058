"""JRG statistics: acceptance per round, score distributions and set sizes per kind (:func:`jrg_statistics`, a
pure function of the stored rationales), the tidy ``metrics.json`` rows made from them, and the run record kept
across a resumed pass that generated nothing.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from mipd_kit.metrics import MetricRow, row
from mipd_kit.rationales.store import Rationale

def _hist(scores: Iterable[Optional[float]]) -> list[int]:
    h = [0] * 11
    for s in scores:
        if s is not None:
            h[int(min(max(round(s), 0), 10))] += 1
    return h


def _mean(xs: Iterable[Optional[float]]) -> Optional[float]:
    v = [x for x in xs if x is not None]
    return statistics.fmean(v) if v else None


def jrg_statistics(records: Sequence[Rationale], rounds: int, images: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Acceptance per round, score distributions and set sizes, per kind and overall (pure).

    ``accept_rate_round[r]`` = accepted / judged among generated rationales of round r;
    ``cum_accept_round[r]`` = share of generated chains accepted by round r; hard negatives are counted apart.
    """
    out: dict[str, Any] = {"rounds": rounds}
    imgs = set(images) if images is not None else {r.image for r in records if r.polarity != "unjudged"}
    recs = [r for r in records if r.image in imgs]
    for kind in ("glimpse", "gaze", "all"):
        rs = [r for r in recs if kind == "all" or r.kind == kind]
        gen = [r for r in rs if r.source == "generated"]
        hard = [r for r in rs if r.source == "hard_negative"]
        chains: dict[tuple, list[Rationale]] = {}
        for r in gen:
            chains.setdefault((r.image, r.kind, r.role), []).append(r)
        first_accept = [min((r.round for r in v if r.polarity == "positive"), default=None) for v in chains.values()]
        per_round, cum = [], []
        for k in range(rounds):
            judged = [r for r in gen if r.round == k]
            acc = sum(r.polarity == "positive" for r in judged)
            per_round.append({"round": k, "judged": len(judged), "accepted": acc,
                              "rate": acc / len(judged) if judged else None})
            cum.append(sum(a is not None and a <= k for a in first_accept) / len(chains) if chains else None)
        pos = [r for r in rs if r.polarity == "positive"]
        neg = [r for r in rs if r.polarity == "negative"]
        out[kind] = {
            "chains": len(chains), "judged": len(gen), "accept_rate_round": per_round, "cum_accept_round": cum,
            "n_positive": len(pos), "n_negative": len(neg),
            "n_negative_rejected": sum(r.source == "generated" for r in neg),
            "n_hard_negative": sum(r.polarity == "negative" for r in hard),
            "hard_negative_accepted": sum(r.polarity == "positive" for r in hard),
            "score_hist_positive": _hist(r.score for r in pos), "score_hist_negative": _hist(r.score for r in neg),
            "mean_score_positive": _mean(r.score for r in pos),
            "mean_score_negative": _mean(r.score for r in neg),
        }
    with_pos = {r.image for r in recs if r.kind == "glimpse" and r.polarity == "positive"}
    out["images"] = len(imgs)
    out["images_with_positive_glimpse"] = len(with_pos & imgs)
    return out


def _keep_working_pass(path: Path, stats: dict) -> None:
    """A pass that found every chain finished (a resumed, already complete store) generated nothing: keep the run
    record of the pass that did the work (same backend) instead of replacing its counts and speed by zeros, and
    count the resumed passes (``resumed_passes``, ``last_pass_seconds``)."""
    new = stats["run"]
    if new["new_rationales"] or new["chains_run"] or not path.exists():
        return
    try:
        old = json.loads(path.read_text()).get("run") or {}
    except ValueError:
        return
    if old.get("backend") == new["backend"] and old.get("new_rationales"):
        stats["run"] = {**old, "resumed_passes": int(old.get("resumed_passes", 0)) + 1,
                        "last_pass_seconds": new["seconds"], "chains_skipped": new["chains_skipped"]}


def stats_rows(stats: Mapping[str, Any], model: str, seed: Optional[int]) -> list[MetricRow]:
    """Tidy ``metrics.json`` rows (task ``"jrg"``, split ``"train"``, setting = kind) from :func:`jrg_statistics`."""
    rows: list[MetricRow] = []
    for kind in ("glimpse", "gaze", "all"):
        s = stats.get(kind)
        if not s or not s["chains"]:
            continue
        add = lambda metric, v: rows.append(row("jrg", model, "train", kind, metric, v, seed=seed))  # noqa: E731
        for pr in s["accept_rate_round"]:
            if pr["rate"] is not None:
                add(f"accept_rate_round{pr['round']}", 100.0 * pr["rate"])
        for k, c in enumerate(s["cum_accept_round"]):
            if c is not None:
                add(f"cum_accept_round{k}", 100.0 * c)
        for m in ("n_positive", "n_negative", "n_hard_negative", "hard_negative_accepted", "chains"):
            add(m, s[m])
        for m in ("mean_score_positive", "mean_score_negative"):
            if s[m] is not None:
                add(m, s[m])
    content = stats.get("content") or {}
    for kind in ("glimpse", "gaze", "all"):
        cs = content.get(kind)
        if not cs or not cs["n_positive"]:
            continue
        for m in ("judge_precision", "primitive_share", "pose_share", "relation_share", "motion_share"):
            if cs.get(m) is not None:
                rows.append(row("jrg", model, "train", kind, m, 100.0 * cs[m], seed=seed))
        for m in ("distinct_masked_max", "distinct_masked_mean", "negatives_naming_gold_verb"):
            rows.append(row("jrg", model, "train", kind, m, cs[m], seed=seed))
    for m in ("negatives_dropped_gold_verb", "unlabeled"):
        if m in content:
            rows.append(row("jrg", model, "train" if m != "unlabeled" else "unlabeled", "all",
                            "unlabeled_rationales" if m == "unlabeled" else m, content[m], seed=seed))
    if stats.get("images"):
        rows.append(row("jrg", model, "train", "glimpse", "coverage_positive_glimpse",
                        100.0 * stats["images_with_positive_glimpse"] / stats["images"], seed=seed))
    run = stats.get("run")
    if run:
        for m in ("failures", "judge_parse_failures", "judge_parse_retries", "sampler_errors", "new_rationales",
                  "generator_calls", "judge_calls", "request_errors"):
            if m in run:
                rows.append(row("jrg", model, "train", "all", m, run[m], seed=seed))
        if run["new_rationales"]:
            rows.append(row("jrg", model, "train", "all", "rationales_per_s", run["rationales_per_s"], seed=seed))
    return rows
