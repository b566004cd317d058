"""``mipd export-onnx``: a trained Ov-GSR student as one ONNX graph for a device runtime, checked against torch.

The graph is the student's inference path (:meth:`mipd_kit.student.model.OvGSRStudent.predict`): backbone, verb
head over every verb of the checkpoint (plus any added with ``--verbs``), top-k, and the decoder for each kept verb.

- input ``x``: ``(B, 3, S, S)`` float32 pixels in [0, 1] (the CNN student: RGB, bilinear square resize to the
  student's ``image_size``, divided by 255) or ``(B, T, Din)`` float32 features of the frozen backbone (a
  ``backbone="cached"`` student: the backbone is the teacher-side model the checkpoint names, shared with the
  teacher, and stays outside this graph: run it first, e.g. with ``Predictor.inputs``), plus input ``pooled``
  ``(B, Ep)``, the backbone's pooled embeddings, for a head that reads them (``pooled_dim``);
- outputs ``verbs`` (B, k) int64 verb indices, ``scores`` (B, k) softmax probabilities, ``nouns`` (B, k, R) int64
  noun indices, ``boxes`` (B, k, R, 4) normalised ``cx, cy, w, h``, ``exists`` (B, k, R) box probabilities.

Beside ``student.onnx`` a ``student.onnx.json`` holds what maps indices back to names (verbs, nouns, noun names,
roles, each verb's roles, the input kind and size, ``k``) and the check's result. The check runs the ONNX model with
onnxruntime (CPU) and torch on the same inputs (images of a world, or seeded random inputs) and reports the largest
absolute difference of the float outputs and the agreement of the index outputs; the default tolerance is
``ATOL`` (1e-4) on scores, boxes and box probabilities.

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
from .predict import Predictor, PredictError
from .train import CheckpointMismatch

ATOL = 1e-4
OUTPUTS: tuple[str, ...] = ("verbs", "scores", "nouns", "boxes", "exists")


class DeployGraph(nn.Module):
    """The student's ``predict`` as a plain forward (tuple of the :data:`OUTPUTS`), for tracing and export."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor, pooled: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
        p = self.model.predict(x, k=self.k, pooled=pooled)
        return tuple(p[name] for name in OUTPUTS)


def input_names(pred: Predictor) -> list[str]:
    """The graph's inputs: ``x`` (pixels or backbone tokens), and ``pooled`` for a head that reads the backbone's
    pooled embedding."""
    return ["x", "pooled"] if pred.cfg.backbone == "cached" and pred.cfg.pooled_dim else ["x"]


def example_input(pred: Predictor, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded random model inputs of the checkpoint's shapes (:func:`input_names`): pixels (B, 3, S, S), or features
    (B, T, Din) and, for a head that reads them, pooled embeddings (B, Ep)."""
    g = torch.Generator().manual_seed(seed)
    c = pred.cfg
    if c.backbone == "cnn":
        return (torch.rand(batch, 3, c.image_size, c.image_size, generator=g),)
    x = torch.randn(batch, c.num_tokens, c.in_dim, generator=g)
    return (x, torch.randn(batch, c.pooled_dim, generator=g)) if len(input_names(pred)) == 2 else (x,)


def export_onnx(pred: Predictor, out: str | Path, k: int = 5, opset: int = 17) -> Path:
    """Write ``pred``'s student as ONNX (dynamic batch) plus the ``.json`` sidecar; returns the ONNX path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    k = min(k, len(pred.vocab.verbs))
    graph = DeployGraph(pred.model.cpu().eval(), k).eval()
    x = example_input(pred, 2)
    names = input_names(pred)
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
    side = {"format": "mipd-student-onnx/1", "checkpoint": str(pred.path), "k": k,
            "input": ({"kind": "pixels", "shape": ["B", 3, pred.cfg.image_size, pred.cfg.image_size],
                       "range": [0.0, 1.0], "resize": "bilinear square, RGB, /255"} if pred.cfg.backbone == "cnn" else
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
    k = json.loads(Path(str(path) + ".json").read_text())["k"] if Path(str(path) + ".json").exists() else 5
    feeds = {n: t.numpy().astype(np.float32) for n, t in zip(input_names(pred), x)}
    got = dict(zip(OUTPUTS, sess.run(list(OUTPUTS), feeds)))
    ref = {n: t.numpy() for n, t in zip(OUTPUTS, DeployGraph(pred.model.cpu().eval(), k)(*x))}
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


def check_inputs(pred: Predictor, world: Optional[str], n: int = 8,
                 images: Sequence[str] = ()) -> tuple[tuple[torch.Tensor, ...], str]:
    """Inputs for the check: the given images, else the first ``n`` test images of ``world``, else seeded random
    inputs; returns (inputs, what they are)."""
    from .predict import load_images
    if images:
        return tuple(t.cpu() for t in pred.inputs(load_images(images))), f"{len(images)} given images"
    if world:
        names = sorted(json.loads((Path(world) / "test.json").read_text()))[:n]
        paths = [Path(world) / "images" / x for x in names]
        return tuple(t.cpu() for t in pred.inputs(load_images(paths))), f"{len(paths)} test images of {world}"
    return example_input(pred, n, seed=1), f"{n} seeded random inputs"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd export-onnx``: export, then check against torch with onnxruntime (exit 1 when outside tolerance)."""
    p = argparse.ArgumentParser(prog="mipd export-onnx", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="student checkpoint (run_dir/checkpoints/<model>-seed<k>.safetensors)")
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
        x, what = check_inputs(pred, a.check_world, a.check_n, a.check_images)  # bad images refused before export
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
        tmp = export_onnx(pred, work / out.name, k=a.top_k, opset=a.opset)
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
