"""Linear probes and the ridge transfer probe (mipd_kit.eval.probes) on seeded synthetic features."""

from __future__ import annotations

import pytest
import torch

from mipd_kit.eval.probes import linear_probe, ridge_transfer


def _blobs(n: int, d: int, classes: int, signal: float, seed: int) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * signal
    return centres[y] + torch.randn(n, d, generator=g), [f"c{int(i)}" for i in y]


def test_probe_reads_a_planted_label_and_not_noise():
    xtr, ytr = _blobs(400, 16, 5, 3.0, 0)
    xev, yev = _blobs(200, 16, 5, 3.0, 1)
    r = linear_probe(xtr, ytr, xev, yev)
    assert r.accuracy > 90 and r.classes == 5 and r.n_train == 400 and r.n_eval == 200
    assert 0 < r.majority < 40 and r.penalty in (1e-4, 1e-3, 1e-2, 1e-1)
    # the same features with labels drawn independently of them: near chance
    noise = [f"c{int(i)}" for i in torch.randint(0, 5, (200,), generator=torch.Generator().manual_seed(5))]
    r = linear_probe(xtr, ytr, xev, noise)
    assert r.accuracy < 40


def test_probe_counts_unknown_evaluation_labels_as_errors_and_refuses_bad_input():
    xtr, ytr = _blobs(100, 8, 3, 3.0, 0)
    xev, _ = _blobs(10, 8, 3, 3.0, 1)
    assert linear_probe(xtr, ytr, xev, ["never-seen"] * 10).accuracy == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(xtr, ytr[:-1], xev, ["x"] * 10)
    with pytest.raises(ValueError, match=">= 2 labels"):
        linear_probe(xtr, ["a"] * 100, xev, ["a"] * 10)


def test_same_seed_same_probe():
    xtr, ytr = _blobs(200, 8, 4, 2.0, 0)
    xev, yev = _blobs(50, 8, 4, 2.0, 1)
    assert linear_probe(xtr, ytr, xev, yev) == linear_probe(xtr, ytr, xev, yev)


def test_ridge_transfer_recovers_a_linear_map_and_not_what_the_features_lack():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 6, generator=g)
    x = torch.randn(300, 12, generator=g)
    xe = torch.randn(50, 12, generator=g)
    pred = ridge_transfer(x, x @ w + 0.5, xe)
    assert torch.nn.functional.cosine_similarity(pred, xe @ w + 0.5, dim=-1).mean() > 0.99
    # a target that the features do not determine is not recovered on new examples
    y = torch.randn(300, 6, generator=g)
    pred = ridge_transfer(x, y, xe)
    assert torch.nn.functional.cosine_similarity(pred, torch.randn(50, 6, generator=g), dim=-1).mean().abs() < 0.3
