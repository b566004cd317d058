"""The embedded captioner (image-conditioned decoder on teacher tokens), its Sampler, and its measurement.

A tiny SynthSitu world and a randomly initialised smoke-size embedded teacher (no MiniLM needed: only its image
tower is used), so the module runs in well under a minute. Nothing here checks what a trained captioner says:
that is measured by benchmarks/bench_captioner.py.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mipd_kit.data.records import DataError
from mipd_kit.data.synthsitu.generate import RENDERED_FILE, SynthConfig, generate, read_rendered
from mipd_kit.language.base import Sampler, SamplerError
from mipd_kit.language.captioner import (
    EOS, PAD, CaptionerConfig, CaptionerError, CaptionerSampler, Vocab, caption_images, detokenize, encode_tokens,
    load_captioner, open_image_file, save_captioner, tokenize, train_captioner)
from mipd_kit.language.captioner_eval import aggregate, evaluate_captioner, mentions, score_text
from mipd_kit.language.factory import CaptionerSamplerConfig, SamplerConfig, build_sampler
from mipd_kit.teachers.embedded import EmbeddedTeacher, EmbeddedTeacherConfig, save_teacher


def _cfg(**kw) -> CaptionerConfig:
    return replace(CaptionerConfig.smoke(), **{"epochs": 5, "threads": 1, **kw})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("capworld") / "w"
    cfg = replace(SynthConfig.smoke(0), n_train=80, rare_train=2, n_dev=35, n_test=35, n_unlabeled=10,
                  n_hoi_train=10, n_hoi_test=5, n_pretrain=160, workers=1)
    generate(cfg, out)
    return out


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    t = EmbeddedTeacher(EmbeddedTeacherConfig.smoke()).eval()  # random weights: only the token shapes matter here
    d = save_teacher(t, tmp_path_factory.mktemp("teacher") / "t", {})
    t.checkpoint_dir = d
    return t


@pytest.fixture(scope="module")
def captioner(world, teacher):
    return train_captioner(world, teacher, _cfg())


def _user(*parts):
    return [{"role": "user", "content": list(parts)}]


def test_vocabulary_round_trip():
    assert tokenize("A man, riding a horse: fast!") == ["a", "man", ",", "riding", "a", "horse", ":", "fast", "!"]
    assert detokenize(tokenize("a man, riding a horse: fast!")) == "a man, riding a horse: fast!"
    v = Vocab.build(["a man riding a horse", "a woman riding"], min_count=2)
    assert v.words[:4] == ("<pad>", "<bos>", "<eos>", "<unk>") and set(v.words[4:]) == {"a", "riding"}
    ids = v.encode("a man riding", max_len=8)
    assert ids[0] == 1 and ids[-1] == EOS and v.decode(ids[1:]) == "a riding"  # "man" is unknown: dropped
    assert v.decode([v.words.index("a"), PAD, v.words.index("riding")]) == "a"
    with pytest.raises(ValueError):
        Vocab(("a", "b"))


def test_training_loss_falls_and_uses_captions_only(world, captioner):
    info = captioner.info
    assert info["epoch_loss"][-1] < 0.8 * info["epoch_loss"][0]
    assert info["heldout_loss"][-1] < info["heldout_loss"][0]
    assert info["n_heldout"] > 0 and info["n_train"] + info["n_heldout"] == 160
    caps = [json.loads(x)["caption"] for x in (world / "pretrain" / "captions.jsonl").read_text().splitlines()]
    corpus_words = {w for c in caps for w in tokenize(c)}
    assert set(captioner.vocab.words[4:]) <= corpus_words


def test_training_is_deterministic_for_a_seed(world, teacher):
    a = train_captioner(world, teacher, _cfg(epochs=1))
    b = train_captioner(world, teacher, _cfg(epochs=1))
    c = train_captioner(world, teacher, _cfg(epochs=1, seed=1))
    assert a.fingerprint == b.fingerprint and a.info["epoch_loss"] == b.info["epoch_loss"]  # same seed, same threads
    assert c.fingerprint != a.fingerprint


def test_generation_is_seeded_and_varies(world, teacher, captioner):
    ims = [open_image_file(p) for p in sorted((world / "images").glob("test_*.png"))[:6]]
    toks = encode_tokens(teacher, ims)
    a = captioner.generate(toks, temperature=1.0, top_p=0.95, seeds=range(6))
    b = captioner.generate(toks, temperature=1.0, top_p=0.95, seeds=range(6))
    c = captioner.generate(toks, temperature=1.0, top_p=0.95, seeds=range(100, 106))
    g1 = captioner.generate(toks, temperature=0.0)
    g2 = captioner.generate(toks, temperature=0.0, seeds=range(50, 56))
    assert [x.ids for x in a] == [x.ids for x in b]
    assert [x.ids for x in a] != [x.ids for x in c]
    assert [x.ids for x in g1] == [x.ids for x in g2]  # greedy ignores the seed
    assert [x.ids for x in a] != [x.ids for x in g1]
    # a row's text does not depend on its neighbours' draws
    solo = captioner.generate(toks[2:3], temperature=1.0, top_p=0.95, seeds=[2])
    assert solo[0].text == a[2].text
    # a gaze (region) conditions the decoder differently from a glimpse
    box = torch.tensor([[0.0, 0.0, 0.3, 0.3]] * 6)
    gz = captioner.generate(toks, box, temperature=0.0)
    assert [x.ids for x in gz] != [x.ids for x in g1] and gz[0].box == pytest.approx((0.0, 0.0, 0.3, 0.3))


def test_cached_decoding_is_the_full_forward(world, teacher, captioner):
    """KV-cached decoding (the default) computes what re-running the whole prefix computes: logits within 1e-4 at
    every position (float rounding only), and the same greedy and sampled texts, glimpse and gaze."""
    ims = [open_image_file(p) for p in sorted((world / "images").glob("test_*.png"))[:6]]
    toks = encode_tokens(teacher, ims)
    boxes = torch.full((6, 4), float("nan"))
    boxes[::2] = torch.tensor([0.1, 0.2, 0.6, 0.9])
    captioner.eval()
    mem, hidden = captioner.decoder.memory(toks, boxes, captioner.grid)
    ids = torch.randint(EOS + 1, len(captioner.vocab), (6, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = captioner.decoder(ids, mem, hidden)  # (6, 9, V)
        state = captioner.decoder.start(mem, hidden)
        inc = torch.stack([captioner.decoder.step(ids[:, i], state) for i in range(ids.shape[1])], 1)
    assert inc.shape == full.shape and torch.allclose(inc, full, atol=1e-4, rtol=0)
    for kw in ({"temperature": 0.0}, {"temperature": 1.0, "top_p": 0.95, "seeds": range(6)}):
        a = captioner.generate(toks, boxes, kv_cache=True, **kw)
        b = captioner.generate(toks, boxes, kv_cache=False, **kw)
        assert [x.ids for x in a] == [x.ids for x in b]


def test_sampler_token_cache_encodes_each_image_once(world, teacher, captioner, tmp_path, monkeypatch):
    import mipd_kit.language.captioner.sampler as cap_mod  # where the sampler looks encode_tokens up
    calls = []
    real = cap_mod.encode_tokens
    monkeypatch.setattr(cap_mod, "encode_tokens", lambda t, ims, **kw: calls.append(len(ims)) or real(t, ims, **kw))
    img = sorted((world / "images").glob("test_*.png"))[0]
    url = "data:image/png;base64," + base64.b64encode(img.read_bytes()).decode()
    cached = CaptionerSampler(captioner, teacher, seed=1, token_cache=8)
    plain = CaptionerSampler(captioner, teacher, seed=1, token_cache=0)
    msgs = [_user({"type": "text", "text": f"round {k}"}, part) for k in range(3)
            for part in ({"type": "image_path", "path": str(img)}, {"type": "image_url", "image_url": {"url": url}})]
    got = [cached(m).text for m in msgs]
    assert len(calls) == 2 and cached.token_cache_hits == 4  # one encoding per distinct image source
    assert got == [plain(m).text for m in msgs] and len(calls) == 8
    # a file rewritten in place is encoded again (its size / mtime are part of the key)
    copy_ = tmp_path / "im.png"
    copy_.write_bytes(img.read_bytes())
    cached(_user({"type": "image_path", "path": str(copy_)}))
    other = sorted((world / "images").glob("test_*.png"))[1]
    copy_.write_bytes(other.read_bytes())
    import os
    os.utime(copy_, ns=(1, 1))
    cached(_user({"type": "image_path", "path": str(copy_)}))
    assert len(calls) == 10


def test_sampler_concurrent_requests_for_one_image_encode_it_once(world, teacher, captioner, monkeypatch):
    """The chains of one image run side by side: 8 threads asking about the same image at once wait for one
    encoding (answers as without the cache); a failed encoding reaches every waiter and is not cached."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import mipd_kit.language.captioner.sampler as cap_mod  # where the sampler looks encode_tokens up
    calls = []
    real = cap_mod.encode_tokens
    gate = threading.Event()

    def slow(t, ims, **kw):
        calls.append(len(ims))
        gate.wait(5)  # every thread has asked before the first encoding ends
        return real(t, ims, **kw)
    monkeypatch.setattr(cap_mod, "encode_tokens", slow)
    img = sorted((world / "images").glob("test_*.png"))[0]
    cached = CaptionerSampler(captioner, teacher, seed=1, token_cache=8)
    msgs = [_user({"type": "text", "text": f"round {k}"}, {"type": "image_path", "path": str(img)}) for k in range(8)]
    with ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(cached, m) for m in msgs]
        time.sleep(0.3)
        gate.set()
        got = [f.result().text for f in futs]
    assert calls == [1] and cached.token_cache_hits == 7
    gate.set()
    assert got == [CaptionerSampler(captioner, teacher, seed=1, token_cache=0)(m).text for m in msgs]

    def broken(t, ims, **kw):
        calls.append(-1)
        raise OSError("disk gone")
    monkeypatch.setattr(cap_mod, "encode_tokens", broken)
    other = sorted((world / "images").glob("test_*.png"))[1]
    with pytest.raises(OSError, match="disk gone"):
        cached(_user({"type": "image_path", "path": str(other)}))
    with pytest.raises(OSError, match="disk gone"):  # not cached: asked again, encoded again
        cached(_user({"type": "image_path", "path": str(other)}))
    assert calls.count(-1) == 2


