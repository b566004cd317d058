"""Linear probes: how much of a label a frozen feature carries, read by a multinomial logistic regression.

The standard measure of what a frozen representation holds (Alain & Bengio, 2016; CLIP's linear-probe protocol,
Radford et al., 2021): features are standardised with the training set's statistics, a softmax regression with an L2
penalty is fitted by L-BFGS on the training features, the penalty is chosen on a held-out fifth of the training set
(never on the split reported), and the refitted probe is scored on the evaluation features. The majority level (the
most frequent training label predicted for every evaluation example) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

#: L2 penalties tried (per-example mean loss + ``lam * ||W||^2``)
PENALTIES: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome.

    Attributes:
        accuracy: top-1 accuracy on the evaluation examples, percent.
        majority: accuracy of predicting the most frequent training label, percent.
        penalty: the L2 penalty chosen on the held-out part of the training set.
        n_train, n_eval: examples; classes: labels seen in training.
    """

    accuracy: float
    majority: float
    penalty: float
    n_train: int
    n_eval: int
    classes: int


def _holdout(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded held-out fifth of ``n`` examples and the rest (indices)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, n // 5)
    return perm[:k], perm[k:]


def _fit(x: torch.Tensor, y: torch.Tensor, n_cls: int, lam: float, steps: int) -> torch.Tensor:
    """Softmax regression weights (D + 1, C) fitted by L-BFGS on standardised ``x`` (N, D) and labels ``y`` (N,)."""
    xb = torch.cat([x, torch.ones(len(x), 1)], 1)  # (N, D + 1) with the bias column
    w = torch.zeros(xb.shape[1], n_cls, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + lam * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _predict(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (torch.cat([x, torch.ones(len(x), 1)], 1) @ w).argmax(1)


def linear_probe(train_x: torch.Tensor, train_y: Sequence[str], eval_x: torch.Tensor, eval_y: Sequence[str],
                 penalties: Sequence[float] = PENALTIES, steps: int = 200, seed: int = 0) -> ProbeResult:
    """Fit a linear probe on ``train_x`` (N, D) / ``train_y`` and score it on ``eval_x`` / ``eval_y``.

    Evaluation labels absent from training count as errors. The penalty is chosen on a seeded held-out fifth of the
    training examples, then the probe is refitted on all of them.

    Raises:
        ValueError: no training examples, fewer than two training labels, or mismatched lengths.
    """
    if len(train_x) != len(train_y) or len(eval_x) != len(eval_y):
        raise ValueError("linear_probe: features and labels differ in length")
    classes = sorted(set(train_y))
    if len(train_y) < 5 or len(classes) < 2:
        raise ValueError(f"linear_probe: needs >= 5 training examples of >= 2 labels, got {len(train_y)} of "
                         f"{len(classes)}")
    idx = {c: i for i, c in enumerate(classes)}
    x = train_x.detach().double().float()
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    xs, es = (x - mu) / sd, (eval_x.detach().float() - mu) / sd
    y = torch.tensor([idx[c] for c in train_y])
    ey = torch.tensor([idx.get(c, -1) for c in eval_y])
    hold, fit = _holdout(len(xs), seed)
    best, best_acc = penalties[0], -1.0
    for lam in penalties:
        w = _fit(xs[fit], y[fit], len(classes), lam, steps)
        acc = float((_predict(w, xs[hold]) == y[hold]).float().mean())
        if acc > best_acc:
            best, best_acc = lam, acc
    w = _fit(xs, y, len(classes), best, steps)
    acc = 100.0 * float((_predict(w, es) == ey).float().mean()) if len(es) else float("nan")
    major = int(torch.bincount(y).argmax())
    maj = 100.0 * float((ey == major).float().mean()) if len(es) else float("nan")
    return ProbeResult(acc, maj, best, len(xs), len(es), len(classes))


def ridge_transfer(train_x: torch.Tensor, train_y: torch.Tensor, eval_x: torch.Tensor,
                   penalties: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0), seed: int = 0) -> torch.Tensor:
    """A linear map from one frozen feature to another, applied to new examples: ridge regression of ``train_y``
    (N, E) on standardised ``train_x`` (N, D) (with a bias), the penalty chosen by the mean cosine of the predicted and
    true targets on a seeded held-out fifth, refitted on all; returns the predictions for ``eval_x`` (M, E).

    It measures what feature distillation could carry at best with a linear head: how much of a teacher's embedding
    the student's frozen features let a student reproduce on examples unlike its training ones."""
    x = train_x.detach().float()
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)

    def design(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([(z.detach().float() - mu) / sd, torch.ones(len(z), 1)], 1)

    def fit(xb: torch.Tensor, yb: torch.Tensor, lam: float) -> torch.Tensor:
        eye = torch.eye(xb.shape[1])
        eye[-1, -1] = 0.0  # the bias is not penalised
        return torch.linalg.solve(xb.T @ xb + lam * eye, xb.T @ yb)

    X, Y = design(x), train_y.detach().float()
    hold, rest = _holdout(len(X), seed)
    best, best_cos = penalties[0], -2.0
    for lam in penalties:
        pred = X[hold] @ fit(X[rest], Y[rest], lam)
        cos = float(torch.nn.functional.cosine_similarity(pred, Y[hold], dim=-1).mean())
        if cos > best_cos:
            best, best_cos = lam, cos
    return design(eval_x) @ fit(X, Y, best)
