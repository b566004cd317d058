"""SynthSitu difficulty baselines: the frame prior, the prediction format, and a short end-to-end run."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mipd_kit.data.records import FrameSpace, Situation, VerbDef
from mipd_kit.eval.baselines import BaselineConfig, frame_prior, predictions, run_baselines
from mipd_kit.data.synthsitu.generate import SynthConfig, generate


def _sit(img, verb, box, nouns):
    return Situation(img, verb, 100, 100, {"agent": box, "place": None},
                     tuple({"agent": n, "place": "field"} for n in nouns))


def test_frame_prior_most_frequent_noun_and_mean_box():
    train = {"a": _sit("a", "riding", (0, 0, 10, 10), ["man", "man", "guy"]),
             "b": _sit("b", "riding", (10, 10, 30, 30), ["woman", "man", "man"]),
             "c": _sit("c", "waving", None, ["child"] * 3)}
    pri = frame_prior(train)
    assert pri.by_verb["riding"]["agent"] == {"noun": "man", "box": [5.0, 5.0, 20.0, 20.0]}
    assert pri.by_verb["riding"]["place"] == {"noun": "field", "box": None}
    assert pri.by_verb["waving"]["agent"]["box"] is None
    space = FrameSpace({v: VerbDef(v, "", "", ("agent", "place")) for v in ("riding", "waving", "sleeping")}, {})
    fr = pri.frame("sleeping", space)  # unseen verb: role-name prior over all training verbs
    assert fr["agent"]["noun"] == "man" and fr["place"]["noun"] == "field"
    preds = predictions(["a"], np.array([[0.1, 0.9]]), ["riding", "waving"], pri, space, gt=train)
    assert [v["verb"] for v in preds["a"]["verbs"]] == ["waving", "riding"]
    assert preds["a"]["gt_verb_frame"]["agent"]["noun"] == "man"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("bw") / "w"
    generate(replace(SynthConfig.smoke(0), n_train=120, rare_train=3, n_dev=35, n_test=70, n_unlabeled=35,
                     n_hoi_train=10, n_hoi_test=5, n_pretrain=40), out)
    return out


def test_baselines_run_and_are_closed_set(world):
    cfg = BaselineConfig(linear_steps=30, cnn_epochs=1, cnn_side=32, threads=1)
    rows, info = run_baselines(world, cfg)
    models = {r.model for r in rows}
    assert models == {"pixel_linear", "small_cnn"}
    def get(model, split, setting, metric):
        return next(r.value for r in rows if (r.model, r.split, r.setting, r.metric, r.mean) ==
                    (model, split, setting, metric, "image"))
    for m in models:
        assert get(m, "unseen", "top1", "verb") == 0.0  # cannot name an unseen verb
        assert get(m, "unseen", "top5", "verb") == 0.0
        assert 0.0 <= get(m, "seen", "top1", "grnd_value_all") < 100.0
        assert set(info["predictions"][m]) == {f"test_{i:06d}.png" for i in range(70)}
    assert info["train_acc_pixel_linear"] > 100.0 / info["classes"]  # the linear model fits its training set


def test_world_views_draw_sheets_and_tables(world):
    """What notebook 00 shows: the sheets of mipd_kit.viz.world and the tables it re-exports from stats."""
    from mipd_kit.data.synthsitu import stats
    from mipd_kit.viz import world as W
    assert W.summary_table is stats.summary_table and W.hoi_statistics is stats.hoi_statistics
    sheet = W.verb_sheet(world, "train", ["riding", "no-such-verb"], per_verb=2, upscale=1)
    assert sheet is not None and sheet.size[0] > 0 and sheet.size[1] > 0
    assert W.hoi_sheet(world, "hoi_train", n=2, ncols=2, upscale=1).size[0] > 0
    ps, caps = W.pretrain_sheet(world, n=4, ncols=2)
    assert len(caps) == 4 and ps.size[0] > 0
