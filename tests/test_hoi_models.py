"""CL-HOI student and losses on tiny seeded tensors: shapes, open-vocabulary scoring, loss properties."""

from __future__ import annotations

import math

import pytest
import torch

from mipd_kit.hoi import losses as L
from mipd_kit.hoi.features import (SPATIAL_DIM, grid_from_tokens, region_features, spatial_features, spatial_prior,
                                   union_boxes)
from mipd_kit.hoi.models import ModelConfig, build_student


def _batch(P=5, N=2, D=8, E=6, H=4, r=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(grid=torch.randn(N, D, r, r, generator=g), pooled=torch.randn(N, E, generator=g),
                pair_image=torch.tensor([0, 0, 1, 1, 1][:P]), feat_h=torch.randn(P, D, generator=g),
                feat_o=torch.randn(P, D, generator=g), feat_u=torch.randn(P, D, generator=g),
                spatial=torch.randn(P, SPATIAL_DIM, generator=g),
                text=torch.nn.functional.normalize(torch.randn(H, E, generator=g), dim=-1),
                candidates=torch.ones(P, H, dtype=torch.bool))


@pytest.mark.parametrize("kind", ["clhoi", "icn"])
def test_student_shapes_and_masking(kind):
    torch.manual_seed(0)
    b = _batch()
    b["candidates"][0, 1] = False
    m = build_student(ModelConfig(kind=kind, visual_dim=8, text_dim=6, hidden=16))
    out = m(**b)
    assert out["pair_logits"].shape == (5, 4)
    assert out["pair_logits"][0, 1] == float("-inf")
    assert torch.isfinite(out["pair_logits"][b["candidates"]]).all()
    assert out["pair_embed"].norm(dim=-1).allclose(torch.ones(5), atol=1e-5)
    assert (out["context"] is None) == (kind == "icn")
    if kind == "clhoi":
        assert out["context"].shape == (2, 6)


def test_open_vocabulary_new_phrases_are_scored():
    torch.manual_seed(0)
    b = _batch()
    m = build_student(ModelConfig(visual_dim=8, text_dim=6, hidden=16)).eval()
    extra = torch.nn.functional.normalize(torch.randn(3, 6), dim=-1)  # phrases never used in training
    b7 = dict(b, text=torch.cat([b["text"], extra]), candidates=torch.ones(5, 7, dtype=torch.bool))
    with torch.no_grad():
        out4, out7 = m(**b), m(**b7)
    assert out7["pair_logits"].shape == (5, 7)
    assert torch.allclose(out7["pair_logits"][:, :4], out4["pair_logits"], atol=1e-5)


def test_build_student_rejects_unknown_kind():
    with pytest.raises(ValueError, match="clhoi"):
        build_student(ModelConfig(kind="nope"))  # type: ignore[arg-type]


def test_lse_pooling_bounds_and_empty_images():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 3, generator=g) * 3
    img = torch.tensor([0, 0, 0, 1, 1, 1])
    for tau in (0.1, 1.0):
        lse = L.pool_pairs(s, img, 3, "lse", tau)
        mx = L.pool_pairs(s, img, 3, "max")
        assert (lse[:2] >= mx[:2] - 1e-5).all()
        assert (lse[:2] <= mx[:2] + tau * math.log(3) + 1e-5).all()
        assert torch.isneginf(lse[2]).all() and torch.isneginf(mx[2]).all()  # image 2 has no pairs
    mean = L.pool_pairs(s, img, 3, "mean")
    assert torch.allclose(mean[0], s[:3].mean(0))
    # a small tau approaches the hard max
    assert torch.allclose(L.pool_pairs(s, img, 3, "lse", 1e-3)[:2], mx[:2], atol=1e-2)
    with pytest.raises(ValueError, match="lse"):
        L.pool_pairs(s, img, 3, "median")  # type: ignore[arg-type]


def test_pooling_with_masked_entries_has_finite_gradients():
    s = torch.randn(4, 3, requires_grad=True)
    masked = s.masked_fill(torch.tensor([[True, False, True]] * 4), float("-inf"))
    img = torch.tensor([0, 0, 1, 1])
    pooled = L.pool_pairs(masked, img, 2, "lse")
    teacher = torch.randn(2, 3)
    cand = torch.isfinite(pooled)
    loss = L.interaction_distillation_loss(pooled, teacher, torch.tensor([[False, True, True], [True, True, False]]))
    loss = loss + L.cross_image_distillation_loss(pooled, teacher, cand)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[:, 0].abs().sum() == 0  # masked entries get no gradient


def test_kd_zero_when_distributions_match_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4, 5, generator=g)
    cand = torch.ones(4, 5, dtype=torch.bool)
    cand[0, :3] = False
    for T in (1.0, 4.0):
        assert L.interaction_distillation_loss(t.clone(), t, cand, T).item() == pytest.approx(0.0, abs=1e-6)
        assert L.cross_image_distillation_loss(t.clone(), t, cand, T).item() == pytest.approx(0.0, abs=1e-6)
        # a constant shift per image leaves a per-image softmax unchanged
        assert L.interaction_distillation_loss(t + torch.arange(4.)[:, None], t, cand, T).item() == \
            pytest.approx(0.0, abs=1e-5)
    s = torch.randn(4, 5, generator=g)
    assert L.interaction_distillation_loss(s, t, cand) > 0
    assert L.cross_image_distillation_loss(s, t, cand) > 0


