"""CL-HOI's context distillation in language: descriptions written through a Sampler into a resumable store, the
VLT's contrastive loss, per-pair context by cross-attention, the V-COCO writer and the dev split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hoi_tinyworld import write_tiny_hoi_world
from mipd_kit.data.hico import load_hico_instances, load_vcoco
from mipd_kit.data.records import DataError
from mipd_kit.hoi import losses as L
from mipd_kit.hoi.descriptions import DescriptionStore, describe_into_store, encode_descriptions
from mipd_kit.hoi.models import ModelConfig, VisualLinguisticTranslator, build_student
from mipd_kit.language.base import Response, SamplerError


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_tiny_hoi_world(tmp_path_factory.mktemp("hoidesc"))


class Counting:
    """A stand-in vision model that numbers its answers and counts its calls."""

    def __init__(self, fingerprint: str = "counting-v1"):
        self.fingerprint, self.calls = fingerprint, 0

    def __call__(self, messages):
        self.calls += 1
        part = messages[0]["content"][0]  # the image travels inline, as an OpenAI data: URL
        assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
        return Response(f"  a person  holding a ball #{self.calls} ", tuple(messages), {"n": self.calls})


def test_descriptions_are_stored_resumed_and_reused(world, tmp_path):
    images = sorted((world / "images").glob("hoi_train_*.png"))[:4]
    store = DescriptionStore(tmp_path / "d.jsonl")
    s1 = Counting()
    texts, stats = describe_into_store(s1, images, store)
    assert s1.calls == 4 and stats["called"] == 4 and stats["reused"] == 0
    assert set(texts) == {p.name for p in images}
    assert all(t.startswith("a person holding a ball #") for t in texts.values())  # whitespace normalised
    store.close()
    # a later run (another seed, a resumed stage) reads the file and calls nothing for those images
    store2 = DescriptionStore(tmp_path / "d.jsonl")
    s2 = Counting()
    texts2, stats2 = describe_into_store(s2, images + [sorted((world / "images").glob("hoi_train_*.png"))[4]], store2)
    assert s2.calls == 1 and stats2["reused"] == 4 and stats2["called"] == 1
    assert {k: texts2[k] for k in texts} == texts
    # another describer (fingerprint) starts its own set beside the old one
    s3 = Counting("other-v2")
    _, stats3 = describe_into_store(s3, images, store2)
    assert stats3["called"] == 4 and len(store2) == 5 + 4
    store2.close()
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(lines) == 9 and all(json.loads(x)["schema"] == 1 for x in lines)
    # a torn last line (a killed writer) is cut on open; the complete records stay
    with open(tmp_path / "d.jsonl", "a") as f:
        f.write('{"schema": 1, "image": "x.png", "backe')
    store3 = DescriptionStore(tmp_path / "d.jsonl")
    assert len(store3) == 9 and store3.repaired_bytes > 0
    store3.close()


def test_parallel_requests_store_the_same_descriptions_in_the_same_order(world, tmp_path):
    import hashlib
    import threading

    class ByImage(Counting):  # answers from the image alone, so the answer does not depend on the call order
        lock = threading.Lock()

        def __call__(self, messages):
            with self.lock:
                self.calls += 1
            url = messages[0]["content"][0]["image_url"]["url"]
            return Response(f"a person #{hashlib.sha256(url.encode()).hexdigest()[:8]}", tuple(messages), {})

    images = sorted((world / "images").glob("hoi_train_*.png"))[:6]
    one, many = DescriptionStore(tmp_path / "one.jsonl"), DescriptionStore(tmp_path / "many.jsonl")
    t1, _ = describe_into_store(ByImage(), images, one)
    s = ByImage()
    t8, st = describe_into_store(s, images, many, workers=8)
    assert t8 == t1 and s.calls == 6 and st["called"] == 6 and len(set(t1.values())) == 6
    one.close(), many.close()
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "meta"}  # noqa: E731
                       for x in p.read_text().splitlines()]
    assert strip(tmp_path / "many.jsonl") == strip(tmp_path / "one.jsonl")  # file order = image order


def test_describer_errors_are_skipped_and_bad_records_named(world, tmp_path):
    images = sorted((world / "images").glob("hoi_train_*.png"))[:3] + [world / "images" / "missing.png"]
    store = DescriptionStore(tmp_path / "d.jsonl")
    texts, stats = describe_into_store(Counting(), images, store)  # the missing file: SamplerError, skipped
    assert len(texts) == 3 and stats["skipped"] == 1 and "missing.png" in stats["errors"][0]
    store.close()
    (tmp_path / "bad.jsonl").write_text('{"schema": 1, "image": "a.png", "backend": "b", "prompt": "p"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: line 1.*'text'"):
        DescriptionStore(tmp_path / "bad.jsonl")


def test_captioner_describes_training_images_once_for_all_seeds(world, tmp_path):
    """The embedded default: the captioner (trained on the world's pretraining captions, on the teacher's tokens)
    describes each training image through the Sampler path; a second run reuses the store."""
    from mipd_kit.hoi.config import CLHOIConfig
    from mipd_kit.hoi.prepare import image_descriptions
    from mipd_kit.hoi.world import load_hoi_world
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    w = load_hoi_world(world)
    teacher = TinyRandomTeacher(seed=0)
    cfg = CLHOIConfig.smoke(world_dir=str(world), run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "c"),
                            teacher="tiny")
    names = [im.filename for im in w.train]
    emb, ok, info = image_descriptions(cfg, teacher, w, names)
    assert info["describer"].startswith("captioner-v1:") and info["called"] == len(names)
    assert ok.all() and emb.shape == (len(names), teacher.dim)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(names)), atol=1e-5)
    assert all(isinstance(t, str) and t.strip() for t in info["examples"].values())
    rec = json.loads((tmp_path / "run" / "clhoi" / "descriptions.jsonl").read_text().splitlines()[0])
    assert rec["meta"]["backend"] == "captioner" and rec["meta"]["kind"] == "glimpse"
    # in the teacher's text space: the same text tower as the HOI phrases
    texts = {json.loads(x)["image"]: json.loads(x)["text"]
             for x in (tmp_path / "run" / "clhoi" / "descriptions.jsonl").read_text().splitlines()}
    e2, _ = encode_descriptions(teacher, names[:2], texts)
    assert torch.allclose(e2, emb[:2], atol=1e-6)
    emb2, _, info2 = image_descriptions(cfg, teacher, w, names)
    assert info2["called"] == 0 and info2["reused"] == len(names) and torch.equal(emb2, emb)


def test_context_infonce_formula_on_a_2x2_case():
    c = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    d = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    tau = 0.5
    s = [[sum(a * b for a, b in zip(ci, dj)) / tau for dj in d.tolist()] for ci in c.tolist()]  # cosines / tau

    def ce(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))
    rows = 0.5 * (ce(s[0], 0) + ce(s[1], 1))
    cols = 0.5 * (ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1))
    expected = 0.5 * (rows + cols)
    assert L.context_distillation_loss(c, d, tau).item() == pytest.approx(expected, rel=1e-6)
    assert L.context_distillation_loss(3 * c, d, tau).item() == pytest.approx(expected, rel=1e-6)  # normalised


def test_vlt_contrastive_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfg = ModelConfig(visual_dim=8, text_dim=6, hidden=16, dropout=0.0)
    vlt = VisualLinguisticTranslator(cfg)
    grid, pooled = torch.randn(6, 8, 3, 3, generator=g), torch.randn(6, 6, generator=g)
    desc = F.normalize(torch.randn(6, 6, generator=g), dim=-1)
    opt = torch.optim.Adam(vlt.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        tokens, ctx = vlt(grid, pooled)
        loss = L.context_distillation_loss(ctx, desc, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert tokens.shape == (6, 9, 6) and ctx.shape == (6, 6)
    assert losses[-1] < 0.5 * losses[0]
    # after training each image's context is nearest to its own description
    with torch.no_grad():
        _, ctx = vlt(grid, pooled)
    assert torch.equal((ctx @ desc.T).argmax(1), torch.arange(6))


def _pairs_of_one_image(P=3, D=8, E=6, H=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(grid=torch.randn(1, D, 3, 3, generator=g), pooled=torch.randn(1, E, generator=g),
                pair_image=torch.zeros(P, dtype=torch.long), feat_h=torch.randn(P, D, generator=g),
                feat_o=torch.randn(P, D, generator=g), feat_u=torch.randn(P, D, generator=g),
                spatial=torch.randn(P, 8, generator=g), text=F.normalize(torch.randn(H, E, generator=g), dim=-1),
                candidates=torch.ones(P, H, dtype=torch.bool))


def test_per_pair_context_differs_across_pairs_of_one_image():
    from mipd_kit.hoi.features import SPATIAL_DIM
    torch.manual_seed(0)
    b = _pairs_of_one_image()
    b["spatial"] = torch.randn(3, SPATIAL_DIM, generator=torch.Generator().manual_seed(1))
    seen = {}
    for fusion in ("cross_attention", "broadcast"):
        m = build_student(ModelConfig(visual_dim=8, text_dim=6, hidden=16, dropout=0.0,
                                      context_fusion=fusion)).eval()
        with torch.no_grad():
            out = m(**b)
            v = m.icn.visual(torch.cat([b["feat_h"], b["feat_o"], b["feat_u"]], -1))
            direct = m.icn.spatial_direct(b["spatial"])
            ctx = m.icn.pair_context(v, direct, out["context"][b["pair_image"]], out["context_tokens"],
                                     b["pair_image"])  # (P, h)
        seen[fusion] = ctx
        if fusion == "cross_attention":
            att = m.icn.last_attention  # (P, T): each pair's weights over the 9 context tokens
            assert att.shape == (3, 9) and torch.allclose(att.sum(1), torch.ones(3), atol=1e-5)
            assert not torch.allclose(att[0], att[1], atol=1e-4)
    cx = seen["cross_attention"]
    assert not torch.allclose(cx[0], cx[1], atol=1e-4) and not torch.allclose(cx[1], cx[2], atol=1e-4)
    bc = seen["broadcast"]  # the earlier design: one context for every pair of the image
    assert torch.allclose(bc[0], bc[1]) and torch.allclose(bc[1], bc[2])


def test_vcoco_writer_round_trips_through_the_evaluator(world, tmp_path, capsys):
    from mipd_kit.data.synthsitu.vcoco import hico_predictions_to_vcoco, vcoco_classes, write_vcoco
    from mipd_kit.eval.vcoco import evaluate_vcoco, gt_from_instances
    from mipd_kit.eval.vcoco import main as eval_main

    test, vocab = load_hico_instances(world / "hoi_test.json")
    stats = write_vcoco(tmp_path / "vcoco_test.json", test, vocab)
    assert stats["pairs"] == sum(len(im.hoi) for im in test)
    data = load_vcoco(tmp_path / "vcoco_test.json")
    assert data.classes == vcoco_classes(vocab) == ["hold obj", "kick obj", "hug obj"]
    assert [im.filename for im in data.images] == [im.filename for im in test]
    perfect = {im.filename: [{"hoi": h, "box_h": list(bh), "box_o": list(bo), "score": 1.0}
                             for h, bh, bo in zip(im.hoi, im.boxes_h, im.boxes_o)] for im in test}
    vp = hico_predictions_to_vcoco(perfect, vocab)
    rep = evaluate_vcoco(gt_from_instances(data), data.classes, vp)
    full = {r.metric: r.value for r in rep.rows if r.split == "full"}
    assert full["role_ap"] == pytest.approx(100.0) and full["agent_ap"] == pytest.approx(100.0)
    # the same through `mipd eval-vcoco`
    (tmp_path / "pred.json").write_text(json.dumps(vp))
    assert eval_main(["--gt", str(tmp_path / "vcoco_test.json"), "--pred", str(tmp_path / "pred.json"),
                      "--out", str(tmp_path / "m.json")]) == 0
    assert "mean role AP (scenario 1): 100.00" in capsys.readouterr().out
    # a wrong verb for every pair scores lower; duplicates of one (pair, verb) keep the best score
    wrong = {f: [dict(d, hoi={0: 3, 3: 0, 2: 3, 1: 3}[d["hoi"]]) for d in ds] for f, ds in perfect.items()}
    rep_w = evaluate_vcoco(gt_from_instances(data), data.classes, hico_predictions_to_vcoco(wrong, vocab))
    assert [r.value for r in rep_w.rows if r.split == "full" and r.metric == "role_ap"][0] < 100.0
    dup = {"a.png": [{"hoi": 0, "box_h": [0, 0, 1, 1], "box_o": [0, 0, 1, 1], "score": s} for s in (0.2, 0.7)]}
    assert hico_predictions_to_vcoco(dup, vocab)["a.png"] == [{"action": 0, "box_h": [0, 0, 1, 1],
                                                              "box_o": [0, 0, 1, 1], "score": 0.7}]
    with pytest.raises(DataError, match="'a.png' detection 0"):
        hico_predictions_to_vcoco({"a.png": [{"hoi": 0}]}, vocab)


def test_dev_split_is_seeded_disjoint_and_label_free_for_training(world):
    from mipd_kit.hoi.world import dev_world, LabelFreeImage, load_hoi_world

    w = load_hoi_world(world)
    a, b = dev_world(w, 0.3, 0), dev_world(w, 0.3, 0)
    assert [im.filename for im in a.test] == [im.filename for im in b.test]  # seeded: the same split
    train_names, dev_names = {im.filename for im in a.train}, {im.filename for im in a.test}
    assert not train_names & dev_names and train_names | dev_names == {im.filename for im in w.train}
    assert all(isinstance(im, LabelFreeImage) for im in a.train)
    assert all(im.hoi for im in a.test)  # dev labels: for the evaluator only
    assert {im.filename for im in dev_world(w, 0.3, 1).test} != dev_names


def test_vcoco_writer_command_line(world, tmp_path, capsys):
    from mipd_kit.data.synthsitu.vcoco import main

    assert main(["--world", str(world), "--out", str(tmp_path / "v.json")]) == 0
    assert "wrote" in capsys.readouterr().out and len(load_vcoco(tmp_path / "v.json").images) == 13
    assert main(["--world", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")]) == 2
    assert "hoi_test.json" in capsys.readouterr().err


def test_zero_gate_clhoi_starts_as_the_icn_of_the_same_seed():
    """With context_gate=0 the cross-attention student is the ICN plus a context branch that starts closed: the same
    initial pair logits as the ``icn`` student of the same seed (so clhoi - icn measures what the context adds)."""
    b = _pairs_of_one_image()
    from mipd_kit.hoi.features import SPATIAL_DIM
    b["spatial"] = torch.randn(3, SPATIAL_DIM, generator=torch.Generator().manual_seed(1))
    outs = {}
    for kind in ("icn", "clhoi"):
        torch.manual_seed(7)
        m = build_student(ModelConfig(kind=kind, visual_dim=8, text_dim=6, hidden=16, context_gate=0.0)).eval()
        with torch.no_grad():
            outs[kind] = m(**b)["pair_logits"]
    assert torch.allclose(outs["icn"], outs["clhoi"], atol=1e-6)
