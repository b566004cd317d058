"""How well generated descriptions match what SynthSitu drew: precision / recall of primitive mentions.

A description's *mentions* are found by greedy longest-phrase matching of its words against the world's own
vocabulary of each primitive: pose phrases, relation phrases, motion-cue phrases (``world.POSE_PHRASES`` ...),
concept ids and synonyms (objects and people), place ids and synonyms (with their "in the" / "on the" forms, so that
the preposition of a place is not read as a relation), and the caption words of each verb
(``captions.VERB_WORDS``). A phrase that several labels share carries all of them, except that a verb word which is
also a primitive phrase ("holding": the relation *hold_front*, and a caption word of *carrying*) counts as the
primitive only.

The truth is the world's ``rendered.jsonl`` record of the image (what was drawn, nuisances included):

========  =====================================================  ===============================================
category  recall target (what a description should say)          accepted for precision (what may be said)
========  =====================================================  ===============================================
pose      the agent's pose of every verb instance                every drawn person's pose (distractors too)
relation  the relation of every verb instance                    the same
object    every role filler's concept (agent included)           those and the distractors' concepts
place     the place                                              the same
motion    the verb's motion cue when it was drawn (not dropped)  every drawn cue, a false cue included
verb      the verbs of the instances                             the same
========  =====================================================  ===============================================

For a *gaze* on a role's box the recall targets are that role's concept (and its pose for a person); the accepted
sets stay the whole image's. Precision = correct mention spans / mention spans; recall = targets mentioned /
targets (micro averages over the texts of a group, in percent). ``verb_named`` is the share of texts naming a verb
of the image, ``verb_wrong`` the share naming a verb that is not in it.

Per-text results are :class:`MentionResult` records; :func:`aggregate` is the pure function from them to tidy metric
rows (``task`` as given, ``model``, ``split`` = the image group, ``setting`` = glimpse|gaze).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from mipd_kit.data.synthsitu import world as W
from mipd_kit.data.synthsitu.captions import PREPS, VERB_WORDS
from mipd_kit.language.captioner import Captioner, caption_images, is_heldout, read_pretrain_captions, tokenize
from mipd_kit.metrics import MetricRow, row

CATEGORIES: tuple[str, ...] = ("pose", "relation", "object", "place", "motion", "verb")
#: the verb groups of GSR test images (``ov_split.json`` names), besides the held-out pretraining images
GROUPS: tuple[str, ...] = ("pretrain_heldout", "seen", "rare", "unseen", "unseen_compositional", "unseen_novel")


def phrase_table() -> dict[tuple[str, ...], list[tuple[str, str]]]:
    """Token sequence of every primitive phrase -> the (category, value) labels it names."""
    table: dict[tuple[str, ...], list[tuple[str, str]]] = defaultdict(list)

    def add(phrase: str, cat: str, value: str) -> None:
        toks = tuple(tokenize(phrase.replace("_", " ")))
        if toks and (cat, value) not in table[toks]:
            table[toks].append((cat, value))

    for pose, phrases in W.POSE_PHRASES.items():
        for p in phrases:
            add(p, "pose", pose)
    for rel, phrases in W.RELATION_PHRASES.items():
        for p in phrases:
            add(p, "relation", rel)
    for mot, phrases in W.MOTION_PHRASES.items():
        for p in phrases:
            if p:
                add(p, "motion", mot)
    for c in W.CONCEPTS:
        for i in c.ids:
            add(i, "object", c.name)
    for pl in W.PLACES:
        for i in pl.ids:
            for form in (i, f"the {i}", *(f"{prep} the {i}" for prep in sorted(set(PREPS.values())))):
                add(form, "place", pl.name)
    for v in W.VERBS:
        for p in (v.name, *VERB_WORDS.get(v.name, ())):
            add(p, "verb", v.name)
    for toks, labels in table.items():  # "holding", "shoving": a primitive phrase, not a verb mention
        if any(c != "verb" for c, _ in labels):
            table[toks] = [lab for lab in labels if lab[0] != "verb"]
    return dict(table)


_TABLE: Optional[dict] = None


def mentions(text: str) -> dict[str, list[tuple[str, ...]]]:
    """Category -> the distinct label sets of the phrases a text mentions (greedy longest match, left to right)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = phrase_table()
    longest = max(len(k) for k in _TABLE)
    toks = tokenize(text)
    out: dict[str, list[tuple[str, ...]]] = {c: [] for c in CATEGORIES}
    i = 0
    while i < len(toks):
        for n in range(min(longest, len(toks) - i), 0, -1):
            labels = _TABLE.get(tuple(toks[i:i + n]))
            if labels:
                by_cat: dict[str, list[str]] = defaultdict(list)
                for cat, val in labels:
                    by_cat[cat].append(val)
                for cat, vals in by_cat.items():
                    key = tuple(sorted(vals))
                    if key not in out[cat]:
                        out[cat].append(key)
                i += n
                break
        else:
            i += 1
    return out


