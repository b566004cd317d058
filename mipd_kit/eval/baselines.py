"""Difficulty baselines of a SynthSitu world: is the world neither trivial nor impossible?

Two closed-set verb classifiers trained on the **seen and rare** verbs of ``train.json`` (they cannot name unseen
verbs at all):

* ``pixel_linear``: multinomial logistic regression on raw pixels downsampled to ``linear_side`` x ``linear_side``
  (standardised per feature, L2-regularised, full-batch Adam);
* ``small_cnn``: a 4-layer convolutional network (16-32-64-64 channels, batch norm, max pooling, global average pooling) on
  ``cnn_side`` x ``cnn_side`` images with horizontal-flip augmentation.

Frames: neither model localises anything. For each ranked verb the frame is a **training prior**: per role, the
most frequent noun among the training annotations of that verb (over all 3 annotators; the empty noun counts) and
the mean training box of that role for that verb (``None`` when the role is absent in most training images).
``gt_verb_frame`` is that prior for the ground-truth verb; for an unseen verb (no training images) it falls back to
the prior of the role *name* over all training verbs. Scored with :func:`mipd_kit.eval.swig.evaluate_swig`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from PIL import Image

from mipd_kit.data.records import FrameSpace, Situation
from mipd_kit.metrics import MetricRow


@dataclass
class BaselineConfig:
    """Settings of the two difficulty baselines.

    Attributes:
        linear_side: pixel side of the linear classifier's input.
        linear_steps: full-batch optimisation steps of the linear classifier.
        linear_wd: L2 weight decay of the linear classifier.
        cnn_side: pixel side of the CNN's input.
        cnn_epochs: CNN training epochs.
        cnn_batch: CNN batch size.
        lr: learning rate (both).
        seed: seeds initialisation and data order.
        threads: torch CPU threads.
    """

    linear_side: int = 32
    linear_steps: int = 200
    linear_wd: float = 1e-3
    cnn_side: int = 48
    cnn_epochs: int = 8
    cnn_batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    threads: int = 2

    @classmethod
    def smoke(cls) -> "BaselineConfig":
        return cls(linear_steps=100, cnn_epochs=3, cnn_side=32)


def load_images(world_dir: str | Path, names: list[str], side: int) -> np.ndarray:
    """Images resized to ``side`` x ``side``, as float32 in [0, 1], shape (N, 3, side, side)."""
    out = np.empty((len(names), 3, side, side), np.float32)
    for i, n in enumerate(names):
        with Image.open(Path(world_dir) / "images" / n) as im:
            im = im.convert("RGB")
            if im.size != (side, side):
                im = im.resize((side, side), Image.BILINEAR)
            out[i] = np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
    return out


@dataclass
class FramePrior:
    """Per (verb, role) and per role name: the most frequent noun and the mean box (or ``None``)."""

    by_verb: dict[str, dict[str, dict[str, Any]]]
    by_role: dict[str, dict[str, Any]]

    def frame(self, verb: str, space: FrameSpace) -> dict[str, dict[str, Any]]:
        pri = self.by_verb.get(verb)
        out = {}
        for r in space.verbs[verb].roles:
            if pri is not None and r in pri:
                out[r] = dict(pri[r])
            else:
                out[r] = dict(self.by_role.get(r, {"noun": "", "box": None}))
        return out


def frame_prior(train: Mapping[str, Situation]) -> FramePrior:
    """The training prior of :class:`FramePrior` (pure function of the training situations)."""
    def summarise(nouns: Counter, boxes: list, n_absent: int) -> dict[str, Any]:
        box = None
        if boxes and len(boxes) >= n_absent:
            box = [float(v) for v in np.mean(np.array(boxes, np.float64), axis=0)]
        return {"noun": nouns.most_common(1)[0][0] if nouns else "", "box": box}

    acc: dict[tuple[str, str], tuple[Counter, list, list]] = {}
    for s in train.values():
        for r in s.boxes or s.frames[0]:
            for key in ((s.verb, r), ("*", r)):
                c, bs, ab = acc.setdefault(key, (Counter(), [], [0]))
                c.update(f.get(r, "") for f in s.frames)
                b = s.boxes.get(r)
                if b is None:
                    ab[0] += 1
                else:
                    bs.append(list(b))
    by_verb: dict[str, dict[str, dict]] = {}
    by_role: dict[str, dict] = {}
    for (v, r), (c, bs, ab) in acc.items():
        if v == "*":
            by_role[r] = summarise(c, bs, ab[0])
        else:
            by_verb.setdefault(v, {})[r] = summarise(c, bs, ab[0])
    return FramePrior(by_verb, by_role)


def predictions(names: list[str], scores: np.ndarray, classes: list[str], prior: FramePrior, space: FrameSpace,
                gt: Optional[Mapping[str, Situation]] = None) -> dict[str, dict]:
    """SWiG predictions: top-5 verbs of ``scores`` (N, C) each with its prior frame (+ ``gt_verb_frame``)."""
    out = {}
    top = np.argsort(-scores, axis=1)[:, :5]
    for i, n in enumerate(names):
        verbs = [{"verb": classes[j], "score": float(scores[i, j]), "frame": prior.frame(classes[j], space)}
                 for j in top[i]]
        rec: dict[str, Any] = {"verbs": verbs}
        if gt is not None:
            rec["gt_verb_frame"] = prior.frame(gt[n].verb, space)
        out[n] = rec
    return out


def _standardise(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = x_train.mean(0, keepdims=True), x_train.std(0, keepdims=True) + 1e-3
    return [(x - mu) / sd for x in (x_train, *others)]


def train_pixel_linear(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: BaselineConfig):
    """Multinomial logistic regression on flattened pixels; returns a function images -> logits (N, C)."""
    import torch
    torch.manual_seed(cfg.seed)
    xf = x.reshape(len(x), -1)
    mu, sd = xf.mean(0, keepdims=True), xf.std(0, keepdims=True) + 1e-3
    xt = torch.from_numpy((xf - mu) / sd)
    yt = torch.from_numpy(y).long()
    lin = torch.nn.Linear(xt.shape[1], n_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=cfg.lr, weight_decay=cfg.linear_wd)
    for _ in range(cfg.linear_steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt)
        loss.backward()
        opt.step()

    def predict(xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return lin(torch.from_numpy((xs.reshape(len(xs), -1) - mu) / sd)).numpy()
    return predict


def _small_cnn(n_classes: int):
    import torch.nn as nn

    def block(i: int, o: int) -> list:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64), *block(64, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes))


def train_small_cnn(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: BaselineConfig):
    """A small CNN trained with Adam and flip augmentation; returns a function images -> logits (N, C)."""
    import torch
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = _small_cnn(n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(cfg.cnn_epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=g)
        for k in range(0, len(xt), cfg.cnn_batch):
            idx = perm[k:k + cfg.cnn_batch]
            xb = xt[idx]  # (B, 3, S, S)
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xb), yt[idx])
            loss.backward()
            opt.step()
    net.eval()

    def predict(xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([net(torch.from_numpy(xs[k:k + 256])) for k in range(0, len(xs), 256)]).numpy()
    return predict


def run_baselines(world_dir: str | Path, cfg: Optional[BaselineConfig] = None, split: str = "test",
                  seed: Optional[int] = None) -> tuple[list[MetricRow], dict[str, Any]]:
    """Train both baselines on the world's train split (seen + rare verbs) and evaluate them on ``split``.

    Returns:
        metric rows (models ``pixel_linear`` and ``small_cnn``, task ``gsr``) and info (timings, accuracies,
        the predictions per model).
    """
    import torch

    from mipd_kit.data.splits import OvSplit, guard_training
    from mipd_kit.data.swig import load_frame_space, load_situations
    from mipd_kit.eval.swig import evaluate_swig

    cfg = cfg or BaselineConfig()
    torch.set_num_threads(cfg.threads)
    wd = Path(world_dir)
    space = load_frame_space(wd / "imsitu_space.json")
    ov = OvSplit.load(wd / "ov_split.json")
    train = load_situations(wd / "train.json", space)
    guard_training(train, ov)
    test = load_situations(wd / f"{split}.json", space)
    classes = sorted(ov.trainable)
    tr_names, te_names = sorted(train), sorted(test)
    y = np.array([classes.index(train[n].verb) for n in tr_names])
    prior = frame_prior(train)
    rows: list[MetricRow] = []
    info: dict[str, Any] = {"classes": len(classes), "train_images": len(tr_names), "eval_images": len(te_names),
                            "timings": {}, "predictions": {}}
    for model, side, trainer in (("pixel_linear", cfg.linear_side, train_pixel_linear),
                                 ("small_cnn", cfg.cnn_side, train_small_cnn)):
        t = time.perf_counter()
        xtr, xte = load_images(wd, tr_names, side), load_images(wd, te_names, side)
        predict = trainer(xtr, y, len(classes), cfg)
        scores = predict(xte)
        train_acc = float((predict(xtr).argmax(1) == y).mean())
        preds = predictions(te_names, scores, classes, prior, space, gt=test)
        for r in evaluate_swig(test, preds, ov, model=model, seed=seed):
            rows.append(r)
        info["timings"][model] = time.perf_counter() - t
        info["train_acc_" + model] = 100 * train_acc
        info["predictions"][model] = preds
    return rows, info
