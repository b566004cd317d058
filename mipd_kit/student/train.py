"""Training the Ov-GSR student: the loss composition of a variant and the training loop (:func:`fit`), single
process or ``torchrun`` DDP (:mod:`mipd_kit.student.distributed`).

MIPD (Multimodal Interactive Prompt Distillation): the student (:mod:`mipd_kit.student.model`) is trained on the
labelled seen + rare verbs of the open-vocabulary split (``mipd_kit.data.splits.guard_training`` refuses any
unseen-verb example; :func:`check_trainable_labels` refuses any unseen label that would reach the loss) and, depending
on the variant, distils the teacher.

The variants and the ingredients each switches on are one table, :data:`mipd_kit.student.ingredients.ROWS`
(rendered in docs/methods.md): ``baseline`` (``baseline``), ``feat`` (``mipd-feat``), ``feat-kd``
(``mipd-feat-kd``), ``paper`` (``mipd``: the paper's ingredients, no logit KD), ``full`` (``mipd-kd``: + logit KD),
``template`` / ``shuffled`` (``mipd-template`` / ``mipd-shuffled``: ``paper`` on control rationales),
``feat-kd-unlabeled`` / ``kd-unlabeled`` (the unlabeled pair), and the ablation steps ``glimpse``, ``gaze``, ``neg``
and ``unlabeled`` (``mipd-unlabeled``, the same ingredients as ``mipd-kd-unlabeled``). Every variant shares the supervised losses
and their weights (the authors', :data:`mipd_kit.student.ingredients.AUTHORS_LOSSES`).

The rest of the student's training is one file per job: :mod:`~mipd_kit.student.config` (``StudentConfig``),
:mod:`~mipd_kit.student.data` (``prepare_world``), :mod:`~mipd_kit.student.targets` (``attach_targets``),
:mod:`~mipd_kit.student.checkpoint` (checkpoint I/O) and :mod:`~mipd_kit.student.predict` (``predict_swig``); the
run-folder half (``run_variant``, ``mipd train-student``) is :mod:`mipd_kit.app.stages.student_runs`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..machine import autocast, resolve_device, to_device
from ..fileio import atomic_path
from . import losses as L
from .checkpoint import finished_checkpoint, load_checkpoint, save_checkpoint, save_student_file
from .config import StudentConfig
from .data import StudentData, World
from .distributed import allreduce_grads, rank_and_size
from .model import OvGSRStudent, StudentVocab, build_student, to_input
from .targets import attach_targets


def check_trainable_labels(d: StudentData, idx: torch.Tensor, train_ids: torch.Tensor) -> None:
    """Refuse a batch holding a label of a non-trainable (unseen) verb or an unlabeled sample: the second guard of
    the module docstring, on the CPU rows before the batch moves (no device synchronisation per step).

    Raises:
        RuntimeError: naming up to three offending images.
    """
    verb = d.verb[idx]
    wrong = (verb < 0) | ~torch.isin(verb, train_ids)
    if wrong.any():
        bad = [d.images[i] for i in idx[wrong][:3].tolist()]
        raise RuntimeError(f"label of a non-trainable (unseen) verb reached the loss: {bad}")


def compute_losses(model: OvGSRStudent, b: StudentData, B: int, cfg: StudentConfig,
                   train_map: torch.Tensor, train_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weighted named loss parts on the labelled batch ``b`` (``StudentData.take``: on the model's device, its labels
    checked by :func:`check_trainable_labels`), normalised by the global batch size ``B``. Pure tensor code with no
    host synchronisation, so it also runs on the ``meta`` device (the device tests)."""
    u = cfg.uses
    verb = b.verb
    out = model(to_input(b.x), verb, b.xp)
    vl = out["verb_logits"][:, train_ids]  # CE over the trainable vocabulary only
    rm = b.role_mask
    parts = {"verb": cfg.w_verb * L.verb_ce(vl, train_map[verb], B, cfg.verb_smoothing),
             "noun": cfg.w_noun * L.noun_ce(out["noun_logits"], b.nouns, rm, B, cfg.noun_smoothing),
             "box_l1": cfg.w_l1 * L.box_l1(out["boxes"], b.boxes, b.exists, B),
             "box_giou": cfg.w_giou * L.box_giou(out["boxes"], b.boxes, b.exists, B),
             "box_exists": cfg.w_exists * L.box_exists_bce(out["exists"], b.exists, rm, B)}
    if u["distill"]:
        ones = torch.ones(len(b), dtype=torch.bool, device=verb.device)
        parts["distill_scene"] = cfg.w_scene * L.feature_distill(out["scene_feat"], b.scene_t, ones, B, cfg.distill_kind)
        if cfg.w_role > 0:
            parts["distill_role"] = cfg.w_role * L.feature_distill(out["role_feat"], b.role_t, rm, B, cfg.distill_kind)
    if u["neg"] and cfg.w_neg > 0 and b.neg is not None:
        # on the student's own negative projection of the scene feature: never on the verb head's input
        parts["neg"] = cfg.w_neg * L.negative_guided(model.neg_proj(out["scene"]), b.pos, b.neg, b.neg_mask, B,
                                                     cfg.neg_kind, pos_mask=b.pos_mask)
    if u["kd"] and cfg.w_kd > 0 and b.kd is not None:
        kv = train_ids if cfg.kd_vocab == "train" else torch.arange(out["verb_logits"].shape[1], device=verb.device)
        parts["kd"] = cfg.w_kd * L.logit_kd(out["verb_logits"][:, kv], b.kd[:, kv], B, cfg.kd_t)
    return parts