def test_sampler_answers_glimpse_and_gaze_from_openai_style_messages(world, teacher, captioner):
    s = CaptionerSampler(captioner, teacher, temperature=0.8, seed=3)
    assert isinstance(s, Sampler)
    img = sorted((world / "images").glob("test_*.png"))[0]
    url = "data:image/png;base64," + base64.b64encode(img.read_bytes()).decode()
    glimpse = _user({"type": "text", "text": "Task: glimpse rationale\nDescribe the image."},
                    {"type": "image_url", "image_url": {"url": url}})
    r1, r2 = s(glimpse), s(glimpse)
    assert r1.text and r1.text == r2.text and r1.metadata["kind"] == "glimpse" and r1.metadata["box"] is None
    assert r1.messages == tuple(glimpse)
    # the JRG gaze prompt: the region comes from its "Role region" line
    gaze = _user({"type": "text", "text": "Task: gaze rationale\nRole: agent\nRole region: [10, 20, 70, 100] in a "
                                          "128x128 image\nLook at the entity."},
                 {"type": "image_path", "path": str(img)})
    r3 = s(gaze)
    assert r3.text and r3.metadata["kind"] == "gaze"
    assert r3.metadata["box"] == pytest.approx([10 / 128, 20 / 128, 70 / 128, 100 / 128])
    # an explicit region part; a different seed or a re-prompt (feedback) samples again
    r4 = s(_user({"type": "image_path", "path": str(img)}, {"type": "region", "box": [0, 0, 64, 64]}))
    assert r4.metadata["kind"] == "gaze" and r4.metadata["box"] == pytest.approx([0, 0, 0.5, 0.5])
    other = CaptionerSampler(captioner, teacher, temperature=0.8, seed=4)
    texts = {s(_user({"type": "text", "text": f"round {k}"}, {"type": "image_path", "path": str(img)})).text
             for k in range(4)}
    assert len(texts) > 1 and other.fingerprint != s.fingerprint


