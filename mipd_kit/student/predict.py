"""``mipd predict``: a trained Ov-GSR student on any image file -> top-k verbs, each with its frame (role -> noun)
and a box per role, in the SWiG prediction format (docs/data-formats.md) that ``mipd eval-swig`` reads.

Without ``--checkpoint`` the student is the released one (``embedded-student-default`` in ``mipd_kit.weights``: the
default run's ``mipd`` row on the released frozen backbone), so ``mipd predict IMAGE`` works right after install.

Python (notebooks)::

    from mipd_kit.student.predict import Predictor, student_inspector
    p = Predictor.from_checkpoint("runs/x/checkpoints/mipd-seed0.safetensors")  # None: the released student
    preds = p.predict(["photo.jpg"], top_k=5)          # {"photo.jpg": {"verbs": [...]}}
    p.add_verbs(["juggling", "surfing:agent+tool"])    # open vocabulary: text embeddings computed now
    student_inspector("data/synthsitu/quick-seed0", limit=200)  # the error inspector, no run folder needed

Everything comes from the checkpoint (format ``mipd-student/2``, :mod:`mipd_kit.student.checkpoint`): the config,
the vocabularies and frozen text tables, the name of the text encoder of the verb / noun / role tables and of the
frozen teacher whose text tower made the verb table; a ``backbone="cached"`` student also names its frozen backbone,
which predict runs on the image to get the features the head was trained on. Images are resized to the student's
square input exactly as in training (bilinear, no crop); boxes come back in the image's own pixel coordinates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.records import DataError
from .checkpoint import (RELEASE, CheckpointFormatError, CheckpointMismatch, StudentFile, read_student_file,
                         released_checkpoint)
from .config import StudentConfig
from .evaluate import frame_of
from .model import OvGSRStudent, StudentVocab, build_student

ImageLike = Union[str, Path, Image.Image]


class PredictError(ValueError):
    """The checkpoint cannot do what was asked (e.g. embed a new verb); the message says why."""


def text_embedder(name: Optional[str]) -> Callable[[list[str]], torch.Tensor]:
    """Rebuild a student's text encoder by the name its checkpoint records (explicit factory).

    ``"minilm"``: the frozen MiniLM of ``mipd_kit.teachers.text`` (mean-pooled sentence embeddings);
    ``"hashed:<dim>"``: the test fixture's bag-of-words embedder (``mipd_kit.student.testing``).
    """
    if name == "minilm":
        from ..teachers.text import minilm_encode
        return lambda texts: minilm_encode(list(texts), with_tokens=False)[2]
    if isinstance(name, str) and name.startswith("hashed:"):
        from .testing import hashed_text_embedder
        return hashed_text_embedder(int(name.split(":", 1)[1]))
    raise PredictError(f"text encoder {name!r} cannot be rebuilt by name (known: 'minilm', 'hashed:<dim>'); the "
                       "student was trained with a custom embed_texts: pass text_encoder= to Predictor.from_checkpoint")


def load_images(images: Sequence[ImageLike]) -> list[Image.Image]:
    """Open images as RGB; a missing or undecodable file raises ``DataError`` naming it."""
    out = []
    for im in images:
        if isinstance(im, Image.Image):
            out.append(im.convert("RGB"))
            continue
        try:
            with Image.open(im) as f:
                out.append(f.convert("RGB"))
        except FileNotFoundError as e:
            raise DataError(f"{im}: image not found") from e
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{im}: cannot decode image ({e})") from e
    return out


def pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """RGB images -> (B, 3, size, size) floats in [0, 1]: the bilinear square resize of training's ``load_pixels``."""
    arr = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def parse_verb_spec(spec: str) -> tuple[str, Optional[list[str]]]:
    """``"name"`` or ``"name:role1+role2"`` -> (name, roles or None)."""
    name, _, roles = spec.strip().partition(":")
    if not name:
        raise PredictError(f"empty verb name in {spec!r} (use NAME or NAME:role1+role2)")
    return name, ([r for r in roles.split("+") if r] or None) if roles else None


