"""``mipd export-onnx``: a trained Ov-GSR student as one ONNX graph for a device runtime, checked against torch.

The graph is the student's inference path (:meth:`mipd_kit.student.model.OvGSRStudent.predict`): backbone, verb
head over every verb of the checkpoint (plus any added with ``--verbs``), top-k, and the decoder for each kept verb.

- input ``x``: ``(B, 3, S, S)`` float32 pixels in [0, 1] (RGB, bilinear square resize to ``S``, divided by 255):
  the CNN student (``S`` = its ``image_size``), and a ``backbone="cached"`` student whose frozen backbone is the
  embedded one (the released ``embedded-teacher-student``; ``S`` = the backbone's ``image_size``): that backbone's
  image tower (its normalisation, CNN, transformer, attention pooling) is traced into the same graph in front of the
  head, so the graph takes images and needs nothing else (``--input pixels``, the default where possible);
- with ``--input features`` (and for a cached-feature student whose backbone cannot be traced here, e.g. an
  open_clip or Hugging Face model in real mode) ``x`` is ``(B, T, Din)`` float32 features of the frozen backbone,
  which then runs outside this graph (e.g. ``Predictor.inputs``), plus input ``pooled`` ``(B, Ep)``, the backbone's
  pooled embeddings, for a head that reads them (``pooled_dim``);
- outputs ``verbs`` (B, k) int64 verb indices, ``scores`` (B, k) softmax probabilities, ``nouns`` (B, k, R) int64
  noun indices, ``boxes`` (B, k, R, 4) normalised ``cx, cy, w, h``, ``exists`` (B, k, R) box probabilities.

Beside ``student.onnx`` a ``student.onnx.json`` holds what maps indices back to names (verbs, nouns, noun names,
roles, each verb's roles), the input kind and size, ``k`` and the check's result; no path a graph needs. The check
runs the ONNX model with onnxruntime (CPU) and torch on the same inputs (images of a world, given images, or seeded
random inputs) and reports the largest absolute difference of the float outputs and the agreement of the index
outputs; the default tolerance is ``ATOL`` (1e-4) on scores, boxes and box probabilities.

Without ``--checkpoint`` the released student (``embedded-student-default``) is exported.

The CLI checks its options, the check inputs and the output path (an existing ``--out`` needs ``--overwrite``)
before exporting, exports into a hidden folder beside ``--out`` and moves the ``.onnx`` and its sidecar into place
only when the check passes (exit 1, nothing written, when it does not).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointFormatError
from .predict import Predictor, PredictError, pixels
from .checkpoint import CheckpointMismatch

ATOL = 1e-4
OUTPUTS: tuple[str, ...] = ("verbs", "scores", "nouns", "boxes", "exists")
INPUTS: tuple[str, ...] = ("auto", "pixels", "features")


class PixelBackbone(nn.Module):
    """The embedded frozen backbone on pixels: ``x`` (B, 3, S, S) in [0, 1] -> (tokens (B, T, D), pooled (B, E)),
    the arithmetic of ``EmbeddedTeacher.encode_images`` after its resize (fixed mean / std, then the image tower)."""

    def __init__(self, tower: nn.Module, mean: float, std: float):
        super().__init__()
        self.tower, self.mean, self.std = tower, mean, std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tower((x - self.mean) / self.std)


class DeployGraph(nn.Module):
    """The student's ``predict`` as a plain forward (tuple of the :data:`OUTPUTS`), for tracing and export; with
    ``backbone`` (a :class:`PixelBackbone`) the frozen backbone of a cached-feature student runs first, on pixels."""

    def __init__(self, model: nn.Module, k: int, backbone: Optional[nn.Module] = None):
        super().__init__()
        self.model, self.k, self.backbone = model, k, backbone

    def forward(self, x: torch.Tensor, pooled: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
        if self.backbone is not None:
            x, pooled = self.backbone(x)  # (B, T, D), (B, E)
            pooled = pooled if self.model.pooled_dim else None
        p = self.model.predict(x, k=self.k, pooled=pooled)
        return tuple(p[name] for name in OUTPUTS)


def pixel_backbone(pred: Predictor) -> Optional[PixelBackbone]:
    """The frozen backbone of a cached-feature student as a :class:`PixelBackbone` (a CPU copy of its image tower, in
    eval mode), or ``None`` when it is not the embedded image tower (a real-mode backbone: export features instead)."""
    import copy

    from ..teachers.embedded import PIXEL_MEAN, PIXEL_STD, EmbeddedTeacher
    bb = pred._frozen("backbone")
    if not isinstance(bb, EmbeddedTeacher):
        return None
    return PixelBackbone(copy.deepcopy(bb.image).cpu(), PIXEL_MEAN, PIXEL_STD).eval()


def input_kind(pred: Predictor, want: str = "auto") -> str:
    """``pixels`` or ``features``: what the graph of ``pred`` takes for ``--input want``.

    Raises:
        PredictError: ``want`` unknown, ``features`` for the CNN student, or ``pixels`` for a cached-feature student
            whose backbone is not the embedded image tower.
    """
    if want not in INPUTS:
        raise PredictError(f"--input must be one of {INPUTS}, got {want!r}")
    if pred.cfg.backbone == "cnn":
        if want == "features":
            raise PredictError(f"{pred.path}: the CNN student reads pixels; --input features is for a student on "
                               "cached features")
        return "pixels"
    if want == "features":
        return "features"
    try:
        traceable = pixel_backbone(pred) is not None
    except PredictError:  # the backbone cannot be rebuilt here: auto exports the head on features
        if want == "pixels":
            raise
        traceable = False
    if not traceable:
        if want == "pixels":
            raise PredictError(f"{pred.path}: the student's backbone {pred.vocab.sources.get('backbone')} is not the "
                               "embedded image tower and cannot be traced here; export with --input features")
        return "features"
    return "pixels"


def image_size(pred: Predictor, kind: str) -> int:
    """The side ``S`` of the pixel input: the CNN student's ``image_size`` or its frozen backbone's."""
    if pred.cfg.backbone == "cnn":
        return int(pred.cfg.image_size)
    return int(pred._frozen("backbone").cfg.image_size)


def deploy_graph(pred: Predictor, k: int, kind: str) -> DeployGraph:
    """The module exported for ``pred`` and input ``kind`` (eval mode, CPU)."""
    bb = pixel_backbone(pred) if kind == "pixels" and pred.cfg.backbone == "cached" else None
    return DeployGraph(pred.model.cpu().eval(), k, bb).eval()


def input_names(pred: Predictor, kind: str = "auto") -> list[str]:
    """The graph's inputs: ``x`` (pixels or backbone tokens), and ``pooled`` for a head on features that reads the
    backbone's pooled embedding."""
    kind = input_kind(pred, kind) if kind == "auto" else kind
    return ["x", "pooled"] if kind == "features" and pred.cfg.pooled_dim else ["x"]


