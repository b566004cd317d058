"""SynthSitu: world design, schema validity through the real readers/evaluators, split hygiene, determinism."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from mipd_kit.data.synthsitu import world as W
from mipd_kit.data.synthsitu.generate import GENERATION_FILE, SynthConfig, generate, read_generation_info, read_meta
from mipd_kit.data.synthsitu.render import all_concepts_drawable


def tiny(seed: int = 0) -> SynthConfig:
    """A world small enough for unit tests (every verb of each split's protocol present in dev / test)."""
    return replace(SynthConfig.smoke(seed), size="smoke", n_train=80, rare_train=2, n_dev=35, n_test=35,
                   n_unlabeled=35, n_hoi_train=40, n_hoi_test=20, n_pretrain=120, workers=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    generate(tiny(0), out)
    return out


def test_design_constraints_hold():
    counts = W.check_world()
    assert counts["verbs"] >= 30 and counts["concepts"] >= 40 and counts["places"] >= 5 and counts["hois"] >= 40
    novel = W.novel_primitives()
    assert len(novel) >= 4 and all(novel.values())
    kinds = [v.kind for v in W.VERBS]
    assert kinds.count("unseen_compositional") >= 4 and kinds.count("rare") >= 6
    for v in W.VERBS:  # verb names are single words a person would say, not descriptions
        assert v.name.isalpha() and v.name.endswith("ing")
    assert sorted(all_concepts_drawable()) == sorted(c.style for c in W.CONCEPTS)


def test_layout_composition_covers_every_verb():
    import numpy as np
    from mipd_kit.data.synthsitu.render import render_gsr
    for i, v in enumerate(W.VERBS):
        rng = np.random.default_rng(i)
        nouns = {r: v.fillers[r][0] for r in v.roles[:-1]}
        img, boxes = render_gsr(v, nouns, v.fillers["place"][0], 128, rng)
        assert img.size == (128, 128)
        assert set(boxes) == set(v.roles[:-1]), v.name
        for b in boxes.values():
            assert 0 <= b[0] < b[2] <= 128 and 0 <= b[1] < b[3] <= 128, (v.name, b)


def test_files_and_meta(world):
    for name in ("meta.json", "imsitu_space.json", "train.json", "dev.json", "test.json", "unlabeled.json",
                 "unlabeled_gt.json", "ov_split.json", "hoi_train.json", "hoi_test.json", "hoi_zero_shot.json",
                 "hoi_prompts.json", "pretrain/captions.jsonl"):
        assert (world / name).is_file(), name
    meta = read_meta(world)
    assert meta["seed"] == 0 and meta["size"] == "smoke" and meta["config"] == tiny(0).world_key()
    assert set(meta["verbs"]) == {v.name for v in W.VERBS}
    assert meta["verbs"]["sleeping"]["primitives"]["pose"] == "lie"
    assert meta["unseen_kinds"]["unseen_novel"] and "timings" not in meta
    assert read_generation_info(world)["timings"]["total"] > 0


def test_real_readers_load_the_world(world):
    from mipd_kit.data.hico import load_hico_instances, load_zero_shot_splits
    from mipd_kit.data.splits import OvSplit
    from mipd_kit.data.swig import load_frame_space, load_situations
    space = load_frame_space(world / "imsitu_space.json")
    assert len(space.verbs) == len(W.VERBS)
    assert {"dog", "puppy", "canine"} <= set(space.nouns)
    assert space.verbs["riding"].abstract == "AGENT rides VEHICLE at PLACE"
    for split, n in (("train", 80), ("dev", 35), ("test", 35)):
        sits = load_situations(world / f"{split}.json", space)
        assert len(sits) == n
        for s in sits.values():
            assert s.width == s.height == 128 and len(s.frames) == 3
            assert tuple(s.boxes) == space.verbs[s.verb].roles
            assert s.boxes["place"] is None and s.boxes["agent"] is not None
            for fr in s.frames:
                assert all(n == "" or n in space.nouns for n in fr.values())
            assert Image.open(world / "images" / s.image).size == (128, 128)
    split = OvSplit.load(world / "ov_split.json")
    assert set(split.extra["unseen_compositional"]) | set(split.extra["unseen_novel"]) == set(split.unseen)
    assert set(split.verbs) == {v.name for v in W.VERBS}
    ims, vocab = load_hico_instances(world / "hoi_train.json")
    ims_t, vocab_t = load_hico_instances(world / "hoi_test.json")
    assert vocab.correspondence == vocab_t.correspondence and vocab.num_hoi >= 40
    assert all(len(im.hoi) >= 2 for im in ims)
    zs = load_zero_shot_splits(world / "hoi_zero_shot.json")
    assert len(zs["unseen_composition"]) == len(W.HOI_ZERO_SHOT)
    prompts = json.loads((world / "hoi_prompts.json").read_text())
    assert len(prompts) == vocab.num_hoi and prompts[0].startswith("a photo of a person")


def test_evaluators_score_the_world(world):
    """Ground truth as predictions scores 100 (GSR) and 100 mAP (HOI) through the real evaluators."""
    from mipd_kit.data.hico import load_hico_instances
    from mipd_kit.data.splits import OvSplit
    from mipd_kit.data.swig import load_situations
    from mipd_kit.eval.hico import evaluate_hico
    from mipd_kit.eval.swig import evaluate_swig, gt_as_predictions
    gt = load_situations(world / "test.json")
    rows = evaluate_swig(gt, gt_as_predictions(gt), OvSplit.load(world / "ov_split.json"))
    gva = [r for r in rows if r.metric == "grnd_value_all" and r.setting == "top1" and r.split == "all" and r.mean == "image"]
    assert gva and gva[0].value == pytest.approx(100.0)
    ims, vocab = load_hico_instances(world / "hoi_test.json")
    preds = {im.filename: [{"hoi": h, "box_h": list(bh), "box_o": list(bo), "score": 1.0}
                           for h, bh, bo in zip(im.hoi, im.boxes_h, im.boxes_o)] for im in ims}
    rows = evaluate_hico(ims, vocab, preds)
    full = [r for r in rows if r.split == "full" and r.metric == "map"]
    assert full and full[0].value == pytest.approx(100.0)


def test_split_hygiene(world):
    from mipd_kit.data.hico import load_hico_instances
    from mipd_kit.data.splits import OvSplit, guard_training
    from mipd_kit.data.swig import load_situations
    split = OvSplit.load(world / "ov_split.json")
    train = load_situations(world / "train.json")
    guard_training(train, split)  # raises LeakageError on an unseen-verb image
    assert not {s.verb for s in train.values()} & set(split.unseen)
    per_verb = {}
    for s in train.values():
        per_verb[s.verb] = per_verb.get(s.verb, 0) + 1
    assert all(per_verb[v] <= tiny().rare_train for v in split.rare) and len(split.rare) >= 6
    assert all(per_verb[v] > tiny().rare_train for v in split.seen)
    test = load_situations(world / "test.json")
    # ov protocol v2 (the default): test shows every verb but the dev-only unseen ones, dev every verb but test's
    dev_only = set(split.extra["unseen_dev"])
    assert {s.verb for s in test.values()} == {v.name for v in W.VERBS} - dev_only
    assert {s.verb for s in load_situations(world / "dev.json").values()} == \
        {v.name for v in W.VERBS} - set(split.extra["unseen_test"])
    # pretraining and unlabeled images are disjoint (by name and by content) from the GSR / HOI images
    gsr_hoi = set(train) | set(test) | set(load_situations(world / "dev.json"))
    for f in ("hoi_train.json", "hoi_test.json"):
        gsr_hoi |= {im.filename for im in load_hico_instances(world / f)[0]}
    unl = json.loads((world / "unlabeled.json").read_text())["images"]
    caps = [json.loads(line) for line in (world / "pretrain" / "captions.jsonl").read_text().splitlines()]
    pre = {c["image"] for c in caps}
    assert not set(unl) & gsr_hoi and len(set(unl)) == len(unl)
    assert all(p.startswith("pretrain/images/") for p in pre) and len(pre) == len(caps)

    def digest(p: Path) -> str:
        return hashlib.sha1(p.read_bytes()).hexdigest()
    labelled = {digest(world / "images" / n) for n in gsr_hoi}
    assert not {digest(world / p) for p in pre} & labelled
    assert not {digest(world / "images" / n) for n in unl} & labelled
    # zero-shot HOI compositions never occur in hoi_train
    zs = set(json.loads((world / "hoi_zero_shot.json").read_text())["unseen_composition"])
    ims, vocab = load_hico_instances(world / "hoi_train.json")
    assert not zs & {h for im in ims for h in im.hoi}
    assert set(vocab.rare) | set(vocab.non_rare) == set(range(vocab.num_hoi))


def test_pretraining_captions_cover_every_verb(world):
    caps = [json.loads(line) for line in (world / "pretrain" / "captions.jsonl").read_text().splitlines()]
    assert len(caps) == 120
    covered = {v for c in caps for v in c["verbs"]}
    assert covered == {v.name for v in W.VERBS}
    assert all(isinstance(c["caption"], str) and c["caption"] for c in caps)
    assert len({c["caption"] for c in caps}) > 0.8 * len(caps)  # varied wording
    assert any(c["noisy"] for c in caps)


def test_annotators_use_synonyms(world):
    from mipd_kit.data.swig import load_situations
    sits = load_situations(world / "train.json")
    disagree = sum(len({fr["agent"] for fr in s.frames}) > 1 for s in sits.values())
    assert disagree > 0
    for s in sits.values():  # all annotators name the same concept (or, rarely, a same-kind alternative)
        names = {W.SYNONYM_OF[fr["agent"]] for fr in s.frames}
        assert len(names) == 1


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_and_other_seed_same_statistics(world, tmp_path):
    """Two generations with the same seed and config on one machine give the same bytes in every file, the worker
    count notwithstanding, except generation.json (timings and workers: facts of the run, outside the promise).
    Both copies are made here by the same numpy / Pillow / zlib, so this holds on any machine."""
    again = tmp_path / "again"
    cfg = tiny(0)
    cfg.workers = 2  # worker count must not change the files
    generate(cfg, again)
    a, b = _files(world), _files(again)
    assert set(a) == set(b) and GENERATION_FILE in a
    ga, gb = json.loads(a.pop(GENERATION_FILE)), json.loads(b.pop(GENERATION_FILE))
    assert (ga["workers"], gb["workers"]) == (1, 2)
    for k in a:
        assert a[k] == b[k], k
    other = tmp_path / "other"
    generate(tiny(1), other)
    c = _files(other)
    assert set(c) == set(a) | {GENERATION_FILE}
    assert c["train.json"] != a["train.json"] and c["images/test_000000.png"] != a["images/test_000000.png"]
    ma, mc = read_meta(world), read_meta(other)
    for k in ("train", "dev", "test", "unlabeled", "hoi_train", "hoi_test", "pretrain"):
        assert ma["counts"][k] == mc["counts"][k]
    sa, sc = json.loads(a["ov_split.json"]), json.loads(c["ov_split.json"])
    for k in ("seen", "rare", "unseen", "unseen_compositional", "unseen_novel"):
        assert sa[k] == sc[k]


def test_hoi_plan_is_long_tailed_with_rare_and_zero_shot_classes():
    import numpy as np
    from collections import Counter
    from mipd_kit.data.synthsitu.generate import _hoi_plan
    cfg = SynthConfig.default()
    classes = W.hoi_classes()
    plan = _hoi_plan(cfg, classes, np.random.default_rng(0))
    train = Counter(p for img in plan["hoi_train"] for p in img)
    test = Counter(p for img in plan["hoi_test"] for p in img)
    zs = set(W.HOI_ZERO_SHOT)
    assert not zs & set(train)
    pairs = [(classes.objects[o], classes.verbs[v]) for _, o, v in classes.correspondence]
    rare = [p for p in pairs if p not in zs and train[p] < 10]
    assert cfg.hoi_rare_classes - 3 <= len(rare) <= cfg.hoi_rare_classes + 3
    assert all(test[p] > 0 for p in pairs)  # every HOI, zero-shot ones included, is tested
    assert all(2 <= len(img) <= 3 for img in plan["hoi_train"])


def test_world_bytes_do_not_depend_on_the_hash_seed(world, tmp_path):
    """Set iteration order of strings changes with PYTHONHASHSEED from process to process: a generator that iterated
    a set into its output would give another world in another process. Generate the same world in a subprocess with
    a different hash seed and compare every file (generation.json aside)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "hashseed"
    code = ("import sys; from tests.test_synth_world import tiny; "
            "from mipd_kit.data.synthsitu.generate import generate; generate(tiny(0), sys.argv[1], verbose=False)")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code, str(out)], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = _files(world), _files(out)
    a.pop(GENERATION_FILE), b.pop(GENERATION_FILE)
    assert set(a) == set(b)
    assert [k for k in a if a[k] != b[k]] == []
