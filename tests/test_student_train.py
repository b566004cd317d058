"""Student model + training on a tiny fixture world (TinyRandomTeacher, hashed text embedder)."""

import dataclasses
import json

import pytest
import torch

from mipd_kit.data.records import DataError
from mipd_kit.data.splits import LeakageError
from mipd_kit.student.model import build_student
from mipd_kit.student.testing import hashed_text_embedder, write_tiny_world
from mipd_kit.app.stages.student_runs import config_from_args, run_variant
from mipd_kit.student.checkpoint import CheckpointMismatch
from mipd_kit.student.config import StudentConfig
from mipd_kit.student.data import prepare_world
from mipd_kit.student.ingredients import VARIANTS
from mipd_kit.student.model import to_input
from mipd_kit.student.targets import attach_targets
from mipd_kit.student.train import fit
from mipd_kit.teachers.tiny import TinyRandomTeacher


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinyworld")
    info = write_tiny_world(d / "w")
    torch.set_num_threads(1)
    w = prepare_world(d / "w", d / "cache", TinyRandomTeacher(), image_size=32, embed_texts=hashed_text_embedder(),
                      collected=info["collected"])
    return d, w, info


def cfg_for(variant, **kw):
    c = StudentConfig.smoke(variant)
    c.threads = 1
    return dataclasses.replace(c, **kw)


def test_build_student_factory_and_shapes(tiny):
    _, w, _ = tiny
    cfg = cfg_for("baseline")
    m = build_student(cfg, w.vocab)
    x = w.train.x[:3].float() / 255
    out = m(x, w.train.verb[:3])
    R = w.vocab.max_roles
    assert out["verb_logits"].shape == (3, len(w.vocab.verbs))
    assert out["noun_logits"].shape == (3, R, len(w.vocab.nouns))
    assert out["boxes"].shape == (3, R, 4) and ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()
    p = m.predict(x, k=5, gt_verbs=w.train.verb[:3])
    assert p["verbs"].shape == (3, 5) and p["nouns"].shape == (3, 5, R) and p["gt_nouns"].shape == (3, R)
    with pytest.raises(ValueError, match="'cnn', 'cached'"):
        build_student(dataclasses.replace(cfg, backbone="vit"), w.vocab)
    with pytest.raises(ValueError, match="variant must be one of"):
        StudentConfig(variant="everything")


@pytest.mark.parametrize("dec_layers", [1, 2])
def test_decoding_k_hypotheses_shares_the_memory_and_equals_decoding_each(tiny, dec_layers):
    # predict decodes k verbs per image against one memory (keys / values projected once); the frames must be those
    # of decoding each hypothesis against its own copy of the memory (the plain nn.TransformerDecoder), up to float
    # summation order
    _, w, _ = tiny
    torch.manual_seed(0)
    m = build_student(cfg_for("baseline", dec_layers=dec_layers), w.vocab).eval()
    x = to_input(w.train.x[:4])
    k = 3
    verbs = torch.stack([torch.randperm(len(w.vocab.verbs))[:k] for _ in range(4)])  # (4, k), frames of every size
    with torch.no_grad():
        tok, _ = m.encode(x)
        B, T, d = tok.shape
        shared = m.decode(tok, verbs)
        each = m.decode(tok.unsqueeze(1).expand(B, k, T, d).reshape(B * k, T, d), verbs.reshape(-1))
    assert set(shared) == set(each)
    for key in shared:
        assert shared[key].shape[0] == B * k
        if key == "role_mask":
            assert torch.equal(shared[key], each[key])
        else:  # padded role slots are computed too (and ignored downstream): compare every slot
            torch.testing.assert_close(shared[key], each[key], rtol=1e-5, atol=1e-5)


def test_cached_backbone_real_mode(tiny):
    _, w, _ = tiny
    feats = torch.randn(4, 16, 20)
    cfg = cfg_for("baseline", backbone="cached", in_dim=20, num_tokens=16)
    m = build_student(cfg, w.vocab)
    assert m(feats, w.train.verb[:4])["verb_logits"].shape == (4, len(w.vocab.verbs))
    with pytest.raises(ValueError, match="in_dim"):
        build_student(cfg_for("baseline", backbone="cached"), w.vocab)


