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
