"""Deployment benchmark (MIPD's Fig. 2 on this machine): images/s and peak memory of the student's inference path
under torch eager, ``torch.compile`` and onnxruntime, at batch 1 and 32, beside the teacher path (the embedded
teacher's image encoding + its zero-shot verb classifier; by default the default-size architecture with random
weights, as for the student: ``--teacher default|smoke`` takes the trained one from the cache).

    python benchmarks/bench_deploy.py --world data/synthsitu/smoke-seed0 --cache-dir data/cache \
        [--checkpoint CKPT] [--size smoke|default] [--teacher random-default|default|smoke] [--threads 1] [--batches 1,32] \
        [--n-batch1 32] [--n-batch32 4] [--out reports/bench]

- Student: ``--checkpoint`` (a format-2 student checkpoint) or, by default, a student of the ``--size`` config with
  random weights on the world's vocabulary (MiniLM verb / noun / role tables, the teacher's verb text table): speed
  and memory do not depend on the weight values. Every path starts from decoded RGB images (PIL) and includes the
  resize to the model's input: student = square resize + ``predict`` (top-5 verbs, each with its decoded frame);
  teacher path = the teacher's ``encode_images`` (its own resize) + cosine against its verb text table + top-5.
- torch eager: ``OvGSRStudent.predict``; ``torch.compile``: the same graph (``mipd_kit.student.export.DeployGraph``)
  through ``torch.compile`` (inductor); the compile time is reported apart and excluded from images/s, and when
  compiling fails the error is recorded instead; onnxruntime: the graph of ``mipd export-onnx``, CPU provider.
- Each (path, batch) runs in a fresh subprocess with ``--threads`` torch / onnxruntime threads: the images are
  decoded, then the peak-RSS mark is reset (``/proc/self/clear_refs``), then the model is loaded, warmed up (2
  batches) and timed. **Peak memory** is the process's peak RSS (``VmHWM``) after that point minus the RSS at that
  point: what loading and running the model adds (weights, activations, runtime arenas), without the interpreter,
  torch and the decoded images; the whole-process peak is reported too.

Writes ``OUT/deploy.json`` (tidy metric rows, task ``bench``, model = path, setting = ``cpu-batch<B>``),
``OUT/deploy.md`` (the machine, its load average, the table) and ``OUT/deploy.png``. No timed assertions anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PATHS: tuple[str, ...] = ("student-torch", "student-compile", "student-onnxruntime", "teacher_path")
K = 5


# ----------------------------------------------------------------------------------------------- memory
def _status_kb(field: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Reset the peak-RSS mark (Linux: ``5`` into ``/proc/self/clear_refs``); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------------------------- preparation
TEACHERS: dict[str, str] = {"random-default": "default size, random weights: speed and memory do not depend on them",
                            "default": "default size, trained (from the cache, trained first when missing)",
                            "smoke": "smoke size, trained (from the cache, trained first when missing)"}


def get_teacher(a: argparse.Namespace) -> Any:
    """The embedded teacher of the teacher path (``--teacher``, :data:`TEACHERS`); the same weights in every process."""
    if a.teacher == "random-default":
        import torch

        from mipd_kit.teachers.embedded import EmbeddedTeacher, EmbeddedTeacherConfig
        torch.manual_seed(0)
        return EmbeddedTeacher(EmbeddedTeacherConfig()).eval()
    from mipd_kit.app.stages.student_runs import load_teacher_kind
    return load_teacher_kind("embedded", a.world, a.cache_dir, smoke=a.teacher == "smoke")


def test_images(world: Path, n: int) -> list[Path]:
    names = sorted(json.loads((world / "test.json").read_text()))
    return [world / "images" / names[i % len(names)] for i in range(n)]


def prepare_student(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A format-2 student checkpoint (given, or random weights at ``--size`` on the world's vocabulary) and its ONNX
    graph in ``work``."""
    import torch

    from mipd_kit.student.export import export_onnx
    from mipd_kit.student.predict import Predictor
    torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else work / "student.safetensors"
    if not a.checkpoint:
        from mipd_kit.data.splits import OvSplit
        from mipd_kit.data.swig import load_frame_space
        from mipd_kit.student.checkpoint import describe_frozen
        from mipd_kit.student.model import build_student
        from mipd_kit.student.checkpoint import save_checkpoint
        from mipd_kit.student.config import StudentConfig
        from mipd_kit.student.data import build_vocab
        from mipd_kit.teachers.text import minilm_encode
        from mipd_kit.teachers.zero_shot import class_embeddings, verb_prompts
        world = Path(a.world)
        teacher = get_teacher(a)
        space = load_frame_space(world / "imsitu_space.json")
        probe = teacher.encode_texts(["a"])
        vocab = build_vocab(space, OvSplit.load(world / "ov_split.json").trainable,
                            lambda t: minilm_encode(t, with_tokens=False)[2], probe.pooled.shape[-1],
                            probe.tokens.shape[-1])
        names, cls = class_embeddings(teacher, verb_prompts(space))
        vocab.verb_emb_teacher = cls[[names.index(v) for v in vocab.verbs]]
        vocab.sources = {"text_encoder": "minilm", "teacher": describe_frozen(teacher), "backbone": None,
                         "verb_text": "name"}
        cfg = StudentConfig.smoke() if a.size == "smoke" else StudentConfig()
        torch.manual_seed(0)
        model = build_student(cfg, vocab)
        save_checkpoint(ckpt, model, torch.optim.AdamW(model.parameters()), cfg, 0, {"bench": "random weights"},
                        vocab=vocab)
    pred = Predictor.from_checkpoint(ckpt)
    onnx_path = export_onnx(pred, work / "student.onnx", k=K)
    c = pred.cfg
    # the teacher path's zero-shot verb table, computed once here (a deployed teacher would ship it, as the student
    # ships its tables): the children measure the image tower + scoring, not the text encoder
    from mipd_kit.data.swig import load_frame_space
    from mipd_kit.teachers.zero_shot import class_embeddings, verb_prompts
    teacher = get_teacher(a)
    _, table = class_embeddings(teacher, verb_prompts(load_frame_space(Path(a.world) / "imsitu_space.json")))
    torch.save(table, work / "teacher_table.pt")
    t_cfg = teacher.cfg
    return {"teacher_table": str(work / "teacher_table.pt"),
            "teacher": f"image {t_cfg.image_size}x{t_cfg.image_size}, width {t_cfg.width}, grid {t_cfg.grid}, "
                       f"depth {t_cfg.depth}, embed {t_cfg.embed_dim}",
            "teacher_image_mb": sum(p.numel() * p.element_size() for p in teacher.image.parameters()) / 2**20,
            "checkpoint": str(ckpt), "onnx": str(onnx_path), "backbone": c.backbone, "image_size": c.image_size,
            "width": c.width, "d_model": c.d_model, "verbs": len(pred.vocab.verbs), "nouns": len(pred.vocab.nouns),
            "params": sum(p.numel() for p in pred.model.parameters()),
            "param_mb": sum(p.numel() * p.element_size() for p in pred.model.parameters()) / 2**20,
            "buffer_mb": sum(b.numel() * b.element_size() for b in pred.model.buffers()) / 2**20,
            "onnx_mb": onnx_path.stat().st_size / 2**20, "random_weights": not a.checkpoint}


