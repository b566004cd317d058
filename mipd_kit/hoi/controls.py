"""CL-HOI's control rows: the ones that read the training split's interaction labels on purpose.

The label-free rows (``teacher`` .. ``clhoi-logitctx``) never see an interaction label. The controls do, each in
one stated way, so that a null result of the label-free rows can be told from a broken pipeline:

* ``clhoi-oracle`` (positive control of the context path): the VLT's target descriptions written from the ground
  truth (:func:`oracle_description`: each person's true interaction in words, "a person riding a horse; another
  person pushing a cart", no boxes): what a perfect vision-language model would say;
* ``clhoi-oracle-shuffled``: the same descriptions moved to another image with the same number of people
  (:func:`shuffle_by_people`): the form of the oracle without its image-specific content;
* ``weak-mil``: the ICN trained with the image-level labels (:func:`image_labels`) by multiple-instance learning
  (``losses.mil_loss``), no teacher, no context: the weakly supervised baseline (Weakly-HOI / Align-Former style);
* ``upper``: the ICN trained with the pair-level labels (:func:`pair_labels`, ``losses.pair_label_loss``): the
  ceiling of the student and its scoring (reported, never selected on).

Besides, :func:`description_precision_recall` measures how many of a describer's descriptions name the image's true
interactions (SynthSitu phrasing: an HOI counts as named when one clause holds one of its verb's words and one of its
object's words).
"""

from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from mipd_kit.data.records import HOIImage

#: the prefix of HICO-DET style prompts ("a photo of a person riding a horse")
PROMPT_PREFIX = "a photo of "


def prompt_phrase(prompt: str) -> str:
    """The interaction phrase of an HOI prompt: ``"a photo of a person riding a horse"`` -> ``"a person riding a
    horse"`` (a prompt without the prefix is kept as it is)."""
    p = " ".join(prompt.split())
    return p[len(PROMPT_PREFIX):] if p.lower().startswith(PROMPT_PREFIX) else p


def oracle_description(hois: Sequence[int], prompts: Sequence[str]) -> str:
    """An image's true interactions in words, one clause per annotated pair, in annotation order; no boxes.

    ``[ride horse, push cart]`` -> ``"a person riding a horse; another person pushing a cart"`` (the second and later
    clauses start with "another person" where the phrase starts with "a person"). An image without pairs gets "".

    Args:
        hois: the HOI index of each ground-truth pair of the image.
        prompts: the world's HOI prompts (``hoi_prompts.json``), one per HOI.
    """
    out = []
    for i, k in enumerate(hois):
        ph = prompt_phrase(prompts[int(k)])
        if i and ph.startswith("a person "):
            ph = "another person " + ph[len("a person "):]
        out.append(ph)
    return "; ".join(out)


def oracle_descriptions(images: Sequence[HOIImage], prompts: Sequence[str]) -> dict[str, str]:
    """``{filename: oracle_description}`` of annotated images (images without pairs are left out)."""
    return {im.filename: oracle_description(im.hoi, prompts) for im in images if len(im.hoi)}


def people_count(boxes_h: Sequence[Sequence[float]]) -> int:
    """Distinct human boxes of an image (a person in several pairs counts once)."""
    return len({tuple(round(float(v), 3) for v in b) for b in boxes_h})


def shuffle_by_people(texts: Mapping[str, str], people: Mapping[str, int], seed: int = 0) -> dict[str, str]:
    """Move every description to another image with the same number of people.

    Within each group of images of equal ``people`` count (sorted by name, then permuted with ``seed``) image ``j``
    gets the text of image ``j + 1`` (cyclically): a derangement, so no image keeps its own text when its group has
    another image. An image alone in its group gets the text of an image of the nearest other count (fewer people
    on a tie), so it never keeps its own either unless it is the only image.

    Args:
        texts: ``{filename: description}``.
        people: ``{filename: number of people}`` for every key of ``texts``.
        seed: the permutation's seed.
    """
    missing = sorted(set(texts) - set(people))
    if missing:
        raise ValueError(f"no people count for {missing[:3]}")
    rng = np.random.default_rng(seed)
    groups: dict[int, list[str]] = {}
    for f in sorted(texts):
        groups.setdefault(int(people[f]), []).append(f)
    out: dict[str, str] = {}
    for n, names in sorted(groups.items()):
        order = [names[int(i)] for i in rng.permutation(len(names))]
        if len(order) > 1:
            for j, f in enumerate(order):
                out[f] = texts[order[(j + 1) % len(order)]]
            continue
        others = sorted((abs(m - n), m) for m in groups if m != n)
        out[order[0]] = texts[groups[others[0][1]][0]] if others else texts[order[0]]
    return out


def image_labels(images: Sequence[HOIImage], filenames: Sequence[str], num_hoi: int) -> torch.Tensor:
    """(N, H) bool: which HOIs each image of ``filenames`` shows (its annotated pairs' HOIs); all False for an
    image without annotation. ``KeyError`` naming a file not in ``images``."""
    by = {im.filename: im for im in images}
    y = torch.zeros(len(filenames), num_hoi, dtype=torch.bool)
    for i, f in enumerate(filenames):
        if f not in by:
            raise KeyError(f"{f}: not among the labelled training images")
        for k in by[f].hoi:
            y[i, int(k)] = True
    return y


