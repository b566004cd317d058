"""Student checkpoint I/O: the training checkpoint (weights, optimizer state, progress; resumed under the same config
fingerprint), the dev-selected student file, and what both carry so that a student can be used without its world:
the frozen vocabulary and the names of the frozen models that made it (format ``mipd-student/2``).

A student's training checkpoint (``run_dir/checkpoints/<model>-seed<k>.safetensors``, and its dev-selected weights
``....safetensors.best``) is a safetensors file. Besides the weights (``model.*`` / unprefixed in ``.best``) and the
optimizer state (``opt.*``), format 2 stores

- tensors ``vocab.verb_emb`` (V, Dt), ``vocab.noun_emb`` (Nn, Dt), ``vocab.role_emb`` (Nr, Dt),
  ``vocab.verb_roles`` (V, R), ``vocab.train_verbs`` (V,) and, when the verb head uses it,
  ``vocab.verb_emb_teacher`` (V, E): the frozen text tables the model's non-persistent buffers are built from;
- metadata ``format`` (``"mipd-student/2"``), ``vocab`` (JSON: verb / noun / role names, noun display names,
  ``scene_dim``, ``role_dim``) and ``sources`` (JSON: ``text_encoder``, the name of the encoder of the verb / noun /
  role tables, e.g. ``"minilm"``; ``teacher`` and ``backbone``: ``{"config": TeacherConfig fields or None,
  "fingerprint": str}`` of the teacher whose text tower made ``verb_emb_teacher`` and of the frozen backbone of a
  ``backbone="cached"`` student, ``None`` for the CNN student).

Files written before format 2 have none of these; :func:`read_student_file` refuses them with a message saying so.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..fileio import atomic_path
from .config import StudentConfig
from .model import StudentVocab

FORMAT = "mipd-student/2"
#: the released student (``mipd_kit.weights``; made by ``mipd release-student``) that ``mipd predict`` and
#: ``mipd export-onnx`` use when no checkpoint is given, and the one file of a student release
RELEASE = "embedded-student-default"
RELEASE_FILE = "model.safetensors"
VOCAB_TENSORS: tuple[str, ...] = ("verb_emb", "noun_emb", "role_emb", "verb_roles", "train_verbs", "verb_emb_teacher")


def released_checkpoint(name: str = RELEASE, root: Optional[str | os.PathLike] = None) -> Path:
    """The verified file of student release ``name`` (its sha256 checked against the weights manifest).

    Raises:
        CheckpointFormatError: no such release (the package ships none, or ``$MIPD_WEIGHTS_DIR`` points elsewhere),
            or its file is missing or differs from the manifest.
    """
    from ..weights import ReleaseError, resolve
    try:
        return resolve(name, root) / RELEASE_FILE
    except ReleaseError as e:
        raise CheckpointFormatError(f"released student: {e}") from e


class CheckpointFormatError(ValueError):
    """A file that is not a usable student checkpoint (corrupt, too old, or inconsistent); the message names it."""


class CheckpointMismatch(RuntimeError):
    """A checkpoint was written by a different training configuration."""



def text_encoder_name(embed: Optional[Callable[..., Any]]) -> Optional[str]:
    """The name under which a text embedder can be rebuilt at inference (``None``: the default, MiniLM).

    An embedder advertises its name in a ``text_encoder`` attribute (``mipd_kit.student.testing.hashed_text_embedder``
    sets ``"hashed:<dim>"``); an embedder without one is recorded as ``None`` and predict cannot embed new verbs.
    """
    if embed is None:
        return "minilm"
    return getattr(embed, "text_encoder", None)


def describe_frozen(model: Any) -> Optional[dict[str, Any]]:
    """How to rebuild a frozen teacher / backbone at inference: ``{"config": TeacherConfig fields | None,
    "fingerprint": str | None}`` (``None`` for no model).

    The embedded teacher is named by its release (``checkpoint: embedded-teacher-default``) or its saved folder
    (backend ``checkpoint``: loading it never trains), the tiny
    random teacher by its seed, open_clip / transformers teachers by their ``TeacherConfig``.
    """
    if model is None:
        return None
    from ..teachers.backends import TeacherConfig
    from ..teachers.tiny import TinyRandomTeacher
    cfg: Optional[dict[str, Any]] = None
    w = getattr(model, "weights", None)
    if isinstance(w, dict) and w.get("source") == "release" and w.get("name"):
        cfg = {"backend": "checkpoint", "checkpoint": str(w["name"])}  # a release by name (mipd_kit.weights)
    elif getattr(model, "checkpoint_dir", None):
        cfg = {"backend": "checkpoint", "checkpoint": str(Path(model.checkpoint_dir).resolve())}
    elif isinstance(model, TinyRandomTeacher):
        cfg = {"backend": "tiny", "seed": int(model.seed)}
    elif isinstance(getattr(model, "cfg", None), TeacherConfig):
        cfg = {k: v for k, v in dataclasses.asdict(model.cfg).items() if k not in ("device", "threads")}
    fp = getattr(model, "fingerprint", None)
    return {"config": cfg, "fingerprint": fp if isinstance(fp, str) else None}


def vocab_payload(vocab: StudentVocab) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The vocabulary as safetensors tensors (``vocab.*``) and metadata (``format``, ``vocab``, ``sources``)."""
    tensors = {}
    for k in VOCAB_TENSORS:
        t = getattr(vocab, k)
        if t is not None:
            t = t.detach().cpu()
            tensors[f"vocab.{k}"] = (t.to(torch.uint8) if t.dtype == torch.bool else t).contiguous()
    meta = {"verbs": vocab.verbs, "nouns": vocab.nouns, "roles": vocab.roles, "noun_names": vocab.noun_names,
            "scene_dim": vocab.scene_dim, "role_dim": vocab.role_dim}
    return tensors, {"format": FORMAT, "vocab": json.dumps(meta), "sources": json.dumps(vocab.sources)}


