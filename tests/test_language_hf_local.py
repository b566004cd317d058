"""The transformers backend with a tiny randomly initialised Llama and a word-level tokenizer built offline."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from mipd_kit.language.base import Sampler, SamplerError  # noqa: E402
from mipd_kit.language.hf_local import HFLocalConfig, HFLocalSampler  # noqa: E402

CHAT_TEMPLATE = ("{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<s> assistant : {% endif %}")
WORDS = ("a man rides horse at field the dog is agent glimpse gaze rationale image task role look write "
         "user system assistant : . , you are describer judge").split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", "<pad>", "<s>", "</s>", *dict.fromkeys(WORDS)])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                      bos_token_id=2, eos_token_id=3, pad_token_id=1)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="module")
def sampler():
    tok = tiny_tokenizer()
    return HFLocalSampler(HFLocalConfig(model="", max_new_tokens=6), model=tiny_model(len(tok)), tokenizer=tok)


def test_generates_through_chat_template(sampler):
    msgs = [{"role": "system", "content": "you are a describer"}, {"role": "user", "content": "look at the image ."}]
    r = sampler(msgs)
    assert isinstance(sampler, Sampler)
    assert isinstance(r.text, str) and r.messages == tuple(msgs)
    assert 1 <= r.metadata["new_tokens"] <= 6
    # words come from the tiny vocabulary (a random model still only speaks its vocabulary)
    assert all(w in set(WORDS) | {"<unk>"} for w in r.text.split())


def test_greedy_is_deterministic_and_fingerprinted(sampler):
    msgs = [{"role": "user", "content": "a man rides a horse"}]
    assert sampler(msgs).text == sampler(msgs).text
    fp = sampler.fingerprint
    assert fp.startswith("hf:LlamaForCausalLM:") and "greedy" in fp and fp == sampler.fingerprint


def test_image_parts_dropped_for_text_models(sampler, tmp_path):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_path", "path": str(tmp_path / "x.png")}]}]
    assert isinstance(sampler(msgs).text, str)


def test_missing_chat_template_is_a_clear_error():
    tok = tiny_tokenizer()
    tok.chat_template = None
    s = HFLocalSampler(HFLocalConfig(max_new_tokens=2), model=tiny_model(len(tok)), tokenizer=tok)
    with pytest.raises(SamplerError, match="chat template"):
        s([{"role": "user", "content": "look"}])


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(SamplerError, match="cannot load local model"):
        HFLocalSampler(HFLocalConfig(model=str(tmp_path / "nope")))


def test_saved_tiny_model_loads_offline_by_path(tmp_path):
    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    s = HFLocalSampler(HFLocalConfig(model=str(tmp_path / "m"), max_new_tokens=3))
    assert isinstance(s([{"role": "user", "content": "a dog"}]).text, str)
    assert s.fingerprint.startswith("hf:" + str(tmp_path / "m"))


def test_jrg_loop_runs_with_the_transformers_generator(sampler, tmp_path):
    from mipd_kit.language.embedded import EmbeddedJudge
    from mipd_kit.rationales.jrg import JRGConfig, run_jrg
    from mipd_kit.rationales.store import read_rationales
    from mipd_kit.rationales.toy import write_toy_world

    write_toy_world(tmp_path / "w", tmp_path / "r", n_per_verb=1)
    cfg = JRGConfig(rounds=2, n_hard_negatives=0, workers=1, max_images=1)
    stats = run_jrg(cfg, tmp_path / "w", tmp_path / "r", generator=sampler, judge=EmbeddedJudge())
    recs = read_rationales(tmp_path / "r" / "rationales.jsonl")
    assert recs and all(r.backend.startswith("gen=hf:") for r in recs)
    # a random tiny model writes nonsense: the judge rejects it (or it is counted as an empty generation)
    assert stats["all"]["n_positive"] == 0
    assert stats["run"]["generator_calls"] >= len(recs)


def test_factory_builds_hf_from_a_saved_folder(tmp_path):
    from mipd_kit.language.factory import SamplerConfig, build_sampler

    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    s = build_sampler(SamplerConfig(backend="hf", hf=HFLocalConfig(model=str(tmp_path / "m"), max_new_tokens=2)))
    assert isinstance(s, HFLocalSampler)


def tiny_llava():
    """A tiny random LLaVA (CLIP vision tower + Llama) with a processor built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = "<unk> <pad> <s> </s> <image> user assistant : describe the image a man".split()
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = ("{% for m in messages %}<s> {{ m['role'] }} : {% for p in m['content'] %}{% if p['type'] == 'image' %}"
                "<image> {% else %}{{ p['text'] }} {% endif %}{% endfor %}</s> {% endfor %}"
                "{% if add_generation_prompt %}<s> assistant : {% endif %}")
    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
                          tokenizer=tok, patch_size=8, vision_feature_select_strategy="default", chat_template=template,
                          num_additional_image_tokens=1)
    torch.manual_seed(0)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                     image_size=16, patch_size=8, projection_dim=16),
                      text_config=LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                              num_attention_heads=2, num_key_value_heads=1),
                      image_token_index=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    return LlavaForConditionalGeneration(cfg), tok, proc


def test_vision_language_path_with_tiny_llava(tmp_path):
    from PIL import Image

    model, tok, proc = tiny_llava()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(tmp_path / "im.png")
    s = HFLocalSampler(HFLocalConfig(max_new_tokens=3, vision=True), model=model, tokenizer=tok, processor=proc)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "describe the image"},
                                         {"type": "image_path", "path": str(tmp_path / "im.png")}]}]
    inputs = s._inputs(msgs)
    assert "pixel_values" in inputs and inputs["pixel_values"].shape[-2:] == (16, 16)  # the image reaches the model
    r = s(msgs)
    assert isinstance(r.text, str) and r.metadata["new_tokens"] >= 1
    bad = [{"role": "user", "content": [{"type": "image_path", "path": str(tmp_path / "missing.png")}]}]
    with pytest.raises(SamplerError, match="missing.png"):
        s(bad)
