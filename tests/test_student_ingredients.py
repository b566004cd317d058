"""The ingredients table of the study: the authors' loss weights, KD only where named, gold-verb negatives dropped,
the negative term kept off the verb head's input, and the paired bootstrap interval."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from mipd_kit.metrics import paired_bootstrap, paired_difference_rows, read_rows, row, write_rows
from mipd_kit.student.ingredients import (AUTHORS_LOSSES, BY_VARIANT, MODEL_NAMES, ROWS, STUDY_ROWS, USES, VARIANTS,
                                          drop_gold_negatives, markdown_table, names_verb, row_of)
from mipd_kit.student.testing import hashed_text_embedder, write_tiny_world
from mipd_kit.student.config import StudentConfig
from mipd_kit.student.data import prepare_world
from mipd_kit.student.targets import attach_targets
from mipd_kit.student.train import compute_losses
from mipd_kit.teachers.tiny import TinyRandomTeacher


def test_mipd_row_has_the_authors_loss_weights():
    cfg = StudentConfig(variant=row_of("mipd").variant)  # type: ignore[arg-type]
    assert cfg.model_name == "mipd"
    for k, v in AUTHORS_LOSSES.items():
        assert getattr(cfg, k) == v, k
    assert AUTHORS_LOSSES == {"verb_smoothing": 0.3, "w_verb": 1.0, "distill_kind": "l1", "w_scene": 2.0,
                              "w_role": 2.0, "w_neg": 5.0, "noun_smoothing": 0.2, "w_noun": 1.0, "w_l1": 5.0,
                              "w_giou": 5.0, "w_exists": 5.0}
    # every student row shares them (rows differ only by their ingredients)
    for v in VARIANTS:
        c = StudentConfig(variant=v)  # type: ignore[arg-type]
        assert {k: getattr(c, k) for k in AUTHORS_LOSSES} == AUTHORS_LOSSES


def test_logit_kd_is_its_own_ingredient():
    assert "kd" not in ROWS["mipd"].uses and "kd" in ROWS["mipd-kd"].uses
    assert ROWS["mipd-kd"].uses == ROWS["mipd"].uses | {"kd"}
    assert ROWS["mipd-feat-kd"].uses == ROWS["mipd-feat"].uses | {"kd"}
    assert ROWS["mipd-kd-unlabeled"].uses == ROWS["mipd-kd"].uses | {"unlabeled"}
    assert ROWS["mipd-feat-kd-unlabeled"].uses == ROWS["mipd-feat-kd"].uses | {"unlabeled"}
    for control, source in (("mipd-template", "template"), ("mipd-shuffled", "shuffled")):
        assert ROWS[control].uses == ROWS["mipd"].uses and ROWS[control].rationales == source
    assert set(STUDY_ROWS) <= set(ROWS) and STUDY_ROWS[:2] == ("teacher", "student-zs")
    assert all(MODEL_NAMES[v] == BY_VARIANT[v].model and USES[v] == BY_VARIANT[v].uses for v in VARIANTS)
    table = markdown_table(STUDY_ROWS)
    assert table.count("\n") == len(STUDY_ROWS) + 1 and "`mipd-kd`" in table


def test_ingredients_table_is_in_the_methods_page():
    from pathlib import Path
    page = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text()
    assert markdown_table() in page, "docs/methods.md: re-render the table (python -m mipd_kit.student.ingredients)"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("ingr")
    info = write_tiny_world(d / "w")
    torch.set_num_threads(1)
    w = prepare_world(d / "w", d / "cache", TinyRandomTeacher(), image_size=32, embed_texts=hashed_text_embedder(),
                      collected=info["collected"])
    return w


def _parts(w, variant, **kw):
    cfg = dataclasses.replace(StudentConfig.smoke(variant), threads=1, **kw)
    tr, _, _ = attach_targets(w, cfg)
    from mipd_kit.student.model import build_student
    torch.manual_seed(0)
    m = build_student(cfg, w.vocab)
    train_ids = torch.nonzero(w.vocab.train_verbs).flatten()
    train_map = torch.full((len(w.vocab.verbs),), -1, dtype=torch.long)
    train_map[train_ids] = torch.arange(len(train_ids))
    idx = torch.arange(8)
    return m, compute_losses(m, tr.take(idx, torch.device("cpu")), 8, cfg, train_map, train_ids)


def test_mipd_has_no_kd_term_and_mipd_kd_has(tiny):
    _, p = _parts(tiny, "paper")
    assert "kd" not in p and {"verb", "noun", "box_l1", "box_giou", "box_exists", "distill_scene", "neg"} <= set(p)
    _, p = _parts(tiny, "full")
    assert "kd" in p and "neg" in p


def test_negative_term_never_reaches_the_verb_head_input(tiny):
    m, p = _parts(tiny, "paper", neg_kind="margin")  # the margin form is non-zero here (relu(cos) may be 0)
    assert p["neg"].requires_grad and float(p["neg"].detach()) != 0.0
    m.zero_grad()
    p["neg"].backward()
    assert m.scene_distill.weight.grad is None or float(m.scene_distill.weight.grad.abs().sum()) == 0.0
    assert m.neg_proj.weight.grad is not None and float(m.neg_proj.weight.grad.abs().sum()) > 0
    # the verb head reads scene_distill: with neg_proj removed from the graph the logits do not depend on it
    x = torch.zeros(2, 3, 32, 32)
    before = m.verb_logits(m.encode(x)[1]).detach()
    with torch.no_grad():
        m.neg_proj.weight.add_(1.0)
    assert torch.equal(before, m.verb_logits(m.encode(x)[1]).detach())


def test_gold_verb_negatives_are_dropped():
    words = {"riding": ("riding", "on the back of", "mounted on"), "running": ("running",)}
    collected = {"a.png": {"glimpse": {"positive": ["a man riding a horse"],
                                       "negative": ["A man rides a horse", "a man mounted on a horse", "a man swims",
                                                    "a person pushing a cart"]},
                           "gaze": {"agent": {"positive": ["a man"], "negative": ["the man is riding", "a dog"]}}},
                 "b.png": {"glimpse": {"positive": [], "negative": ["he runs fast", "she run", "a boy riding"]}}}
    out, n = drop_gold_negatives(collected, {"a.png": "riding", "b.png": "running"}, words)
    assert out["a.png"]["glimpse"]["negative"] == ["a man swims", "a person pushing a cart"]
    assert out["a.png"]["gaze"]["agent"]["negative"] == ["a dog"]
    assert out["a.png"]["glimpse"]["positive"] == ["a man riding a horse"]
    assert out["b.png"]["glimpse"]["negative"] == ["a boy riding"]  # runs / run: running's stem, doubled n undone
    assert n == 5 and collected["a.png"]["glimpse"]["negative"][0] == "A man rides a horse"  # input untouched
    assert names_verb("Someone is Hammering a nail", ["hammering"]) and not names_verb("the brider", ["riding"])


def test_prepare_world_drops_gold_negatives_of_the_tiny_world(tmp_path):
    info = write_tiny_world(tmp_path / "w")
    col = info["collected"]
    im = next(iter(col))
    import json
    gold = json.loads((tmp_path / "w" / "train.json").read_text())[im]["verb"]
    col[im]["glimpse"]["negative"] = [f"someone {gold} here"] + list(col[im]["glimpse"]["negative"])
    w = prepare_world(tmp_path / "w", tmp_path / "c", TinyRandomTeacher(), 32, hashed_text_embedder(), collected=col)
    assert w.report["gold_negatives_dropped"] >= 1
    assert f"someone {gold} here" not in w.align.bank.texts


def test_paired_bootstrap_covers_the_true_difference_at_about_the_stated_rate():
    rng = random.Random(1)
    true, hits, trials = 2.0, 0, 300
    for t in range(trials):
        base = [rng.gauss(50, 5) for _ in range(30)]  # a shared per-pair effect the pairing removes
        a = [b + true + rng.gauss(0, 1.5) for b in base]
        b = [x + rng.gauss(0, 1.5) for x in base]
        m, lo, hi = paired_bootstrap(a, b, n_boot=1000, seed=t)
        assert lo <= m <= hi
        hits += lo <= true <= hi
    assert 0.88 <= hits / trials <= 0.99  # nominal 0.95 (percentile intervals run slightly narrow)
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_paired_difference_rows_have_bounds_and_round_trip(tmp_path):
    rows = [row("gsr", m, "unseen", "top1", "verb", v + s, seed=s, mean="image")
            for m, v in (("mipd", 60.0), ("mipd-feat", 50.0)) for s in range(3)]
    out = paired_difference_rows(rows, [("mipd", "mipd-feat")], n_boot=500)
    d = [r for r in out if r.metric == "verb_diff"][0]
    assert d.task == "gsr-study" and d.model == "mipd - mipd-feat" and d.value == pytest.approx(10.0)
    assert d.lo == pytest.approx(10.0) and d.hi == pytest.approx(10.0)
    write_rows(tmp_path / "m.json", rows + out)
    back = read_rows(tmp_path / "m.json")
    assert back == rows + out
    import json
    raw = json.loads((tmp_path / "m.json").read_text())
    assert "lo" not in raw[0] and raw[len(rows)]["lo"] == pytest.approx(10.0)


def test_row_and_variant_names_come_from_the_one_table() -> None:
    """ROWS is the one list of study rows: the variants, the Variant type, the model names and the report order are
    derived from it, so adding a row touches that table only."""
    import typing

    from mipd_kit.app.analysis import README_GSR_MODELS
    from mipd_kit.student.report import MODEL_ORDER
    from mipd_kit.student.train import StudentConfig

    assert MODEL_ORDER == tuple(ROWS)
    assert VARIANTS == tuple(r.variant for r in ROWS.values() if r.variant is not None)
    assert typing.get_args(typing.get_type_hints(StudentConfig)["variant"]) == VARIANTS
    assert {MODEL_NAMES[v] for v in VARIANTS} | {"teacher", "student-zs"} == set(ROWS)
    assert [m for m in README_GSR_MODELS if m in ROWS] == list(MODEL_ORDER)
    assert all(StudentConfig(variant=v).model_name == BY_VARIANT[v].model for v in VARIANTS)
