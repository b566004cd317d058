"""The Sampler interface (after simple-evals' ``SamplerBase``): every language-model call goes through it.

A ``Sampler`` is a callable ``sampler(messages) -> Response``. Generators and judges are both Samplers; tests
pass deterministic ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from .. import redaction as _redaction

#: A chat message: {"role": "system"|"user"|"assistant", "content": str | list of parts}.
#: An image part is {"type": "image_path", "path": str} (backends convert it to their own form).
Message = dict[str, Any]


@dataclass(frozen=True)
class Response:
    """What a sampler returns.

    Attributes:
        text: the model's reply.
        messages: the messages that were sent.
        metadata: backend details (model, latency_s, usage, attempts, ...).
    """

    text: str
    messages: tuple[Message, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


class SamplerError(RuntimeError):
    """A backend failed after its retries (dead endpoint, wrong key, persistent 5xx...)."""


class SamplerRequestError(SamplerError):
    """One request cannot be answered (an image that fails to decode, a zero-area region box, a model that emitted
    nothing): the caller counts and skips that request; unlike other errors it says nothing about later requests, so
    it never counts towards aborting a stage."""


class SamplerAuthError(SamplerError):
    """The endpoint refused the credentials (HTTP 401 / 403): no later call can succeed, so stages stop at once."""


REDACTED = _redaction.REDACTED


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every given secret (of 4+ characters), configured key and key-like substring replaced by
    ``[REDACTED]`` (:func:`mipd_kit.redaction.redact`)."""
    return _redaction.redact(text, secrets)


@runtime_checkable
class Sampler(Protocol):
    """A language model behind one call."""

    @property
    def fingerprint(self) -> str:
        """Stable string naming backend, model and decoding settings (keys the rationale store)."""
        ...

    def __call__(self, messages: Sequence[Message]) -> Response:
        ...


@dataclass(frozen=True)
class FewShot:
    """A sampler that puts in-context examples (user / assistant turns) before every conversation it is given,
    after its system message. Small chat models need them to answer in a format (e.g. a judge's JSON).

    Attributes:
        inner: the sampler called.
        examples: ``(user text, assistant reply)`` pairs, oldest first.
    """

    inner: Sampler
    examples: tuple[tuple[str, str], ...]

    @property
    def fingerprint(self) -> str:
        import hashlib
        import json

        h = hashlib.sha256(json.dumps(self.examples).encode()).hexdigest()[:6]
        return f"{self.inner.fingerprint}+fewshot{len(self.examples)}:{h}"

    def __call__(self, messages: Sequence[Message]) -> Response:
        msgs = list(messages)
        head = [m for m in msgs[:1] if m.get("role") == "system"]
        shots: list[Message] = []
        for user, reply in self.examples:
            shots += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        return self.inner([*head, *shots, *msgs[len(head):]])
