"""Scene-aware and instance-perception prompts on the teacher grid."""

import pytest
import torch

from mipd_kit.align.prompts import InstancePrompt, ScenePrompt, border_mask, box_cells, split_cls


def test_border_mask():
    m = border_mask((4, 5))
    assert m[0].all() and m[-1].all() and m[:, 0].all() and m[:, -1].all()
    assert not m[1:-1, 1:-1].any()
    assert int(m.sum()) == 4 * 5 - 2 * 3


@pytest.mark.parametrize("cls_token", [False, True])
def test_scene_prompt_border_touches_only_border_and_never_cls(cls_token):
    torch.manual_seed(0)
    p = ScenePrompt(8, (4, 4), "border")
    T = 16 + int(cls_token)
    x = torch.randn(2, T, 8)
    y = p(x)
    diff = (y - x).abs().sum(-1)[0]  # (T,)
    if cls_token:
        assert diff[0] == 0
        diff = diff[1:]
    grid = diff.view(4, 4)
    assert (grid[1:3, 1:3] == 0).all()
    assert (grid[0] > 0).all()
    full = ScenePrompt(8, (4, 4), "full")(x)
    assert ((full - x).abs().sum(-1)[0, int(cls_token):] > 0).all()
    assert torch.equal(ScenePrompt(8, (4, 4), "none")(x), x)


def test_scene_prompt_bad_variant_and_bad_token_count():
    with pytest.raises(ValueError, match="border"):
        ScenePrompt(8, (4, 4), "corners")
    with pytest.raises(ValueError, match="grid"):
        split_cls(torch.zeros(1, 7, 8), (4, 4))


def test_box_cells_and_instance_prompt_region():
    assert box_cells(torch.tensor([0.0, 0.0, 0.5, 0.5]), (4, 4)) == (0, 2, 0, 2)
    assert box_cells(torch.tensor([0.9, 0.9, 0.91, 0.92]), (4, 4)) == (3, 4, 3, 4)  # at least one cell
    torch.manual_seed(0)
    ip = InstancePrompt(8, (4, 4), size=3)
    tok = torch.randn(1, 17, 8)  # with CLS
    boxes = torch.tensor([[[0.5, 0.0, 1.0, 0.5], [0, 0, 0, 0]]])
    exists = torch.tensor([[True, False]])
    out, region = ip(tok, boxes, exists)
    assert out.shape == (1, 2, 17, 8) and region.shape == (1, 2, 17)
    assert not region[..., 0].any()  # CLS never in a region
    r0 = region[0, 0, 1:].view(4, 4)
    assert r0[:2, 2:].all() and int(r0.sum()) == 4
    changed = ((out[0, 0] - tok[0]).abs().sum(-1) > 0)[1:].view(4, 4)
    assert torch.equal(changed, r0)
    assert region[0, 1].sum() == 16  # no box -> whole grid


def _loop_instance_prompt(ip, tokens, boxes, exists):
    """The per-box reference: resize the prompt into each box's cells one role at a time."""
    import torch.nn.functional as F
    cls, g = split_cls(tokens, ip.grid)
    rows, cols = ip.grid
    B, R = boxes.shape[:2]
    add = g.new_zeros(B, R, g.shape[-1], rows, cols)
    region = torch.zeros(B, R, rows, cols, dtype=torch.bool)
    for b in range(B):
        for r in range(R):
            r0, r1, c0, c1 = box_cells(boxes[b, r], ip.grid) if bool(exists[b, r]) else (0, rows, 0, cols)
            add[b, r, :, r0:r1, c0:c1] = F.interpolate(ip.prompt, size=(r1 - r0, c1 - c0), mode="bilinear",
                                                       align_corners=False)[0]
            region[b, r, r0:r1, c0:c1] = True
    out = g.unsqueeze(1) + add.flatten(3).transpose(2, 3)
    region = region.flatten(2)
    if cls is not None:
        out = torch.cat([cls.unsqueeze(1).expand(B, R, 1, g.shape[-1]), out], 2)
        region = torch.cat([torch.zeros(B, R, 1, dtype=torch.bool), region], 2)
    return out, region


@pytest.mark.parametrize("with_cls", [False, True])
def test_instance_prompt_vectorised_equals_per_box_loop(with_cls):
    torch.manual_seed(0)
    ip = InstancePrompt(6, (5, 7), size=3)
    B, R = 9, 4
    xy = torch.rand(B, R, 2) * 0.9
    wh = torch.rand(B, R, 2) * (1 - xy) + 1e-3
    boxes = torch.cat([xy, xy + wh], -1)
    boxes[0, 0] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # whole image
    boxes[0, 1] = torch.tensor([0.99, 0.99, 1.0, 1.0])  # one corner cell
    exists = torch.rand(B, R) > 0.2
    tokens = torch.randn(B, 35 + int(with_cls), 6, requires_grad=True)
    out, region = ip(tokens, boxes, exists)
    ref, ref_region = _loop_instance_prompt(ip, tokens, boxes, exists)
    assert torch.equal(region, ref_region)
    assert torch.allclose(out, ref, atol=1e-6)
    # gradients reach the prompt the same way
    w = torch.randn_like(out)
    g1 = torch.autograd.grad((out * w).sum(), ip.prompt)[0]
    g2 = torch.autograd.grad((ref * w).sum(), ip.prompt)[0]
    assert torch.allclose(g1, g2, atol=1e-5)


def test_instance_prompt_gradient_repeats_and_agrees_across_threads():
    """Seeded NMPA runs must repeat exactly for the same thread count (an index-gather formulation failed even that:
    its backward accumulates with ``index_put_`` in an order that varies from call to call). Across thread counts
    torch promises no bitwise equality: BLAS/MKL split their float32 sums by thread count and CPU features, so the
    gradients there agree only within float32 accumulation error. Each gradient element is a sum of about
    B * 49 = 1,568 products; float32 rounding (2**-24 ~ 6e-8 relative per addition) bounds the difference by roughly
    sqrt(1568) * 6e-8 * |terms| ~ 2.4e-6 of the largest term in the typical case, so rtol 1e-4 and an absolute floor
    of 1e-5 of the gradient's scale leave a wide margin without hiding a real (e.g. racy or wrong) difference."""
    torch.manual_seed(0)
    ip = InstancePrompt(64, (7, 7))
    xy = torch.rand(32, 6, 2) * 0.7
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(32, 6, 2) * 0.25], -1)
    tokens = torch.randn(32, 49, 64)
    exists = torch.rand(32, 6) > 0.2
    threads = torch.get_num_threads()

    def grad(n: int) -> torch.Tensor:
        torch.set_num_threads(n)
        ip.zero_grad()
        out, _ = ip(tokens, boxes, exists)
        (out ** 2).sum().backward()
        return ip.prompt.grad.clone()

    try:
        by_threads = {n: [grad(n), grad(n)] for n in (1, 2, 4)}
    finally:
        torch.set_num_threads(threads)
    for n, (a, b) in by_threads.items():
        assert torch.equal(a, b), f"same seed and {n} thread(s): the gradient must repeat bit for bit"
    ref = by_threads[1][0]
    scale = float(ref.abs().max())
    for n in (2, 4):
        torch.testing.assert_close(by_threads[n][0], ref, rtol=1e-4, atol=1e-5 * scale)
