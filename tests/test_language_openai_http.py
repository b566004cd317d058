"""The OpenAI-compatible HTTP sampler against a real HTTP server on loopback (no network beyond 127.0.0.1)."""

from __future__ import annotations

import socket
import threading

import pytest
from PIL import Image

from mipd_kit.language.base import Response, Sampler, SamplerError
from mipd_kit.language.factory import SamplerConfig, build_sampler
from mipd_kit.language.loopback import LoopbackServer
from mipd_kit.language.openai_http import OpenAIHTTPConfig, OpenAIHTTPSampler

MSG = [{"role": "user", "content": "hello"}]


def cfg_for(url: str, **kw) -> OpenAIHTTPConfig:
    base = dict(base_url=url, model="m", api_key_env="MIPD_TEST_KEY", timeout_s=5.0, max_retries=3,
                backoff_s=0.01, backoff_max_s=0.05, concurrency=4)
    base.update(kw)
    return OpenAIHTTPConfig(**base)


class Sleeps(list):
    """Records back-off sleeps instead of sleeping (keeps tests fast, assertions time-free)."""

    def __call__(self, s: float) -> None:
        self.append(s)


def test_basic_call_and_protocol():
    with LoopbackServer(lambda body: f"model={body['model']} n={len(body['messages'])}") as srv:
        with OpenAIHTTPSampler(cfg_for(srv.base_url)) as s:
            assert isinstance(s, Sampler)
            r = s(MSG)
    assert isinstance(r, Response)
    assert r.text == "model=m n=1"
    assert r.messages == tuple(MSG)
    assert r.metadata["attempts"] == 1 and r.metadata["backend"] == "openai"
    body = srv.stats["bodies"][0]
    assert body["messages"] == MSG and body["temperature"] == 0.2 and body["max_tokens"] == 256
    assert s.fingerprint.startswith("openai:m@")


def test_429_honours_retry_after_then_succeeds():
    sleeps = Sleeps()
    with LoopbackServer(faults=["429", "429"], retry_after="0.04") as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, backoff_max_s=10.0), sleep=sleeps)
        r = s(MSG)
    assert r.metadata["attempts"] == 3
    assert sleeps == [pytest.approx(0.04), pytest.approx(0.04)]  # Retry-After used, not the random back-off
    assert s.stats["http_429"] == 2 and s.stats["retries"] == 2 and srv.stats["requests"] == 3


def test_retry_after_is_capped():
    sleeps = Sleeps()
    with LoopbackServer(faults=["429"], retry_after="3600") as srv:
        OpenAIHTTPSampler(cfg_for(srv.base_url, backoff_max_s=0.5), sleep=sleeps)(MSG)
    assert sleeps == [0.5]


def test_5xx_exponential_backoff_with_jitter_then_success():
    sleeps = Sleeps()
    with LoopbackServer(faults=["500", "503", "500"]) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, backoff_s=1.0, backoff_max_s=100.0), sleep=sleeps)
        r = s(MSG)
    assert r.metadata["attempts"] == 4
    assert len(sleeps) == 3
    for k, t in enumerate(sleeps):  # full jitter: U(0, base * 2**k)
        assert 0.0 <= t <= 1.0 * 2 ** k


def test_persistent_5xx_raises_after_retries():
    with LoopbackServer(faults=["500"] * 10) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, max_retries=2), sleep=Sleeps())
        with pytest.raises(SamplerError, match="3 attempts.*HTTP 500"):
            s(MSG)
    assert srv.stats["requests"] == 3


@pytest.mark.parametrize("fault", ["malformed", "nochoices"])
def test_malformed_body_retried_then_clear_error(fault):
    with LoopbackServer(faults=[fault]) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url), sleep=Sleeps())
        assert s(MSG).metadata["attempts"] == 2
    with LoopbackServer(faults=[fault] * 10) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, max_retries=1), sleep=Sleeps())
        with pytest.raises(SamplerError, match="malformed body"):
            s(MSG)
    assert s.stats["malformed"] == 2