def test_baseline_learns_seen_verbs(tiny):
    _, w, _ = tiny
    cfg = cfg_for("baseline", epochs=15, batch_size=8, lr=3e-3, select_on_dev=False)
    res = fit(w, cfg)
    first = sum(h["loss"] for h in res.history[:3]) / 3
    last = sum(h["loss"] for h in res.history[-3:]) / 3
    assert last < first
    # the verb CE runs over the trainable verbs only, so "learnt the seen verbs" is closed-set accuracy among them
    # (over all verbs an untrained unseen verb whose text embedding lies near a seen one may win the argmax)
    train_ids = torch.nonzero(w.vocab.train_verbs).flatten()
    res.model.eval()
    with torch.no_grad():
        _, scene = res.model.encode(to_input(w.train.x))
        pred = train_ids[res.model.verb_logits(scene)[:, train_ids].argmax(-1)]
    seen = torch.isin(w.train.verb, train_ids)
    acc = 100.0 * float((pred[seen] == w.train.verb[seen]).float().mean())
    chance = 100.0 / len(train_ids)
    assert acc > 2 * chance


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_writes_predictions(tiny, variant):
    d, w, _ = tiny
    rows, res = run_variant(w, cfg_for(variant, epochs=1), d / "run")
    name = res.model and cfg_for(variant).model_name
    preds = json.loads((d / "run" / "predictions" / f"{name}-seed0.json").read_text())
    assert set(preds) == set(w.test.images)
    rec = preds[w.test.images[0]]
    assert len(rec["verbs"]) == 5 and {"verb", "score", "frame"} <= set(rec["verbs"][0])
    assert "gt_verb_frame" in rec
    assert rows and all(r.model == name and r.seed == 0 for r in rows)
    assert {"seen", "rare", "unseen"} <= {r.split for r in rows}
    curve = json.loads((d / "run" / "curves" / f"{name}-seed0.json").read_text())
    assert len(curve["history"]) == len(res.history)
    if cfg_for(variant).uses["distill"]:
        assert any(k.startswith("distill") for k in res.history[0])
    if cfg_for(variant).uses["all_labels"]:  # the ceiling also trains on the pool's labels of every verb
        assert res.info["all_labels_images"] == len(w.unlabeled_gt) > 0


def test_unseen_label_never_reaches_the_loss(tiny):
    _, w, _ = tiny
    bad = dataclasses.replace(w.train, verb=w.train.verb.clone())
    unseen = [i for i, v in enumerate(w.vocab.verbs) if not w.vocab.train_verbs[i]][0]
    bad.verb[0] = unseen
    with pytest.raises(RuntimeError, match="non-trainable"):
        fit(w, cfg_for("baseline", epochs=1, batch_size=len(bad)), train_data=bad, info={})


def test_guard_refuses_unseen_examples_in_train_json(tmp_path):
    info = write_tiny_world(tmp_path / "w", n_per_verb=2)
    sp = json.loads((tmp_path / "w" / "ov_split.json").read_text())
    sp["seen"], sp["unseen"] = [v for v in sp["seen"] if v != "riding"], sp["unseen"] + ["riding"]
    sp["unseen_novel"] = sp["unseen_novel"] + ["riding"]
    (tmp_path / "w" / "ov_split.json").write_text(json.dumps(sp))
    with pytest.raises(LeakageError, match="unseen"):
        prepare_world(tmp_path / "w", tmp_path / "c", TinyRandomTeacher(), 32, hashed_text_embedder(),
                      collected=info["collected"])


def test_nan_loss_stops_naming_the_batch(tiny):
    _, w, _ = tiny
    cfg = cfg_for("feat", epochs=1, batch_size=4)
    tr, _, info = attach_targets(w, cfg)
    tr = dataclasses.replace(tr, scene_t=tr.scene_t.clone())
    tr.scene_t[:] = float("nan")
    with pytest.raises(FloatingPointError, match=r"batch images \['"):
        fit(w, cfg, train_data=tr, info=info)


def test_missing_rationales_are_counted_or_refused_when_strict(tiny):
    _, w, _ = tiny
    _, _, info = attach_targets(w, cfg_for("glimpse"))
    assert info["rationales"]["images_without_glimpse"] > 0
    with pytest.raises(DataError, match="strict_rationales"):
        attach_targets(w, cfg_for("glimpse", strict_rationales=True))


def test_checkpoint_resume_and_refusal(tiny, tmp_path):
    _, w, _ = tiny
    cfg = cfg_for("feat", epochs=2, select_on_dev=False)
    full = fit(w, cfg, tmp_path / "a.safetensors")
    # an interrupted run (killed after epoch 1), then resumed: same weights as the uninterrupted run
    fit(w, cfg, tmp_path / "b.safetensors", stop_after=1)
    resumed = fit(w, cfg, tmp_path / "b.safetensors")
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), k
    assert len(resumed.history) == len(full.history)
    # a finished checkpoint "resumed" trains nothing and keeps the training time of the sessions that made it
    again = fit(w, cfg, tmp_path / "a.safetensors")
    assert len(again.history) == len(full.history)
    assert again.info["train_s"] >= full.info["train_s"] > 0
    with pytest.raises(CheckpointMismatch, match="differing fields \\['epochs'\\]"):
        fit(w, dataclasses.replace(cfg, epochs=3), tmp_path / "b.safetensors")