def pair_labels(images: Sequence[HOIImage], filenames: Sequence[str], pair_image: torch.Tensor,
                boxes_h: torch.Tensor, boxes_o: torch.Tensor, num_hoi: int, iou: float = 0.5) -> torch.Tensor:
    """(P, H) bool: the HOIs of the ground-truth pairs a proposal pair matches (human IoU and object IoU both >=
    ``iou``, continuous coordinates); all False for a pair that matches none (no interaction).

    Args:
        images: labelled images; filenames: (N,) the pair data's images; pair_image: (P,) image of each pair;
        boxes_h, boxes_o: (P, 4) the proposal pair's boxes.
    """
    from mipd_kit.eval.boxes import paired_iou

    by = {im.filename: im for im in images}
    y = torch.zeros(len(pair_image), num_hoi, dtype=torch.bool)
    for i, f in enumerate(filenames):
        im = by.get(f)
        ps = torch.nonzero(pair_image == i).flatten()
        if im is None or not len(im.hoi) or not len(ps):
            continue
        gh = np.asarray(im.boxes_h, dtype=np.float64).reshape(-1, 4)
        go = np.asarray(im.boxes_o, dtype=np.float64).reshape(-1, 4)
        ih = paired_iou(boxes_h[ps].double().numpy()[:, None], gh[None])  # (p, g)
        io = paired_iou(boxes_o[ps].double().numpy()[:, None], go[None])
        match = np.minimum(ih, io) >= iou
        for a, g in zip(*np.nonzero(match)):
            y[int(ps[a]), int(im.hoi[g])] = True
    return y


_SPLIT = re.compile(r";|,|:|\.| and | while | whereas ")


def _clauses(text: str) -> list[str]:
    return [" " + " ".join(re.findall(r"[a-z]+", c)) + " " for c in _SPLIT.split(" " + text.lower() + " ")
            if c.strip()]


def hoi_words(prompts: Sequence[str], verb_words: Optional[Mapping[str, Sequence[str]]] = None,
              object_words: Optional[Mapping[str, Sequence[str]]] = None) -> list[tuple[set[str], set[str]]]:
    """Per HOI, the word sequences that name its verb and its object in a description.

    From the prompt ``"a photo of a person riding a horse"``: verb ``riding``, object ``horse`` (the last word); plus
    ``verb_words[verb]`` (the phrases the world's captions use for it) and ``object_words[object]`` (synonyms).
    """
    out = []
    for p in prompts:
        w = prompt_phrase(p).lower().split()
        verb = w[2] if len(w) > 2 and w[:2] == ["a", "person"] else (w[0] if w else "")
        obj = w[-1] if w else ""
        vs = {verb} | set((verb_words or {}).get(verb, ()))
        os_ = {obj} | set((object_words or {}).get(obj, ()))
        out.append(({v.lower() for v in vs if v}, {o.lower() for o in os_ if o}))
    return out


def named_hois(text: str, words: Sequence[tuple[set[str], set[str]]]) -> set[int]:
    """The HOIs a description names: one clause (split at ``; , : .`` and "and") holds one of the HOI's verb
    phrases and one of its object words, each as whole words."""
    out: set[int] = set()
    for clause in _clauses(text):
        for k, (vs, os_) in enumerate(words):
            if any(f" {v} " in clause for v in vs) and any(f" {o} " in clause for o in os_):
                out.add(k)
    return out


def synthsitu_words() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """SynthSitu's verb synonyms (the captions' ``VERB_WORDS``) and object synonyms (each concept's ids)."""
    from mipd_kit.data.synthsitu import world as W
    from mipd_kit.data.synthsitu.captions import VERB_WORDS

    objs: dict[str, tuple[str, ...]] = {}
    for c in W.CONCEPTS:
        for i in c.ids:
            objs[i] = tuple(c.ids)
    return {k: tuple(v) for k, v in VERB_WORDS.items()}, objs


def description_precision_recall(texts: Mapping[str, str], images: Sequence[HOIImage],
                                 prompts: Sequence[str]) -> dict[str, float]:
    """Micro precision / recall of the HOIs the descriptions name against each image's true HOIs (distinct per
    image), over the images that have both a description and annotations; SynthSitu synonyms included.

    Returns:
        ``{"precision", "recall", "images", "named", "true", "correct", "exact"}`` (``exact``: share of images
        whose named set equals the true set).
    """
    vw, ow = synthsitu_words()
    words = hoi_words(prompts, vw, ow)
    named = true = correct = exact = n = 0
    for im in images:
        t = texts.get(im.filename)
        if not t or not len(im.hoi):
            continue
        got, gold = named_hois(t, words), {int(k) for k in im.hoi}
        n += 1
        named += len(got)
        true += len(gold)
        correct += len(got & gold)
        exact += int(got == gold)
    return {"precision": correct / named if named else float("nan"), "recall": correct / true if true else float("nan"),
            "images": float(n), "named": float(named), "true": float(true), "correct": float(correct),
            "exact": exact / n if n else float("nan")}