def test_sampler_reply_depends_on_the_image_not_on_where_its_file_lies(world, teacher, captioner, tmp_path):
    """The sampling seed comes from the image's bytes and the prompt: the same image under another folder (a second
    clone of the project) or sent as a data URL gets the same replies; another image gets other replies."""
    import shutil

    imgs = sorted((world / "images").glob("test_*.png"))
    img = imgs[0]
    moved = tmp_path / "elsewhere" / "renamed.png"
    moved.parent.mkdir()
    shutil.copyfile(img, moved)
    url = "data:image/png;base64," + base64.b64encode(img.read_bytes()).decode()
    prompts = [f"Task: glimpse rationale\nround {k}" for k in range(6)]

    def replies(part, token_cache=8):
        s = CaptionerSampler(captioner, teacher, temperature=0.9, seed=2, token_cache=token_cache)
        return [s(_user({"type": "text", "text": t}, part)).text for t in prompts]

    here = replies({"type": "image_path", "path": str(img)})
    assert here == replies({"type": "image_path", "path": str(moved)})
    assert here == replies({"type": "image_path", "path": str(moved)}, token_cache=0)  # the uncached path too
    assert here == replies({"type": "image_url", "image_url": {"url": url}})
    other = sorted({t for im in imgs[1:4] for t in replies({"type": "image_path", "path": str(im)})})
    assert set(here) != set(other) and len(set(here)) > 1


