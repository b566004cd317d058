"""Teacher backends behind one factory: embedded (default, offline), open_clip, Hugging Face transformers, tiny.

* ``open_clip`` (Cherti et al. / Ilharco et al., OpenCLIP): any model name + pretrained tag (or a local weights
  file). Image patch tokens come from the vision transformer's token output (``visual.output_tokens = True``,
  patch tokens without CLS, width of the ViT); pooled = the projected image embedding. Text tokens are the
  text transformer's final-layer states (after ``ln_final``), pooled = the projected text embedding.
* ``transformers`` with ``arch: blip2`` (the MIPD authors' teacher, Li et al., "BLIP-2", ICML 2023): a
  ``Blip2ForImageTextRetrieval`` checkpoint (``Salesforce/blip2-itm-vit-g``): image tokens = the frozen ViT-g's
  ``last_hidden_state`` (CLS + 16x16 patch tokens at 224 px, the tokens NMPA aligns with); pooled image embedding =
  the mean of the 32 Q-Former query embeddings after the contrastive head (``vision_projection``, each L2-normalised);
  text tokens = the Q-Former's text states, pooled text = ``text_projection`` of its CLS state. Image and text pooled
  embeddings share BLIP-2's image-text contrastive space (256-d). BLIP-2's own ITC score takes the maximum over the
  queries; the mean is its one-vector form (cosine with the mean ranks texts by their mean query similarity).
* ``transformers``: ``CLIPModel`` (vision + text in the joint space), ``CLIPVisionModel`` or the BLIP-2 vision
  tower (``Blip2VisionModel``, as the MIPD authors cache it: ``last_hidden_state`` = CLS + 16x16 patch tokens
  at 224 px). Vision-only towers get a separate text encoder: ``CLIPTextModel`` or any ``AutoModel`` with mean
  pooling, default the frozen MiniLM; such teachers have ``joint_space = False`` (pooled image and text vectors
  are not comparable).
* ``tiny``: ``TinyRandomTeacher`` (tests / wiring only).
* ``embedded``: the caption-trained embedded teacher (``mipd_kit.teachers.embedded.load_or_train``), sized by
  ``size`` (``smoke`` | ``default``) plus ``embedded`` field overrides, seeded by ``seed``.
* ``checkpoint``: an embedded teacher saved in a folder (``mipd_kit.teachers.embedded.load_teacher``).

A run config names its teacher once, in its ``teacher:`` block (the fields of :class:`TeacherConfig` but the
paths); every stage builds it with :func:`build_teacher`, so all stages distil from the same teacher. Its identity
(:meth:`TeacherConfig.identity`) depends on the run seed only if the block says ``seed: ${seed}``.

The fingerprint hashes the backend, model name, pretrained tag, preprocessing and the weights themselves
(sha256 of the state dict), so a cache can never serve features of other weights.

The file is long (about 680 lines) because each backend's loading, preprocessing and token conventions sit beside
the one factory that names them; every backend is a class of its own.

On a GPU machine, e.g.::

    build_teacher(TeacherConfig(backend="open_clip", model="ViT-L-14-336", pretrained="openai", device="cuda"))
    build_teacher(TeacherConfig(backend="transformers", model="Salesforce/blip2-itm-vit-g", arch="blip2",
                                device="cuda", precision="fp16"))

The backends stay in one file (about 670 lines) beside the :class:`TeacherConfig` that chooses among them: each is
a thin adapter (about 100 lines) of one library to the same ``Teacher`` interface, read side by side.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..torch_utils import state_hash
from .base import Encoded
from .embedded import WEIGHTS_CHOICES

Backend = Literal["embedded", "checkpoint", "open_clip", "transformers", "tiny"]
BACKENDS = ("embedded", "checkpoint", "open_clip", "transformers", "tiny")
EmbeddedSize = Literal["smoke", "default", "student", "student-smoke"]
#: the sizes of the embedded image-text model (``student*``: the weaker frozen student backbone)
EMBEDDED_SIZES: tuple[str, ...] = ("smoke", "default", "student", "student-smoke")
#: the ``weights`` choices of the embedded backend (released weights or training on the run's world)
WEIGHTS = WEIGHTS_CHOICES
HFArch = Literal["auto", "clip", "clip_vision", "blip2", "blip2_vision"]
HF_ARCHS = ("auto", "clip", "clip_vision", "blip2", "blip2_vision")
#: longest text the BLIP-2 Q-Former reads (tokens, [CLS] and [SEP] included); LAVIS's retrieval models use 35
BLIP2_MAX_TEXT_TOKENS = 64
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}



class TeacherLoadError(RuntimeError):
    """A teacher cannot be built (unknown model, weights not available offline); the message says what to do."""


def _offline_weights_error(model: str, e: OSError) -> TeacherLoadError:
    """The error of Hugging Face weights that cannot be loaded offline, with how to get them."""
    return TeacherLoadError(f"weights of {model!r} cannot be found offline ({e}). Download them on a machine with "
                            f"internet (`huggingface-cli download {model}`) into the HF cache or a folder, and set "
                            "model to that folder")


@dataclass
class TeacherConfig:
    """Which teacher to build.

    Attributes:
        backend: ``embedded`` | ``open_clip`` | ``transformers`` | ``tiny``.
        model: open_clip model name (``ViT-L-14-336``) or an open_clip model-config JSON file (an architecture of
            one's own, e.g. a tiny ViT for rehearsals), or a Hugging Face id / local folder (``transformers``).
        pretrained: open_clip pretrained tag (``openai``) or a local weights file; ``None`` = random init
            (tests). Ignored by ``transformers`` (``model`` names the weights there).
        arch: transformers only: ``clip`` (CLIPModel), ``clip_vision`` (CLIPVisionModel), ``blip2``
            (``Blip2ForImageTextRetrieval``: BLIP-2's image-text contrastive space), ``blip2_vision`` (the BLIP-2
            vision tower alone, text through ``text_model``), or ``auto`` (from the checkpoint's ``model_type`` and
            ``architectures``: a retrieval checkpoint is ``blip2``, other BLIP-2 checkpoints ``blip2_vision``).
        vision_config / text_config: transformers only: build the model from these config dicts with random
            weights instead of loading ``model`` (tiny configs in tests). With ``arch: blip2``, ``text_config``
            holds the Q-Former's config (``Blip2QFormerConfig`` fields) plus, optionally, ``num_query_tokens``
            and ``image_text_hidden_size`` (``Blip2Config`` fields).
        text_model: text encoder for vision-only towers: ``minilm`` (default), a CLIPTextModel id / folder, or
            any AutoModel id / folder (mean pooling).
        image_size: override the input size (open_clip ``force_image_size``; transformers preprocessing).
        device: ``auto`` | ``cpu`` | ``cuda[:N]``: the run's device. The teacher runs there, and every stage that
            computes (teacher training and features, NMPA, the students, CL-HOI) takes it from this block
            (``mipd_kit.machine.resolve_device``; ``auto`` = CUDA when available). Not part of the identity.
        amp: bf16 autocast on CUDA for the training loops of the stages (NMPA, students, CL-HOI); no effect on the
            CPU. Off by default (the embedded default); real-mode configs on a GPU turn it on. Part of the identity
            when on.
        precision: ``fp32`` | ``fp16`` | ``bf16`` for the model weights.
        seed: seeds random initialisation (``embedded``: initialisation and data order; ``tiny``: the weights).
            Independent of the run seed: a run config sets ``teacher.seed`` explicitly to vary it.
        size: ``embedded`` only: ``EmbeddedTeacherConfig.smoke()``, the default ``EmbeddedTeacherConfig()``, or
            the weaker student backbone ``EmbeddedTeacherConfig.student()`` / ``student_smoke()`` (sizes
            ``student`` / ``student-smoke``), before the ``embedded`` overrides.
        embedded: ``embedded`` only: ``EmbeddedTeacherConfig`` field overrides (e.g. ``{"epochs": 3}``).
        checkpoint: ``checkpoint`` only: the saved teacher's folder, or the name of a release
            (``embedded-teacher-default``; loaded after its sha256 check).
        weights: ``embedded`` only: ``auto`` (default) = the released weights (``mipd_kit.weights``, made by
            ``mipd pretrain``) when a release was trained with this block's config (size, seed, overrides) on the
            world's pretraining corpus, else train on the world (the log says why); ``released`` = the release or
            an error (also when the world's corpus differs from the release's); ``released-any`` = the release
            even on a world with another pretraining corpus (a foundation model pretrained elsewhere, as the
            study's world seeds 1 and 2 use the seed-0 releases); ``retrain`` = always train from
            scratch on the run's world (cached). Part of the identity when a release matches.
        threads: torch threads while training the embedded teacher (0 = torch's default); not part of the identity.
        world_dir / cache_dir: where the ``embedded`` teacher is trained from and cached (filled in by the stages
            from the run's ``world_dir`` / ``cache_dir``).
    """

    backend: Backend = "embedded"
    model: str = ""
    pretrained: Optional[str] = None
    arch: HFArch = "auto"
    vision_config: Optional[dict] = None
    text_config: Optional[dict] = None
    text_model: str = "minilm"
    image_size: Optional[int] = None
    device: str = "cpu"
    amp: bool = False
    precision: str = "fp32"
    seed: int = 0
    size: EmbeddedSize = "default"
    embedded: dict = field(default_factory=dict)
    checkpoint: str = ""
    weights: str = "auto"
    threads: int = 0
    world_dir: Optional[str] = None
    cache_dir: Optional[str] = None

    @classmethod
    def smoke(cls) -> "TeacherConfig":
        """The tiny random teacher (wiring only)."""
        return cls(backend="tiny")

    @classmethod
    def from_dict(cls, d: Optional[dict], where: str = "teacher") -> "TeacherConfig":
        """Build from a mapping (a run config's ``teacher:`` block); unknown keys and choices are refused.

        Raises:
            ValueError: unknown key (listing the valid ones), unknown backend or size; ``where`` names the source.
        """
        from dataclasses import fields
        d = dict(d or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {names}")
        cfg = cls(**d)
        if cfg.backend not in BACKENDS:
            raise ValueError(f"{where}.backend: {cfg.backend!r} is not one of {BACKENDS}")
        if cfg.size not in EMBEDDED_SIZES:
            raise ValueError(f"{where}.size: {cfg.size!r} is not one of {EMBEDDED_SIZES}")
        if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
            raise ValueError(f"{where}.seed must be an integer, got {cfg.seed!r}")
        if not isinstance(cfg.embedded, dict):
            raise ValueError(f"{where}.embedded must be a mapping of EmbeddedTeacherConfig fields")
        if cfg.weights not in WEIGHTS:
            raise ValueError(f"{where}.weights: {cfg.weights!r} is not one of {WEIGHTS}")
        from ..checks import check_config
        check_config(cfg, where)  # types, device, ranges
        return cfg

    def to_dict(self) -> dict:
        """The JSON-able mapping (inverse of :meth:`from_dict`)."""
        from dataclasses import asdict
        return asdict(self)

    def with_paths(self, world_dir: str | os.PathLike, cache_dir: str | os.PathLike) -> "TeacherConfig":
        """A copy with the world and cache folders set (where the embedded teacher trains and is cached)."""
        from dataclasses import replace
        return replace(self, world_dir=str(world_dir), cache_dir=str(cache_dir))

    def embedded_config(self):
        """The ``EmbeddedTeacherConfig`` this block names: ``size``, then ``embedded`` overrides, ``seed``,
        ``threads``."""
        from dataclasses import asdict

        from .embedded import EmbeddedTeacherConfig
        base = EmbeddedTeacherConfig.of_size(self.size)
        return EmbeddedTeacherConfig.from_dict({**asdict(base), "seed": self.seed, "threads": self.threads,
                                                "device": self.device, **self.embedded})

    def identity(self) -> dict:
        """What determines the teacher's weights (hashed into stage fingerprints): everything but the device,
        threads and the folders (the world enters the fingerprints through the data stage)."""
        d = self.to_dict()
        for k in ("device", "threads", "world_dir", "cache_dir"):
            d.pop(k)
        if not d["amp"]:
            d.pop("amp")  # fp32 teachers keep the fingerprints of the versions before the option
        d.pop("weights")  # a trained teacher keeps the fingerprints of the versions before releases
        release = self.release() if self.backend == "embedded" and self.weights != "retrain" else None
        if release is not None:
            d["release"] = {"name": release["name"],
                            "sha256": {f: fe["sha256"] for f, fe in sorted(release["files"].items())}}
        return d

    def weights_plan(self) -> dict:
        """Which weights building this teacher will use, for the run's ``environment.json`` and log (nothing is
        loaded): ``{"source": "release", "name", "sha256": {file: hash}, "dtype"}`` when a release matches the
        config (and the world's corpus, when the world exists), else ``{"source": "trained" | <backend>,
        "reason"}``. A mismatch that building will refuse (``weights: released``) is reported, not raised."""
        from pathlib import Path

        from .embedded import release_provenance
        if self.backend != "embedded":
            return {"source": self.backend, "model": self.model or None, "pretrained": self.pretrained,
                    "checkpoint": self.checkpoint or None}
        if self.weights == "retrain":
            return {"source": "trained", "reason": "weights: retrain"}
        e = self.release()
        if e is None:
            return {"source": "trained", "reason": "no released embedded teacher for this config (size, seed, "
                                                   "overrides)" + (" -- building refuses (weights: released)"
                                                                   if self.weights == "released" else "")}
        world = Path(self.world_dir) if self.world_dir else None
        if world is not None and (world / "pretrain" / "captions.jsonl").exists():
            have = self.embedded_config().data_fingerprint(world)
            if have != e.get("data_fingerprint") and self.weights != "released-any":
                return {"source": "trained", "reason": f"release {e['name']} was trained on corpus "
                        f"{e.get('data_fingerprint')}, the world has {have}"
                        + (" -- building refuses (weights: released)" if self.weights == "released" else "")}
        return release_provenance(e)

    def release(self) -> Optional[dict]:
        """The manifest entry of the released embedded teacher trained with this block's config, or None (the
        world's corpus is checked when the teacher is built)."""
        from .embedded import find_teacher_release
        return find_teacher_release(self.embedded_config())


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def preprocess_images(images: Sequence[Image.Image], size: int, mean: Sequence[float], std: Sequence[float],
                      interpolation: int = Image.BICUBIC, crop: bool = True) -> torch.Tensor:
    """CLIP preprocessing: resize the short side to ``size``, centre crop, scale to [0,1], normalise -> (B,3,S,S).

    With ``crop=False`` the image is resized to ``size`` x ``size`` without keeping its aspect ratio (BLIP-2's
    ``BlipImageProcessor``).
    """
    out = []
    for im in images:
        im = im.convert("RGB")
        if not crop:
            out.append(np.asarray(im.resize((size, size), interpolation), dtype=np.float32) / 255.0)
            continue
        w, h = im.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), interpolation)
        l, t = (nw - size) // 2, (nh - size) // 2
        out.append(np.asarray(im.crop((l, t, l + size, t + size)), dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


# ----------------------------------------------------------------------------------------------- open_clip
class OpenClipTeacher:
    """An open_clip model as a ``Teacher`` (patch tokens of the ViT, text transformer tokens)."""

    def __init__(self, cfg: TeacherConfig):
        import open_clip
        name = cfg.model
        if name.endswith(".json"):  # an architecture of one's own: open_clip's model-config JSON, named by its stem
            if not os.path.isfile(name):
                raise TeacherLoadError(f"open_clip model config {name!r} does not exist")
            open_clip.add_model_config(name)
            name = os.path.splitext(os.path.basename(name))[0]
        names = open_clip.list_models()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=5)
            raise TeacherLoadError(f"open_clip does not know the model {cfg.model!r}"
                                   + (f"; did you mean {close}?" if close else "")
                                   + " (open_clip.list_models() lists the names, e.g. 'ViT-B-32', 'ViT-L-14-336')")
        if cfg.pretrained:
            tags = open_clip.list_pretrained_tags_by_model(name)
            if cfg.pretrained not in tags and not os.path.isfile(cfg.pretrained):
                raise TeacherLoadError(f"open_clip model {cfg.model!r} has no pretrained tag {cfg.pretrained!r} and "
                                       f"no such local file exists; known tags: {tags}")
        torch.manual_seed(cfg.seed)
        kwargs = {"force_image_size": cfg.image_size} if cfg.image_size else {}
        try:
            model = open_clip.create_model(name, pretrained=cfg.pretrained, precision=cfg.precision,
                                           device=cfg.device, **kwargs)
        except Exception as e:
            if cfg.pretrained:
                raise TeacherLoadError(
                    f"weights {cfg.model}/{cfg.pretrained} could not be loaded ({type(e).__name__}: {e}). Offline "
                    "machines cannot download them: on a machine with internet run "
                    f"open_clip.create_model({cfg.model!r}, pretrained={cfg.pretrained!r}) once (fills the HF cache, "
                    "then copy ~/.cache/huggingface), or pass the downloaded .bin/.safetensors file as pretrained") from e
            raise
        model.eval()
        if not hasattr(model, "visual") or not hasattr(model.visual, "output_tokens"):
            raise TeacherLoadError(f"open_clip model {cfg.model!r} has no token output (not a ViT vision tower); "
                                   "use a ViT-based model for patch tokens")
        model.visual.output_tokens = True
        self.model, self.cfg = model, cfg
        self.tokenizer = open_clip.get_tokenizer(name)
        pp = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = tuple(pp.get("mean", CLIP_MEAN))
        self.std = tuple(pp.get("std", CLIP_STD))
        patch = model.visual.patch_size
        patch = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        g = self.image_size // patch
        self.grid = (g, g)
        self.dtype = _DTYPES[cfg.precision]
        self._fp = _fingerprint("open_clip", name, cfg.pretrained, f"size{self.image_size}", self.mean, self.std,
                                "bicubic-centrecrop", state_hash(model.state_dict()))

    @property
    def fingerprint(self) -> str:
        return self._fp

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> Encoded:
        x = preprocess_images(images, self.image_size, self.mean, self.std).to(self.cfg.device, self.dtype)
        pooled, tokens = self.model.visual(x)  # (B, E), (B, N, W)
        return Encoded(tokens.float().cpu(), pooled.float().cpu(), torch.ones(tokens.shape[:2], dtype=torch.bool))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Encoded:
        from open_clip.transformer import text_global_pool
        tok = self.tokenizer(list(texts)).to(self.cfg.device)  # (B, ctx)
        m = self.model
        if hasattr(m, "text"):  # CustomTextCLIP: the text tower returns (pooled, tokens) when asked
            m.text.output_tokens = True
            pooled, tokens = m.text(tok)
        else:
            cast = m.transformer.get_cast_dtype()
            x = m.token_embedding(tok).to(cast) + m.positional_embedding.to(cast)
            x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))  # (B, ctx, W)
            tokens = x
            pooled = text_global_pool(x, tok, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
            if m.text_projection is not None:
                pooled = m.text_projection(pooled) if isinstance(m.text_projection, torch.nn.Linear) \
                    else pooled @ m.text_projection
        mask = (tok != 0).cpu()
        tokens = tokens.float().cpu() * mask[..., None]
        L = int(mask.sum(1).max().clamp(min=1))
        return Encoded(tokens[:, :L].contiguous(), pooled.float().cpu(), mask[:, :L].contiguous())


# ----------------------------------------------------------------------------------------------- transformers
class _MeanPoolText:
    """Any Hugging Face AutoModel text encoder with mean pooling over real tokens."""

    def __init__(self, name: str, device: str):
        from transformers import AutoModel, AutoTokenizer
        try:
            self.tok = AutoTokenizer.from_pretrained(name)
            self.model = AutoModel.from_pretrained(name).eval().to(device)
        except (OSError, ValueError) as e:
            raise TeacherLoadError(f"text encoder {name!r} could not be loaded offline ({e}); download it on a "
                                   "machine with internet (huggingface-cli download ...) or point text_model at a "
                                   "local folder") from e
        self.device, self.name = device, name

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> Encoded:
        enc = self.tok(list(texts), padding=True, truncation=True, max_length=77, return_tensors="pt").to(self.device)
        h = self.model(**enc).last_hidden_state.float().cpu()
        m = enc["attention_mask"].bool().cpu()
        pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        return Encoded(h * m[..., None], pooled, m)


class TransformersTeacher:
    """A Hugging Face vision tower (CLIP / CLIP vision / BLIP-2 vision) plus a text encoder as a ``Teacher``."""

    def __init__(self, cfg: TeacherConfig):
        import transformers as tf
        if cfg.arch not in HF_ARCHS:
            raise ValueError(f"unknown transformers arch {cfg.arch!r}; choose one of {HF_ARCHS}")
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        arch = cfg.arch
        if cfg.vision_config is not None:  # random weights from a (tiny) config
            if arch in ("auto", "blip2"):
                raise ValueError("with vision_config, set arch to one of 'clip', 'clip_vision', 'blip2_vision' "
                                 "(arch blip2 is built by Blip2Teacher: build_teacher chooses it)")
            if arch == "clip":
                tc = dict(cfg.text_config or {})
                tc.setdefault("bos_token_id", 0)  # ids of the stand-in hashed tokenizer (_hash_tokenize)
                tc.setdefault("eos_token_id", int(tc.get("vocab_size", 49408)) - 1)
                tc.setdefault("pad_token_id", 0)
                conf = tf.CLIPConfig(text_config=tc, vision_config=cfg.vision_config)
                model = tf.CLIPModel(conf)
            elif arch == "clip_vision":
                model = tf.CLIPVisionModel(tf.CLIPVisionConfig(**cfg.vision_config))
            else:
                model = tf.Blip2VisionModel(tf.Blip2VisionConfig(**cfg.vision_config))
            ident = ("random", cfg.seed)
        else:
            if not cfg.model:
                raise ValueError("transformers backend: set model (a Hugging Face id or local folder) or vision_config")
            arch = resolve_hf_arch(cfg)
            if arch == "blip2":
                raise ValueError("arch blip2 is built by Blip2Teacher (build_teacher chooses it)")
            try:
                dt = _DTYPES[cfg.precision]
                if arch == "clip":
                    model = tf.CLIPModel.from_pretrained(cfg.model, torch_dtype=dt)
                elif arch == "clip_vision":
                    model = tf.CLIPVisionModel.from_pretrained(cfg.model, torch_dtype=dt)
                else:
                    conf = tf.AutoConfig.from_pretrained(cfg.model)
                    if conf.model_type == "blip-2":  # the authors' teacher: the vision tower of a full BLIP-2
                        model = tf.Blip2Model.from_pretrained(cfg.model, torch_dtype=dt).vision_model
                    else:
                        model = tf.Blip2VisionModel.from_pretrained(cfg.model, torch_dtype=dt)
            except OSError as e:
                raise _offline_weights_error(cfg.model, e) from e
            ident = ("hf", cfg.model)
        self.arch = arch
        model = model.eval()
        vconf = model.config.vision_config if arch == "clip" else model.config
        self.image_size = int(cfg.image_size or vconf.image_size)
        g = self.image_size // int(vconf.patch_size)
        self.grid = (g, g)
        self.joint_space = arch == "clip"
        self.tokenizer = None
        if arch == "clip" and cfg.vision_config is None:
            self.tokenizer = tf.AutoTokenizer.from_pretrained(cfg.model)
        self.text = None
        self._fp = _fingerprint("transformers", arch, *ident, f"size{self.image_size}", CLIP_MEAN, CLIP_STD,
                                "bicubic-centrecrop", cfg.text_model if arch != "clip" else "clip-text",
                                state_hash(model.state_dict()))
        self.model = model.to(cfg.device)
        self.dtype = next(model.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        return self._fp

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> Encoded:
        x = preprocess_images(images, self.image_size, CLIP_MEAN, CLIP_STD).to(self.cfg.device, self.dtype)
        kw = {"interpolate_pos_encoding": True} if self.cfg.image_size else {}
        if self.arch == "clip":
            out = self.model.vision_model(pixel_values=x, **kw)
            pooled = self.model.visual_projection(out.pooler_output)
        else:
            out = self.model(pixel_values=x, **kw)
            pooled = out.pooler_output
        tokens = out.last_hidden_state  # (B, 1 + g*g, D): CLS first, as the authors cache it
        return Encoded(tokens.float().cpu(), pooled.float().cpu(), torch.ones(tokens.shape[:2], dtype=torch.bool))

    def _text_encoder(self):
        if self.text is None:
            name = self.cfg.text_model
            if name == "minilm":
                from .text import minilm_encode

                def enc(texts):
                    t, m, s = minilm_encode(texts)
                    return Encoded(t, s, m)
                self.text = enc
            else:
                self.text = _MeanPoolText(name, self.cfg.device)
        return self.text

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Encoded:
        if self.arch != "clip":
            return self._text_encoder()(texts)
        if self.tokenizer is not None:
            enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=77, return_tensors="pt")
            ids, am = enc["input_ids"], enc["attention_mask"]
        else:  # random-weight tiny CLIP: deterministic hashed token ids (no tokenizer files offline)
            ids, am = _hash_tokenize(texts, self.model.config.text_config.vocab_size,
                                     self.model.config.text_config.max_position_embeddings)
        ids, am = ids.to(self.cfg.device), am.to(self.cfg.device)
        out = self.model.text_model(input_ids=ids, attention_mask=am)
        pooled = self.model.text_projection(out.pooler_output)
        m = am.bool().cpu()
        return Encoded(out.last_hidden_state.float().cpu() * m[..., None], pooled.float().cpu(), m)


def resolve_hf_arch(cfg: TeacherConfig) -> str:
    """The transformers ``arch`` a config means: ``cfg.arch``, or for ``auto`` the one read from the checkpoint's
    config (``model_type``; a BLIP-2 checkpoint whose ``architectures`` name ``Blip2ForImageTextRetrieval`` is
    ``blip2``, any other BLIP-2 checkpoint ``blip2_vision``).

    Raises:
        TeacherLoadError: the checkpoint's config is not available offline, or its model type is not supported.
    """
    if cfg.arch != "auto":
        return cfg.arch
    import transformers as tf
    if cfg.vision_config is not None:
        raise ValueError("with vision_config, set arch to one of 'clip', 'clip_vision', 'blip2', 'blip2_vision'")
    if not cfg.model:
        raise ValueError("transformers backend: set model (a Hugging Face id or local folder) or vision_config")
    try:
        conf = tf.AutoConfig.from_pretrained(cfg.model)
    except OSError as e:
        raise TeacherLoadError(
            f"weights of {cfg.model!r} cannot be found offline ({e}). Download them on a machine with internet "
            f"(`huggingface-cli download {cfg.model}`) into the HF cache or a folder, and set model to that "
            "folder") from e
    mt = conf.model_type
    if mt == "blip-2":
        return "blip2" if "Blip2ForImageTextRetrieval" in (getattr(conf, "architectures", None) or []) \
            else "blip2_vision"
    arch = {"clip": "clip", "clip_vision_model": "clip_vision", "blip_2_vision_model": "blip2_vision"}.get(mt)
    if arch is None:
        raise TeacherLoadError(f"{cfg.model!r} has model_type {mt!r}; supported: clip, clip_vision_model, blip-2 "
                               "(set arch explicitly)")
    return arch


class Blip2Teacher:
    """BLIP-2's image-text retrieval model (``Blip2ForImageTextRetrieval``) as a ``Teacher`` in its own joint space.

    Image tokens are the frozen ViT-g's patch tokens (CLS first, as the MIPD authors cache them); pooled embeddings
    come from BLIP-2's image-text contrastive heads, so image and text embeddings are comparable by cosine (see the
    module docstring for how the 32 query embeddings become one vector).
    """

    joint_space = True

    def __init__(self, cfg: TeacherConfig):
        import transformers as tf
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        if cfg.vision_config is not None:  # random weights from a (tiny) config
            qc = dict(cfg.text_config or {})
            top = {k: qc.pop(k) for k in ("num_query_tokens", "image_text_hidden_size") if k in qc}
            qc.setdefault("use_qformer_text_input", True)  # the text side of the Q-Former (as blip2-itm-vit-g)
            conf = tf.Blip2Config(vision_config=dict(cfg.vision_config), qformer_config=qc, **top)
            model = tf.Blip2ForImageTextRetrieval(conf)
            ident: tuple = ("random", cfg.seed)
        else:
            if not cfg.model:
                raise ValueError("transformers backend: set model (a Hugging Face id or local folder) or vision_config")
            try:
                model = tf.Blip2ForImageTextRetrieval.from_pretrained(cfg.model, torch_dtype=_DTYPES[cfg.precision])
            except OSError as e:
                raise _offline_weights_error(cfg.model, e) from e
            ident = ("hf", cfg.model)
        model = model.eval()
        vconf = model.config.vision_config
        self.image_size = int(cfg.image_size or vconf.image_size)
        g = self.image_size // int(vconf.patch_size)
        self.grid = (g, g)
        self.tokenizer = None
        if cfg.vision_config is None:
            self.tokenizer = tf.AutoTokenizer.from_pretrained(cfg.model)
        self._fp = _fingerprint("transformers", "blip2-itc", *ident, f"size{self.image_size}", CLIP_MEAN, CLIP_STD,
                                "bicubic-squash", "query-mean", state_hash(model.state_dict()))
        self.model = model.to(cfg.device)
        self.dtype = next(model.vision_model.parameters()).dtype  # the Q-Former may stay fp32 (_keep_in_fp32_modules)
        self.qdtype = next(model.qformer.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        return self._fp

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> Encoded:
        m = self.model
        x = preprocess_images(images, self.image_size, CLIP_MEAN, CLIP_STD, crop=False).to(self.cfg.device, self.dtype)
        kw = {"interpolate_pos_encoding": True} if self.cfg.image_size else {}
        tokens = m.vision_model(pixel_values=x, **kw).last_hidden_state  # (B, 1 + g*g, Dv): CLS first
        enc = tokens.to(self.qdtype)
        queries = m.query_tokens.expand(enc.shape[0], -1, -1)  # (B, Q, Dq)
        q = m.qformer(query_embeds=queries, encoder_hidden_states=enc,
                      encoder_attention_mask=torch.ones(enc.shape[:2], dtype=torch.long, device=enc.device))
        feats = torch.nn.functional.normalize(m.vision_projection(q.last_hidden_state.to(
            m.vision_projection.weight.dtype)).float(), dim=-1)  # (B, Q, E)
        pooled = feats.mean(1)  # (B, E)
        return Encoded(tokens.float().cpu(), pooled.cpu(), torch.ones(tokens.shape[:2], dtype=torch.bool))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Encoded:
        m = self.model
        qc = m.config.qformer_config
        L = min(BLIP2_MAX_TEXT_TOKENS, int(qc.max_position_embeddings))
        if self.tokenizer is not None:
            enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=L, return_tensors="pt")
            ids, am = enc["input_ids"], enc["attention_mask"]
        else:  # random-weight tiny BLIP-2: deterministic hashed token ids (no tokenizer files offline)
            ids, am = _hash_tokenize(texts, int(qc.vocab_size), L)
        ids, am = ids.to(self.cfg.device), am.to(self.cfg.device)
        out = m.qformer(query_embeds=m.embeddings(input_ids=ids), query_length=0, attention_mask=am)
        h = out.last_hidden_state  # (B, L, Dq)
        pooled = m.text_projection(h[:, 0, :].to(m.text_projection.weight.dtype))  # (B, E): the [CLS] state
        mask = am.bool().cpu()
        return Encoded(h.float().cpu() * mask[..., None], pooled.float().cpu(), mask)


def _hash_tokenize(texts: Sequence[str], vocab: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-hash token ids with BOS=0 / EOS=vocab-1 (stand-in tokenizer for random tiny CLIP configs only)."""
    rows = []
    for t in texts:
        ids = [0] + [2 + int(hashlib.md5(w.encode()).hexdigest(), 16) % (vocab - 3) for w in t.lower().split()]
        rows.append((ids[:max_len - 1] + [vocab - 1]))
    L = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    am = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        am[i, :len(r)] = 1
    return ids, am


# ----------------------------------------------------------------------------------------------- factory
def build_teacher(cfg: TeacherConfig, progress: bool = False):
    """Build the teacher that ``cfg.backend`` names (explicit factory); the one way every stage gets its teacher.

    Args:
        cfg: the teacher config (``embedded`` needs ``world_dir`` and ``cache_dir``: see ``with_paths``).
        progress: show the embedded teacher's training progress (when it is not cached yet).
    """
    from dataclasses import replace

    from ..machine import resolve_device
    cfg = replace(cfg, device=str(resolve_device(cfg.device)))  # "auto" -> "cuda:0" or "cpu"; refuses CUDA without it
    if cfg.backend == "embedded":
        from .embedded import teacher_for
        if not cfg.world_dir or not cfg.cache_dir:
            raise ValueError("embedded teacher: set world_dir (the SynthSitu world) and cache_dir")
        return teacher_for(cfg.world_dir, cfg.cache_dir, cfg.embedded_config(), weights=cfg.weights,
                           progress=progress)
    elif cfg.backend == "checkpoint":
        from .embedded import load_released_teacher, load_teacher
        if not cfg.checkpoint:
            raise ValueError("teacher backend 'checkpoint' needs checkpoint (the saved teacher's folder or the name "
                             "of a release)")
        from pathlib import Path
        if not Path(cfg.checkpoint).exists():
            from mipd_kit.weights import get_release
            if get_release(cfg.checkpoint) is not None:  # a release name: sha256-checked, portable across machines
                return load_released_teacher(cfg.checkpoint).to(cfg.device)
        return load_teacher(cfg.checkpoint).to(cfg.device)
    elif cfg.backend == "open_clip":
        return OpenClipTeacher(cfg)
    elif cfg.backend == "transformers":
        if resolve_hf_arch(cfg) == "blip2":
            return Blip2Teacher(cfg)
        return TransformersTeacher(cfg)
    elif cfg.backend == "tiny":
        from .tiny import TinyRandomTeacher
        return TinyRandomTeacher(seed=cfg.seed)
    raise ValueError(f"unknown teacher backend {cfg.backend!r}; choose one of {BACKENDS}")
