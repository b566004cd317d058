"""CL-HOI's control rows: the oracle descriptions, their shuffle, the label losses, and the planted-signal test of the
context path (``clhoi-oracle`` must beat ``icn`` on a tiny world, and must stop doing so when the link from the
description to the ICN is cut)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from hoi_tinyworld import write_tiny_hoi_world
from mipd_kit.data.records import HOIImage
from mipd_kit.data.synthsitu import world as W
from mipd_kit.hoi import controls as C
from mipd_kit.hoi import losses as L
from mipd_kit.hoi.config import CONTROL_MODELS, LABEL_FREE_MODELS, CLHOIConfig
from mipd_kit.hoi.world import load_hoi_world
from mipd_kit.app.stages.clhoi_runs import run_clhoi


def _synthsitu_prompts() -> list[str]:
    cls = W.hoi_classes()
    return [W.hoi_phrase(cls.objects[o], cls.verbs[v]) for _, o, v in cls.correspondence]


def _image(name: str, hois: list[int], n_people: int) -> HOIImage:
    bh = [[10.0 * (i % n_people), 0.0, 10.0 * (i % n_people) + 8, 20.0] for i in range(len(hois))]
    bo = [[10.0 * i + 3, 5.0, 10.0 * i + 9, 12.0] for i in range(len(hois))]
    return HOIImage(name, 64, 64, bh, bo, list(hois), [0] * len(hois), [0] * len(hois))


def test_oracle_description_names_the_true_interactions_and_never_boxes():
    prompts = _synthsitu_prompts()
    cls = W.hoi_classes()
    ride, push = cls.index("horse", "ride"), cls.index("cart", "push")
    assert C.oracle_description([ride, push], prompts) == "a person riding a horse; another person pushing a cart"
    assert C.oracle_description([], prompts) == ""
    ims = [_image(f"im{i}.png", [(7 * i + j) % len(prompts) for j in range(1 + i % 3)], 1 + i % 3)
           for i in range(40)]
    texts = C.oracle_descriptions(ims, prompts)
    assert set(texts) == {im.filename for im in ims}
    for im in ims:  # every clause is one true interaction, and no number (no box) is written
        assert not re.search(r"\d", texts[im.filename])
        assert len(texts[im.filename].split("; ")) == len(im.hoi)
    pr = C.description_precision_recall(texts, ims, prompts)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0 and pr["exact"] == 1.0


def test_named_hois_reads_the_worlds_synonyms_per_clause():
    prompts = _synthsitu_prompts()
    cls = W.hoi_classes()
    vw, ow = C.synthsitu_words()
    words = C.hoi_words(prompts, vw, ow)
    got = C.named_hois("two people: a guy mounted on a horse and a kid shoving a cart", words)
    assert got == {cls.index("horse", "ride"), cls.index("cart", "push")}
    # a verb and an object in different clauses name nothing together
    assert C.named_hois("a man riding a horse; a cart", words) == {cls.index("horse", "ride")}
    assert C.named_hois("a man pushing; a cart", words) == set()
    assert C.named_hois("people on the beach", words) == set()


def test_shuffle_moves_each_description_to_another_image_with_as_many_people():
    people = {f"im{i:02d}.png": 1 + i % 3 for i in range(13)}
    people["alone.png"] = 5  # the only image with 5 people
    texts = {f: f"text of {f}" for f in people}
    out = C.shuffle_by_people(texts, people, seed=3)
    assert set(out) == set(texts)
    for f, t in out.items():
        src = t[len("text of "):]
        assert src != f  # never its own
        if f != "alone.png":
            assert people[src] == people[f]
    assert people[out["alone.png"][len("text of "):]] == 3  # the nearest other count
    assert sorted(out.values()) != sorted(texts.values()) or len(set(out.values())) == len(texts)
    assert C.shuffle_by_people(texts, people, seed=3) == out  # seeded
    assert C.shuffle_by_people({"a": "x"}, {"a": 1}) == {"a": "x"}  # a single image has no other


def test_mil_loss_is_the_stated_cross_entropy():
    torch.manual_seed(0)
    S = torch.randn(3, 4)
    cand = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    y = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    # per image: -(1/|Y_i|) sum_{k in Y_i} log softmax over C(i); image 2 has no label and carries no term
    ref_img = []
    for i in range(2):
        lp = torch.log_softmax(S[i][cand[i]], 0)
        idx = torch.nonzero(y[i][cand[i]]).flatten()
        ref_img.append(-lp[idx].mean())
    # across images, per HOI with a positive: softmax over the images where k is a candidate
    ref_x = []
    for k in range(4):
        imgs = torch.nonzero(cand[:, k]).flatten()
        pos = [j for j, i in enumerate(imgs.tolist()) if y[i, k]]
        if pos:
            lp = torch.log_softmax(S[imgs, k], 0)
            ref_x.append(-lp[pos].mean())
    got = L.mil_loss(S, y, cand, w_cross=0.5)
    assert got.item() == pytest.approx(torch.stack(ref_img).mean().item() + 0.5 * torch.stack(ref_x).mean().item(),
                                       rel=1e-5)
    assert L.mil_loss(S, y, cand, w_cross=0.0).item() == pytest.approx(torch.stack(ref_img).mean().item(), rel=1e-5)
    # confident and right: near 0; no label at all: 0 with a gradient path
    sure = torch.tensor([[30.0, -30.0], [-30.0, 30.0]])
    assert L.mil_loss(sure, torch.eye(2, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool)).item() < 1e-6
    x = torch.randn(2, 3, requires_grad=True)
    z = L.mil_loss(x, torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool))
    z.backward()
    assert z.item() == 0.0 and x.grad is not None


def test_pair_and_image_labels_follow_the_boxes():
    im = HOIImage("a.png", 64, 64, [[0, 0, 10, 20], [30, 0, 40, 20]], [[10, 5, 16, 12], [40, 5, 46, 12]], [2, 5],
                  [0, 0], [0, 0])
    pair_image = torch.tensor([0, 0, 0, 0])
    bh = torch.tensor([[0, 0, 10, 20], [0, 0, 10, 20], [30, 0, 40, 20], [30.5, 0, 40, 20]], dtype=torch.float)
    bo = torch.tensor([[10, 5, 16, 12], [40, 5, 46, 12], [40, 5, 46, 12], [10, 5, 16, 12]], dtype=torch.float)
    y = C.pair_labels([im], ["a.png"], pair_image, bh, bo, 8)
    assert [torch.nonzero(r).flatten().tolist() for r in y] == [[2], [], [5], []]
    assert torch.nonzero(C.image_labels([im], ["a.png"], 8)[0]).flatten().tolist() == [2, 5]
    with pytest.raises(KeyError, match="b.png"):
        C.image_labels([im], ["b.png"], 8)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_tiny_hoi_world(tmp_path_factory.mktemp("hoictl"), n_train=36, n_test=18)


def _maps(world: Path, run: Path, **kw) -> dict[str, float]:
    base = dict(world_dir=str(world), run_dir=str(run), cache_dir=str(run / "cache"), teacher="tiny", seeds=(0, 1),
                epochs=12, threads=1, vcoco=False, models=("icn", "clhoi-oracle", "clhoi-oracle-shuffled"))
    base.update(kw)
    res = run_clhoi(CLHOIConfig.smoke(**base))
    return {r.model: r.value for r in res.rows if r.metric == "map_mean" and r.split == "full"
            and r.setting == "default"}


def test_planted_signal_reaches_the_pairs_and_stops_when_the_link_is_cut(world, tmp_path):
    """The tiny teacher is random: ``icn`` distils noise. The oracle descriptions carry the answer; through the
    description distillation they must lift the pairs' scores above ``icn`` and above the shuffled oracle. With the
    link cut (``w_describe=0``: the description reaches only the VLT), the gain must vanish."""
    on = _maps(world, tmp_path / "on", w_describe=1.0)
    assert on["clhoi-oracle"] >= on["icn"] + 5.0, on
    assert on["clhoi-oracle"] >= on["clhoi-oracle-shuffled"] + 2.0, on  # tiny world: 4 HOIs, shuffles often agree
    cut = _maps(world, tmp_path / "cut", w_describe=0.0, models=("icn", "clhoi-oracle"))
    assert cut["clhoi-oracle"] < on["clhoi-oracle"] - 5.0, (on, cut)


def test_control_rows_are_off_by_default_and_read_labels_only_when_asked(world, tmp_path):
    assert CLHOIConfig().models == LABEL_FREE_MODELS
    assert not set(CONTROL_MODELS) & set(LABEL_FREE_MODELS)
    res = run_clhoi(CLHOIConfig.smoke(world_dir=str(world), run_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"),
                                      teacher="tiny", seeds=(0,), epochs=3, threads=1, vcoco=False,
                                      models=("icn", "weak-mil", "upper")))
    maps = {r.model: r.value for r in res.rows if r.metric == "map" and r.split == "full" and r.setting == "default"}
    assert set(maps) == {"icn", "weak-mil", "upper"} and all(math.isfinite(v) for v in maps.values())
    info = res.info["controls"]
    assert info["mil"]["images_with_labels"] == len(load_hoi_world(world).train)  # every tiny training image
    assert 0 < info["upper"]["labelled_pairs"] <= info["upper"]["pairs"]
    assert {"image_kd", "cross_kd"}.isdisjoint(res.histories["weak-mil-seed0"][0])  # labels only, no teacher
    assert {"pair", "mil"} <= set(res.histories["upper-seed0"][0])
    # training the control rows beside a label-free row leaves that row's predictions as they are alone
    alone = run_clhoi(CLHOIConfig.smoke(world_dir=str(world), run_dir=str(tmp_path / "a"),
                                        cache_dir=str(tmp_path / "c"), teacher="tiny", seeds=(0,), epochs=3,
                                        threads=1, vcoco=False, models=("icn",)))
    assert Path(alone.prediction_files["icn-seed0"]).read_text() == Path(res.prediction_files["icn-seed0"]).read_text()


def test_stage_controls_parameter_adds_the_rows(world, tmp_path):
    import dataclasses

    from mipd_kit.app.stages import cl_hoi as H

    cfg = dataclasses.replace(H.Config.smoke(), world_dir=str(world), cache_dir=str(tmp_path / "c"),
                              teacher_config={"backend": "tiny"}, epochs=2, vcoco=False,
                              controls=["upper", "clhoi-oracle"])
    assert cfg.clhoi_config(tmp_path).models == LABEL_FREE_MODELS + ("clhoi-oracle", "upper")
    out = H.run(cfg, tmp_path / "stage")
    assert "| clhoi-oracle |" in out.table and "| upper |" in out.table
    with pytest.raises(ValueError, match="unknown cl_hoi controls"):
        dataclasses.replace(cfg, controls=["oracle"]).clhoi_config(tmp_path)