def test_sampler_bad_input_gives_clear_errors(world, teacher, captioner, tmp_path):
    s = CaptionerSampler(captioner, teacher)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(SamplerError, match="broken.png.*failed to decode"):
        s(_user({"type": "image_path", "path": str(bad)}))
    with pytest.raises(SamplerError, match="not valid base64|failed to decode"):
        s(_user({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}))
    img = str(sorted((world / "images").glob("test_*.png"))[0])
    with pytest.raises(SamplerError, match="zero area"):
        s(_user({"type": "image_path", "path": img}, {"type": "region", "box": [30, 30, 30, 60]}))
    with pytest.raises(SamplerError, match="zero area"):
        s(_user({"type": "text", "text": "Task: gaze rationale\nRole region: [200, 5, 220, 9] in a 128x128 image"},
                {"type": "image_path", "path": img}))
    with pytest.raises(SamplerError, match="no image part"):
        s([{"role": "user", "content": "describe"}])
    with pytest.raises(CaptionerError, match="not on the teacher given"):
        CaptionerSampler(captioner, EmbeddedTeacher(EmbeddedTeacherConfig.smoke()))


@pytest.mark.parametrize("forced", [EOS, PAD])
def test_a_captioner_that_emits_nothing_is_an_error_or_a_counted_skip(world, teacher, captioner, tmp_path, forced):
    mute = copy.deepcopy(captioner)
    with torch.no_grad():
        mute.decoder.head.bias[forced] = 1e4  # end / padding first, always
    img = sorted((world / "images").glob("test_*.png"))[0]
    with pytest.raises(SamplerError, match="emitted nothing.*3 attempts"):
        CaptionerSampler(mute, teacher)(_user({"type": "image_path", "path": str(img)}))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG truncated")
    good = caption_images(captioner, teacher, [img, bad, img], [None, None, [0, 0, 0, 10]])
    assert good.captions[0] is not None and good.captions[1] is None and good.captions[2] is None
    assert [i for i, _ in good.skipped] == [1, 2] and "broken.png" in good.skipped[0][1]
    assert "zero area" in good.skipped[1][1]
    muted = caption_images(mute, teacher, [img, img])
    assert muted.captions == [None, None] and all("emitted nothing" in r for _, r in muted.skipped)


def test_save_load_round_trip_and_factory(world, teacher, captioner, tmp_path):
    d = save_captioner(captioner, tmp_path / "cap", {"teacher_checkpoint": str(teacher.checkpoint_dir)})
    assert sorted(p.name for p in d.iterdir()) == ["captioner.json", "model.safetensors"]
    back = load_captioner(d)
    assert back.fingerprint == captioner.fingerprint and back.vocab == captioner.vocab
    toks = encode_tokens(teacher, [open_image_file(sorted((world / "images").glob("test_*.png"))[0])])
    assert back.generate(toks, seeds=[7])[0].ids == captioner.generate(toks, seeds=[7])[0].ids
    s = build_sampler(SamplerConfig(backend="captioner", captioner=CaptionerSamplerConfig(checkpoint=str(d), seed=1)))
    assert isinstance(s, CaptionerSampler) and s.captioner.fingerprint == captioner.fingerprint
    with pytest.raises(CaptionerError, match="needs captioner.checkpoint"):
        build_sampler(SamplerConfig(backend="captioner"))
    with pytest.raises(ValueError, match="generator"):
        build_sampler(SamplerConfig(backend="captioner", purpose="judge"))
    (d / "captioner.json").write_text("{not json")
    with pytest.raises(CaptionerError, match="captioner.json: not valid JSON"):
        load_captioner(d)