class Predictor:
    """A student ready for inference on image files; see the module docstring.

    Args:
        model: the student (eval mode). vocab: its vocabulary (extended in place by :meth:`add_verbs`).
        cfg: its config. path: the checkpoint it came from (for messages). device: where it runs.
        teacher / backbone / text_encoder: stand-ins for the frozen models the checkpoint names (built from the
            checkpoint when needed and not given).
    """

    def __init__(self, model: OvGSRStudent, vocab: StudentVocab, cfg: StudentConfig, path: Optional[Path] = None,
                 device: str | torch.device = "cpu", teacher: Any = None, backbone: Any = None,
                 text_encoder: Optional[Callable[[list[str]], torch.Tensor]] = None):
        self.model, self.vocab, self.cfg = model.eval(), vocab, cfg
        self.path = Path(path) if path is not None else Path("<in memory>")
        self.device = torch.device(device)
        self._teacher, self._backbone, self._embed = teacher, backbone, text_encoder
        self.known_verbs = list(vocab.verbs)  # the checkpoint's verbs; add_verbs appends after them

    # -- loading ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: Optional[str | Path] = None, device: str = "cpu", teacher: Any = None,
                        backbone: Any = None,
                        text_encoder: Optional[Callable[[list[str]], torch.Tensor]] = None) -> "Predictor":
        """Load a format-2 student checkpoint (training checkpoint or its ``.best``; the ``.best`` weights win);
        ``path=None``: the released student (``embedded-student-default`` of ``mipd_kit.weights``).

        Raises:
            CheckpointFormatError: missing, corrupt, too old or not a student checkpoint.
            CheckpointMismatch: the weights do not fit the config and vocabulary the file names.
        """
        from ..machine import resolve_device
        sf = read_student_file(released_checkpoint() if path is None else path)
        cfg = _config(sf)
        model = _model(sf, cfg)
        dev = resolve_device(device)
        return cls(model.to(dev), sf.vocab, cfg, sf.path, dev, teacher, backbone, text_encoder)

    # -- frozen models named by the checkpoint ---------------------------------------------------------------------
    def _frozen(self, kind: str) -> Any:
        given = self._teacher if kind == "teacher" else self._backbone
        if given is not None:
            return given
        desc = self.vocab.sources.get(kind)
        if not desc or not desc.get("config"):
            raise PredictError(f"{self.path}: the checkpoint does not name a {kind} that can be rebuilt "
                               f"(sources[{kind!r}] = {desc!r}); pass {kind}= to Predictor.from_checkpoint")
        from ..teachers import TeacherConfig, build_teacher
        try:
            t = build_teacher(TeacherConfig.from_dict({**desc["config"], "device": str(self.device)}, where=kind))
        except Exception as e:  # a missing teacher folder, an unknown model, a missing package
            raise PredictError(f"{self.path}: cannot rebuild the student's {kind} {desc['config']} "
                               f"({type(e).__name__}: {e})") from e
        fp = getattr(t, "fingerprint", None)
        if desc.get("fingerprint") and fp != desc["fingerprint"]:
            raise PredictError(f"{self.path}: the {kind} found ({desc['config']}) has fingerprint {fp}, the student "
                               f"was trained with {desc['fingerprint']}: not the same frozen model")
        if kind == "teacher":
            self._teacher = t
        else:
            self._backbone = t
        return t

    def _text_embedder(self) -> Callable[[list[str]], torch.Tensor]:
        if self._embed is None:
            self._embed = text_embedder(self.vocab.sources.get("text_encoder"))
        return self._embed

    # -- open vocabulary -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def add_verbs(self, verbs: Sequence[str | tuple[str, Optional[Sequence[str]]]]) -> list[str]:
        """Add verbs unknown to the checkpoint, their text embeddings computed now with the student's own encoders.

        Args:
            verbs: names (``"juggling"``), ``"name:role1+role2"`` specs, or ``(name, roles)`` pairs. Without roles a
                new verb borrows the frame (ordered roles) of the checkpoint verb whose name embedding is nearest;
                role names unknown to the checkpoint are embedded with the same text encoder as its roles.

        Returns:
            the verbs actually added (names already known are skipped when their roles agree).

        Raises:
            PredictError: the student's text encoder or teacher cannot be rebuilt, gives tables of another width,
                or a known verb is given other roles.
        """
        specs = [parse_verb_spec(v) if isinstance(v, str) else (v[0], list(v[1]) if v[1] else None) for v in verbs]
        new: list[tuple[str, Optional[list[str]]]] = []
        for name, roles in specs:
            if name in self.vocab.verbs:
                have = self.frame_roles(name)
                if roles is not None and list(roles) != have:
                    raise PredictError(f"verb {name!r} is already known with roles {have}, not {roles}")
            elif name not in [n for n, _ in new]:
                new.append((name, roles))
        if not new:
            return []
        why = ("its verb table and decoder queries are text embeddings of verb names, so a new verb needs the "
               "student's text encoder")
        try:
            embed = self._text_embedder()
        except PredictError as e:
            raise PredictError(f"{self.path}: cannot add verbs {[n for n, _ in new]}: {why}; {e}") from e
        v = self.vocab
        ve = embed([n.replace("_", " ") for n, _ in new]).float()  # (N, Dt); verb_text "definition": the name
        if ve.shape[1] != v.verb_emb.shape[1]:
            raise PredictError(f"{self.path}: text encoder {v.sources.get('text_encoder')!r} gives width "
                               f"{ve.shape[1]}, the checkpoint's verb table has {v.verb_emb.shape[1]}")
        known = F.normalize(v.verb_emb[:len(self.known_verbs)], dim=-1)
        role_rows: list[list[int]] = []
        for i, (name, roles) in enumerate(new):
            if roles is None:  # borrow the nearest known verb's frame
                near = int((known @ F.normalize(ve[i], dim=0)).argmax())
                role_rows.append([r for r in v.verb_roles[near].tolist() if r >= 0])
                continue
            fresh = [r for r in roles if r not in v.roles]
            if fresh:
                re_ = embed([r.replace("_", " ") for r in fresh]).float()
                v.roles = v.roles + fresh
                v.role_emb = torch.cat([v.role_emb, re_])
            role_rows.append([v.roles.index(r) for r in roles])
        te = None
        if self.cfg.verb_head in ("teacher", "dual"):
            from ..data.records import FrameSpace, VerbDef
            from ..teachers.zero_shot import class_embeddings, verb_prompts
            try:
                teacher = self._frozen("teacher")
            except PredictError as e:
                raise PredictError(f"cannot add verbs {[n for n, _ in new]}: the verb head "
                                   f"{self.cfg.verb_head!r} scores against the teacher's text embeddings of verb "
                                   f"prompts, so it needs the teacher's text tower; {e}") from e
            space = FrameSpace({n: VerbDef(n, "", "", tuple(v.roles[r] for r in rr)) for (n, _), rr in
                                zip(new, role_rows)}, {})
            names, te = class_embeddings(teacher, verb_prompts(space))  # (N, E) in `new` order
            if te.shape[1] != v.verb_emb_teacher.shape[1]:
                raise PredictError(f"{self.path}: teacher text width {te.shape[1]} != the checkpoint's "
                                   f"{v.verb_emb_teacher.shape[1]}")
        R = max(v.max_roles, max(len(r) for r in role_rows))
        vr = torch.full((len(v.verbs) + len(new), R), -1, dtype=torch.long)
        vr[:len(v.verbs), :v.max_roles] = v.verb_roles
        for i, rr in enumerate(role_rows):
            vr[len(v.verbs) + i, :len(rr)] = torch.tensor(rr, dtype=torch.long)
        v.verbs = v.verbs + [n for n, _ in new]
        v.verb_emb = torch.cat([v.verb_emb, ve])
        v.verb_roles = vr
        v.train_verbs = torch.cat([v.train_verbs, torch.zeros(len(new), dtype=torch.bool)])
        if te is not None:
            v.verb_emb_teacher = torch.cat([v.verb_emb_teacher, te.float()])
        m, dev = self.model, self.device
        m.verb_emb = F.normalize(v.verb_emb, dim=-1).to(dev)  # the model's non-persistent buffers
        m.role_emb = v.role_emb.to(dev)
        m.verb_roles = v.verb_roles.to(dev)
        if te is not None:
            m.verb_emb_t = F.normalize(v.verb_emb_teacher, dim=-1).to(dev)
        return [n for n, _ in new]

    def frame_roles(self, verb: str) -> list[str]:
        """The ordered roles of a verb of the vocabulary."""
        return [self.vocab.roles[r] for r in self.vocab.verb_roles[self.vocab.verbs.index(verb)].tolist() if r >= 0]

    # -- inference -------------------------------------------------------------------------------------------------
    def inputs(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, ...]:
        """Model inputs: ``(pixels,)`` (B, 3, S, S) in [0, 1] (CNN student), or the frozen backbone's features the
        checkpoint names (cached-feature student): ``(tokens,)`` (B, T, Din), plus its pooled embeddings (B, Ep)
        for a head that reads them (``pooled_dim``)."""
        if self.cfg.backbone == "cnn":
            return (pixels(images, self.cfg.image_size),)
        bb = self._frozen("backbone")
        e = bb.encode_images(list(images))
        x = e.tokens.float().cpu()  # (B, T, Din)
        if tuple(x.shape[1:]) != (self.cfg.num_tokens, self.cfg.in_dim):
            raise PredictError(f"{self.path}: the backbone gives features {tuple(x.shape[1:])}, the student was "
                               f"trained on {(self.cfg.num_tokens, self.cfg.in_dim)}")
        if not self.cfg.pooled_dim:
            return (x,)
        xp = e.pooled.float().cpu()  # (B, Ep)
        if xp.shape[1] != self.cfg.pooled_dim:
            raise PredictError(f"{self.path}: the backbone gives pooled embeddings of width {xp.shape[1]}, the "
                               f"student was trained on {self.cfg.pooled_dim}")
        return (x, xp)

    @torch.no_grad()
    def predict(self, images: Sequence[ImageLike], top_k: int = 5, batch_size: int = 32,
                errors: Optional[dict[str, str]] = None) -> dict[str, dict]:
        """SWiG-format predictions ``{image: {"verbs": [{"verb", "score", "frame": {role: {"noun", "box"}}}]}}``.

        Args:
            images: paths or PIL images (keys: the file name; the path as given when two names collide;
                ``image<i>`` for PIL images).
            top_k: verbs kept per image, best first (scores are softmax probabilities over every verb).
            batch_size: images per forward pass.
            errors: when given, an image that cannot be read is recorded here (key -> message naming the file)
                and the others are still predicted; when ``None`` the first such image raises ``DataError``.
        """
        images = list(images)
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        keys = _keys(images)
        out: dict[str, dict] = {}
        for s in range(0, len(images), batch_size):
            chunk, ks = [], []
            for im, key in zip(images[s:s + batch_size], keys[s:s + batch_size]):
                try:
                    chunk.append(load_images([im])[0])
                    ks.append(key)
                except DataError as e:
                    if errors is None:
                        raise
                    errors[key] = str(e)
            if not chunk:
                continue
            x, *xp = (t.to(self.device) for t in self.inputs(chunk))
            p = {k: v.cpu() for k, v in self.model.predict(x, k=top_k, pooled=xp[0] if xp else None).items()}
            for j, (im, key) in enumerate(zip(chunk, ks)):
                size = (float(im.width), float(im.height))
                verbs = []
                for t in range(p["verbs"].shape[1]):
                    vi = int(p["verbs"][j, t])
                    verbs.append({"verb": self.vocab.verbs[vi], "score": float(p["scores"][j, t]),
                                  "frame": frame_of(self.vocab, vi, p["nouns"][j, t], p["boxes"][j, t],
                                                  p["exists"][j, t], size)})
                out[key] = {"verbs": verbs}
        return out

    def draw(self, preds: dict[str, dict], images: Sequence[ImageLike], out_dir: str | Path) -> list[Path]:
        """Draw each image's best verb and frame (``mipd_kit.viz.draw_frame``) to ``out_dir/<stem>.png``."""
        from ..viz.browser import png_bytes
        from ..viz.draw import draw_frame
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        names = dict(zip(self.vocab.nouns, self.vocab.noun_names or self.vocab.nouns))
        written = []
        images = list(images)
        for im, key in zip(images, _keys(images)):  # the keys of predict() for the same list
            if key not in preds or not preds[key]["verbs"]:
                continue
            best = preds[key]["verbs"][0]
            frame = {r: {"noun": names.get(f["noun"], f["noun"]), "box": f["box"]} for r, f in best["frame"].items()}
            pic = draw_frame(load_images([im])[0], frame, title=f"{best['verb']} ({best['score']:.2f})")
            # a bare file name, or (names colliding) the path as given with its separators replaced
            stem = key if isinstance(im, Image.Image) else str(Path(key).with_suffix("")).strip("/").replace("/", "_")
            path = out_dir / f"{stem}.png"
            _write_bytes(path, png_bytes(pic))
            written.append(path)
        return written


