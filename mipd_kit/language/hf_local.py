"""Hugging Face ``transformers`` local chat models as a Sampler (text chat models and vision-language models).

Text path: ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` then ``model.generate``; the reply
is the decoded continuation. Vision-language path (LLaVA / Qwen-VL style): when the messages hold images and an
``AutoProcessor`` is available, ``processor.apply_chat_template`` builds the prompt and ``processor(text, images)``
the inputs. Weights load with ``local_files_only=True`` (this project never downloads from a hub); tests pass a
tiny randomly initialised model and a tokenizer built offline.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from mipd_kit.language.base import Message, Response, SamplerError


@dataclass
class HFLocalConfig:
    """Settings of a local transformers chat model.

    Attributes:
        model: local folder (or cached hub id, loaded offline) of the model and its tokenizer/processor.
        max_new_tokens: length of a reply.
        do_sample, temperature, top_p: decoding (greedy when ``do_sample`` is False).
        seed: seeds sampling.
        device: torch device.
        vision: try ``AutoProcessor`` + ``AutoModelForImageTextToText`` for image inputs.
    """

    model: str = ""
    max_new_tokens: int = 96
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    device: str = "cpu"
    vision: bool = False

    @classmethod
    def smoke(cls) -> "HFLocalConfig":
        return cls(max_new_tokens=16)


def _plain_text_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages with string content only (image parts dropped) for text-only chat templates."""
    out = []
    for m in messages:
        c = m.get("content", "")
        if not isinstance(c, str):
            c = "\n".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
        out.append({"role": m["role"], "content": c})
    return out


def _images_of(messages: Sequence[Message]) -> list[str]:
    return [p["path"] for m in messages if not isinstance(m.get("content", ""), str)
            for p in m["content"] if isinstance(p, dict) and p.get("type") == "image_path"]


class HFLocalSampler:
    """A :class:`~mipd_kit.language.base.Sampler` over a local transformers model.

    Args:
        cfg: settings.
        model, tokenizer, processor: already-built objects (tests); loaded from ``cfg.model`` when omitted.
    """

    def __init__(self, cfg: HFLocalConfig, model: Any = None, tokenizer: Any = None, processor: Any = None) -> None:
        import torch  # noqa: F401  (heavy imports only when the backend is used)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self._lock = threading.Lock()  # generate() is not re-entrant on one model
        if model is None:
            if not cfg.model:
                raise ValueError("HFLocalConfig.model is empty: give a local model folder")
            try:
                if cfg.vision:
                    from transformers import AutoModelForImageTextToText, AutoProcessor
                    processor = processor or AutoProcessor.from_pretrained(cfg.model, local_files_only=True)
                    model = AutoModelForImageTextToText.from_pretrained(cfg.model, local_files_only=True)
                    tokenizer = tokenizer or getattr(processor, "tokenizer", None)
                else:
                    tokenizer = tokenizer or AutoTokenizer.from_pretrained(cfg.model, local_files_only=True)
                    model = AutoModelForCausalLM.from_pretrained(cfg.model, local_files_only=True)
            except OSError as e:
                raise SamplerError(f"cannot load local model {cfg.model!r} (offline): {e}") from e
        self.model = model.to(cfg.device).eval()
        self.tokenizer = tokenizer
        self.processor = processor
        if self.tokenizer is None and self.processor is None:
            raise ValueError("HFLocalSampler needs a tokenizer or a processor")

    @property
    def fingerprint(self) -> str:
        name = self.cfg.model or type(self.model).__name__
        try:
            n = sum(p.numel() for p in self.model.parameters())
            first = next(iter(self.model.parameters())).detach().flatten()[:16].tolist()
        except StopIteration:
            n, first = 0, []
        w = hashlib.sha256(f"{n}:{first}".encode()).hexdigest()[:8]
        dec = f"greedy" if not self.cfg.do_sample else f"t{self.cfg.temperature:g}p{self.cfg.top_p:g}"
        return f"hf:{name}:{w}:{dec}:n{self.cfg.max_new_tokens}:s{self.cfg.seed}"

    def _inputs(self, messages: Sequence[Message]) -> dict[str, Any]:
        images = _images_of(messages)
        if images and self.processor is not None:
            from PIL import Image
            pil = []
            for p in images:
                try:
                    with Image.open(p) as im:
                        pil.append(im.convert("RGB"))
                except OSError as e:
                    raise SamplerError(f"cannot read image {p}: {e}") from e
            conv = []
            for m in messages:
                c = m.get("content", "")
                parts = [{"type": "text", "text": c}] if isinstance(c, str) else [
                    {"type": "image"} if p.get("type") == "image_path" else p for p in c]
                conv.append({"role": m["role"], "content": parts})
            prompt = self.processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            return dict(self.processor(text=prompt, images=pil, return_tensors="pt"))
        tok = self.tokenizer if self.tokenizer is not None else self.processor.tokenizer
        if getattr(tok, "chat_template", None) is None:
            raise SamplerError(f"tokenizer of {self.cfg.model or 'the model'} has no chat template")
        prompt = tok.apply_chat_template(_plain_text_messages(messages), add_generation_prompt=True, tokenize=False)
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
        return dict(enc)

    def __call__(self, messages: Sequence[Message]) -> Response:
        import torch

        t0 = time.perf_counter()
        inputs = {k: v.to(self.cfg.device) if hasattr(v, "to") else v for k, v in self._inputs(messages).items()}
        inputs.pop("token_type_ids", None)
        n_in = inputs["input_ids"].shape[1]  # (1, L)
        tok = self.tokenizer if self.tokenizer is not None else self.processor.tokenizer
        gen_kwargs: dict[str, Any] = {"max_new_tokens": self.cfg.max_new_tokens, "do_sample": self.cfg.do_sample}
        if self.cfg.do_sample:
            gen_kwargs.update(temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is not None:
            gen_kwargs["pad_token_id"] = pad
        with self._lock, torch.no_grad():
            torch.manual_seed(self.cfg.seed)
            out = self.model.generate(**inputs, **gen_kwargs)  # (1, L + T)
        text = tok.decode(out[0, n_in:], skip_special_tokens=True).strip()
        return Response(text, tuple(messages), {"backend": "hf", "model": self.cfg.model, "new_tokens": int(out.shape[1] - n_in),
                                                "latency_s": time.perf_counter() - t0})

    def map(self, batch: Sequence[Sequence[Message]]) -> list[Response | SamplerError]:
        """Sequential batch (one local model; no benefit from threads on CPU)."""
        out: list[Response | SamplerError] = []
        for msgs in batch:
            try:
                out.append(self(msgs))
            except SamplerError as e:
                out.append(e)
        return out