def test_config_overrides():
    c = config_from_args("neg", 3, True, ["w_neg=2.5", "nmpa.neg_kind=infonce", "distill_kind=l1"])
    assert c.seed == 3 and c.w_neg == 2.5 and c.nmpa.neg_kind == "infonce" and c.variant == "neg"
    assert c.nmpa_config().seed == 3 and c.nmpa_config().w_neg > 0
    assert config_from_args("glimpse", 0, True, []).nmpa_config().w_neg == 0.0
    with pytest.raises(ValueError, match="unknown StudentConfig key"):
        config_from_args("full", 0, True, ["bogus=1"])


def test_cli_main_writes_metrics_and_predictions(tmp_path):
    from mipd_kit.metrics import read_rows
    from mipd_kit.app.stages.student_runs import main
    info = write_tiny_world(tmp_path / "w", n_per_verb=4)
    from mipd_kit.rationales.store import Rationale
    recs = []
    for im, c in info["collected"].items():
        for pol in ("positive", "negative"):
            for t in c["glimpse"][pol]:
                recs.append(Rationale(im, "glimpse", None, pol, t, 0, 9.0 if pol == "positive" else 1.0, "test"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "rationales.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in recs))
    code = main(["--world", str(tmp_path / "w"), "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"),
                 "--teacher", "tiny", "--smoke", "--variant", "baseline,glimpse", "--set", "epochs=1",
                 "--set", "threads=1"])
    assert code == 0
    rows = read_rows(tmp_path / "run" / "metrics.json")
    assert {"baseline", "mipd-glimpse"} <= {r.model for r in rows}
    assert (tmp_path / "run" / "predictions" / "mipd-glimpse-seed0.json").exists()
    with pytest.raises(ValueError, match="unknown StudentConfig key"):
        main(["--world", str(tmp_path / "w"), "--run-dir", str(tmp_path / "run"), "--teacher", "tiny", "--set", "nope=1"])


def test_runnable_variants_names_the_reason(tiny):
    from mipd_kit.student.targets import runnable_variants
    _, w, _ = tiny
    ok, skipped = runnable_variants(w, list(VARIANTS))
    assert ok == list(VARIANTS) and skipped == {}
    no_rat = dataclasses.replace(w, align=dataclasses.replace(w.align, glimpse_pos=torch.full_like(w.align.glimpse_pos, -1)))
    ok, skipped = runnable_variants(no_rat, list(VARIANTS))
    assert ok == ["baseline", "feat", "feat-kd", "upper", "feat-unlabeled", "feat-kd-unlabeled"] and "rationales" in skipped["full"]
    ok, skipped = runnable_variants(dataclasses.replace(w, unlabeled_gt=None), ["upper", "baseline"])
    assert ok == ["baseline"] and "unlabeled_gt.json" in skipped["upper"]
    with pytest.raises(ValueError, match="unknown variant"):
        runnable_variants(w, ["mipd"])


def test_report_tables_from_rows():
    from mipd_kit.metrics import row
    from mipd_kit.student.report import ablation_table, frame_table
    rows = [row("gsr", m, sp, "top1", "verb", v + s, seed=s, mean="image")
            for m, v in (("baseline", 50.0), ("mipd", 60.0)) for sp in ("seen", "unseen") for s in (0, 1, 2)]
    t = ablation_table(rows, splits=("seen", "unseen"))
    assert "| baseline | 3 | 51.0 ± 1.0 | 51.0 ± 1.0 |" in t
    assert t.index("baseline") < t.index("mipd |")
    assert "mipd" in frame_table(rows, "unseen", "top1", metrics=("verb",))


def test_report_and_readme_rows_cover_every_variant():
    from mipd_kit.app.analysis import README_GSR_MODELS
    from mipd_kit.student.report import MODEL_ORDER
    from mipd_kit.student.ingredients import MODEL_NAMES
    assert MODEL_ORDER[:2] == ("teacher", "student-zs")
    assert set(MODEL_ORDER[2:]) == {MODEL_NAMES[v] for v in VARIANTS} and len(set(MODEL_ORDER)) == len(MODEL_ORDER)
    assert set(MODEL_ORDER) <= set(README_GSR_MODELS)


@pytest.mark.parametrize("head", ["teacher", "minilm", "dual"])
def test_verb_centring_removes_each_verbs_mean_logit_and_old_files_load_without_it(tiny, head):
    """alpha x the mean normalised verb-head feature over the given images is subtracted: alpha = 1 leaves every
    verb with mean logit 0 over those images (up to float error), alpha = 0.5 halves each mean, alpha = 0 is the
    plain head; a state dict from before the centre buffers loads with zeros."""
    from mipd_kit.student.model import centre_verb_logits
    _, w, _ = tiny
    torch.manual_seed(0)
    m = build_student(cfg_for("baseline", verb_head=head), w.vocab).eval()
    x = to_input(w.train.x)

    def mean_logits():
        with torch.no_grad():
            return m.verb_logits(m.encode(x)[1]).mean(0)
    plain = mean_logits()
    assert plain.abs().max() > 0.1  # something to remove
    old_state = {k: v for k, v in m.state_dict().items() if not k.startswith("verb_centre")}
    centre_verb_logits(m, w.train.x, 0.5)
    torch.testing.assert_close(mean_logits(), plain / 2, atol=1e-4, rtol=1e-4)
    norms = centre_verb_logits(m, w.train.x, 1.0)
    assert set(norms) == {"teacher": {"verb_centre_t"}, "minilm": {"verb_centre_m"},
                          "dual": {"verb_centre_t", "verb_centre_m"}}[head]
    torch.testing.assert_close(mean_logits(), torch.zeros_like(plain), atol=1e-4, rtol=0)
    centre_verb_logits(m, w.train.x, 0.0)
    torch.testing.assert_close(mean_logits(), plain, atol=1e-5, rtol=1e-5)
    centre_verb_logits(m, w.train.x, 1.0)
    m.load_state_dict(old_state)  # a file from before centring: strict load, zero centre
    torch.testing.assert_close(mean_logits(), plain, atol=1e-5, rtol=1e-5)


def test_run_variant_centres_the_predictions_and_the_student_file(tiny):
    """verb_centring leaves the trained weights (and the fingerprint) alone, centres the predictions written, and
    the .best student file carries the centre, so the deployed Predictor answers as the run evaluated."""
    from mipd_kit.student.predict import Predictor
    d, w, _ = tiny
    run = d / "run-centring"
    plain_cfg = cfg_for("baseline", epochs=1)
    cen_cfg = dataclasses.replace(plain_cfg, verb_centring=1.0)
    assert cen_cfg.fingerprint() == plain_cfg.fingerprint()
    run_variant(w, plain_cfg, run)
    plain = json.loads((run / "predictions" / "baseline-seed0.json").read_text())
    _, res = run_variant(w, cen_cfg, run)  # resumes the finished checkpoint: no training, new predictions
    cen = json.loads((run / "predictions" / "baseline-seed0.json").read_text())
    assert res.info["verb_centring"] == 1.0 and res.info["verb_centre_norm"]["verb_centre_t"] > 0
    assert [cen[i]["verbs"][0]["verb"] for i in w.test.images] != [plain[i]["verbs"][0]["verb"] for i in w.test.images]
    assert all(cen[i]["gt_verb_frame"] == plain[i]["gt_verb_frame"] for i in w.test.images)  # frames of the gold verb
    best = run / "checkpoints" / "baseline-seed0.safetensors.best"
    p = Predictor.from_checkpoint(best, text_encoder=hashed_text_embedder())
    assert float(p.model.verb_centre_t.norm()) == pytest.approx(res.info["verb_centre_norm"]["verb_centre_t"], rel=1e-5)
    x = to_input(w.test.x[:4])
    with torch.no_grad():
        torch.testing.assert_close(p.model.verb_logits(p.model.encode(x)[1]), res.model.verb_logits(res.model.encode(x)[1]))
    run_variant(w, plain_cfg, run)  # back to 0: the file's centre is reset
    assert float(Predictor.from_checkpoint(best, text_encoder=hashed_text_embedder()).model.verb_centre_t.norm()) == 0.0


def test_resuming_a_finished_student_trains_no_nmpa_and_keeps_its_record(tiny, monkeypatch):
    """A re-evaluation (every epoch already in the checkpoint) needs no teacher targets: attach_targets (which trains
    the control rows' NMPA) is not called, the predictions are the same and the curve keeps the NMPA history."""
    import mipd_kit.student.train as tr
    d, w, _ = tiny
    run = d / "run-refinish"
    cfg = cfg_for("paper", epochs=1)
    run_variant(w, cfg, run)
    first = json.loads((run / "predictions" / "mipd-seed0.json").read_text())
    hist = json.loads((run / "curves" / "mipd-seed0.json").read_text())["nmpa_history"]
    assert hist

    def boom(*a, **k):
        raise AssertionError("attach_targets called for a finished student")
    monkeypatch.setattr(tr, "attach_targets", boom)
    run_variant(w, cfg, run)
    assert json.loads((run / "predictions" / "mipd-seed0.json").read_text()) == first
    assert json.loads((run / "curves" / "mipd-seed0.json").read_text())["nmpa_history"] == hist
    with pytest.raises(AssertionError, match="attach_targets called"):  # more epochs: training needs the targets
        run_variant(w, dataclasses.replace(cfg, epochs=2), run)