def student_inspector(world_dir: str | Path, checkpoint: Optional[str | Path] = None, test_file: str = "test.json",
                      limit: Optional[int] = None, top_k: int = 5, device: str = "cpu", **filters: Any) -> Any:
    """The Ov-GSR error inspector (:class:`mipd_kit.viz.inspector.Inspector`) of a student on a world's images, no
    run folder needed: the student (default: the released one) predicts the images of ``world_dir/<test_file>``
    (the first ``limit`` when given) and the cases are built against that file and ``world_dir/ov_split.json``.

    Raises:
        DataError: ``world_dir`` lacks ``test_file``; CheckpointFormatError / CheckpointMismatch: a refused checkpoint.
    """
    from ..viz.cases import build_cases, load_situations, load_split
    from ..viz.inspector import Inspector
    world = Path(world_dir)
    gt_path = world / test_file
    if not gt_path.is_file():
        raise DataError(f"{gt_path}: not found (a SWiG-format ground-truth file of the world)")
    gt = load_situations(gt_path)
    if limit is not None:
        gt = dict(list(gt.items())[:limit])
    pred = Predictor.from_checkpoint(checkpoint, device=device)
    preds = pred.predict([world / "images" / name for name in gt], top_k=top_k)
    split = load_split(world / "ov_split.json") if (world / "ov_split.json").is_file() else None
    return Inspector(build_cases(gt, preds, split), image_root=world / "images", **filters)