def _vocab_from(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> StudentVocab:
    try:
        v = json.loads(meta["vocab"])
        sources = json.loads(meta.get("sources", "{}"))
        t = {k: tensors[f"vocab.{k}"] for k in VOCAB_TENSORS if f"vocab.{k}" in tensors}
        vocab = StudentVocab(list(v["verbs"]), list(v["nouns"]), list(v["roles"]), t["verb_emb"].float(),
                             t["noun_emb"].float(), t["role_emb"].float(), t["verb_roles"].long(),
                             t["train_verbs"].bool(), int(v["scene_dim"]), int(v["role_dim"]),
                             t["verb_emb_teacher"].float() if "verb_emb_teacher" in t else None,
                             noun_names=list(v.get("noun_names") or []), sources=dict(sources or {}))
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(f"{path}: broken vocabulary in the checkpoint ({type(e).__name__}: {e})") from e
    V, Nn, Nr = len(vocab.verbs), len(vocab.nouns), len(vocab.roles)
    checks = [("verb_emb rows", vocab.verb_emb.shape[0], V), ("noun_emb rows", vocab.noun_emb.shape[0], Nn),
              ("role_emb rows", vocab.role_emb.shape[0], Nr), ("verb_roles rows", vocab.verb_roles.shape[0], V),
              ("train_verbs", vocab.train_verbs.shape[0], V)]
    if vocab.verb_emb_teacher is not None:
        checks.append(("verb_emb_teacher rows", vocab.verb_emb_teacher.shape[0], V))
    bad = [f"{name} {got} != {want}" for name, got, want in checks if got != want]
    if int(vocab.verb_roles.max()) >= Nr:
        bad.append(f"verb_roles names role {int(vocab.verb_roles.max())} of {Nr}")
    if bad:
        raise CheckpointFormatError(f"{path}: vocabulary tensors disagree with its names ({'; '.join(bad)})")
    return vocab


@dataclasses.dataclass
class StudentFile:
    """A read student checkpoint: config fields, vocabulary, model weights, metadata and where the weights came
    from (the ``.best`` sibling of a training checkpoint when it exists: the dev-selected weights the run's test
    predictions used)."""

    path: Path
    config: dict[str, Any]
    fingerprint: str
    vocab: StudentVocab
    weights: dict[str, torch.Tensor]
    weights_from: Path
    meta: dict[str, str]


def _open(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointFormatError(f"{path}: not a readable safetensors student checkpoint ({e})") from e


def read_student_file(path: str | os.PathLike) -> StudentFile:
    """Read a format-2 student checkpoint (a training checkpoint or its ``.best`` file).

    Raises:
        CheckpointFormatError: not found, unreadable / corrupt, not a student checkpoint, written before format 2,
            or vocabulary tensors that disagree with their names.
    """
    path = Path(path)
    tensors, meta = _open(path)
    if "config" not in meta or "fingerprint" not in meta:
        raise CheckpointFormatError(f"{path}: not a student checkpoint (no 'config' / 'fingerprint' metadata; "
                                    "student checkpoints are run_dir/checkpoints/<model>-seed<k>.safetensors)")
    if meta.get("format") != FORMAT:
        raise CheckpointFormatError(
            f"{path}: student checkpoint written before checkpoints carried their vocabulary (format "
            f"{meta.get('format', '1')!r}, need {FORMAT!r}); retrain it with this version (mipd train-student / "
            "mipd run) to predict or export with it")
    try:
        config = json.loads(meta["config"])
    except json.JSONDecodeError as e:
        raise CheckpointFormatError(f"{path}: broken 'config' metadata ({e})") from e
    vocab = _vocab_from(path, tensors, meta)
    weights_from = path
    if any(k.startswith("model.") for k in tensors):
        best = path.with_name(path.name + ".best")
        if best.is_file():
            tensors, bmeta = _open(best)
            if bmeta.get("fingerprint") not in (None, meta["fingerprint"]):
                raise CheckpointFormatError(f"{best}: dev-selected weights of another config (fingerprint "
                                            f"{bmeta.get('fingerprint')} != {meta['fingerprint']} of {path})")
            weights = {k: v for k, v in tensors.items() if not k.startswith("vocab.")}
            weights_from = best
        else:
            weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    else:
        weights = {k: v for k, v in tensors.items() if not k.startswith(("vocab.", "opt."))}
    return StudentFile(path, config, meta["fingerprint"], vocab, weights, weights_from, meta)


# ----------------------------------------------------------------------------------------------- training checkpoints
def _state_to_flat(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    flat = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            flat[f"opt.{pid}.{k}"] = t.detach().cpu().clone().contiguous()
    return flat, {"param_groups": sd["param_groups"]}


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: StudentConfig,
                    epoch: int, extra: dict, vocab: Optional[StudentVocab] = None) -> None:
    """safetensors checkpoint: weights + optimizer state; metadata holds the config fingerprint and progress.

    With ``vocab`` the file also carries the frozen vocabulary and the names of the frozen models that made it
    (format ``mipd-student/2``, :mod:`mipd_kit.student.checkpoint`), so ``mipd predict`` needs nothing else.
    """
    from safetensors.torch import save_file
    flat, meta = _state_to_flat(model, opt)
    meta = {"fingerprint": cfg.fingerprint(), "config": json.dumps(dataclasses.asdict(cfg)), "epoch": str(epoch),
            "optimizer": json.dumps(meta), "extra": json.dumps(extra)}
    if vocab is not None:
        vt, vm = vocab_payload(vocab)
        flat.update(vt)
        meta.update(vm)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)


def load_checkpoint(path: Path, model: torch.nn.Module, opt: Optional[torch.optim.Optimizer], cfg: StudentConfig) -> tuple[int, dict]:
    """Load a checkpoint written by the same config; returns (finished epochs, extra).

    Raises:
        CheckpointMismatch: the checkpoint's config fingerprint differs (names both fingerprints and the path).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("fingerprint") != cfg.fingerprint():
        other = json.loads(meta.get("config", "{}"))
        mine = dataclasses.asdict(cfg)
        diff = sorted(k for k in set(other) | set(mine) if other.get(k) != mine.get(k))
        raise CheckpointMismatch(f"{path}: checkpoint written by another config (fingerprint {meta.get('fingerprint')} "
                                 f"!= {cfg.fingerprint()}; differing fields {diff}); delete it or use another run dir")
    flat = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in flat.items() if k.startswith("model.")})
    if opt is not None:
        state: dict[int, dict] = {}
        for k, v in flat.items():
            if k.startswith("opt."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": json.loads(meta["optimizer"])["param_groups"]})
    return int(meta["epoch"]), json.loads(meta.get("extra", "{}"))


def finished_checkpoint(path: Optional[Path], cfg: StudentConfig, n_train: int) -> bool:
    """True when ``path`` holds every epoch (:meth:`StudentConfig.epochs_for` ``n_train`` images) of this config (same
    fingerprint): resuming it trains nothing. A mismatching file is left for :func:`load_checkpoint` to refuse."""
    if path is None or not Path(path).is_file():
        return False
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 -- a torn file: load_checkpoint names it
        return False
    return meta.get("fingerprint") == cfg.fingerprint() and int(meta.get("epoch", -1)) >= cfg.epochs_for(n_train)


def save_student_file(path: Path, state: dict[str, torch.Tensor], cfg: StudentConfig, vocab: StudentVocab,
                      epoch: int) -> None:
    """The dev-selected weights as a self-contained student file (``<checkpoint>.best``: weights, vocabulary,
    config; what ``mipd predict`` and the ONNX export load), written atomically."""
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    vt, vm = vocab_payload(vocab)
    with atomic_path(path) as tmp:
        save_file({**{k: v.cpu().contiguous() for k, v in state.items()}, **vt}, str(tmp),
                  metadata={"fingerprint": cfg.fingerprint(), "config": json.dumps(dataclasses.asdict(cfg)),
                            "epoch": str(epoch), **vm})