# ----------------------------------------------------------------------------------------------- child
def child(a: argparse.Namespace) -> dict[str, Any]:
    """One path at one batch size, in this (fresh) process."""
    import numpy as np
    import torch
    from PIL import Image
    torch.set_num_threads(a.threads)
    B = a.batch
    n_batches = a.n_batch1 if B == 1 else a.n_batch32
    paths = test_images(Path(a.world), B * (n_batches + 2))
    ims = []
    for p in paths:
        with Image.open(p) as im:
            ims.append(im.convert("RGB"))
    batches = [ims[i * B:(i + 1) * B] for i in range(n_batches + 2)]
    rss0 = rss_mb()
    reset = reset_peak()
    out: dict[str, Any] = {"path": a.child, "batch": B, "images": B * n_batches, "peak_reset": reset}
    if a.child == "teacher_path":
        import torch.nn.functional as F

        teacher = get_teacher(a)
        table = torch.load(a.teacher_table)  # (V, E) verb text table, precomputed like the student's tables

        @torch.no_grad()
        def step(batch):
            img = F.normalize(teacher.encode_images(batch).pooled.float(), dim=-1)  # (B, E)
            return (img @ table.t()).softmax(-1).topk(K, -1)
        out["param_mb"] = sum(p.numel() * p.element_size() for p in teacher.parameters()) / 2**20
    else:
        from mipd_kit.student.predict import Predictor, pixels
        pred = Predictor.from_checkpoint(a.checkpoint)
        size = pred.cfg.image_size
        if a.child == "student-torch":
            @torch.no_grad()
            def step(batch):
                return pred.model.predict(pixels(batch, size), k=K)
        elif a.child == "student-compile":
            from mipd_kit.student.export import DeployGraph
            graph = torch.compile(DeployGraph(pred.model, K).eval())
            t0 = time.perf_counter()
            try:
                with torch.no_grad():
                    graph(pixels(batches[0], size))
            except Exception as e:  # noqa: BLE001 - recorded, not hidden: the report says why compile failed
                msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                return {**out, "error": msg[:300]}
            out["compile_s"] = time.perf_counter() - t0

            @torch.no_grad()
            def step(batch):
                return graph(pixels(batch, size))
        elif a.child == "student-onnxruntime":
            from mipd_kit.student.export import onnx_session
            sess = onnx_session(a.onnx, threads=a.threads)

            def step(batch):
                return sess.run(None, {"x": pixels(batch, size).numpy().astype(np.float32)})
        else:
            raise ValueError(f"unknown path {a.child!r}; choose from {PATHS}")
    for b in batches[:2]:  # warm-up
        step(b)
    t0 = time.perf_counter()
    for b in batches[2:]:
        step(b)
    dt = time.perf_counter() - t0
    out.update(seconds=dt, images_per_s=B * n_batches / dt, ms_per_batch=1000 * dt / n_batches,
               peak_rss_delta_mb=peak_mb() - rss0, peak_rss_mb=peak_mb(), rss_before_mb=rss0)
    return out