def truth(record: dict, role: Optional[str] = None) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(recall targets, accepted values) per category from a ``rendered.jsonl`` record (see the module table).

    Args:
        record: the image's record.
        role: a gaze's role (its box's entity); ``None`` for a glimpse.
    """
    inst = record.get("instances", [])
    people_poses = {p for i in inst for p in i.get("poses", {}).values()}
    people_poses |= {d["pose"] for d in record.get("distractors", []) if d.get("pose")}
    objs = {o for i in inst for o in i.get("objects", {}).values()}
    accepted = {
        "pose": people_poses | {i["pose"] for i in inst},
        "relation": {i["relation"] for i in inst},
        "object": objs | {d["concept"] for d in record.get("distractors", [])},
        "place": {record["place"]} if record.get("place") else set(),
        "motion": set(record.get("cues", [])),
        "verb": {i["verb"] for i in inst},
    }
    if role is None:
        target = {"pose": {i["pose"] for i in inst}, "relation": {i["relation"] for i in inst}, "object": objs,
                  "place": set(accepted["place"]),
                  "motion": {i["motion"] for i in inst if i.get("motion_drawn")}, "verb": set(accepted["verb"])}
    else:
        target = {c: set() for c in CATEGORIES}
        for i in inst:
            if role in i.get("objects", {}):
                target["object"].add(i["objects"][role])
            if role in i.get("poses", {}):
                target["pose"].add(i["poses"][role])
    return target, accepted


@dataclass(frozen=True)
class MentionResult:
    """One scored description.

    Attributes:
        image: image path relative to the world folder.
        group: image group (``pretrain_heldout``, ``seen``, ``rare``, ``unseen``, ...).
        kind: ``glimpse`` or ``gaze``.
        role: the gaze's role (``None`` for a glimpse).
        text: the description ("" when the captioner emitted nothing).
        mentioned: category -> label sets of the phrases mentioned.
        target: category -> recall targets.
        accepted: category -> values accepted for precision.
    """

    image: str
    group: str
    kind: str
    role: Optional[str]
    text: str
    mentioned: dict[str, list[list[str]]]
    target: dict[str, list[str]]
    accepted: dict[str, list[str]]


def score_text(image: str, group: str, kind: str, text: str, record: dict,
               role: Optional[str] = None) -> MentionResult:
    """Score one description against its image's rendered record (pure)."""
    target, accepted = truth(record, role)
    m = mentions(text)
    return MentionResult(image, group, kind, role, text, {c: [list(s) for s in m[c]] for c in CATEGORIES},
                         {c: sorted(target[c]) for c in CATEGORIES}, {c: sorted(accepted[c]) for c in CATEGORIES})


def aggregate(results: Iterable[MentionResult], model: str = "captioner", task: str = "captioner",
              seed: Optional[int] = None) -> list[MetricRow]:
    """Tidy rows per (group, kind): ``<category>_precision`` / ``_recall``, ``verb_named``, ``verb_wrong``
    (percent), ``n_texts`` and ``empty`` (texts with no words). A ratio with a zero denominator is left out."""
    groups: dict[tuple[str, str], list[MentionResult]] = defaultdict(list)
    for r in results:
        groups[(r.group, r.kind)].append(r)
    rows = []
    for (group, kind), rs in sorted(groups.items(), key=lambda kv: (GROUPS.index(kv[0][0]) if kv[0][0] in GROUPS
                                                                    else len(GROUPS), kv[0])):
        rows.append(row(task, model, group, kind, "n_texts", len(rs), seed=seed))
        rows.append(row(task, model, group, kind, "empty", 100.0 * sum(not r.text.strip() for r in rs) / len(rs),
                        seed=seed, mean="image"))
        for c in CATEGORIES:
            spans = [(s, set(r.accepted[c])) for r in rs for s in r.mentioned[c]]
            if spans:
                ok = sum(bool(set(s) & acc) for s, acc in spans)
                rows.append(row(task, model, group, kind, f"{c}_precision", 100.0 * ok / len(spans), seed=seed,
                                mean="image"))
            n_t = sum(len(r.target[c]) for r in rs)
            if n_t:
                hit = sum(sum(any(t in s for s in r.mentioned[c]) for t in r.target[c]) for r in rs)
                rows.append(row(task, model, group, kind, f"{c}_recall", 100.0 * hit / n_t, seed=seed, mean="image"))
        with_verb = [r for r in rs if r.accepted["verb"]]
        if with_verb:
            named = sum(any(set(s) & set(r.accepted["verb"]) for s in r.mentioned["verb"]) for r in with_verb)
            wrong = sum(any(not set(s) & set(r.accepted["verb"]) for s in r.mentioned["verb"]) for r in with_verb)
            rows.append(row(task, model, group, kind, "verb_named", 100.0 * named / len(with_verb), seed=seed,
                            mean="image"))
            rows.append(row(task, model, group, kind, "verb_wrong", 100.0 * wrong / len(with_verb), seed=seed,
                            mean="image"))
    return rows


