"""Student benchmark: training throughput and peak memory; inference speed and memory of the student versus the
teacher's full path (teacher image encoding + rationale-text encoding + scoring), each in a fresh subprocess.

    python benchmarks/bench_student.py --world data/synthsitu/default-seed0 --cache-dir data/cache \
        --run-dir reports/<run> [--threads 2] [--n-images 256] [--train-steps 60] [--smoke-teacher]

Writes ``reports/bench/student.json`` (tidy rows, task "bench") and ``reports/bench/student.md``.
Peak memory is the child's ``ru_maxrss`` (whole process: Python + torch + data, so both paths share a baseline
of a few hundred MB) and, separately, the parameter bytes of each model. No timed assertions anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _images(world: Path, n: int) -> list[Path]:
    names = sorted(json.loads((world / "test.json").read_text()))[:n]
    return [world / "images" / x for x in names]


def child_train(a: argparse.Namespace) -> dict:
    import dataclasses

    import torch

    from mipd_kit.app.stages.student_runs import load_teacher_kind
    from mipd_kit.student.config import StudentConfig
    from mipd_kit.student.data import prepare_world
    from mipd_kit.student.targets import attach_targets
    from mipd_kit.student.train import fit
    torch.set_num_threads(a.threads)
    teacher = load_teacher_kind("embedded", a.world, a.cache_dir, smoke=a.smoke_teacher)
    rat = Path(a.run_dir) / "rationales.jsonl"
    w = prepare_world(a.world, a.cache_dir, teacher, 64, rationales_path=rat if rat.exists() else None)
    variant = "full"
    cfg = dataclasses.replace(StudentConfig(variant=variant), select_on_dev=False, threads=a.threads)
    # the per-step cost of the full student does not depend on whether targets come from NMPA (a separate stage,
    # timed in run_dir/curves/*.json as nmpa_s) or from the raw teacher, so raw targets stand in here
    tr, un, info = attach_targets(w, dataclasses.replace(cfg, variant="feat"))
    from mipd_kit.align.nmpa import _pooled_each, _pooled_mean
    tr.neg, tr.neg_mask = _pooled_each(w.align.bank, w.align.glimpse_neg)
    tr.pos, tr.pos_mask = _pooled_mean(w.align.bank, w.align.glimpse_pos)
    tr.kd = w.kd_train
    n = min(len(tr), a.train_steps * cfg.batch_size)
    idx = list(range(n))
    tr_small = dataclasses.replace(tr, **{k: (v[idx] if hasattr(v, "shape") else [v[i] for i in idx])
                                          for k, v in dataclasses.asdict(tr).items() if v is not None})
    cfg1 = dataclasses.replace(cfg, epochs=1)
    t0 = time.perf_counter()
    res = fit(w, cfg1, train_data=tr_small, unlabeled=un, info=info)
    dt = time.perf_counter() - t0
    return {"variant": variant, "samples": n, "seconds": dt, "samples_per_s": n / dt, "peak_rss_mb": _rss_mb(),
            "params": sum(p.numel() for p in res.model.parameters())}


def child_vocab(a: argparse.Namespace) -> dict:
    """Text-only tables of the student (MiniLM embeddings of verb / noun / role names), computed once offline."""
    from safetensors.torch import save_file

    from mipd_kit.data.splits import OvSplit
    from mipd_kit.data.swig import load_frame_space
    from mipd_kit.student.data import build_vocab
    from mipd_kit.teachers.text import minilm_encode
    world = Path(a.world)
    vocab = build_vocab(load_frame_space(world / "imsitu_space.json"), OvSplit.load(world / "ov_split.json").trainable,
                        lambda t: minilm_encode(t, with_tokens=False)[2], 256, 128)
    out = Path(a.out) / "student_vocab.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"verb_emb": vocab.verb_emb, "noun_emb": vocab.noun_emb, "role_emb": vocab.role_emb,
               "verb_roles": vocab.verb_roles, "train_verbs": vocab.train_verbs}, str(out),
              metadata={"verbs": json.dumps(vocab.verbs), "nouns": json.dumps(vocab.nouns), "roles": json.dumps(vocab.roles)})
    return {"path": str(out)}


def child_student_infer(a: argparse.Namespace) -> dict:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from mipd_kit.student.model import StudentVocab, build_student
    from mipd_kit.student.config import StudentConfig
    from mipd_kit.student.data import load_pixels
    from mipd_kit.student.model import to_input
    torch.set_num_threads(a.threads)
    rss_import = _rss_mb()  # interpreter + torch + mipd_kit, before any model or image
    world = Path(a.world)
    vp = Path(a.out) / "student_vocab.safetensors"
    t = load_file(str(vp))
    with safe_open(str(vp), "pt") as f:
        meta = f.metadata()
    vocab = StudentVocab(json.loads(meta["verbs"]), json.loads(meta["nouns"]), json.loads(meta["roles"]), t["verb_emb"],
                         t["noun_emb"], t["role_emb"], t["verb_roles"], t["train_verbs"].bool(), 256, 128,
                         verb_emb_teacher=torch.randn(len(json.loads(meta["verbs"])), 256))  # frozen text table (values irrelevant to speed)
    cfg = StudentConfig()
    model = build_student(cfg, vocab).eval()
    paths = _images(world, a.n_images)
    base = _rss_mb()
    t_load = t_model = 0.0
    with torch.no_grad():
        for s in range(0, len(paths), a.batch):
            t0 = time.perf_counter()
            x = load_pixels(paths[s:s + a.batch], cfg.image_size)
            t1 = time.perf_counter()
            model.predict(to_input(x), k=5)
            t_model += time.perf_counter() - t1
            t_load += t1 - t0
    dt = t_load + t_model
    pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bbytes = sum(b.numel() * b.element_size() for b in model.buffers())
    return {"images": len(paths), "seconds": dt, "images_per_s": len(paths) / dt,
            "model_images_per_s": len(paths) / t_model, "peak_rss_mb": _rss_mb(),
            "rss_before_mb": base, "rss_import_mb": rss_import, "param_mb": pbytes / 2**20, "buffer_mb": bbytes / 2**20}


def child_teacher_infer(a: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from mipd_kit.rationales.store import collect, read_rationales
    from mipd_kit.app.stages.student_runs import load_teacher_kind
    torch.set_num_threads(a.threads)
    rss_import = _rss_mb()  # same imports as the student child, before any model or image
    world = Path(a.world)
    teacher = load_teacher_kind("embedded", a.world, a.cache_dir, smoke=a.smoke_teacher)
    paths = _images(world, a.n_images)
    rat = Path(a.run_dir) / "rationales.jsonl"
    pool: list[str] = []
    if rat.exists():
        for c in collect(read_rationales(rat)).values():
            pool += c["glimpse"]["positive"] + c["glimpse"]["negative"]
    if not pool:
        pool = [f"a photo of someone {v}" for v in sorted(json.loads((world / "imsitu_space.json").read_text())["verbs"])]
    base = _rss_mb()
    t0 = time.perf_counter()
    n_texts = 0
    with torch.no_grad():
        for s in range(0, len(paths), a.batch):
            ims = [Image.open(p).convert("RGB") for p in paths[s:s + a.batch]]
            img = F.normalize(teacher.encode_images(ims).pooled, dim=-1)
            # per image: its candidate rationales (5 texts) are encoded and scored: the teacher's full path
            texts = [pool[(s + i * 5 + j) % len(pool)] for i in range(len(ims)) for j in range(5)]
            txt = F.normalize(teacher.encode_texts(texts).pooled, dim=-1).view(len(ims), 5, -1)
            (txt @ img.unsqueeze(-1)).squeeze(-1).argmax(-1)
            n_texts += len(texts)
    dt = time.perf_counter() - t0
    from mipd_kit.teachers.text import minilm
    pbytes = sum(p.numel() * p.element_size() for p in teacher.parameters())
    pbytes += sum(p.numel() * p.element_size() for p in minilm().parameters())
    return {"images": len(paths), "texts": n_texts, "seconds": dt, "images_per_s": len(paths) / dt,
            "peak_rss_mb": _rss_mb(), "rss_before_mb": base, "rss_import_mb": rss_import, "param_mb": pbytes / 2**20}


def run_child(kind: str, a: argparse.Namespace) -> dict:
    args = [sys.executable, __file__, "--child", kind, "--world", a.world, "--cache-dir", a.cache_dir,
            "--run-dir", a.run_dir, "--threads", str(a.threads), "--n-images", str(a.n_images),
            "--train-steps", str(a.train_steps), "--batch", str(a.batch), "--out", a.out] + (["--smoke-teacher"] if a.smoke_teacher else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark child {kind} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("--run-dir", default="reports/latest")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--smoke-teacher", action="store_true")
    ap.add_argument("--child", default=None, choices=["train", "vocab", "student_infer", "teacher_infer"])
    a = ap.parse_args(argv)
    if a.child:
        fn = {"train": child_train, "vocab": child_vocab, "student_infer": child_student_infer, "teacher_infer": child_teacher_infer}[a.child]
        print(json.dumps(fn(a)))
        return 0
    tr = run_child("train", a)
    st_work = lambda d: d["peak_rss_mb"] - d["rss_import_mb"]  # noqa: E731
    run_child("vocab", a)
    st = run_child("student_infer", a)
    te = run_child("teacher_infer", a)
    work_ratio = st_work(te) / max(st_work(st), 1e-9)
    from mipd_kit.metrics import row, write_rows
    rows = [row("bench", "student", "train", "train", "samples_per_s", tr["samples_per_s"]),
            row("bench", "student", "train", "train", "peak_rss_mb", tr["peak_rss_mb"]),
            row("bench", "student", "test", "inference", "images_per_s", st["images_per_s"]),
            row("bench", "student", "test", "inference", "model_images_per_s", st["model_images_per_s"]),
            row("bench", "student", "test", "inference", "peak_rss_mb", st["peak_rss_mb"]),
            row("bench", "student", "test", "inference", "param_mb", st["param_mb"]),
            row("bench", "teacher_path", "test", "inference", "images_per_s", te["images_per_s"]),
            row("bench", "teacher_path", "test", "inference", "peak_rss_mb", te["peak_rss_mb"]),
            row("bench", "teacher_path", "test", "inference", "param_mb", te["param_mb"]),
            row("bench", "student_vs_teacher", "test", "inference", "speedup", st["images_per_s"] / te["images_per_s"]),
            row("bench", "student_vs_teacher", "test", "inference", "rss_ratio", te["peak_rss_mb"] / st["peak_rss_mb"]),
            row("bench", "student_vs_teacher", "test", "inference", "param_ratio", te["param_mb"] / st["param_mb"]),
            row("bench", "student_vs_teacher", "test", "inference", "working_rss_ratio", work_ratio)]
    out = Path(a.out)
    write_rows(out / "student.json", rows)
    md = [f"# Student benchmark ({a.threads} threads, {a.n_images} test images, world {a.world})", "",
          f"- training ({tr['variant']} variant, {tr['samples']} samples, 1 epoch): **{tr['samples_per_s']:.0f} samples/s**, "
          f"peak RSS {tr['peak_rss_mb']:.0f} MB, {tr['params'] / 1e6:.2f} M parameters",
          f"- student inference (decode pixels, top-5 verbs + frames): **{st['images_per_s']:.0f} images/s**, peak RSS "
          f"{st['peak_rss_mb']:.0f} MB, parameters {st['param_mb']:.2f} MB (+ {st['buffer_mb']:.2f} MB frozen text tables); "
          f"model alone (no PNG decoding) {st['model_images_per_s']:.0f} images/s",
          f"- teacher full path (teacher image encoding + {te['texts'] // max(te['images'], 1)} rationale texts per image "
          f"encoded by MiniLM and scored): **{te['images_per_s']:.0f} images/s**, peak RSS {te['peak_rss_mb']:.0f} MB, "
          f"parameters {te['param_mb']:.2f} MB",
          f"- student / teacher speed: **{st['images_per_s'] / te['images_per_s']:.1f}x**; teacher / student peak RSS: "
          f"**{te['peak_rss_mb'] / st['peak_rss_mb']:.2f}x**; parameter bytes: **{te['param_mb'] / st['param_mb']:.1f}x**",
          f"- working memory (peak RSS minus the RSS after the same imports, {st['rss_import_mb']:.0f} / "
          f"{te['rss_import_mb']:.0f} MB): student {st_work(st):.0f} MB, teacher path {st_work(te):.0f} MB: "
          f"**{work_ratio:.1f}x**. The whole-process ratio above is bounded by the interpreter + torch baseline both share.",
          "", f"Command: `python benchmarks/bench_student.py --world {a.world} --cache-dir {a.cache_dir} --run-dir {a.run_dir} "
          f"--threads {a.threads} --n-images {a.n_images}{' --smoke-teacher' if a.smoke_teacher else ''}`"]
    (out / "student.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
