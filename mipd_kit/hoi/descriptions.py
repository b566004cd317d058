"""Image-level descriptions for CL-HOI's context distillation: written by a vision-language model through the
``Sampler`` interface, kept in a resumable store, encoded by the teacher's text tower.

In CL-HOI ("Cross-Level Distillation for HOI detection") an image-level VLLM *describes* each training image in
words; the Visual Linguistic Translator (``models.VisualLinguisticTranslator``) learns to map the image's visual
tokens to that description's text embedding (context distillation, ``losses.context_distillation_loss``). Here the
describer is a ``Sampler`` (``mipd_kit.language``):

* embedded default: the embedded captioner (``mipd_kit.language.captioner``), trained on the world's pretraining
  caption corpus on the frozen teacher's tokens (never on HOI labels), served by ``CaptionerSampler`` -- the same
  message format (an ``image_path`` part and the :data:`DESCRIBE_PROMPT` text) a remote vision chat model gets;
* real mode: any ``SamplerConfig`` (``backend: openai`` for an OpenAI-compatible vision endpoint), or a
  ready-made ``descriptions_file`` (``{filename: text}``, ``train.read_descriptions``).

Only the *training* images are described: at test time the VLT translates the test image's tokens itself, no
language model is called.

Store (``run_dir/clhoi/descriptions.jsonl``; append-only, one flock'd write per line, torn last line repaired on
open, as ``rationales.store.JsonlLog``)::

    {"schema": 1, "image": "hoi_train_000012.png", "backend": <sampler fingerprint>, "prompt": <sha of the prompt>,
     "text": "a man riding a horse on the beach", "meta": {...}}

A record's key is ``(image, backend, prompt)``: re-running the stage (another seed, a resumed run) calls the
describer only for images without a record of the same describer and prompt; another describer starts a new set
beside the existing ones, which are kept.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from mipd_kit.data.records import DataError
from mipd_kit.rationales.store import JsonlLog

SCHEMA = 1

#: prompt for a VLLM's image-level description (through the Sampler interface)
#: requests decoded together by the embedded captioner when descriptions are asked for in parallel
DESCRIBE_BATCH = 32
DESCRIBE_PROMPT = ("Describe in one sentence what the people in this image are doing and with which objects. "
                   "Use the form 'a person <verb>ing a/an <object>' for each interaction.")


def prompt_key(prompt: str) -> str:
    """Short sha256 of a prompt (part of a record's key)."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:12]


def describe_messages(image_path: str | os.PathLike, prompt: str = DESCRIBE_PROMPT, inline: bool = True) -> list[dict]:
    """The chat messages that ask a vision model for one image's description: the image, then the prompt.

    ``inline``: the image as an OpenAI ``image_url`` part holding a ``data:`` URL (what an OpenAI-compatible
    endpoint receives anyway), so that the request -- and the embedded captioner's sampling seed, which hashes it --
    depends on the image's content, not on where the world folder lies; else an ``image_path`` part.
    ``SamplerError`` naming the file when it cannot be read.
    """
    if inline:
        from mipd_kit.language.openai_http import image_data_url
        image = {"type": "image_url", "image_url": {"url": image_data_url(image_path)}}
    else:
        image = {"type": "image_path", "path": str(image_path)}
    return [{"role": "user", "content": [image, {"type": "text", "text": prompt}]}]


class DescriptionStore(JsonlLog):
    """``descriptions.jsonl`` with an index ``(image, backend, prompt) -> text`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._index: dict[tuple[str, str, str], str] = {}
        super().__init__(path)

    def _reset(self) -> None:
        self._index = {}

    def _on_line(self, d: dict[str, Any], lineno: int) -> None:
        where = f"{self.path}: line {lineno}"
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise DataError(f"{where}: not a schema-{SCHEMA} description record")
        for k in ("image", "backend", "prompt", "text"):
            if not isinstance(d.get(k), str):
                raise DataError(f"{where}: field {k!r} must be a string")
        self._index[(d["image"], d["backend"], d["prompt"])] = d["text"]

    def __len__(self) -> int:
        return len(self._index)

    def get(self, image: str, backend: str, prompt: str) -> Optional[str]:
        return self._index.get((image, backend, prompt))

    def add(self, image: str, backend: str, prompt: str, text: str, meta: Optional[Mapping[str, Any]] = None) -> bool:
        """Append one description unless its key is already there (checked under the file lock)."""
        key = (image, backend, prompt)
        rec = {"schema": SCHEMA, "image": image, "backend": backend, "prompt": prompt, "text": text,
               "meta": dict(meta or {})}
        return self.append_line(rec, accept=lambda: key not in self._index)


def describe_into_store(sampler: Any, image_paths: Sequence[str | os.PathLike], store: DescriptionStore,
                        prompt: str = DESCRIBE_PROMPT, workers: int = 1) -> tuple[dict[str, str], dict[str, Any]]:
    """Describe every image not yet in ``store`` (same describer and prompt) and append the answers.

    ``workers`` > 1 sends that many requests at once (a remote endpoint's concurrency, or the embedded captioner's
    batched decoding, ``CaptionerSampler(batch_size=...)``); the result does not depend on it.

    A ``SamplerError`` for one image (undecodable file, empty generation, a failed request after the backend's own
    retries) skips that image and is counted; its text is absent from the result.

    Returns:
        ``{filename: text}`` of every image that has a description, and stats ``{"called", "reused", "skipped",
        "errors"}`` (first few error messages).
    """
    from mipd_kit.language.base import SamplerError

    backend, pk = str(sampler.fingerprint), prompt_key(prompt)
    out: dict[str, str] = {}
    stats: dict[str, Any] = {"called": 0, "reused": 0, "skipped": 0, "errors": []}
    store.refresh()
    todo = []
    for p in image_paths:
        name = Path(p).name
        have = store.get(name, backend, pk)
        if have is not None:
            out[name] = have
            stats["reused"] += 1
        else:
            todo.append(p)

    def ask(p: Any) -> Any:
        try:
            return sampler(describe_messages(p, prompt, inline=True))
        except SamplerError as e:
            return e

    def consume(answers: Any) -> None:
        for p, r in zip(todo, answers):
            name = Path(p).name
            if isinstance(r, SamplerError):
                stats["skipped"] += 1
                if len(stats["errors"]) < 5:
                    stats["errors"].append(f"{name}: {r}")
                continue
            stats["called"] += 1
            text = " ".join(str(r.text).split())
            if not text:
                stats["skipped"] += 1
                continue
            meta = {k: v for k, v in dict(getattr(r, "metadata", {}) or {}).items()
                    if isinstance(v, (str, int, float, bool)) or v is None}
            store.add(name, backend, pk, text, meta)
            out[name] = store.get(name, backend, pk) or text

    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=workers) as ex:
            consume(ex.map(ask, todo))  # in order, each stored as soon as it and those before it are answered
    else:
        consume(map(ask, todo))
    return out, stats


def get_captioner(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher: Any,
                  size: str = "default", checkpoint: str = "", weights: str = "auto") -> Any:
    """The embedded captioner for ``teacher``: a saved captioner folder when ``checkpoint`` is given, else the released
    captioner when it matches (``mipd_kit.language.captioner.captioner_for``: same config, the run's teacher, the
    world's corpus; ``weights``: ``auto`` | ``released`` | ``released-any`` | ``retrain``), else the one trained (or
    found in ``cache_dir``) on the world's pretraining captions, with ``CaptionerConfig.smoke()`` for ``size="smoke"`` (the
    single place CL-HOI obtains a captioner)."""
    from mipd_kit.language.captioner import CaptionerConfig, captioner_for, load_captioner

    if checkpoint:
        return load_captioner(checkpoint)
    if size not in ("smoke", "default"):
        raise ValueError(f"unknown captioner size {size!r}; choose 'smoke' or 'default'")
    ccfg = CaptionerConfig.smoke() if size == "smoke" else CaptionerConfig()
    return captioner_for(world_dir, cache_dir, teacher, ccfg, weights=weights)


def build_describer(kind: str, teacher: Any, world_dir: str | os.PathLike, cache_dir: str | os.PathLike, *,
                    captioner_size: str = "default", captioner_checkpoint: str = "", captioner_weights: str = "auto",
                    temperature: float = 0.7, seed: int = 0, sampler: Optional[Mapping[str, Any]] = None) -> Any:
    """The describer ``Sampler``.

    Args:
        kind: ``"captioner"`` (the embedded captioner on ``teacher``'s tokens, :func:`get_captioner`) or
            ``"sampler"`` (``mipd_kit.language.factory.build_sampler`` of the ``sampler`` mapping: ``SamplerConfig``
            fields, e.g. ``{"backend": "openai", "openai": {"base_url": ..., "model": ...}}``).
        teacher: the frozen teacher (the captioner reads its tokens).
        world_dir, cache_dir: the world (pretraining captions) and the cache of captioner checkpoints.
        captioner_size, captioner_checkpoint, captioner_weights: see :func:`get_captioner` (``weights``).
        temperature: the captioner's sampling temperature (<= 0: greedy).
        seed: the captioner's sampling seed.
        sampler: settings for ``kind="sampler"``.
    """
    from mipd_kit.language.factory import CaptionerSamplerConfig, SamplerConfig, build_sampler
    if kind == "captioner":
        cap = get_captioner(world_dir, cache_dir, teacher, captioner_size, captioner_checkpoint, captioner_weights)
        ccfg = CaptionerSamplerConfig(temperature=temperature, seed=seed, batch_size=DESCRIBE_BATCH)
        return build_sampler(SamplerConfig(backend="captioner", captioner=ccfg), captioner=cap, teacher=teacher)
    if kind == "sampler":
        d = dict(sampler or {})
        if not d.get("backend"):
            raise ValueError("describer 'sampler' needs describer_sampler.backend (e.g. 'openai')")
        return build_sampler(SamplerConfig.from_dict(d, "describer_sampler", purpose="generator"))
    raise ValueError(f"unknown describer {kind!r}; choose 'captioner' or 'sampler'")


@torch.no_grad()
def encode_descriptions(teacher: Any, filenames: Sequence[str], texts: Mapping[str, str]) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """The descriptions in the teacher's text space (the tower that embeds the HOI phrases).

    Returns:
        (N, E) L2-normalised pooled text embeddings (zero rows where an image has no description) and (N,) bool,
        which images have one.
    """
    have = [i for i, f in enumerate(filenames) if (texts.get(f) or "").strip()]
    valid = torch.zeros(len(filenames), dtype=torch.bool)
    valid[have] = True
    if not have:
        return torch.zeros(len(filenames), 0), valid
    e = F.normalize(teacher.encode_texts([texts[filenames[i]] for i in have]).pooled.float(), dim=-1)  # (n, E)
    emb = torch.zeros(len(filenames), e.shape[1])
    emb[have] = e
    return emb, valid
