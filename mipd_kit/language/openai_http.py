"""OpenAI-compatible chat-completions backend (vLLM, llama.cpp server, Ollama, hosted APIs) through the official
``openai`` Python client.

``POST {base_url}/chat/completions`` with ``{"model", "messages", "temperature", "max_tokens", "seed"}`` (the
client's ``chat.completions`` call, its raw response read); the reply text is ``choices[0].message.content``. ``base_url`` is the API root including ``/v1`` (e.g.
``http://127.0.0.1:8080/v1``). The API key is read **only** from the environment variable named by
``api_key_env`` (never from a file or config value); when that variable is unset no ``Authorization`` header is
sent (local servers usually need none).

Robustness: a connect/read timeout per request (the client's ``timeout``); retries with exponential back-off and full
jitter on connection errors, timeouts, 408/409/429 and 5xx, honouring ``Retry-After`` (seconds or HTTP date, capped).
The retries are this sampler's, not the client's (``max_retries=0``): the back-off is configurable
(``backoff_s`` / ``backoff_max_s``), a 200 reply whose body is not the expected JSON is retried too, and every attempt
is counted in ``stats``;
401/403 raise :class:`~mipd_kit.language.base.SamplerAuthError` at once (naming the endpoint and the variable,
never the key) and other 4xx fail at once; a body that is not the expected JSON is retried and then raises
:class:`~mipd_kit.language.base.SamplerError` naming the endpoint. Concurrency is bounded: at most
``concurrency`` requests are in flight from one sampler whatever the number of calling threads, and
:meth:`OpenAIHTTPSampler.map` runs a batch on a pool of that size.

Images: message parts ``{"type": "image_path", "path": ...}`` become base64 ``data:`` URLs
(``{"type": "image_url", "image_url": {"url": ...}}``) for vision chat models; an unreadable image raises
``SamplerError`` naming the file.

Secrets: ``api_key_env`` must be a variable *name*; a value that is not one (e.g. the key itself, passed by
mistake) is refused without being shown. Every error message goes through
:func:`~mipd_kit.language.base.redact` with the key's value (and any key-like string) removed.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import mimetypes
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import openai

from mipd_kit.language.base import Message, Response, SamplerAuthError, SamplerError, redact
from mipd_kit.redaction import env_name_ok, looks_like_key, register_key_env, register_secret

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass
class OpenAIHTTPConfig:
    """Settings of one OpenAI-compatible endpoint.

    Attributes:
        base_url: API root including ``/v1``.
        model: model name sent in the request.
        api_key_env: name of the environment variable holding the key ("" = no key).
        temperature, max_tokens, seed: decoding settings (part of the fingerprint).
        timeout_s: per-request timeout (connect and read).
        max_retries: retries after the first attempt.
        backoff_s: base of the exponential back-off; attempt k sleeps U(0, min(backoff_max_s, backoff_s * 2**k)).
        backoff_max_s: cap of one back-off sleep and of an honoured Retry-After.
        concurrency: maximum requests in flight from this sampler.
        response_format: optional OpenAI ``response_format`` (e.g. ``{"type": "json_schema", "json_schema": {...}}``)
            that constrains the reply; part of the fingerprint. llama.cpp and vLLM turn a JSON schema into a grammar.
    """

    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = "local-model"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.2
    max_tokens: int = 256
    seed: Optional[int] = 0
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    concurrency: int = 8
    response_format: Optional[dict[str, Any]] = None

    @classmethod
    def smoke(cls) -> "OpenAIHTTPConfig":
        return cls(timeout_s=5.0, max_retries=2, backoff_s=0.05, backoff_max_s=1.0, concurrency=4)


def image_data_url(path: str | os.PathLike) -> str:
    """``data:<mime>;base64,...`` URL of an image file; raises ``SamplerError`` naming the file if unreadable."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SamplerError(f"cannot read image {p}: {e}") from e
    mime = mimetypes.guess_type(p.name)[0] or "image/png"
    if not mime.startswith("image/"):
        raise SamplerError(f"{p} is not an image (mime type {mime})")
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Convert our messages (with ``image_path`` parts) to the OpenAI chat format."""
    out = []
    for m in messages:
        c = m.get("content", "")
        if isinstance(c, str):
            out.append({"role": m["role"], "content": c})
            continue
        parts = []
        for p in c:
            if p.get("type") == "image_path":
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(p["path"])}})
            else:
                parts.append(p)
        out.append({"role": m["role"], "content": parts})
    return out


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
        return max(0.0, dt.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def config_secrets(cfg: OpenAIHTTPConfig) -> list[str]:
    """Values to redact from logs: the key itself and an ``api_key_env`` that may be a key rather than a name (not
    in the UPPER_CASE convention of variable names, or long with digits)."""
    out = []
    name = cfg.api_key_env
    if name:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) or (len(name) >= 20 and any(c.isdigit() for c in name)):
            out.append(name)
        if env_name_ok(name) and os.environ.get(name):
            out.append(os.environ[name])
    return out


class OpenAIHTTPSampler:
    """A :class:`~mipd_kit.language.base.Sampler` talking to an OpenAI-compatible server.

    Thread-safe: one ``openai.OpenAI`` client (its connection pool), a semaphore bounding in-flight requests.
    ``stats`` counts requests, retries, errors by kind (read it for throughput and failure reports).
    """

    def __init__(self, cfg: OpenAIHTTPConfig, *, sleep=time.sleep, rng: Optional[random.Random] = None) -> None:
        if cfg.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {cfg.concurrency}")
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        if cfg.api_key_env and (not env_name_ok(cfg.api_key_env) or looks_like_key(cfg.api_key_env)):
            register_secret(cfg.api_key_env)
            raise SamplerError(redact(f"{self.url}: api_key_env must be the NAME of an environment variable that "
                                      "holds the key; the value given is not a variable name (not shown: was the key "
                                      "itself passed?)"))
        register_key_env(cfg.api_key_env)  # its value is redacted from every file this process writes
        self._sleep = sleep
        self._rng = rng or random.Random(cfg.seed)
        self._rng_lock = threading.Lock()
        self._sem = threading.BoundedSemaphore(cfg.concurrency)
        self._stats_lock = threading.Lock()
        self.stats: dict[str, int] = {"requests": 0, "retries": 0, "ok": 0, "failed": 0}
        # the key is set (or the header left out) per request, read from api_key_env at that moment: the client's
        # own api_key is a placeholder it requires and never sends
        self._client = openai.OpenAI(base_url=cfg.base_url, api_key="set-per-request", timeout=cfg.timeout_s,
                                     max_retries=0)

    @property
    def fingerprint(self) -> str:
        c = self.cfg
        h = hashlib.sha256(c.base_url.encode()).hexdigest()[:6]
        fp = f"openai:{c.model}@{h}:t{c.temperature:g}:n{c.max_tokens}:s{c.seed}"
        if c.response_format is not None:
            fp += ":rf" + hashlib.sha256(json.dumps(c.response_format, sort_keys=True).encode()).hexdigest()[:6]
        return fp

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAIHTTPSampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def secrets(self) -> list[str]:
        """Strings never to write in a log (see :func:`config_secrets`)."""
        return config_secrets(self.cfg)

    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def _headers(self) -> dict[str, Any]:
        """``Authorization: Bearer <key>`` when ``api_key_env`` names a set variable, else no such header."""
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        return {"Authorization": f"Bearer {key}" if key else openai.Omit()}

    def _backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        cap = self.cfg.backoff_max_s
        if retry_after is not None:
            return min(retry_after, cap)
        with self._rng_lock:
            return self._rng.uniform(0, min(cap, self.cfg.backoff_s * 2 ** attempt))

    def _payload(self, messages: Sequence[Message]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.cfg.model, "messages": to_openai_messages(messages),
                                "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if self.cfg.seed is not None:
            body["seed"] = self.cfg.seed
        if self.cfg.response_format is not None:
            body["response_format"] = self.cfg.response_format
        return body

    def __call__(self, messages: Sequence[Message]) -> Response:
        body = self._payload(messages)
        last = ""
        t0 = time.perf_counter()
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = None
            self._count("requests")
            try:
                with self._sem:
                    r = self._client.chat.completions.with_raw_response.create(
                        **body, extra_headers=self._headers()).http_response
            except openai.APIStatusError as e:
                code, r = e.status_code, e.response
                if code in (401, 403):
                    self._count("failed")
                    raise SamplerAuthError(self._redact(
                        f"{self.url}: HTTP {code}, the endpoint refused the credentials (wrong or missing API "
                        f"key? the key is read from ${self.cfg.api_key_env or '<none>'}): {r.text[:200]}")) from None
                if code not in RETRY_STATUS:
                    self._count("failed")
                    raise SamplerError(self._redact(f"{self.url}: HTTP {code}: {r.text[:300]}")) from None
                last = self._redact(f"HTTP {code}: {r.text[:200]}")
                self._count(f"http_{code}")
                retry_after = _retry_after(r.headers.get("retry-after"))
            except openai.APIConnectionError as e:  # refused, dropped, timed out (APITimeoutError)
                cause = e.__cause__ or e
                last = self._redact(f"{type(cause).__name__}: {cause}")
                self._count("connection_errors")
            else:
                text = _reply_text(r)
                if text is not None:
                    self._count("ok")
                    meta = {"backend": "openai", "model": self.cfg.model, "attempts": attempt + 1,
                            "latency_s": time.perf_counter() - t0}
                    try:
                        meta["usage"] = r.json().get("usage")
                    except ValueError:
                        pass
                    return Response(text, tuple(messages), meta)
                last = self._redact(f"malformed body: {r.text[:200]!r}")
                self._count("malformed")
            if attempt < self.cfg.max_retries:
                self._count("retries")
                self._sleep(self._backoff(attempt, retry_after))
        self._count("failed")
        raise SamplerError(f"{self.url}: no valid reply after {self.cfg.max_retries + 1} attempts; last error: {last}")

    def map(self, batch: Sequence[Sequence[Message]], *, return_exceptions: bool = True) -> list[Response | SamplerError]:
        """Run many calls with at most ``concurrency`` in flight; results in input order.

        Args:
            batch: one message list per call.
            return_exceptions: put a ``SamplerError`` in the result list instead of raising it.
        """
        def one(msgs: Sequence[Message]) -> Response | SamplerError:
            try:
                return self(msgs)
            except SamplerError as e:
                if return_exceptions:
                    return e
                raise

        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as ex:
            return list(ex.map(one, batch))


def _reply_text(r: Any) -> Optional[str]:
    """``choices[0].message.content`` as a string, or ``None`` when the body is not the expected JSON."""
    try:
        d = r.json()
    except ValueError:
        return None
    try:
        content = d["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else None
