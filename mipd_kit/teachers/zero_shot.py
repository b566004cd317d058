"""Zero-shot recognition with any image-text teacher (the ``Teacher`` protocol of :mod:`mipd_kit.teachers.base`):
verb and noun prompts from the frame space, class embeddings (the mean of a class's normalised prompt embeddings),
zero-shot verb accuracy rows of a GSR split, and the teacher evidence the rationale generator reads (top verbs per
image, top nouns per role on the role's box crop).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.records import DataError, FrameSpace, VerbDef
from ..data.splits import SPLIT_NAMES, load_ov_split
from ..data.swig import load_frame_space, load_situations
from ..metrics import MetricRow, row
from .base import open_image

#: Prompt templates for zero-shot verb scoring; the text embeddings of all templates are averaged per verb.
#: Fields: ``verb`` (the verb id), ``abstract`` (imSitu abstract with roles in lower case, e.g.
#: "the agent rides the vehicle at the place"), ``definition`` (imSitu ``def``).
VERB_PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of someone {verb}.",
    "a photo of {abstract}: {definition}",
    "{abstract}.",
)

#: Prompt templates for scoring nouns (role fillers) on box crops; ``noun`` is a gloss.
NOUN_PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {noun}.",
    "a {noun}.",
)


def abstract_phrase(v: VerbDef) -> str:
    """imSitu abstract with role names as plain words: "AGENT rides VEHICLE" -> "the agent rides the vehicle"."""
    words = []
    roles = {r.upper(): r for r in v.roles}
    for w in v.abstract.split():
        core = w.strip(".,;:")
        if core in roles or (core.isupper() and len(core) > 1):
            words.append("the " + core.lower() + w[len(core):])
        else:
            words.append(w)
    return " ".join(words) if words else v.name


def verb_prompts(space: FrameSpace, templates: Sequence[str] = VERB_PROMPT_TEMPLATES) -> dict[str, list[str]]:
    """Verb -> its prompt texts, built from the frame space only (abstract, definition, verb id)."""
    out = {}
    for name, v in space.verbs.items():
        definition = v.definition or v.abstract or name
        out[name] = [t.format(verb=name.replace("_", " "), abstract=abstract_phrase(v), definition=definition)
                     for t in templates]
    return out


@torch.no_grad()
def class_embeddings(teacher, prompts: dict[str, list[str]]) -> tuple[list[str], torch.Tensor]:
    """Mean of the normalised pooled text embeddings of each class's prompts -> (names, (C, E) unit rows)."""
    names = list(prompts)
    flat = [p for n in names for p in prompts[n]]
    if hasattr(teacher, "text_embeddings"):
        emb = teacher.text_embeddings(flat)
    else:
        emb = torch.cat([teacher.encode_texts(flat[i:i + 256]).pooled for i in range(0, len(flat), 256)])
    emb = F.normalize(emb.float(), dim=-1)
    out, k = [], 0
    for n in names:
        m = len(prompts[n])
        out.append(F.normalize(emb[k:k + m].mean(0), dim=-1))
        k += m
    return names, torch.stack(out)


@torch.no_grad()
def _image_embeddings(teacher, paths: Sequence[Path], batch_size: int = 128) -> torch.Tensor:
    out = []
    for s in range(0, len(paths), batch_size):
        ims = [open_image(p) for p in paths[s:s + batch_size]]
        out.append(teacher.encode_images(ims).pooled.float())
    return F.normalize(torch.cat(out), dim=-1)


def verb_accuracy_rows(gt_verbs: dict[str, str], top5: dict[str, list[str]], split: dict[str, list[str]],
                       model: str = "teacher", seed: Optional[int] = None) -> list[MetricRow]:
    """Verb top-1 / top-5 accuracy (percent), per-image and per-verb means, by split (pure function).

    Args:
        gt_verbs: image -> ground-truth verb.
        top5: image -> up to five predicted verbs, best first.
        split: split name -> verbs (``seen``, ``rare``, ``unseen``, and optionally the unseen kinds).
    """
    groups = {"all": None, **split}
    rows = []
    for name, verbs in groups.items():
        vs = None if verbs is None else set(verbs)
        imgs = [i for i in gt_verbs if vs is None or gt_verbs[i] in vs]
        if not imgs:
            continue
        for setting, k in (("top1", 1), ("top5", 5)):
            hit = {i: gt_verbs[i] in top5.get(i, [])[:k] for i in imgs}
            per_img = 100.0 * float(np.mean(list(hit.values())))
            by_verb: dict[str, list[bool]] = {}
            for i in imgs:
                by_verb.setdefault(gt_verbs[i], []).append(hit[i])
            per_verb = 100.0 * float(np.mean([np.mean(h) for h in by_verb.values()]))
            rows.append(row("gsr", model, name, setting, "verb", per_img, seed=seed, mean="image"))
            rows.append(row("gsr", model, name, setting, "verb", per_verb, seed=seed, mean="verb"))
    return rows


