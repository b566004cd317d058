"""Real mode: imSitu frame definitions (from the reference lists) and sentence templates in the prompts, real
imSitu annotations (CLIPSitu's debug.json), an OpenAI-compatible endpoint (loopback, canned replies)."""

from __future__ import annotations

import shutil

from mipd_kit.data.swig import load_frame_space_from_imsitu_lists, load_situations, write_frame_space
from mipd_kit.language.loopback import LoopbackServer, embedded_responder
from mipd_kit.language.openai_http import OpenAIHTTPConfig, OpenAIHTTPSampler
from mipd_kit.rationales.jrg import JRGConfig, run_jrg
from mipd_kit.rationales.store import read_rationales
from tests.conftest import shared_file


def test_jrg_on_real_imsitu_annotations(shared_data, tmp_path):
    space = load_frame_space_from_imsitu_lists(shared_data)
    templates = shared_file("my89__imSitu/simple_sentence_realization/generation_templates.tab")
    world = tmp_path / "world"
    world.mkdir()
    write_frame_space(world / "imsitu_space.json", space)
    shutil.copy(shared_file("LUNAProject22__CLIPSitu/imSitu/debug.json"), world / "train.json")  # temp copy only
    sits = load_situations(world / "train.json", space)
    first = sorted(sits)[:2]
    with LoopbackServer(embedded_responder(seed=0)) as srv:
        oc = OpenAIHTTPConfig(base_url=srv.base_url, model="canned", api_key_env="")
        cfg = JRGConfig(rounds=2, workers=2, max_images=2, imsitu_templates=str(templates))
        stats = run_jrg(cfg, world, tmp_path / "run", generator=OpenAIHTTPSampler(oc), judge=OpenAIHTTPSampler(oc))
        prompts = [m["content"] for b in srv.stats["bodies"] for m in b["messages"] if m["role"] == "user"]
    sit = sits[first[0]]
    sentence = space.verbs[sit.verb].abstract  # the imSitu generation template of the verb
    judge_prompts = [p for p in prompts if "Task: judge rationale" in p and f"Image: {sit.image}" in p]
    assert judge_prompts and all(f"Annotated frame: {sentence}" in p for p in judge_prompts)
    nouns = {n for fr in sit.frames for n in fr.values() if n}
    glosses = {space.noun_name(n) for n in nouns}
    assert glosses and all(g in judge_prompts[0] for g in glosses)  # WordNet synsets shown by their gloss
    assert not any(n in judge_prompts[0] for n in nouns)  # never the raw synset ids
    recs = read_rationales(tmp_path / "run" / "rationales.jsonl")
    assert {r.image for r in recs} == set(first)
    assert stats["run"]["images_without_evidence"] == 2 and stats["all"]["n_hard_negative"] == 0