def test_rendered_records_and_mention_scoring(world):
    rendered = read_rendered(world)
    n_images = len(list((world / "images").glob("*.png"))) + len(list((world / "pretrain" / "images").glob("*.png")))
    assert len(rendered) == n_images
    rec = next(r for k, r in sorted(rendered.items()) if k.startswith("images/test_"))
    inst = rec["instances"][0]
    assert set(inst) >= {"verb", "pose", "relation", "motion", "motion_drawn", "objects"}
    from mipd_kit.data.synthsitu import world as W
    v = W.VERB_BY_NAME[inst["verb"]]
    assert inst["relation"] == v.relation and set(inst["objects"]) <= set(v.roles)
    # a description that says exactly what was drawn recalls every pose, relation and place
    obj = inst["objects"][v.main_role]
    perfect = (f"a person {W.POSE_PHRASES[inst['pose']][0]}, {W.RELATION_PHRASES[inst['relation']][0]} a "
               f"{obj.replace('_', ' ')} in the {rec['place']}, {inst['verb']}")
    rows = {r.metric: r.value for r in aggregate([score_text("x", "seen", "glimpse", perfect, rec)])}
    for m in ("pose_recall", "relation_recall", "place_recall", "place_precision", "verb_named"):
        assert rows[m] == 100.0, (m, perfect)
    assert rows["verb_wrong"] == 0.0
    assert mentions("on the beach")["relation"] == [] and mentions("on the beach")["place"] == [("beach",)]
    assert mentions("holding a pot")["verb"] == [] and mentions("holding a pot")["relation"] == [("hold_front",)]
    lines = (world / RENDERED_FILE).read_text().splitlines()
    broken = world.parent / "broken"
    broken.mkdir()
    (broken / RENDERED_FILE).write_text(lines[0] + "\n{oops\n")
    with pytest.raises(DataError, match=r"rendered.jsonl: line 2"):
        read_rendered(broken)
    with pytest.raises(DataError, match="generator 1.3"):
        read_rendered(world.parent)


def test_evaluation_rows_by_group(world, teacher, captioner):
    results, rows, skipped = evaluate_captioner(captioner, teacher, world, max_per_group=2, seed=0)
    assert all("emitted nothing" in why for _, why in skipped)  # a barely trained decoder may end at once
    groups = {(r.split, r.setting) for r in rows}
    assert {("pretrain_heldout", "glimpse"), ("seen", "glimpse"), ("seen", "gaze"), ("unseen", "glimpse")} <= groups
    assert all(0.0 <= r.value <= 100.0 for r in rows if r.metric != "n_texts")
    # an image in two groups (unseen and its kind) gets one text
    by = {}
    for r in results:
        by.setdefault((r.image, r.role), set()).add(r.text)
    assert all(len(t) == 1 for t in by.values())


def test_region_mask_and_row_noise_are_pure_functions():
    from mipd_kit.language.captioner import region_mask, row_uniforms
    nan = float("nan")
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [nan, nan, nan, nan], [0.6, 0.6, 0.61, 0.61]])
    hidden = region_mask(boxes, (4, 4), 17)  # a leading CLS token + a 4x4 grid
    visible = (~hidden).reshape(3, 17)
    assert visible[0, 0].item() is False and visible[0, 1:].reshape(4, 4)[:2, :2].all()
    assert int(visible[0].sum()) == 4 and bool(visible[1].all()) and int(visible[2].sum()) == 1
    u = row_uniforms([5, 6], step=3, vocab_size=50)
    assert u.shape == (2, 50) and bool(((u > 0) & (u < 1)).all())
    assert torch.equal(u[1], row_uniforms([6], step=3, vocab_size=50)[0])  # a row's noise ignores its neighbours
    assert not torch.equal(u[0], row_uniforms([5], step=4, vocab_size=50)[0])
