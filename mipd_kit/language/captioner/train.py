"""Training, checkpoints and releases of the embedded captioner (:mod:`.model`).

Trained with next-word cross-entropy (teacher forcing) on the world's pretraining caption corpus
``pretrain/captions.jsonl`` -- the same corpus the teacher was trained on, and nothing else: never the GSR labels (the
``verbs`` field of the corpus is diagnostic and never read here). During training a fraction ``region_p`` of examples
see only a random region of the grid (still predicting the whole caption), so that the decoder learns to write from
partial evidence.

Here: ``train_captioner``, ``save_captioner`` / ``load_captioner`` (``model.safetensors`` + ``captioner.json`` holding
config and vocabulary; loading never unpickles; ``dtype="fp16"`` for a release), ``load_or_train_captioner``,
``captioner_for`` (the released weights of ``mipd_kit.weights`` or a trained captioner: ``weights`` auto | released |
retrain), ``load_released_captioner``, ``find_captioner_release`` and ``load_captioner_with_teacher`` (a checkpoint
or release name and the teacher it reads).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from mipd_kit.language.captioner.model import (
    PAD, Captioner, CaptionerConfig, CaptionerError, Vocab, encode_tokens, open_image_file)
from mipd_kit.fileio import replace_dir
from mipd_kit.torch_utils import warmup_cosine_lr

FORMAT = "mipd-embedded-captioner/1"


# ----------------------------------------------------------------------------------------------- data
def read_pretrain_captions(world_dir: str | os.PathLike) -> list[dict]:
    """Records of ``pretrain/captions.jsonl`` (only ``image`` and ``caption`` are used)."""
    from mipd_kit.teachers.embedded import read_captions
    return read_captions(world_dir)


def is_heldout(image: str, frac: float) -> bool:
    """Whether a pretraining image is held out of captioner training (a stable hash of its path below ``frac``)."""
    h = int.from_bytes(hashlib.sha256(image.encode()).digest()[:8], "big") / 2 ** 64
    return h < frac



def data_fingerprint(world_dir: str | os.PathLike) -> str:
    """sha256 of the pretraining captions file (the corpus identity)."""
    p = Path(world_dir) / "pretrain" / "captions.jsonl"
    if not p.exists():
        raise CaptionerError(f"{p}: pretraining captions not found (generate the world with `mipd synth --out DIR`)")
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]



# ----------------------------------------------------------------------------------------------- training
def random_regions(n: int, p: float, min_side: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 4) normalised random boxes for a fraction ``p`` of rows, NaN rows (whole image) for the rest."""
    use = torch.rand(n, generator=gen) < p
    wh = min_side + (1 - min_side) * torch.rand(n, 2, generator=gen)  # (n, 2)
    xy = (1 - wh) * torch.rand(n, 2, generator=gen)
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[~use] = float("nan")
    return boxes