def zero_shot_verbs(teacher, world_dir: str | os.PathLike, split: str = "test", seed: Optional[int] = None,
                    templates: Sequence[str] = VERB_PROMPT_TEMPLATES) -> tuple[dict[str, list[list]], list[MetricRow]]:
    """Zero-shot verb recognition on a GSR split: cosine of image and verb-prompt embeddings.

    Returns:
        ``(predictions, rows)``: image -> ``[[verb, score], ...5]`` best first; metric rows (task ``gsr``,
        model ``teacher``, splits all/seen/rare/unseen(+kinds), settings top1/top5, metric ``verb``, means
        image and verb).
    """
    world = Path(world_dir)
    space = load_frame_space(world / "imsitu_space.json")
    sits = load_situations(world / f"{split}.json")
    ov = load_ov_split(world)
    names, cls = class_embeddings(teacher, verb_prompts(space, templates))
    imgs = sorted(sits)
    emb = _image_embeddings(teacher, [world / "images" / i for i in imgs])
    sims = emb @ cls.T  # (N, C)
    k = min(5, len(names))
    sc, ix = sims.topk(k, dim=1)
    preds = {i: [[names[j], float(s)] for j, s in zip(ix[n].tolist(), sc[n].tolist())] for n, i in enumerate(imgs)}
    rows = verb_accuracy_rows({i: sits[i].verb for i in imgs}, {i: [v for v, _ in preds[i]] for i in imgs}, ov,
                              seed=seed)
    return preds, rows


def noun_prompts(space: FrameSpace, templates: Sequence[str] = NOUN_PROMPT_TEMPLATES) -> dict[str, list[str]]:
    """Noun id -> prompt texts from its glosses; synonyms sharing one gloss list are scored once.

    SynthSitu (like imSitu) lists synonyms as separate noun ids with the same glosses (in any order); one
    representative per gloss set (the first id listed) keeps the top-k nouns distinct concepts.
    """
    groups: dict[tuple, str] = {}
    for n, d in space.nouns.items():
        gl = tuple(d.gloss) or ((n,) if n else ("nothing",))  # the empty noun is scored as "nothing"
        key = tuple(sorted(set(gl)))  # synonyms may list the same glosses in another order
        groups.setdefault(key, n)
    out = {}
    for key, n in groups.items():
        d = space.nouns.get(n)
        gl = tuple(d.gloss) if d is not None and d.gloss else ((n,) if n else ("nothing",))
        out[n] = [t.format(noun=g) for g in gl[:3] for t in templates]
    return out


def zero_shot_table(rows: Sequence[MetricRow]):
    """Pandas table of verb accuracy rows: index split (in ``SPLIT_NAMES`` order), columns (mean, setting)."""
    import pandas as pd
    df = pd.DataFrame([{"split": r.split, "setting": r.setting, "mean": r.mean, "value": r.value} for r in rows
                       if r.metric == "verb"])
    if df.empty:
        return df
    t = df.pivot_table(index="split", columns=["mean", "setting"], values="value")
    return t.reindex([s for s in SPLIT_NAMES if s in t.index]).round(2)


def _crop(im: Image.Image, box) -> Image.Image:
    if box is None:
        return im
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(im.width, max(x2, x1 + 2)), min(im.height, max(y2, y1 + 2))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return im
    return im.crop((x1, y1, x2, y2))


@torch.no_grad()
def teacher_evidence(teacher, world_dir: str | os.PathLike, out_path: Optional[str | os.PathLike] = None,
                     split: str = "train", top_verbs: int = 5, top_nouns: int = 3,
                     batch_size: int = 128) -> dict[str, dict]:
    """Teacher evidence for the rationale generator (``teacher_evidence.json``): top verbs per image, top nouns per role.

    Role nouns are scored on the role's box crop (the whole image when the role has no box) against noun
    prompts of every noun in the frame space (glosses averaged). Writes ``out_path`` atomically when given.

    Returns:
        ``{image: {"top_verbs": [[verb, score], ...], "role_nouns": {role: [[noun, score], ...]}}}``.
    """
    world = Path(world_dir)
    space = load_frame_space(world / "imsitu_space.json")
    sits = load_situations(world / f"{split}.json")
    vnames, vcls = class_embeddings(teacher, verb_prompts(space))
    nprompts = noun_prompts(space)
    nnames, ncls = class_embeddings(teacher, nprompts)
    imgs = sorted(sits)
    out: dict[str, dict] = {}
    for s in range(0, len(imgs), batch_size):
        chunk = imgs[s:s + batch_size]
        full, crops, crop_keys = [], [], []
        for i in chunk:
            p = world / "images" / i
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
            except Exception as e:
                raise DataError(f"{p}: unreadable image ({type(e).__name__}: {e})") from e
            full.append(im)
            for r in space.roles(sits[i].verb) if sits[i].verb in space.verbs else sits[i].frames[0].keys():
                crops.append(_crop(im, sits[i].boxes.get(r)))
                crop_keys.append((i, r))
        e = F.normalize(teacher.encode_images(full).pooled.float(), dim=-1)
        vs, vi = (e @ vcls.T).topk(min(top_verbs, len(vnames)), dim=1)
        for n, i in enumerate(chunk):
            out[i] = {"top_verbs": [[vnames[j], round(float(x), 4)] for j, x in zip(vi[n].tolist(), vs[n].tolist())],
                      "role_nouns": {}}
        for c in range(0, len(crops), batch_size):
            ce = F.normalize(teacher.encode_images(crops[c:c + batch_size]).pooled.float(), dim=-1)
            ns, ni = (ce @ ncls.T).topk(min(top_nouns, len(nnames)), dim=1)
            for n, (i, r) in enumerate(crop_keys[c:c + batch_size]):
                out[i]["role_nouns"][r] = [[nnames[j], round(float(x), 4)] for j, x in zip(ni[n].tolist(), ns[n].tolist())]
    if out_path is not None:
        p = Path(out_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        from mipd_kit.fileio import write_json
        write_json(p, out, indent=None)
    return out
