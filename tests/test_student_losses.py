"""Pure-function tests of mipd_kit.student.losses on seeded tiny tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from mipd_kit.student import losses as L


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_verb_ce_matches_torch_mean():
    z, y = torch.randn(6, 5, generator=g()), torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.allclose(L.verb_ce(z, y, 6, 0.3), F.cross_entropy(z, y, label_smoothing=0.3))


def test_noun_ce_matches_loop_reference():
    z = torch.randn(2, 3, 7, generator=g(1))
    t = torch.tensor([[[1, 1, 2], [0, 0, 0], [3, -1, 3]], [[4, 5, 6], [6, 6, 6], [0, 0, 0]]])
    rm = torch.tensor([[True, True, True], [True, True, False]])
    ref = 0.0
    for b in range(2):
        per = []
        for r in range(3):
            if rm[b, r]:
                per.append(sum(F.cross_entropy(z[b, r:r + 1], t[b, r, a:a + 1], label_smoothing=0.2)
                               for a in range(3) if t[b, r, a] >= 0))
        ref += sum(per) / len(per)
    assert torch.allclose(L.noun_ce(z, t, rm, 2, 0.2), (ref / 2).detach(), atol=1e-5)


def test_giou_identity_disjoint_and_box_losses():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(L.generalized_iou(a, a), torch.ones(1))
    far = torch.tensor([[2.0, 2.0, 3.0, 3.0]])
    assert L.generalized_iou(a, far).item() < 0  # GIoU is negative for disjoint boxes
    b = torch.rand(3, 2, 4, generator=g(2)) * 0.5 + 0.25
    ex = torch.tensor([[True, False], [True, True], [False, False]])
    assert L.box_l1(b, b, ex, 3).item() == 0.0
    assert L.box_giou(b, b, ex, 3).abs().item() < 1e-6
    b2 = b.clone()
    b2[0, 1] += 0.3  # a role without a box does not count
    assert L.box_l1(b2, b, ex, 3).item() == 0.0
    b2[1, 0] += 0.1
    assert math.isclose(L.box_l1(b2, b, ex, 3).item(), 0.4 / 2 / 3, rel_tol=1e-4)


def test_box_exists_bce():
    lg = torch.tensor([[10.0, -10.0]])
    assert L.box_exists_bce(lg, torch.tensor([[True, False]]), torch.tensor([[True, True]]), 1).item() < 1e-3
    assert L.box_exists_bce(-lg, torch.tensor([[True, False]]), torch.tensor([[True, True]]), 1).item() > 5


def test_feature_distill_kinds_and_masks():
    s, t = torch.randn(4, 8, generator=g(3)), torch.randn(4, 8, generator=g(4))
    m = torch.tensor([True, True, False, True])
    assert L.feature_distill(t, t, m, 4, "l1").item() == 0.0
    l1 = L.feature_distill(s, t, m, 4, "l1")
    assert math.isclose(l1.item(), (s - t).abs().mean(-1)[m].sum().item() / 4, rel_tol=1e-5)
    cos = L.feature_distill(s, t, m, 4, "cosine")
    assert math.isclose(cos.item(), (1 - F.cosine_similarity(s, t))[m].sum().item() / 4, rel_tol=1e-5)
    roles = L.feature_distill(torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.tensor([[True, False, False], [False] * 3]), 2)
    assert roles.item() > 0
    with pytest.raises(ValueError, match="l1"):
        L.feature_distill(s, t, m, 4, "mse")


def test_logit_kd_zero_for_equal_and_t_squared_scaling():
    z = torch.randn(5, 6, generator=g(5))
    assert L.logit_kd(z, z, 5, t=3.0).abs().item() < 1e-6
    s = torch.randn(5, 6, generator=g(6))
    kl = F.kl_div(F.log_softmax(s / 4, -1), F.softmax(z / 4, -1), reduction="batchmean")
    assert math.isclose(L.logit_kd(s, z, 5, t=4.0).item(), 16 * kl.item(), rel_tol=1e-4)


def test_negative_guided_forms():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[[1.0, 1.0], [1.0, -1.0]], [[0.0, -1.0], [0.0, 0.0]]])
    nm = torch.tensor([[True, True], [True, False]])
    # authors: relu(cos(x, mean neg)): sample 0 mean neg = (1, 0) -> 1; sample 1 -> cos = -1 -> 0
    assert math.isclose(L.negative_guided(x, pos, neg, nm, 2, "authors").item(), 0.5, rel_tol=1e-5)
    mg = L.negative_guided(x, pos, neg, nm, 2, "margin", margin=0.5)
    ref0 = (max(0, 0.7071 - 1 + 0.5) * 2) / 2
    assert math.isclose(mg.item(), ref0 / 2, rel_tol=1e-3)
    nce = L.negative_guided(x, pos, neg, nm, 2, "infonce", tau=1.0)
    assert nce.item() > 0
    none = L.negative_guided(x, pos, neg, torch.zeros(2, 2, dtype=torch.bool), 2, "authors")
    assert none.item() == 0.0
    with pytest.raises(ValueError, match="authors"):
        L.negative_guided(x, pos, neg, nm, 2, "hinge")


def test_losses_split_over_shards_sum_to_full_batch():
    """The DDP convention: per-shard losses with the global batch size add up to the full-batch loss."""
    B = 6
    z, y = torch.randn(B, 4, generator=g(7)), torch.randint(0, 4, (B,), generator=g(8))
    nz, nt = torch.randn(B, 2, 5, generator=g(9)), torch.randint(0, 5, (B, 2, 3), generator=g(10))
    rm = torch.rand(B, 2, generator=g(11)) > 0.3
    b1, b2 = torch.rand(B, 2, 4, generator=g(12)), torch.rand(B, 2, 4, generator=g(13))
    for fn in (lambda i: L.verb_ce(z[i], y[i], B), lambda i: L.noun_ce(nz[i], nt[i], rm[i], B),
               lambda i: L.box_l1(b1[i], b2[i], rm[i], B), lambda i: L.box_giou(b1[i], b2[i], rm[i], B)):
        full = fn(torch.arange(B))
        parts = fn(torch.arange(0, B, 2)) + fn(torch.arange(1, B, 2))
        assert torch.allclose(full, parts, atol=1e-6)


def test_contrastive_alignment_prefers_matching_pairs():
    t = torch.eye(4)
    good = L.contrastive_alignment(t, t, torch.ones(4, dtype=torch.bool))
    bad = L.contrastive_alignment(t, t.flip(0), torch.ones(4, dtype=torch.bool))
    assert good < bad
    assert L.contrastive_alignment(t, t, torch.zeros(4, dtype=torch.bool)).item() == 0.0


def test_nmpa_losses_live_in_align_and_are_re_exported():
    """align never imports student: the NMPA losses are defined in align.losses, student.losses re-exports them."""
    from mipd_kit.align import losses as A
    assert L.negative_guided is A.negative_guided and L.contrastive_alignment is A.contrastive_alignment