def _write_bytes(path: Path, data: bytes) -> None:
    from ..fileio import atomic_write_bytes
    atomic_write_bytes(path, data)


def _keys(images: Sequence[ImageLike]) -> list[str]:
    names = [f"image{i}" if isinstance(im, Image.Image) else Path(im).name for i, im in enumerate(images)]
    dup = {n for n in names if names.count(n) > 1}
    return [str(im) if n in dup and not isinstance(im, Image.Image) else n for im, n in zip(images, names)]


def _config(sf: StudentFile) -> StudentConfig:
    try:
        cfg = StudentConfig.from_dict(sf.config)
    except (TypeError, ValueError) as e:
        raise CheckpointMismatch(f"{sf.path}: its config does not fit this version's StudentConfig ({e})") from e
    if cfg.fingerprint() != sf.fingerprint:
        raise CheckpointMismatch(f"{sf.path}: config fingerprint {cfg.fingerprint()} != the recorded "
                                 f"{sf.fingerprint} (edited metadata, or a config field whose meaning changed)")
    return cfg


def _model(sf: StudentFile, cfg: StudentConfig) -> OvGSRStudent:
    try:
        model = build_student(cfg, sf.vocab)
    except ValueError as e:
        raise CheckpointMismatch(f"{sf.path}: cannot build the student it describes ({e})") from e
    try:
        model.load_state_dict(sf.weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointMismatch(f"{sf.weights_from}: weights do not fit the config and vocabulary of {sf.path} "
                                 f"({' '.join(x.strip() for x in first[:4])[:400]})") from e
    return model.eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd predict``: see the module docstring. Exit 0; 1 when some image could not be read (the others are still
    predicted and written); 2 when the checkpoint (or a new verb) is refused."""
    p = argparse.ArgumentParser(prog="mipd predict", description=__doc__.split("\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    p.add_argument("--checkpoint", default=None,
                   help="student checkpoint (run_dir/checkpoints/<model>-seed<k>.safetensors; "
                   f"default: the released student {RELEASE})")
    p.add_argument("--top-k", type=int, default=5, help="verbs per image (default 5)")
    p.add_argument("--out", default=None, help="write the SWiG-format predictions JSON here (default: print them)")
    p.add_argument("--draw", default=None, metavar="DIR", help="draw each image's best verb and frame into DIR")
    p.add_argument("--verbs", default="", help="new verbs, comma separated: NAME or NAME:role1+role2")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args(list(argv) if argv is not None else None)
    from ..fileio import check_output_path
    try:  # every option checked before the model is loaded
        if a.top_k < 1 or a.batch_size < 1:
            raise DataError(f"--top-k and --batch-size must be >= 1, got {a.top_k} and {a.batch_size}")
        if a.out:
            check_output_path(a.out, "--out")
        if a.draw:
            check_output_path(a.draw, "--draw", folder=True)
        pred = Predictor.from_checkpoint(a.checkpoint, device=a.device)
        added = pred.add_verbs([s for s in a.verbs.split(",") if s.strip()]) if a.verbs.strip() else []
    except (CheckpointFormatError, CheckpointMismatch, PredictError, ValueError) as e:  # ValueError: the device
        print(f"mipd predict: {e}", file=sys.stderr)
        return 2
    if added:
        shown = ", ".join(f"{v} ({'+'.join(pred.frame_roles(v))})" for v in added)
        print(f"added verbs: {shown}", file=sys.stderr)
    errors: dict[str, str] = {}
    try:
        preds = pred.predict(a.images, top_k=a.top_k, batch_size=a.batch_size, errors=errors)
    except (PredictError, ValueError) as e:  # e.g. a cached-feature student whose backbone cannot be rebuilt
        print(f"mipd predict: {e}", file=sys.stderr)
        return 2
    if a.out:
        from ..fileio import write_json
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(a.out, preds)
        print(f"wrote {len(preds)} predictions to {a.out}", file=sys.stderr)
    else:
        from ..fileio import dumps
        print(dumps(preds, indent=1))
    if a.draw:
        drawn = pred.draw(preds, a.images, a.draw)  # images without a prediction (unreadable) are skipped
        print(f"drew {len(drawn)} images into {a.draw}", file=sys.stderr)
    for key, msg in errors.items():
        print(f"mipd predict: skipped {msg}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
