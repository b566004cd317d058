"""Teacher feature-extraction throughput vs. the FLOP-bound ceiling, and the cache-hit speed-up.

For the embedded teacher (default config, random init: speed does not depend on the weights) and open_clip
ViT-B-32 (random weights, 224 px): FLOPs per image counted with ``torch.utils.flop_counter`` (a multiply-add
= 2 FLOPs), the machine's fp32 matmul GFLOP/s measured on a large square matmul, and

    ceiling images/s = matmul GFLOP/s / GFLOP per image,

beside the measured images/s of the model forward alone and of ``cached_image_features`` end to end (PNG decode
+ preprocessing + forward + shard write). The cache-hit re-run reads the same features back with no forward.

Usage: ``python benchmarks/bench_teacher.py [--images 512] [--clip-images 64] [--threads N] [--out reports/bench]``
Writes ``reports/bench/teacher.json`` (tidy rows, task "bench") and ``reports/bench/teacher.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mipd_kit.metrics import row, write_rows  # noqa: E402
from mipd_kit.teachers.cache import cached_image_features  # noqa: E402


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def flops_per_image(fn, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn(x)
    return fc.get_total_flops() / len(x)


def time_forward(fn, x: torch.Tensor, reps: int = 3) -> float:
    """Best-of-``reps`` images/s of ``fn`` on the preprocessed batch ``x``."""
    with torch.no_grad():
        fn(x[:2])
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t)
    return len(x) / best


def write_images(d: Path, n: int, size: int = 128) -> list[Path]:
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"b_{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def bench_model(name: str, teacher, fwd, x: torch.Tensor, paths: list[Path], cache: Path, gflops: float,
                setting: str) -> tuple[list, dict]:
    fpi = flops_per_image(fwd, x[:4])
    ips_fwd = time_forward(fwd, x)
    t = time.perf_counter()
    cached_image_features(teacher, paths, cache, f"bench-{name}", batch_size=64, progress=False)
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    cached_image_features(teacher, paths, cache, f"bench-{name}", batch_size=64, progress=False)
    t_hit = time.perf_counter() - t
    ceiling = gflops / (fpi / 1e9)
    res = {"model": name, "gflop_per_image": fpi / 1e9, "forward_images_per_s": ips_fwd,
           "extract_images_per_s": len(paths) / t_extract, "ceiling_images_per_s": ceiling,
           "fraction_of_ceiling": ips_fwd / ceiling, "cache_hit_s": t_hit, "extract_s": t_extract,
           "cache_hit_speedup": t_extract / t_hit, "n_images": len(paths)}
    rows = [row("bench", name, "teacher", setting, k, v) for k, v in res.items() if k != "model"]
    return rows, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512, help="images for the embedded teacher")
    ap.add_argument("--clip-images", type=int, default=64, help="images for open_clip ViT-B-32")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    setting = f"cpu-{threads}t"
    gflops = matmul_gflops()
    rows = [row("bench", "machine", "teacher", setting, "matmul_gflops", gflops)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_images(tmp / "imgs", max(a.images, a.clip_images))
        from mipd_kit.teachers.embedded import EmbeddedTeacher, EmbeddedTeacherConfig, preprocess
        emb = EmbeddedTeacher(EmbeddedTeacherConfig()).eval()
        x = preprocess([Image.open(p) for p in paths[:128]], emb.cfg.image_size)
        r, res = bench_model("embedded", emb, lambda b: emb.image(b), x, paths[:a.images], tmp / "cache", gflops,
                             setting)
        rows += r
        results.append(res)
        from mipd_kit.teachers.backends import TeacherConfig, build_teacher, preprocess_images
        oc = build_teacher(TeacherConfig(backend="open_clip", model="ViT-B-32", pretrained=None))
        x = preprocess_images([Image.open(p) for p in paths[:32]], oc.image_size, oc.mean, oc.std)
        r, res = bench_model("open_clip-ViT-B-32", oc, lambda b: oc.model.visual(b), x, paths[:a.clip_images],
                             tmp / "cache", gflops, setting)
        rows += r
        results.append(res)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "teacher.json", rows)
    lines = ["# Teacher feature extraction (CPU)", "",
             f"torch threads: {threads}; fp32 matmul (2048^3): **{gflops:.1f} GFLOP/s**. Ceiling = matmul GFLOP/s / "
             "model GFLOP per image (flop_counter, multiply-add = 2).", "",
             "| model | GFLOP/img | forward img/s | ceiling img/s | % of ceiling | extract img/s (decode+fwd+write) "
             "| cache-hit s | hit speed-up |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['gflop_per_image']:.3f} | {r['forward_images_per_s']:.1f} | "
                     f"{r['ceiling_images_per_s']:.1f} | {100 * r['fraction_of_ceiling']:.0f}% | "
                     f"{r['extract_images_per_s']:.1f} | {r['cache_hit_s']:.3f} | {r['cache_hit_speedup']:.0f}x |")
    lines += ["", "Command: `python benchmarks/bench_teacher.py` (machine shared with other jobs: numbers are noisy)."]
    (out / "teacher.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
