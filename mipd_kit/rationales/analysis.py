"""Pure analysis helpers over stored rationales (used by notebooks 02/03, tests and the benchmark).

* :func:`sample_table` — a few rationales per kind and polarity, for display.
* :func:`rationale_features` — per rationale: length in words, overlap with the gold frame (share of its content
  words that are a form of the annotated verb or a gloss of an annotator's noun), whether it mentions a verb the
  teacher confuses with the true one (its other top verbs).
* :func:`compare_polarities` — those features averaged per kind x polarity (how negatives differ from positives).
* :func:`plot_acceptance`, :func:`plot_scores` — the judge figures of notebook 03, from ``jrg_statistics`` output.
"""

from __future__ import annotations

import random
import re
import statistics
from typing import Any, Mapping, Optional, Sequence

from mipd_kit.data.records import FrameSpace, Situation
from mipd_kit.language.embedded import verb_words
from mipd_kit.rationales.store import Rationale

_STOP = {"a", "an", "the", "is", "are", "of", "in", "on", "at", "to", "and", "it", "its", "this", "that", "as",
         "by", "with", "while", "which", "here", "there", "be", "looks", "like", "image", "shows", "scene",
         "picture", "setting", "role", "part", "takes", "place", "from", "for", "one", "who", "what"}


def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP]


def gold_vocabulary(space: FrameSpace, sit: Situation) -> set[str]:
    """Words of the annotated frame: verb forms and every gloss word of the three annotators' nouns."""
    vd = space.verbs.get(sit.verb)
    vocab = set(verb_words(sit.verb, vd.abstract if vd is not None else ""))
    for fr in sit.frames:
        for n in fr.values():
            nd = space.nouns.get(n)
            for g in (nd.gloss if nd is not None else (n,)):
                vocab |= set(re.findall(r"[a-z]+", g.lower()))
    return vocab - _STOP


def rationale_features(r: Rationale, space: FrameSpace, sit: Optional[Situation],
                       evidence: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Length, gold-frame overlap and teacher-confusion flag of one rationale."""
    words = _content_words(r.text)
    out: dict[str, Any] = {"image": r.image, "kind": r.kind, "role": r.role, "polarity": r.polarity,
                           "source": r.source, "round": r.round, "score": r.score,
                           "length": len(r.text.split())}
    if sit is not None:
        gold = gold_vocabulary(space, sit)
        out["gold_overlap"] = sum(w in gold for w in words) / len(words) if words else 0.0
        confused = [v for v, _ in (evidence or {}).get("top_verbs", []) if v != sit.verb]
        forms = set()
        for v in confused:
            vd = space.verbs.get(v)
            forms |= verb_words(v, vd.abstract if vd is not None else "") - verb_words(
                sit.verb, space.verbs[sit.verb].abstract if sit.verb in space.verbs else "")
        out["mentions_confused_verb"] = bool(forms & set(words))
    return out


def compare_polarities(records: Sequence[Rationale], space: FrameSpace, situations: Mapping[str, Situation],
                       evidence: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """Rows ``{kind, polarity, n, mean_length, mean_gold_overlap, confused_verb_share, mean_score}``."""
    feats = [rationale_features(r, space, situations.get(r.image), (evidence or {}).get(r.image)) for r in records]
    rows = []
    for kind in ("glimpse", "gaze"):
        for pol in ("positive", "negative"):
            fs = [f for f in feats if f["kind"] == kind and f["polarity"] == pol]
            if not fs:
                continue
            ov = [f["gold_overlap"] for f in fs if "gold_overlap" in f]
            cf = [f["mentions_confused_verb"] for f in fs if "mentions_confused_verb" in f]
            sc = [f["score"] for f in fs if f["score"] is not None]
            rows.append({"kind": kind, "polarity": pol, "n": len(fs),
                         "mean_length": statistics.fmean(f["length"] for f in fs),
                         "mean_gold_overlap": statistics.fmean(ov) if ov else None,
                         "confused_verb_share": sum(cf) / len(cf) if cf else None,
                         "mean_score": statistics.fmean(sc) if sc else None})
    return rows


def sample_table(records: Sequence[Rationale], n: int = 6, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``n`` random rationales of each kind x polarity (stable for a seed), as display rows."""
    rng = random.Random(seed)
    rows = []
    for kind in ("glimpse", "gaze"):
        for pol in ("positive", "negative"):
            rs = [r for r in records if r.kind == kind and r.polarity == pol]
            for r in rng.sample(rs, min(n, len(rs))):
                rows.append({"image": r.image, "kind": kind, "role": r.role or "", "polarity": pol,
                             "source": r.source, "round": r.round, "score": r.score, "text": r.text,
                             "reasons": "; ".join((r.verdict or {}).get("reasons", []))})
    return rows


def plot_acceptance(stats: Mapping[str, Any], rounds: int, path: Any = None):
    """Acceptance rate per round and cumulative acceptance by round, glimpse and gaze (``jrg_statistics`` output).

    Saves to ``path`` when given; returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    for kind in ("glimpse", "gaze"):
        s = stats[kind]
        ax[0].plot([p["round"] for p in s["accept_rate_round"]], [100 * (p["rate"] or 0) for p in s["accept_rate_round"]],
                   "o-", label=kind)
        ax[1].plot(range(rounds), [100 * (c or 0) for c in s["cum_accept_round"]], "o-", label=kind)
    ax[0].set(xlabel="round", ylabel="% accepted of judged", title="acceptance per round")
    ax[1].set(xlabel="round", ylabel="% of chains accepted", title="cumulative acceptance", ylim=(0, 100))
    for a in ax:
        a.set_xticks(range(rounds))
        a.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_scores(stats: Mapping[str, Any], path: Any = None):
    """Histograms of the judge's scores (0-10) for positive and negative rationales, glimpse and gaze."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for a, kind in zip(ax, ("glimpse", "gaze")):
        a.bar([x - 0.2 for x in range(11)], stats[kind]["score_hist_positive"], width=0.4, label="positive")
        a.bar([x + 0.2 for x in range(11)], stats[kind]["score_hist_negative"], width=0.4, label="negative")
        a.set(xlabel="judge score", title=kind)
        a.legend()
    ax[0].set(ylabel="rationales")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
