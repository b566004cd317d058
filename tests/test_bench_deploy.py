"""The deploy benchmark's report (rows, table, figure) from given measurements: failures are shown with their reason,
the rows are tidy, nothing is timed here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_deploy  # noqa: E402
from mipd_kit.metrics import read_rows, write_rows  # noqa: E402

RESULTS = [
    {"path": "student-torch", "batch": 1, "images_per_s": 40.0, "ms_per_batch": 25.0, "peak_rss_delta_mb": 30.0,
     "peak_rss_mb": 540.0},
    {"path": "student-compile", "batch": 1, "error": "InductorError: no C++ compiler"},
    {"path": "student-onnxruntime", "batch": 1, "images_per_s": 80.0, "ms_per_batch": 12.5, "peak_rss_delta_mb": 55.0,
     "peak_rss_mb": 570.0},
    {"path": "teacher_path", "batch": 1, "images_per_s": 20.0, "ms_per_batch": 50.0, "peak_rss_delta_mb": 60.0,
     "peak_rss_mb": 580.0},
]
INFO = {"random_weights": True, "checkpoint": "x", "backbone": "cnn", "image_size": 64, "width": 96, "d_model": 128,
        "verbs": 35, "nouns": 134, "params": 580000, "param_mb": 2.2, "buffer_mb": 0.3, "onnx_mb": 2.4,
        "teacher": "image 64x64", "teacher_image_mb": 1.7}


def test_rows_table_and_figure(tmp_path):
    rows = bench_deploy.rows_of(RESULTS)
    write_rows(tmp_path / "deploy.json", rows)
    back = read_rows(tmp_path / "deploy.json")
    assert {r.model for r in back} == {"student-torch", "student-onnxruntime", "teacher_path"}  # no row for a failure
    assert all(r.task == "bench" and r.setting == "cpu-batch1" for r in back)
    a = argparse.Namespace(world="w", teacher="random-default", loaded=True)
    md = bench_deploy.markdown(a, INFO, RESULTS, "a test machine", ["--threads", "1"])
    assert "failed: InductorError: no C++ compiler" in md
    assert "student (torch eager) / teacher path speed **2.00x**" in md
    assert "shared with other jobs" in md
    bench_deploy.figure(RESULTS, tmp_path / "deploy.png")
    assert (tmp_path / "deploy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
