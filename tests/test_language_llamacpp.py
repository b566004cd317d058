"""A real chat model on a real loopback server: llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct, reached through
the same OpenAI-compatible HTTP sampler as a remote endpoint. `make test` installs both packages (`make llm`)."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from mipd_kit.language.base import SamplerError
from mipd_kit.language.llamacpp import LlamaCppConfig, LlamaCppServer, LlamaCppUnavailable, smollm2_gguf
from mipd_kit.language.openai_http import OpenAIHTTPSampler


def _require_llm() -> None:
    try:
        smollm2_gguf()
        import xllamacpp  # noqa: F401
    except (LlamaCppUnavailable, ImportError) as e:
        if os.environ.get("CI"):
            raise  # make test installs them: CI must run these tests, never skip them
        pytest.skip(f"llama.cpp runtime or SmolLM2 not installed ({e}); run `make llm`")


@pytest.fixture(scope="module")
def server():
    _require_llm()
    with LlamaCppServer(LlamaCppConfig(n_threads=1, n_ctx=1024)) as srv:
        yield srv


VERDICT = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": {
    "type": "object", "properties": {"verdict": {"type": "string", "enum": ["accept", "reject"]},
                                     "score": {"type": "integer", "minimum": 0, "maximum": 10}},
    "required": ["verdict", "score"]}}}


def test_server_is_loopback_and_openai_compatible(server):
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
    with urllib.request.urlopen(server.base_url + "/models", timeout=10) as r:
        models = json.loads(r.read())
    assert models["data"], models


def test_sampler_gets_real_generations_and_schema_constrained_json(server):
    free = OpenAIHTTPSampler(server.openai_config(max_tokens=16, temperature=0.0))
    r = free([{"role": "user", "content": "Name one animal."}])
    assert r.text.strip() and r.metadata["usage"]["completion_tokens"] > 0
    again = free([{"role": "user", "content": "Name one animal."}])
    assert again.text == r.text  # greedy decoding on one server repeats
    judge = OpenAIHTTPSampler(server.openai_config(max_tokens=24, temperature=0.0, response_format=VERDICT))
    out = judge([{"role": "system", "content": "You judge whether a description fits an activity. Reply in JSON."},
                 {"role": "user", "content": "Activity: riding. Description: a man rides a horse. Verdict?"}])
    parsed = json.loads(out.text)
    assert parsed["verdict"] in ("accept", "reject") and 0 <= parsed["score"] <= 10
    assert judge.fingerprint != free.fingerprint and ":rf" in judge.fingerprint


def test_refuses_non_loopback_and_missing_model(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        LlamaCppServer(LlamaCppConfig(host="0.0.0.0")).start()
    with pytest.raises(LlamaCppUnavailable, match="not found"):
        LlamaCppServer(LlamaCppConfig(model_path=str(tmp_path / "missing.gguf"))).start()
    with pytest.raises(RuntimeError, match="not running"):
        LlamaCppServer().base_url


def test_dead_server_is_a_clear_sampler_error(server):
    cfg = server.openai_config(base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2.0)
    with pytest.raises(SamplerError, match="127.0.0.1:9"):
        OpenAIHTTPSampler(cfg)([{"role": "user", "content": "hi"}])


def test_llm_judge_answers_the_jrg_judge_prompt_in_the_verdict_format(server, tmp_path):
    """The JRG's judge prompt, the verdict schema as response_format and one in-context example: the reply of a
    real 135M model parses as a verdict (its quality is measured by benchmarks/bench_llm_judge.py, not here)."""
    from mipd_kit.language.base import FewShot
    from mipd_kit.rationales import prompts as P
    from mipd_kit.rationales.jrg_inputs import load_evidence, load_world
    from mipd_kit.rationales.toy import write_toy_world

    write_toy_world(tmp_path / "w", tmp_path / "r", n_per_verb=1)
    space, sits = load_world(tmp_path / "w")
    ev = load_evidence(tmp_path / "r" / "teacher_evidence.json")
    img = sorted(sits)[0]
    example = P.build_judge_prompt(space, sits[img], ev.get(img), "glimpse", None, "A cat sleeps.", threshold=7)
    shot = (example, json.dumps({"score": 0, "accept": False, "reasons": ["the activity is wrong"]}))
    judge = FewShot(OpenAIHTTPSampler(server.openai_config(max_tokens=64, temperature=0.0,
                                                           response_format=P.VERDICT_RESPONSE_FORMAT)), (shot,))
    img2 = sorted(sits)[1]
    prompt = P.build_judge_prompt(space, sits[img2], ev.get(img2), "glimpse", None,
                                  f"Someone is {sits[img2].verb} here.", threshold=7)
    r = judge([{"role": "system", "content": P.SYSTEM_JUDGE}, {"role": "user", "content": prompt}])
    v = P.parse_verdict(r.text)
    assert v is not None and 0 <= v.score <= 10, r.text
    assert len(r.messages) == 4 and r.messages[1]["content"] == example  # system, example turn pair, the prompt
    assert "+fewshot1:" in judge.fingerprint