def example_input(pred: Predictor, batch: int = 2, seed: int = 0, kind: str = "auto") -> tuple[torch.Tensor, ...]:
    """Seeded random model inputs of the checkpoint's shapes (:func:`input_names`): pixels (B, 3, S, S) in [0, 1],
    or features (B, T, Din) and, for a head that reads them, pooled embeddings (B, Ep)."""
    g = torch.Generator().manual_seed(seed)
    c = pred.cfg
    kind = input_kind(pred, kind) if kind == "auto" else kind
    if kind == "pixels":
        S = image_size(pred, kind)
        return (torch.rand(batch, 3, S, S, generator=g),)
    x = torch.randn(batch, c.num_tokens, c.in_dim, generator=g)
    return (x, torch.randn(batch, c.pooled_dim, generator=g)) if len(input_names(pred, kind)) == 2 else (x,)


def export_onnx(pred: Predictor, out: str | Path, k: int = 5, opset: int = 17, input: str = "auto") -> Path:
    """Write ``pred``'s student as ONNX (dynamic batch) plus the ``.json`` sidecar; returns the ONNX path.

    ``input``: ``auto`` (pixels where the backbone can be traced, else features), ``pixels`` or ``features``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    k = min(k, len(pred.vocab.verbs))
    kind = input_kind(pred, input)
    graph = deploy_graph(pred, k, kind)
    x = example_input(pred, 2, kind=kind)
    names = input_names(pred, kind)
    tmp = out.with_name(out.name + ".tmp")
    axes = {**{n: {0: "batch"} for n in names}, **{n: {0: "batch"} for n in OUTPUTS}}
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form: trace the plain ops
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # shape checks inside attention are traced as constants; the onnxruntime check covers other batch sizes
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(graph, x, str(tmp), input_names=names, output_names=list(OUTPUTS),
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    tmp.replace(out)
    pred.model.to(pred.device)
    v = pred.vocab
    bb = v.sources.get("backbone") or {}
    S = image_size(pred, kind) if kind == "pixels" else None
    side = {"format": "mipd-student-onnx/1", "checkpoint": pred.path.name, "k": k,
            "input": ({"kind": "pixels", "shape": ["B", 3, S, S], "range": [0.0, 1.0],
                       "resize": "bilinear square, RGB, /255",
                       **({"backbone_in_graph": Path(str((bb.get("config") or {}).get("checkpoint"))).name,
                           "backbone_fingerprint": bb.get("fingerprint")} if pred.cfg.backbone == "cached" else {})}
                      if kind == "pixels" else
                      {"kind": "features", "shape": ["B", pred.cfg.num_tokens, pred.cfg.in_dim],
                       "backbone": v.sources.get("backbone"),
                       **({"pooled_shape": ["B", pred.cfg.pooled_dim]} if len(names) == 2 else {})}),
            "outputs": list(OUTPUTS), "verbs": v.verbs, "nouns": v.nouns, "noun_names": v.noun_names,
            "roles": v.roles, "verb_roles": v.verb_roles.tolist(), "boxes": "normalised cx, cy, w, h"}
    from ..fileio import write_json
    write_json(out.with_name(out.name + ".json"), side)
    return out


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session (``threads`` intra-op threads, 0 = onnxruntime's default)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_onnx(path: str | Path, pred: Predictor, x: tuple[torch.Tensor, ...], atol: float = ATOL) -> dict[str, Any]:
    """Run the ONNX model and torch on the inputs ``x`` (:func:`example_input` / :func:`check_inputs`) and compare.

    Returns:
        ``{"n", "atol", "max_abs": {scores, boxes, exists}, "top1_agree", "verbs_agree", "nouns_agree", "ok"}``;
        ``ok`` when every float difference is within ``atol`` and the top-1 verbs agree (lower ranks may swap
        where two scores are within ``atol``; ``verbs_agree`` / ``nouns_agree`` are the fractions equal).
    """
    sess = onnx_session(path)
    side_path = Path(str(path) + ".json")
    side = json.loads(side_path.read_text()) if side_path.exists() else {}
    k = side.get("k", 5)
    kind = (side.get("input") or {}).get("kind") or input_kind(pred)
    feeds = {n: t.numpy().astype(np.float32) for n, t in zip(input_names(pred, kind), x)}
    got = dict(zip(OUTPUTS, sess.run(list(OUTPUTS), feeds)))
    ref = {n: t.numpy() for n, t in zip(OUTPUTS, deploy_graph(pred, k, kind)(*x))}
    pred.model.to(pred.device)
    same = got["verbs"] == ref["verbs"]
    diff = {n: float(np.abs(got[n] - ref[n]).max()) if same.all() or n == "scores" else None
            for n in ("scores", "boxes", "exists")}
    if not same.all():  # decoded frames of swapped verbs are not comparable: compare where the verbs agree
        for n in ("boxes", "exists"):
            m = same.reshape(same.shape + (1,) * (ref[n].ndim - 2))
            diff[n] = float((np.abs(got[n] - ref[n]) * m).max())
    nouns_agree = float((got["nouns"] == ref["nouns"])[same].mean()) if same.any() else 0.0
    res = {"n": int(x[0].shape[0]), "atol": atol, "max_abs": diff, "top1_agree": float(same[:, 0].mean()),
           "verbs_agree": float(same.mean()), "nouns_agree": nouns_agree}
    res["ok"] = bool(all(v <= atol for v in diff.values()) and res["top1_agree"] == 1.0)
    return res


def check_inputs(pred: Predictor, world: Optional[str], n: int = 8, images: Sequence[str] = (),
                 kind: str = "auto") -> tuple[tuple[torch.Tensor, ...], str]:
    """Inputs of the graph for input ``kind`` for the check: the given images, else the first ``n`` test images of
    ``world``, else seeded random inputs; returns (inputs, what they are). Pixels are resized as ``mipd predict``
    resizes them; features are the frozen backbone's on those images."""
    from .predict import load_images
    kind = input_kind(pred, kind)

    def model_inputs(paths: Sequence[Any]) -> tuple[torch.Tensor, ...]:
        ims = load_images(paths)
        if kind == "pixels":
            return (pixels(ims, image_size(pred, kind)),)
        return tuple(t.cpu() for t in pred.inputs(ims))

    if images:
        return model_inputs(images), f"{len(images)} given images"
    if world:
        names = sorted(json.loads((Path(world) / "test.json").read_text()))[:n]
        paths = [Path(world) / "images" / x for x in names]
        return model_inputs(paths), f"{len(paths)} test images of {world}"
    return example_input(pred, n, seed=1, kind=kind), f"{n} seeded random inputs"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd export-onnx``: export, then check against torch with onnxruntime (exit 1 when outside tolerance)."""
    p = argparse.ArgumentParser(prog="mipd export-onnx", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None,
                   help="student checkpoint (run_dir/checkpoints/<model>-seed<k>.safetensors; "
                   "default: the released student embedded-student-default)")
    p.add_argument("--input", default="auto", choices=INPUTS, help="graph input: pixels (the backbone in the graph), "
                   "features (a cached-feature student's head only), auto (pixels where possible; default)")
    p.add_argument("--out", required=True, help="the .onnx file to write (a .onnx.json sidecar is written beside it)")
    p.add_argument("--top-k", type=int, default=5, help="verbs decoded per image in the graph (default 5)")
    p.add_argument("--verbs", default="", help="new verbs baked into the graph: NAME or NAME:role1+role2, comma separated")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--check-world", default=None, help="check on the first test images of this world")
    p.add_argument("--check-images", nargs="*", default=[], help="check on these images")
    p.add_argument("--check-n", type=int, default=8, help="images / random inputs checked (default 8)")
    p.add_argument("--atol", type=float, default=ATOL, help=f"tolerance on scores, boxes, box probabilities ({ATOL})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (and its .json sidecar)")
    a = p.parse_args(list(argv) if argv is not None else None)
    from ..data.records import DataError
    from ..fileio import check_output_path, move_into_place
    try:  # every option checked before anything is loaded or written
        if a.top_k < 1 or a.check_n < 1:
            raise DataError(f"--top-k and --check-n must be >= 1, got {a.top_k} and {a.check_n}")
        if not (a.atol > 0):
            raise DataError(f"--atol must be > 0, got {a.atol}")
        check_output_path(a.out, "--out", overwrite=a.overwrite)
        check_output_path(a.out + ".json", "--out (its .json sidecar)", overwrite=a.overwrite)
        if a.check_world and not (Path(a.check_world) / "test.json").is_file():
            raise DataError(f"{a.check_world}: --check-world is not a world folder (no test.json)")
    except DataError as e:
        print(f"mipd export-onnx: {e}", file=sys.stderr)
        return 2
    try:
        import onnx  # noqa: F401  (torch's exporter needs it to write the file)
    except ImportError:
        print("mipd export-onnx: the onnx package is not installed (pip install 'mipd_kit[deploy]')", file=sys.stderr)
        return 2
    try:
        pred = Predictor.from_checkpoint(a.checkpoint)
        if a.verbs.strip():
            pred.add_verbs([s for s in a.verbs.split(",") if s.strip()])
        kind = input_kind(pred, a.input)
        x, what = check_inputs(pred, a.check_world, a.check_n, a.check_images, kind)  # bad images refused before export
    except (CheckpointFormatError, CheckpointMismatch, PredictError, DataError) as e:
        print(f"mipd export-onnx: {e}", file=sys.stderr)
        return 2
    try:
        import onnxruntime  # noqa: F401
        checked = True
    except ImportError:
        checked = False
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:  # exported and checked in a hidden folder beside --out; moved into place only when the check passes
        tmp = export_onnx(pred, work / out.name, k=a.top_k, opset=a.opset, input=kind)
        side = tmp.with_name(tmp.name + ".json")
        res: dict[str, Any] = {}
        if checked:
            res = check_onnx(tmp, pred, x, a.atol)
            res["inputs"] = what
            from ..fileio import write_json
            write_json(side, {**json.loads(side.read_text()), "check": res})
            print(json.dumps(res))
            if not res["ok"]:
                print(f"mipd export-onnx: the ONNX graph disagrees with torch beyond --atol {a.atol}; {out} not "
                      "written", file=sys.stderr)
                return 1
        move_into_place(side, out.with_name(out.name + ".json"))
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB) and {out.name}.json", file=sys.stderr)
    if not checked:
        print("mipd export-onnx: onnxruntime is not installed (pip install 'mipd_kit[deploy]'): not checked",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
