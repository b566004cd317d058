"""CL-HOI visualisation data (pure) and drawing, and the crop embeddings of the pair features."""

from __future__ import annotations

import torch
from PIL import Image

from hoi_tinyworld import write_tiny_hoi_world
from mipd_kit.data.hico import load_hico_instances
from mipd_kit.hoi.features import crop_embeddings
from mipd_kit.hoi.proposals import known_boxes_proposals
from mipd_kit.hoi.viz import draw_pairs, gt_pairs, hoi_cases, hoi_label, pair_sheet, top_pairs
from mipd_kit.teachers.tiny import TinyRandomTeacher


def test_top_pairs_cases_and_drawing(tmp_path):
    world = write_tiny_hoi_world(tmp_path / "w", n_train=2, n_test=4)
    test, vocab = load_hico_instances(world / "hoi_test.json")
    assert hoi_label(vocab, 1) == "kick ball"
    im0 = test[0]
    good = {"hoi": im0.hoi[0], "box_h": list(im0.boxes_h[0]), "box_o": list(im0.boxes_o[0]), "score": 0.9}
    wrong = dict(good, hoi=(im0.hoi[0] + 1) % 4, score=0.95)
    dup = dict(wrong, score=0.1)
    preds = {im0.filename: [good, wrong, dup]}
    tp = top_pairs(preds[im0.filename], vocab, k=3)
    assert [p["score"] for p in tp] == [0.95, 0.9]  # one entry per HOI, best first
    cases = hoi_cases(test, vocab, preds, unseen=[1])
    assert len(cases) == len([im for im in test if im.hoi])  # the empty image is skipped
    c0 = next(c for c in cases if c.filename == im0.filename)
    assert c0.unseen and not c0.hit  # the top detection names the wrong HOI
    assert cases[0].unseen
    preds[im0.filename] = [good]
    assert next(c for c in hoi_cases(test, vocab, preds) if c.filename == im0.filename).hit
    with Image.open(world / "images" / im0.filename) as im:
        drawn = draw_pairs(im.convert("RGB"), tp + gt_pairs(im0, vocab))
    assert drawn.size[0] >= 48
    sheet = pair_sheet(world / "images", cases, vocab, preds, n=3)
    assert sheet.size[0] > 48 and sheet.size[1] > 48


def test_crop_embeddings_one_row_per_pair(tmp_path):
    world = write_tiny_hoi_world(tmp_path / "w", n_train=2, n_test=5)
    test, vocab = load_hico_instances(world / "hoi_test.json")
    props, stats = known_boxes_proposals(test, vocab)
    teacher = TinyRandomTeacher(seed=0)
    emb = crop_embeddings(teacher, world / "images", props)
    assert emb.shape == (stats.pairs, 3 * teacher.dim)
    assert torch.allclose(emb[:, :teacher.dim].norm(dim=-1), torch.ones(stats.pairs), atol=1e-5)
    # the human crop of pair 0 equals the teacher's embedding of that crop
    p0 = next(p for p in props if p.pairs)
    with Image.open(world / "images" / p0.filename) as im:
        h = p0.humans[p0.pairs[0][0]]
        ref = teacher.encode_images([im.convert("RGB").crop(tuple(int(v) for v in h))]).pooled
    assert torch.allclose(emb[0, :teacher.dim], torch.nn.functional.normalize(ref, dim=-1)[0], atol=1e-5)