def train_captioner(world_dir: str | os.PathLike, teacher, cfg: Optional[CaptionerConfig] = None,
                    progress: bool = False) -> Captioner:
    """Train a captioner on the world's pretraining captions, reading the frozen ``teacher``'s patch tokens.

    Only ``image`` and ``caption`` of each pretraining record are read; images with ``is_heldout`` are left out.

    Returns:
        the captioner; ``captioner.info`` holds ``epoch_loss``, ``heldout_loss`` (per epoch), ``wall_time_s``,
        ``n_train``, ``n_heldout``, ``data_fingerprint``, ``threads``.
    """
    cfg = cfg or CaptionerConfig()
    t0 = time.time()
    world = Path(world_dir)
    recs = read_pretrain_captions(world)
    if cfg.max_pairs is not None:
        recs = recs[:cfg.max_pairs]
    train = [r for r in recs if not is_heldout(r["image"], cfg.holdout_frac)]
    held = [r for r in recs if is_heldout(r["image"], cfg.holdout_frac)]
    if not train:
        raise CaptionerError(f"{world / 'pretrain' / 'captions.jsonl'}: no training captions left after holding out "
                             f"{cfg.holdout_frac:.0%}")
    old_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        vocab = Vocab.build([r["caption"] for r in train], cfg.min_count)

        def tensors(rs: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
            toks = encode_tokens(teacher, [open_image_file(world / r["image"]) for r in rs])
            ids = torch.full((len(rs), cfg.max_len), PAD, dtype=torch.long)
            for i, r in enumerate(rs):
                e = vocab.encode(r["caption"], cfg.max_len)
                ids[i, :len(e)] = torch.tensor(e)
            return toks, ids

        tok_tr, ids_tr = tensors(train)
        tok_he, ids_he = tensors(held) if held else (None, None)
        torch.manual_seed(cfg.seed)
        model = Captioner(cfg, vocab, tok_tr.shape[2], tok_tr.shape[1], tuple(teacher.grid),
                          str(getattr(teacher, "fingerprint", "")))
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        N = len(train)
        bs = min(cfg.batch_size, N)
        steps_per_epoch = max(1, N // bs)
        total = steps_per_epoch * cfg.epochs
        epoch_loss, heldout_loss, step = [], [], 0
        bar = None
        if progress:
            from mipd_kit.progress import progress as progress_bar
            bar = progress_bar(total=total, desc="captioner training", unit="step")
        for ep in range(cfg.epochs):
            model.train()
            perm = torch.randperm(N, generator=gen)
            losses = []
            for b in range(steps_per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                boxes = random_regions(len(idx), cfg.region_p, cfg.region_min, gen)
                for g in opt.param_groups:
                    g["lr"] = warmup_cosine_lr(step, total, cfg.lr, cfg.warmup_frac)
                loss = model.loss(tok_tr[idx], ids_tr[idx], boxes)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                losses.append(loss.item())
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            epoch_loss.append(float(np.mean(losses)))
            if tok_he is not None:
                model.eval()
                with torch.no_grad():
                    heldout_loss.append(float(model.loss(tok_he, ids_he).item()))
        if bar is not None:
            bar.close()
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    model.eval()
    model.info = {"epoch_loss": epoch_loss, "heldout_loss": heldout_loss, "wall_time_s": time.time() - t0,
                  "n_train": N, "n_heldout": len(held), "vocab_size": len(vocab), "steps": total,
                  "data_fingerprint": data_fingerprint(world), "threads": threads}
    return model


# ----------------------------------------------------------------------------------------------- save / load
def save_captioner(captioner: Captioner, ckpt_dir: str | os.PathLike, extra: Optional[dict] = None,
                   dtype: str = "fp32") -> Path:
    """Write ``model.safetensors`` and ``captioner.json`` (config, vocabulary, token shape, training record)
    atomically: the folder appears complete or not at all.

    Args:
        dtype: ``fp32`` (the cache) or ``fp16`` (a release: half the bytes; loads back as float32 modules).
    """
    from safetensors.torch import save_file
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"save_captioner: dtype {dtype!r} is not one of ('fp32', 'fp16')")
    d = Path(ckpt_dir)
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    want = torch.float16 if dtype == "fp16" else torch.float32
    state = {k: (v.detach().to(want) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in captioner.decoder.state_dict().items() if k != "head.weight"}  # tied to embed.weight
    save_file(state, str(tmp / "model.safetensors"), metadata={"dtype": dtype})
    meta = {"format": FORMAT, "dtype": dtype, "config": asdict(captioner.cfg), "vocab": list(captioner.vocab.words),
            "token_dim": captioner.token_dim, "n_tokens": captioner.n_tokens, "grid": list(captioner.grid),
            "teacher_fingerprint": captioner.teacher_fingerprint, "fingerprint": captioner.fingerprint,
            "info": captioner.info, **(extra or {})}
    (tmp / "captioner.json").write_text(json.dumps(meta, indent=1))
    replace_dir(tmp, d)
    return d


def load_captioner(ckpt_dir: str | os.PathLike) -> Captioner:
    """Load a captioner saved by :func:`save_captioner` (no unpickling; fp16 weights are cast to float32);
    ``CaptionerError`` naming the file."""
    from safetensors.torch import load_file
    d = Path(ckpt_dir)
    mpath = d / "captioner.json"
    try:
        meta = json.loads(mpath.read_text())
    except FileNotFoundError as e:
        raise CaptionerError(f"{mpath}: captioner checkpoint not found") from e
    except json.JSONDecodeError as e:
        raise CaptionerError(f"{mpath}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CaptionerError(f"{mpath}: not a captioner checkpoint (format {fmt!r}, expected {FORMAT!r})")
    try:
        cfg = CaptionerConfig.from_dict(meta["config"])
        model = Captioner(cfg, Vocab(tuple(meta["vocab"])), int(meta["token_dim"]), int(meta["n_tokens"]),
                          tuple(meta["grid"]), str(meta.get("teacher_fingerprint", "")))
    except (KeyError, TypeError, ValueError) as e:
        raise CaptionerError(f"{mpath}: malformed captioner record ({e!r})") from e
    wpath = d / "model.safetensors"
    try:
        state = {k: v.float() if v.is_floating_point() else v  # an fp16 release loads as float32 modules
                 for k, v in load_file(str(wpath)).items()}
    except FileNotFoundError as e:
        raise CaptionerError(f"{wpath}: captioner weights not found") from e
    except Exception as e:
        raise CaptionerError(f"{wpath}: corrupt captioner weights ({e})") from e
    state["head.weight"] = state["embed.weight"]
    try:
        model.decoder.load_state_dict(state)
    except RuntimeError as e:
        raise CaptionerError(f"{wpath}: weights do not match {mpath} ({e})") from e
    model.decoder.head.weight = model.decoder.embed.weight
    model.eval()
    model.info = dict(meta.get("info", {}))
    model.checkpoint_dir = d  # type: ignore[attr-defined]
    return model


def checkpoint_dir_for(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher,
                       cfg: CaptionerConfig) -> Path:
    """``cache_dir/captioner/captioner-<sha of config, corpus and teacher fingerprints>``."""
    key = json.dumps({"cfg": cfg.training_key(), "data": data_fingerprint(world_dir),
                      "teacher": str(getattr(teacher, "fingerprint", ""))}, sort_keys=True)
    return Path(cache_dir) / "captioner" / f"captioner-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def load_or_train_captioner(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher,
                            cfg: Optional[CaptionerConfig] = None, progress: bool = False) -> Captioner:
    """Load the checkpoint whose config, corpus and teacher match, or train one and save it.

    ``captioner.loaded_from_cache`` tells which happened.
    """
    cfg = cfg or CaptionerConfig()
    d = checkpoint_dir_for(world_dir, cache_dir, teacher, cfg)
    if (d / "captioner.json").exists() and (d / "model.safetensors").exists():
        c = load_captioner(d)
        c.loaded_from_cache = True  # type: ignore[attr-defined]
        return c
    c = train_captioner(world_dir, teacher, cfg, progress=progress)
    teacher_dir = getattr(teacher, "checkpoint_dir", None)
    save_captioner(c, d, {"teacher_checkpoint": str(teacher_dir) if teacher_dir else None})
    c.checkpoint_dir = d  # type: ignore[attr-defined]
    c.loaded_from_cache = False  # type: ignore[attr-defined]
    return c


def find_captioner_release(cfg: CaptionerConfig, teacher, root: Optional[str | os.PathLike] = None) -> Optional[dict]:
    """The manifest entry of the captioner release trained with ``cfg``'s training key on ``teacher`` (its
    fingerprint), or None."""
    from mipd_kit.weights import list_releases
    key = json.loads(json.dumps(cfg.training_key()))
    tf = str(getattr(teacher, "fingerprint", ""))
    for e in list_releases(root, kind="captioner"):
        if e.get("training_key") == key and e.get("teacher_fingerprint") == tf:
            return e
    return None


def load_released_captioner(name: str, root: Optional[str | os.PathLike] = None) -> Captioner:
    """Load a released captioner by name (``embedded-captioner-default``) after checking every file's sha256; the
    fp16 release loads as float32 modules; ``captioner.weights`` records the release (name + sha256).

    Raises:
        mipd_kit.weights.ReleaseError: unknown name, or a file whose sha256 differs from the manifest.
    """
    from mipd_kit.teachers.embedded import release_provenance
    from mipd_kit.weights import get_release, resolve
    c = load_captioner(resolve(name, root))
    c.loaded_from_cache = True  # type: ignore[attr-defined]
    c.weights = release_provenance(get_release(name, root))  # type: ignore[attr-defined]
    return c


def captioner_for(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher,
                  cfg: Optional[CaptionerConfig] = None, weights: str = "auto",
                  root: Optional[str | os.PathLike] = None, progress: bool = False) -> Captioner:
    """The captioner of a run: the released weights, or one trained on the world (``load_or_train_captioner``).

    A release is used when it was trained with ``cfg``'s training key, on this very ``teacher`` (the released
    teacher: same fingerprint) and on the world's pretraining corpus (same fingerprint).

    Args:
        weights: ``auto`` | ``released`` | ``retrain`` (as the teacher's ``weights``): ``released`` refuses when no
            release matches (naming the corpus fingerprints when they differ); ``auto`` then trains and logs why.
        root: the weights folder (default: the package's, or ``$MIPD_WEIGHTS_DIR``).

    ``captioner.weights`` records what was used: ``{"source": "release", "name", "sha256": {file: hash}}`` or
    ``{"source": "trained", "checkpoint", "reason"}``.
    """
    import logging

    from mipd_kit.teachers.embedded import check_weights_choice
    from mipd_kit.weights import release_mismatch
    log = logging.getLogger(__name__)
    cfg = cfg or CaptionerConfig()
    check_weights_choice(weights)
    reason = "weights: retrain"
    if weights != "retrain":
        e = find_captioner_release(cfg, teacher, root)
        reason = release_mismatch(
            e, "captioner", "corpus_fingerprint", data_fingerprint(world_dir) if e else "", world_dir, weights,
            missing=("no released captioner for this training config and teacher "
                     f"{getattr(teacher, 'fingerprint', '?')} (a release reads the released teacher)")) or ""
        if e is not None and not reason:
            log.info("embedded captioner: released weights %s", e["name"])
            return load_released_captioner(e["name"], root)
    log.info("embedded captioner: training on the world (%s)", reason)
    c = load_or_train_captioner(world_dir, cache_dir, teacher, cfg, progress=progress)
    c.weights = {"source": "trained", "checkpoint": str(getattr(c, "checkpoint_dir", "")),  # type: ignore[attr-defined]
                 "reason": reason}
    return c



def load_captioner_with_teacher(checkpoint: str, teacher: str = "") -> tuple[Captioner, Any]:
    """A saved captioner and the frozen teacher it reads; ``CaptionerError`` naming what is missing.

    Args:
        checkpoint: a folder written by :func:`save_captioner`, or a release name (``embedded-captioner-default``,
            see ``mipd_kit.weights``: loaded after its sha256 check, with the released teacher it records).
        teacher: an embedded-teacher checkpoint folder or release name; "" = the one recorded in the captioner's
            ``captioner.json``.
    """
    if not checkpoint:
        raise CaptionerError("the captioner backend needs captioner.checkpoint (a folder written by save_captioner)")
    from mipd_kit.teachers.embedded import load_released_teacher, load_teacher
    from mipd_kit.weights import get_release, weights_dir
    ck = Path(checkpoint)
    if not ck.exists() and get_release(checkpoint) is not None:  # a release name
        cap = load_released_captioner(checkpoint)
        ck = weights_dir() / checkpoint
    else:
        cap = load_captioner(ck)
    meta = json.loads((ck / "captioner.json").read_text())
    tdir = teacher or meta.get("teacher_checkpoint") or ""
    if not tdir and meta.get("teacher_release"):
        tdir = str(meta["teacher_release"])
        if not (ck.parent / tdir).exists():
            raise CaptionerError(f"{ck / 'captioner.json'}: its teacher release {tdir!r} is not beside it in "
                                 f"{ck.parent}; set captioner.teacher")
        return cap, load_released_teacher(tdir, ck.parent)
    if not tdir:
        raise CaptionerError(f"{ck / 'captioner.json'}: records no teacher checkpoint; set captioner.teacher")
    if not Path(tdir).exists() and get_release(tdir) is not None:
        return cap, load_released_teacher(tdir)
    return cap, load_teacher(tdir)
