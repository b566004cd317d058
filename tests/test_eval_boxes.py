"""The one box-IoU module: hand-computed values of each named convention, scalar/vector parity, and the evaluators
and viewers that use it agree with it."""

from __future__ import annotations

import numpy as np
import pytest

from mipd_kit.eval import boxes as B


def _random_boxes(n: int, seed: int) -> np.ndarray:
    """Integer-pixel boxes (many overlapping, some touching, some inverted or empty) as float64."""
    rng = np.random.default_rng(seed)
    x1, y1 = rng.integers(0, 20, n), rng.integers(0, 20, n)
    w, h = rng.integers(-2, 15, n), rng.integers(-2, 15, n)
    return np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float64)


def test_hand_computed_values_of_each_convention():
    a, b = [0, 0, 9, 9], [5, 0, 14, 9]
    # +1 rule: 10x10 boxes, intersection 5x10 -> 50 / (100 + 100 - 50)
    assert B.iou_pixel(a, b) == pytest.approx(50 / 150)
    # continuous: 9x9 boxes, intersection 4x9 -> 36 / (81 + 81 - 36)
    assert B.iou_continuous(a, b) == pytest.approx(36 / 126)
    assert B.iou(a, b, "qpic") == B.iou_pixel(a, b)
    # touching boxes: one shared pixel column under +1, nothing in continuous coordinates or for QPIC
    t1, t2 = [0, 0, 4, 4], [4, 0, 8, 4]
    assert B.iou_pixel(t1, t2) == pytest.approx(5 / 45)
    assert B.iou_continuous(t1, t2) == 0.0 and B.iou(t1, t2, "qpic") == 0.0
    assert B.iou_pixel(a, a) == 1.0 and B.iou_continuous(a, a) == 1.0
    with pytest.raises(ValueError, match="pixel, continuous, qpic"):
        B.iou(a, b, "plus_one")


@pytest.mark.parametrize("conv", B.CONVENTIONS)
def test_scalar_and_vector_forms_agree_bitwise(conv):
    a, b = _random_boxes(400, 0), _random_boxes(400, 1)
    a[3] = np.nan  # an absent box: no overlap in both forms
    vec = B.paired_iou(a, b, conv)
    sca = np.array([B.iou(x, y, conv) for x, y in zip(a.tolist(), b.tolist())])
    assert np.array_equal(vec, sca)
    assert vec[3] == 0.0 and (vec > 0).sum() > 50  # the sample has real overlaps
    assert ((vec >= 0) & (vec <= 1)).all()


def test_evaluators_and_viewers_use_the_module():
    from mipd_kit.eval import hico, hico_reference, swig, vcoco
    from mipd_kit.hoi import proposals
    from mipd_kit.viz import cases

    a, b = _random_boxes(200, 2), _random_boxes(200, 3)
    assert np.array_equal(swig.box_iou(a, b), B.paired_iou(a, b, "continuous"))
    ref = [3.0, 4.0, 15.0, 12.0]
    assert np.array_equal(vcoco.overlap(a, ref), B.paired_iou(a, np.array([ref]), "pixel"))
    for x, y in zip(a.tolist()[:50], b.tolist()[:50]):
        assert proposals.box_iou(x, y) == B.iou_continuous(x, y) == cases.iou(x, y)
        assert hico_reference._iou(x, y, 1.0) == B.iou_pixel(x, y)
        assert hico_reference._iou(x, y, 0.0) == B.iou_continuous(x, y)
        assert hico_reference._iou(x, y, 1.0, qpic=True) == B.iou(x, y, "qpic")
    d, g = np.concatenate([a, b], 1), np.concatenate([b, a[::-1]], 1)  # (P, 8) human + object boxes
    for protocol, conv in hico.IOU_OF_PROTOCOL.items():
        want = np.minimum(B.paired_iou(a, b, conv), B.paired_iou(b, a[::-1], conv))
        assert np.array_equal(hico._pair_overlap(d, g, protocol), want)


def test_hoi_viz_hit_uses_the_official_plus_one_rule():
    """Boxes whose continuous IoU is below 0.5 but +1-pixel IoU reaches it: the viewer agrees with the evaluator."""
    from mipd_kit.hoi.viz import pair_matches

    gt, det = [0, 0, 2, 2], [1, 0, 3, 2]  # continuous 2/6 = 0.33; +1 rule: 6 / (9 + 9 - 6) = 0.5
    assert B.iou_continuous(gt, det) < 0.5 <= B.iou_pixel(gt, det)
    assert pair_matches(gt, gt, det, det)
    assert not pair_matches(gt, gt, det, [10, 10, 12, 12])


def test_continuous_convention_and_the_student_giou_equal_torchvision_ops():
    """torchvision.ops is the reference: the continuous IoU is ``box_iou``'s and the student loss's element-wise GIoU
    is ``generalized_box_iou``'s diagonal, bit for bit on boxes of positive size (the pixel / qpic conventions of the
    evaluators are the protocols' own, with their +1, and stay in mipd_kit.eval.boxes)."""
    import torch
    from torchvision.ops import box_iou, generalized_box_iou

    from mipd_kit.student.losses import box_cxcywh_to_xyxy, generalized_iou

    g = torch.Generator().manual_seed(0)
    a = box_cxcywh_to_xyxy(torch.rand(64, 4, generator=g) * 0.5 + 0.25)  # (64, 4) float32, positive sizes
    b = box_cxcywh_to_xyxy(torch.rand(64, 4, generator=g) * 0.5 + 0.25)
    assert torch.equal(generalized_iou(a, b), generalized_box_iou(a, b).diagonal())
    a64, b64 = a.double() * 100, b.double() * 100
    ours = B.paired_iou(a64.numpy(), b64.numpy(), "continuous")
    np.testing.assert_array_equal(ours, box_iou(a64, b64).diagonal().numpy())
    assert (ours > 0).any() and (ours == 0).any()  # overlapping and disjoint pairs both checked