def unlabeled_losses(model: OvGSRStudent, b: StudentData, B: int, cfg: StudentConfig,
                     train_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scene distillation (+ logit KD over the trainable verbs) on the unlabeled batch ``b``; no label is used."""
    tok, scene = model.encode(to_input(b.x), b.xp)
    ones = torch.ones(len(b), dtype=torch.bool, device=b.x.device)
    parts = {"u_distill_scene": cfg.w_scene * L.feature_distill(model.scene_distill(scene), b.scene_t, ones, B,
                                                                cfg.distill_kind)}
    if cfg.w_kd > 0 and b.kd is not None:
        kv = train_ids if cfg.kd_vocab == "train" else torch.arange(b.kd.shape[1], device=b.kd.device)
        parts["u_kd"] = cfg.w_kd * L.logit_kd(model.verb_logits(scene)[:, kv], b.kd[:, kv], B, cfg.kd_t)
    return parts


@dataclass
class FitResult:
    model: OvGSRStudent
    history: list[dict[str, float]]
    best_epoch: int
    dev_curve: list[float]
    info: dict[str, Any]



@torch.no_grad()
def verb_top1(model: OvGSRStudent, d: StudentData, mask: Optional[torch.Tensor] = None, batch_size: int = 256) -> float:
    """Verb top-1 (percent) over the images selected by ``mask`` (all verbs predictable)."""
    model.eval()
    dev = next(model.parameters()).device
    sel = torch.arange(len(d)) if mask is None else torch.nonzero(mask).flatten()
    if len(sel) == 0:
        return float("nan")
    hits = 0
    for s in range(0, len(sel), batch_size):
        i = sel[s:s + batch_size]
        _, scene = model.encode(to_input(to_device(d.x[i], dev)), None if d.xp is None else to_device(d.xp[i], dev))
        hits += int((model.verb_logits(scene).argmax(-1).cpu() == d.verb[i]).sum())
    model.train()
    return 100.0 * hits / len(sel)



def _cosine(step: int, total: int) -> float:
    """The learning-rate factor at ``step`` of ``total``: half a cosine from 1 down to 0."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


@dataclass
class _TrainableVerbs:
    """The verbs whose labels a row trains on: their ids on the CPU (label checks) and on the device, and each verb's
    column among them (-1 for the others) on the device."""

    cpu_ids: torch.Tensor
    ids: torch.Tensor
    map: torch.Tensor


def _trainable_verbs(vocab: StudentVocab, cfg: StudentConfig, dev: torch.device) -> _TrainableVerbs:
    # the ceiling (all_labels) trains every verb; every other row only the trainable (seen + rare) ones
    train_ids = (torch.arange(len(vocab.verbs)) if cfg.uses["all_labels"]
                 else torch.nonzero(vocab.train_verbs).flatten())
    train_map = torch.full((len(vocab.verbs),), -1, dtype=torch.long)
    train_map[train_ids] = torch.arange(len(train_ids))
    return _TrainableVerbs(train_ids, to_device(train_ids, dev), to_device(train_map, dev))


@dataclass
class _Progress:
    """What a training checkpoint carries from one session to the next: the epochs done, the loss history, the dev
    curve, the best dev accuracy and its epoch and weights, and the seconds spent training."""

    start: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    dev_curve: list[float] = field(default_factory=list)
    best: float = -1.0
    best_epoch: int = -1
    train_s: float = 0.0
    best_state: Optional[dict[str, torch.Tensor]] = None


def _resume(ckpt_path: Optional[Path], resume: bool, model: OvGSRStudent, opt: torch.optim.Optimizer,
            cfg: StudentConfig) -> _Progress:
    """The progress of ``ckpt_path`` loaded into ``model`` and ``opt`` (a fresh start without one)."""
    st = _Progress()
    if ckpt_path is not None and resume and Path(ckpt_path).exists():
        st.start, extra = load_checkpoint(Path(ckpt_path), model, opt, cfg)
        st.history, st.dev_curve = extra.get("history", []), extra.get("dev_curve", [])
        st.best, st.best_epoch = extra.get("best", -1.0), extra.get("best_epoch", -1)
        st.train_s = float(extra.get("train_s", 0.0))
        best_path = Path(str(ckpt_path) + ".best")
        if best_path.exists():
            from safetensors.torch import load_file
            st.best_state = {k: v for k, v in load_file(str(best_path)).items() if not k.startswith("vocab.")}
    return st


@dataclass
class _Loop:
    """One student's optimisation: the epochs' seeded batch orders, DDP sharding, losses, the steps."""

    model: OvGSRStudent
    opt: torch.optim.Optimizer
    d: StudentData
    unlabeled: Optional[StudentData]
    cfg: StudentConfig
    verbs: _TrainableVerbs
    dev: torch.device
    rank: int
    ws: int
    steps_per_epoch: int
    total: int
    bar: Any = None

    def epoch(self, epoch: int, history: list[dict[str, float]]) -> None:
        """Train one epoch, appending each step's named losses to ``history``."""
        cfg, d, unlabeled = self.cfg, self.d, self.unlabeled
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        perm = torch.randperm(len(d), generator=g)
        perm_u = torch.randperm(len(unlabeled), generator=g) if unlabeled is not None else None
        bu = max(2, self.ws, int(round(cfg.batch_size * cfg.unlabeled_ratio))) if unlabeled is not None else 0
        for s in range(self.steps_per_epoch):
            step = epoch * self.steps_per_epoch + s
            for grp in self.opt.param_groups:
                grp["lr"] = cfg.lr * _cosine(step, self.total)
            gb = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(gb) < max(2, self.ws):
                # a trailing batch too small for batch-norm statistics (or for one sample per rank) is skipped, the
                # same way in one process and under DDP, so both stay equal
                continue
            gu = perm_u[torch.arange(s * bu, (s + 1) * bu) % len(perm_u)] if perm_u is not None else None
            rec = self.step(epoch, s, step, gb, gu)
            history.append(rec)
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{rec['loss']:.3f}")

    def step(self, epoch: int, s: int, step: int, gb: torch.Tensor, gu: Optional[torch.Tensor]) -> dict[str, float]:
        """One optimisation step on the global batch ``gb`` (and unlabeled batch ``gu``); returns its record."""
        cfg, d, dev, verbs = self.cfg, self.d, self.dev, self.verbs
        mine = gb[self.rank::self.ws]
        parts: dict[str, torch.Tensor] = {}
        with autocast(dev, cfg.amp):
            if len(mine):
                check_trainable_labels(d, mine, verbs.cpu_ids)
                parts = compute_losses(self.model, d.take(mine, dev), len(gb), cfg, verbs.map, verbs.ids)
            if gu is not None:
                mu = gu[self.rank::self.ws]
                if len(mu):
                    parts.update(unlabeled_losses(self.model, self.unlabeled.take(mu, dev), len(gu), cfg, verbs.ids))
        loss = sum(parts.values()) if parts else None
        self.opt.zero_grad(set_to_none=False)
        if loss is not None:
            if not torch.isfinite(loss):
                bad = [k for k, v in parts.items() if not torch.isfinite(v)]
                raise FloatingPointError(f"{cfg.model_name}: loss {float(loss.detach())} at epoch {epoch} step {s} "
                                         f"(parts {bad}); batch images {[d.images[i] for i in mine.tolist()]}")
            loss.backward()
        allreduce_grads(self.model)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
        self.opt.step()
        rec = {"epoch": epoch, "step": step, **{k: float(v.detach()) for k, v in parts.items()}}
        rec["loss"] = float(sum(v for k, v in rec.items() if k not in ("epoch", "step")))
        return rec


def _select_on_dev(model: OvGSRStudent, world: World, dev_mask: torch.Tensor, st: _Progress, epoch: int,
                   ckpt_path: Optional[Path], cfg: StudentConfig, rank: int) -> None:
    """Record the dev verb top-1 of the epoch; keep (and write ``<checkpoint>.best``) the weights of a new best."""
    acc = verb_top1(model, world.dev, dev_mask)
    st.dev_curve.append(acc)
    if acc > st.best:
        st.best, st.best_epoch = acc, epoch
        st.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if ckpt_path is not None and rank == 0:
            save_student_file(Path(str(ckpt_path) + ".best"), st.best_state, cfg, world.vocab, epoch + 1)


def _training_data(world: World, cfg: StudentConfig, ckpt_path: Optional[Path], resume: bool, progress: bool,
                   train_data: Optional[StudentData], unlabeled: Optional[StudentData],
                   info: Optional[dict]) -> tuple[StudentData, Optional[StudentData], Optional[dict]]:
    """The data a fit trains on: as given, none for a finished checkpoint, else :func:`attach_targets`."""
    n_train = len(world.train) + (len(world.unlabeled_gt) if cfg.uses["all_labels"] and world.unlabeled_gt else 0)
    if train_data is None and resume and finished_checkpoint(ckpt_path, cfg, n_train):
        # nothing left to train: no teacher targets (nor the NMPA a control row would train for them) are needed
        train_data, unlabeled, info = world.train, None, {"resumed_finished": True}
    if train_data is None:
        train_data, unlabeled, info = attach_targets(world, cfg, progress=progress)
    return train_data, unlabeled, info


def fit(world: World, cfg: StudentConfig, ckpt_path: Optional[Path] = None, resume: bool = True,
        progress: bool = False, train_data: Optional[StudentData] = None,
        unlabeled: Optional[StudentData] = None, info: Optional[dict] = None,
        stop_after: Optional[int] = None) -> FitResult:
    """Train one student (one variant, one seed). DDP-aware (see :mod:`mipd_kit.student.distributed`).

    Args:
        world: prepared world. cfg: config. ckpt_path: safetensors file (saved every epoch; resumed when present).
        resume: continue from ``ckpt_path`` if it exists (refused if written by another config).
        train_data / unlabeled / info: targets from :func:`attach_targets` (computed here when omitted).
        stop_after: stop after this epoch count as if the job were killed (checkpoint written; for resume tests).

    Raises:
        FloatingPointError: a NaN/inf loss, naming the epoch, step, loss part and the batch's images.
        CheckpointMismatch: see :func:`mipd_kit.student.checkpoint.load_checkpoint`.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d, unlabeled, info = _training_data(world, cfg, ckpt_path, resume, progress, train_data, unlabeled, info)
    info = dict(info or {})
    rank, ws = rank_and_size()
    vocab = world.vocab
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = to_device(build_student(cfg, vocab), dev)  # initialised on the CPU: the same weights on every device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    verbs = _trainable_verbs(vocab, cfg, dev)
    steps_per_epoch = math.ceil(len(d) / cfg.batch_size)
    epochs = cfg.epochs_for(len(d))
    total = epochs * steps_per_epoch
    st = _resume(ckpt_path, resume, model, opt, cfg)  # train_s: earlier sessions of a resumed checkpoint included
    prev_s = st.train_s
    dev_mask = torch.isin(world.dev.verb, verbs.cpu_ids)
    bar = None
    if progress and rank == 0:
        from ..progress import progress as progress_bar
        bar = progress_bar(total=total, initial=st.start * steps_per_epoch,
                           desc=f"student {cfg.model_name} seed {cfg.seed}", unit="step", steps_per_epoch=steps_per_epoch)
    loop = _Loop(model, opt, d, unlabeled, cfg, verbs, dev, rank, ws, steps_per_epoch, total, bar)
    model.train()
    t0 = time.time()
    for epoch in range(st.start, epochs):
        loop.epoch(epoch, st.history)
        if cfg.select_on_dev and len(world.dev):
            _select_on_dev(model, world, dev_mask, st, epoch, ckpt_path, cfg, rank)
        st.train_s = prev_s + time.time() - t0
        if ckpt_path is not None and rank == 0:
            save_checkpoint(Path(ckpt_path), model, opt, cfg, epoch + 1,
                            {"history": st.history, "dev_curve": st.dev_curve, "best": st.best,
                             "best_epoch": st.best_epoch, "train_s": st.train_s}, vocab=vocab)
        if stop_after is not None and epoch + 1 >= stop_after:
            break
    if bar is not None:
        bar.close()
    # the training time of the epochs the model holds (a finished checkpoint "resumed" keeps the time it took)
    info["train_s"] = st.train_s
    info["samples_per_s"] = len(st.history) * cfg.batch_size / max(info["train_s"], 1e-9)
    best_epoch = st.best_epoch
    if cfg.select_on_dev and st.best_state is not None:
        model.load_state_dict(st.best_state)
    else:
        best_epoch = epochs - 1
    model.eval()
    return FitResult(model, st.history, best_epoch, st.dev_curve, info)