def run_child(a: argparse.Namespace, path: str, batch: int, info: dict) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", path, "--batch", str(batch), "--world", a.world,
           "--cache-dir", a.cache_dir, "--threads", str(a.threads), "--n-batch1", str(a.n_batch1),
           "--n-batch32", str(a.n_batch32), "--checkpoint", info["checkpoint"], "--onnx", info["onnx"], "--teacher-table", info["teacher_table"]]
    cmd += ["--teacher", a.teacher]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS=str(a.threads))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"path": path, "batch": batch, "error": f"child exit {r.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------------------- report
def machine_line(threads: int) -> str:
    from mipd_kit.machine import machine_facts
    f = machine_facts()
    cpu = f.get("cpu", {})
    load = os.getloadavg()
    return (f"{cpu.get('model', 'unknown CPU')} ({os.cpu_count()} logical CPUs), {threads} thread(s) per path, "
            f"torch {f.get('torch', {}).get('version', '?')}; load average {load[0]:.1f} / {load[1]:.1f} / "
            f"{load[2]:.1f} (1 / 5 / 15 min) at the end")


def rows_of(results: list[dict]) -> list:
    from mipd_kit.metrics import row
    rows = []
    for r in results:
        if "error" in r:
            continue
        for m in ("images_per_s", "ms_per_batch", "peak_rss_delta_mb", "peak_rss_mb", "compile_s"):
            if r.get(m) is not None:
                rows.append(row("bench", r["path"], "test", f"cpu-batch{r['batch']}", m, r[m]))
    return rows