def evaluation_requests(world_dir: str | os.PathLike, holdout_frac: float, *, split: str = "test",
                        max_per_group: Optional[int] = None, gaze: bool = True) -> list[dict]:
    """What to describe: held-out pretraining images (glimpses) and GSR ``split`` images (a glimpse each and a gaze
    per role with a box), each with its group. Returns ``[{"image", "group", "kind", "role", "box"}]`` where
    ``image`` is relative to the world folder and ``box`` is in pixels (``None`` for glimpses).

    Args:
        world_dir: the SynthSitu world.
        holdout_frac: the captioner's ``holdout_frac`` (which pretraining images it never saw).
        split: GSR split whose images are grouped by their verb's seen / rare / unseen status.
        max_per_group: keep the first images of each group only (None = all).
        gaze: add gaze requests for the GSR images.
    """
    from mipd_kit.data.swig import load_situations
    from mipd_kit.data.splits import load_ov_split
    world = Path(world_dir)
    reqs: list[dict] = []
    held = [r["image"] for r in read_pretrain_captions(world) if is_heldout(r["image"], holdout_frac)]
    for img in held[:max_per_group]:
        reqs.append({"image": img, "group": "pretrain_heldout", "kind": "glimpse", "role": None, "box": None})
    ov = load_ov_split(world)
    sits = load_situations(world / f"{split}.json")
    taken: dict[str, int] = defaultdict(int)
    for name in sorted(sits):
        s = sits[name]
        groups = [g for g in GROUPS[1:] if s.verb in ov.get(g, [])]
        if not groups or (max_per_group is not None and all(taken[g] >= max_per_group for g in groups)):
            continue
        for g in groups:
            taken[g] += 1
            reqs.append({"image": f"images/{name}", "group": g, "kind": "glimpse", "role": None, "box": None})
            if gaze:
                for role, box in sorted(s.boxes.items()):
                    if box is not None:
                        reqs.append({"image": f"images/{name}", "group": g, "kind": "gaze", "role": role,
                                     "box": list(box)})
    return reqs


def evaluate_captioner(captioner: Captioner, teacher, world_dir: str | os.PathLike, *, split: str = "test",
                       max_per_group: Optional[int] = None, gaze: bool = True, temperature: float = 0.7,
                       top_p: float = 0.9, seed: int = 0, model: str = "captioner",
                       task: str = "captioner") -> tuple[list[MentionResult], list[MetricRow], list[tuple[int, str]]]:
    """Describe the evaluation images and score every text against ``rendered.jsonl``.

    An image that appears in several groups (``unseen`` and ``unseen_novel``) is described once per group with the
    same seed, so its text is the same in both.

    Returns:
        ``(results, rows, skipped)``: per-text results, the aggregated rows, and the ``(request index, reason)``
        of requests skipped (undecodable image, zero-area box, empty generation; those count as empty texts).
    """
    from mipd_kit.data.synthsitu.generate import read_rendered
    world = Path(world_dir)
    rendered = read_rendered(world)
    reqs = evaluation_requests(world, captioner.cfg.holdout_frac, split=split, max_per_group=max_per_group,
                               gaze=gaze)
    # one text per distinct (image, role), request k of the sorted list sampled with seed + k: an image in two
    # groups gets the same text in both
    uniq = {(r["image"], r["role"] or ""): r for r in reqs}
    order = sorted(uniq)
    batch = caption_images(captioner, teacher, [world / uniq[k]["image"] for k in order],
                           [uniq[k]["box"] for k in order], temperature=temperature, top_p=top_p, seed=seed)
    text_of = {k: (c.text if c is not None else "") for k, c in zip(order, batch.captions)}
    results = []
    for r in reqs:
        rec = rendered.get(r["image"])
        if rec is None:
            continue
        results.append(score_text(r["image"], r["group"], r["kind"], text_of[(r["image"], r["role"] or "")], rec,
                                  r["role"]))
    return results, aggregate(results, model=model, task=task), batch.skipped


def results_table(rows: Sequence[MetricRow], kind: str = "glimpse") -> list[dict]:
    """Rows of one kind as a list of {group, <metric>: value} dicts in ``GROUPS`` order (for reports)."""
    by: dict[str, dict] = {}
    for r in rows:
        if r.setting == kind:
            by.setdefault(r.split, {"group": r.split})[r.metric] = r.value
    return [by[g] for g in GROUPS if g in by] + [v for g, v in by.items() if g not in GROUPS]


def result_dicts(results: Iterable[MentionResult]) -> list[dict]:
    """Per-text results as plain dicts (for JSONL)."""
    return [asdict(r) for r in results]