def test_dropped_connection_is_retried():
    with LoopbackServer(faults=["close"]) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url), sleep=Sleeps())
        r = s(MSG)
    assert r.metadata["attempts"] == 2 and s.stats["connection_errors"] == 1


def test_wrong_key_401_not_retried(monkeypatch):
    monkeypatch.setenv("MIPD_TEST_KEY", "wrong")
    with LoopbackServer(api_key="secret") as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url), sleep=Sleeps())
        with pytest.raises(SamplerError, match=r"401.*MIPD_TEST_KEY"):
            s(MSG)
        assert srv.stats["requests"] == 1
        monkeypatch.setenv("MIPD_TEST_KEY", "secret")
        assert s(MSG).text.startswith("received")


def test_missing_key_sends_no_header_and_fails_clearly(monkeypatch):
    monkeypatch.delenv("MIPD_TEST_KEY", raising=False)
    with LoopbackServer(api_key="secret") as srv:
        with pytest.raises(SamplerError, match="401"):
            OpenAIHTTPSampler(cfg_for(srv.base_url), sleep=Sleeps())(MSG)


def test_dead_port_raises_after_retries():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here any more
    s = OpenAIHTTPSampler(cfg_for(f"http://127.0.0.1:{port}/v1", max_retries=2), sleep=Sleeps())
    with pytest.raises(SamplerError, match=r"127\.0\.0\.1:%d.*ConnectError" % port):
        s(MSG)
    assert s.stats["connection_errors"] == 3


def test_slow_endpoint_times_out():
    with LoopbackServer(faults=[("delay", 1.5)] * 3) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, timeout_s=0.2, max_retries=1), sleep=Sleeps())
        with pytest.raises(SamplerError, match="Timeout"):
            s(MSG)


def test_map_is_parallel_and_bounded():
    with LoopbackServer(delay_s=0.15) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, concurrency=3))
        batch = [[{"role": "user", "content": "x" * i}] for i in range(12)]
        out = s.map(batch)
    assert [r.text for r in out] == [f"received {i} characters" for i in range(12)]  # input order kept
    assert 2 <= srv.stats["max_in_flight"] <= 3


def test_bound_holds_across_caller_threads():
    with LoopbackServer(delay_s=0.1) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, concurrency=2))
        threads = [threading.Thread(target=s, args=(MSG,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert srv.stats["requests"] == 8
    assert srv.stats["max_in_flight"] <= 2


def test_map_returns_errors_in_place():
    with LoopbackServer(faults=["500"] * 2) as srv:
        s = OpenAIHTTPSampler(cfg_for(srv.base_url, max_retries=0, concurrency=1), sleep=Sleeps())
        out = s.map([MSG, MSG, MSG])
    assert isinstance(out[0], SamplerError) and isinstance(out[1], SamplerError)
    assert isinstance(out[2], Response)


def test_image_input_as_data_url(tmp_path):
    p = tmp_path / "img.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(p)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "describe"}, {"type": "image_path", "path": str(p)}]}]
    with LoopbackServer() as srv:
        OpenAIHTTPSampler(cfg_for(srv.base_url))(msgs)
    part = srv.stats["bodies"][0]["messages"][0]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")


def test_unreadable_image_names_the_file(tmp_path):
    msgs = [{"role": "user", "content": [{"type": "image_path", "path": str(tmp_path / "missing.png")}]}]
    with LoopbackServer() as srv:
        with pytest.raises(SamplerError, match="missing.png"):
            OpenAIHTTPSampler(cfg_for(srv.base_url))(msgs)
        assert srv.stats["requests"] == 0


def test_factory_builds_http_and_rejects_unknown():
    s = build_sampler(SamplerConfig(backend="openai", openai=OpenAIHTTPConfig(base_url="http://127.0.0.1:9/v1")))
    assert isinstance(s, OpenAIHTTPSampler)
    with pytest.raises(ValueError, match="embedded.*openai.*hf"):
        build_sampler(SamplerConfig(backend="nope"))  # type: ignore[arg-type]