def test_kd_t_squared_scaling():
    """For large T, KL ~ (1/2T^2) var-diff, so T^2 * KL tends to a T-independent constant."""
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    cand = torch.ones(3, 6, dtype=torch.bool)
    a = L.interaction_distillation_loss(s, t, cand, 50.0).item()
    b = L.interaction_distillation_loss(s, t, cand, 100.0).item()
    assert a == pytest.approx(b, rel=0.05)


def test_context_infonce_prefers_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    aligned = L.context_distillation_loss(d + 0.01 * torch.randn(8, 16, generator=g), d)
    shuffled = L.context_distillation_loss(d[torch.randperm(8, generator=g)], d)
    assert aligned < shuffled
    assert aligned < math.log(8)


def test_teacher_description_is_unit_and_follows_the_peak():
    text = torch.eye(4, 6)
    logits = torch.tensor([[10.0, 0, 0, 0], [0, 0, 0, 10.0]])
    d = L.teacher_description(logits, text)
    assert torch.allclose(d.norm(dim=-1), torch.ones(2))
    assert d[0].argmax() == 0 and d[1].argmax() == 3


def test_spatial_and_region_features():
    bh = torch.tensor([[0.0, 0, 10, 20], [0, 0, 10, 20]])
    bo = torch.tensor([[10.0, 5, 15, 10], [30, 30, 40, 40]])
    wh = torch.tensor([[48.0, 48], [48, 48]])
    sp = spatial_features(bh, bo, wh)
    assert sp.shape == (2, SPATIAL_DIM) and torch.isfinite(sp).all()
    prior = spatial_prior(sp)
    assert prior[0] == pytest.approx(1.0) and prior[1] < prior[0]  # touching > far apart
    assert union_boxes(bh, bo)[1].tolist() == [0, 0, 40, 40]
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    grid = grid_from_tokens(tokens, (4, 4))
    assert grid.shape == (2, 3, 4, 4)
    assert grid_from_tokens(torch.cat([tokens[:, :1], tokens], 1), (4, 4)).equal(grid)  # CLS dropped
    with pytest.raises(ValueError, match="grid"):
        grid_from_tokens(tokens[:, :15], (4, 4))
    # a constant grid gives that constant for any box
    const = torch.full((1, 3, 4, 4), 2.0)
    rf = region_features(const, bh[:1], torch.tensor([0]), wh[:1])
    assert torch.allclose(rf, torch.full((1, 3), 2.0))


def test_geometric_prior_is_added_to_pair_logits():
    torch.manual_seed(0)
    b = _batch()
    m = build_student(ModelConfig(kind="icn", visual_dim=8, text_dim=6, hidden=16, prior_weight=1.0)).eval()
    lp = torch.tensor([0.0, -1.0, 0.0, -2.0, 0.0])
    with torch.no_grad():
        a = m(**b, log_prior=torch.zeros(5))["pair_logits"]
        c = m(**b, log_prior=lp)["pair_logits"]
    assert torch.allclose(c - a, lp[:, None].expand(5, 4), atol=1e-5)
    with pytest.raises(ValueError, match="log_prior"):
        m(**b)


def test_crop_embeddings_feed_the_icn():
    torch.manual_seed(0)
    b = _batch()
    m = build_student(ModelConfig(kind="icn", visual_dim=8, text_dim=6, hidden=16, crop_dim=9)).eval()
    crops = torch.randn(5, 9)
    with torch.no_grad():
        a = m(**b, crops=crops)["pair_logits"]
        c = m(**b, crops=crops * 2)["pair_logits"]
    assert a.shape == (5, 4) and not torch.allclose(a, c)


def test_pair_cross_attention_equals_multihead_attention_on_gathered_tokens():
    """The ICN's per-image K/V attention is nn.MultiheadAttention on each pair's own image's tokens: same outputs,
    head-averaged weights and gradients (float tolerance), with images of 0, 1 and several pairs, pairs unsorted."""
    from torch import nn

    from mipd_kit.hoi.models import pair_cross_attention

    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, kdim=24, vdim=24, batch_first=True)
    nn.init.normal_(attn.in_proj_bias, std=0.3)
    tokens = torch.randn(5, 7, 24, requires_grad=True)
    pair_image = torch.tensor([3, 0, 3, 4, 3, 0, 1])  # image 2 has no pair
    q = torch.randn(len(pair_image), 16, requires_grad=True)
    ref, ref_w = attn(q.unsqueeze(1), tokens[pair_image], tokens[pair_image], need_weights=True)
    out, w = pair_cross_attention(attn, q, tokens, pair_image)
    torch.testing.assert_close(out, ref[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w[:, 0], atol=1e-6, rtol=1e-5)
    g_ref = torch.autograd.grad(ref.square().sum(), [q, tokens, attn.k_proj_weight])
    g = torch.autograd.grad(out.square().sum(), [q, tokens, attn.k_proj_weight])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