def figure(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in results if "error" not in r]
    batches = sorted({r["batch"] for r in ok})
    names = [p for p in PATHS if any(r["path"] == p for r in ok)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    w = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        for ax, metric in zip(axes, ("images_per_s", "peak_rss_delta_mb")):
            vals = [next((r[metric] for r in ok if r["path"] == name and r["batch"] == b), 0.0) for b in batches]
            ax.bar([j + i * w for j in range(len(batches))], vals, w, label=name)
    for ax, title in zip(axes, ("images / s (log)", "peak memory added by the model (MB, log)")):
        ax.set_xticks([j + w * (len(names) - 1) / 2 for j in range(len(batches))])
        ax.set_xticklabels([f"batch {b}" for b in batches])
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    from mipd_kit.fileio import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def markdown(a: argparse.Namespace, info: dict, results: list[dict], machine: str, argv: Sequence[str]) -> str:
    by = {(r["path"], r["batch"]): r for r in results}
    batches = sorted({r["batch"] for r in results})
    kind = "random weights (speed and memory do not depend on them)" if info["random_weights"] else info["checkpoint"]
    lines = [f"# Deployment benchmark: the student vs the teacher path (world {a.world})", "",
             f"- machine: {machine}. **The machine was shared with other jobs while this ran** (load average above "
             "half the CPU count, or --loaded): absolute numbers are pessimistic and noisy; the ratios between paths "
             "are the message." if a.loaded else f"- machine: {machine} (idle: load average below half the CPUs).",
             f"- student: {info['backbone']} backbone, input {info['image_size']}x{info['image_size']}, width "
             f"{info['width']}, d_model {info['d_model']}, {info['verbs']} verbs, {info['nouns']} nouns, "
             f"{info['params'] / 1e6:.2f} M parameters ({info['param_mb']:.2f} MB + {info['buffer_mb']:.2f} MB frozen "
             f"text tables), ONNX file {info['onnx_mb']:.2f} MB; {kind}.",
             f"- teacher path: the embedded teacher ({TEACHERS[a.teacher]}: "
             f"{info['teacher']}; image tower {info['teacher_image_mb']:.2f} MB) encoding the image + cosine against "
             "its verb text table (precomputed, zero-shot), top-5 verbs without frames. The embedded teacher stands in "
             "for the paper's large models and is itself small, so this is not the paper's MLLM-vs-student gap.",
             "- every path starts from decoded RGB images and includes its resize; images/s excludes the 2 warm-up "
             "batches (and compilation). Peak memory: VmHWM after a reset minus the RSS before loading the model, "
             "in a fresh process per cell.", "",
             "| path | " + " | ".join(f"batch {b}: images/s | batch {b}: peak MB added" for b in batches) + " |",
             "|---|" + "---:|---:|" * len(batches)]
    for p in PATHS:
        cells = []
        for b in batches:
            r = by.get((p, b), {"error": "not run"})
            if "error" in r:
                cells += [f"failed: {r['error'][:120]}", "-"]
            else:
                extra = f" (compile {r['compile_s']:.1f} s)" if r.get("compile_s") is not None else ""
                cells += [f"{r['images_per_s']:.1f}{extra}", f"{r['peak_rss_delta_mb']:.0f}"]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    t = {b: by.get(("teacher_path", b)) for b in batches}
    for b in batches:
        s, tt = by.get(("student-torch", b)), t[b]
        if s and tt and "error" not in s and "error" not in tt:
            lines.append(f"\nBatch {b}: student (torch eager) / teacher path speed **{s['images_per_s'] / tt['images_per_s']:.2f}x**, "
                         f"memory added teacher / student **{tt['peak_rss_delta_mb'] / max(s['peak_rss_delta_mb'], 1e-9):.1f}x**.")
    lines += ["", "![deploy](deploy.png)", "", f"Command: `python benchmarks/bench_deploy.py {' '.join(argv)}`", ""]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", default="data/synthsitu/smoke-seed0")
    p.add_argument("--cache-dir", default="data/cache")
    p.add_argument("--checkpoint", default=None, help="a format-2 student checkpoint (default: random weights)")
    p.add_argument("--size", default="default", choices=["smoke", "default"], help="student size without --checkpoint")
    p.add_argument("--teacher", default="random-default", choices=sorted(TEACHERS), help="teacher of the teacher path")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,32")
    p.add_argument("--n-batch1", type=int, default=32, help="timed batches at batch 1")
    p.add_argument("--n-batch32", type=int, default=4, help="timed batches at batch 32 (and other sizes)")
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--loaded", action="store_true", help="say in the report that the machine was shared")
    p.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--onnx", default=None, help=argparse.SUPPRESS)
    p.add_argument("--teacher-table", default=None, help=argparse.SUPPRESS)
    args = list(argv) if argv is not None else sys.argv[1:]
    a = p.parse_args(args)
    if a.child:
        print(json.dumps(child(a)))
        return 0
    out = Path(a.out)
    a.loaded = a.loaded or os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        info = prepare_student(a, Path(tmp))
        results = []
        for b in [int(x) for x in a.batches.split(",")]:
            for path in a.paths.split(","):
                r = run_child(a, path, b, info)
                results.append(r)
                print(json.dumps(r), flush=True)
        a.loaded = a.loaded or os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1)
    from mipd_kit.fileio import atomic_write_text
    from mipd_kit.metrics import write_rows
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "deploy.json", rows_of(results))  # this benchmark's rows are replaced, never mixed across runs
    figure(results, out / "deploy.png")
    atomic_write_text(out / "deploy.md", markdown(a, info, results, machine_line(a.threads), args))
    print(f"wrote {out / 'deploy.json'}, {out / 'deploy.md'}, {out / 'deploy.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
