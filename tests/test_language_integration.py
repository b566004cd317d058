"""Opt-in: the HTTP backend and the JRG loop against a real llama.cpp (or any OpenAI-compatible) server.

Run with ``LLAMA_SERVER_URL=http://127.0.0.1:8080/v1 pytest -m integration tests/test_language_integration.py``
(e.g. ``llama-server -m small-model.gguf --port 8080`` or ``python -m llama_cpp.server --model ...``).
``LLAMA_SERVER_MODEL`` names the model (default ``local-model``); a key, if any, is read from ``LLAMA_SERVER_KEY``.
"""

from __future__ import annotations

import json
import os

import pytest

from mipd_kit.language.openai_http import OpenAIHTTPConfig, OpenAIHTTPSampler
from mipd_kit.rationales.jrg import JRGConfig, run_jrg
from mipd_kit.rationales.store import read_rationales
from mipd_kit.rationales.toy import write_toy_world

pytestmark = pytest.mark.integration

URL = os.environ.get("LLAMA_SERVER_URL", "")


@pytest.fixture()
def sampler():
    if not URL:
        pytest.skip("LLAMA_SERVER_URL is not set (opt-in test against a real llama.cpp / OpenAI-compatible server)")
    cfg = OpenAIHTTPConfig(base_url=URL, model=os.environ.get("LLAMA_SERVER_MODEL", "local-model"),
                           api_key_env="LLAMA_SERVER_KEY", timeout_s=120, max_tokens=128, concurrency=2)
    with OpenAIHTTPSampler(cfg) as s:
        yield s


def test_real_server_answers(sampler):
    r = sampler([{"role": "user", "content": "Reply with the single word: ready"}])
    assert isinstance(r.text, str) and r.text.strip()
    assert r.metadata["attempts"] >= 1


def test_jrg_loop_with_real_llm(sampler, tmp_path):
    write_toy_world(tmp_path / "w", tmp_path / "r", n_per_verb=1)
    cfg = JRGConfig(rounds=2, n_hard_negatives=1, workers=2, max_images=2)
    stats = run_jrg(cfg, tmp_path / "w", tmp_path / "r", generator=sampler, judge=sampler)
    stored = read_rationales(tmp_path / "r" / "rationales.jsonl") if (tmp_path / "r" / "rationales.jsonl").exists() else []
    failures = (tmp_path / "r" / "jrg_failures.jsonl")
    n_fail = len(failures.read_text().splitlines()) if failures.exists() else 0
    # every chain either produced judged rationales or was counted as a failure
    assert stats["run"]["chains"] > 0 and (len(stored) > 0 or n_fail > 0)
    assert n_fail == stats["run"]["failures"]
    print(json.dumps({k: stats[k] for k in ("glimpse", "gaze")}, indent=1)[:2000])
