"""``benchmarks/bench_gpu.py`` runs on the CPU too (tiny batch, one step), reads the real imSitu lists as data, names
the device it measured, and reads per-stage times from a run's status.json. No timing is asserted."""

import json
import sys
from pathlib import Path

import pytest

from conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_gpu  # noqa: E402
from mipd_kit.metrics import read_rows  # noqa: E402
from realshapes import read_real_frames  # noqa: E402


def _imsitu() -> Path:
    return shared_file("my89__imSitu/evaluation/verb_id.tab").parents[1]


def test_real_frame_space_from_the_imsitu_lists():
    fr = read_real_frames(_imsitu())
    assert (len(fr.verbs), len(fr.roles), len(fr.nouns)) == (504, 190, 11789)
    assert all(1 <= len(fr.frames[v]) <= 6 for v in fr.verbs) and 3 < fr.roles_per_verb < 4
    assert set(r for v in fr.verbs for r in fr.frames[v]) <= set(fr.roles)


def test_student_throughput_runs_on_cpu(tmp_path, capsys):
    code = bench_gpu.main(["--what", "student", "--imsitu-dir", str(_imsitu()), "--device", "cpu", "--batch", "2",
                           "--n-batches", "1", "--threads", "1", "--out", str(tmp_path)])
    assert code == 0
    rows = read_rows(tmp_path / "gpu.json")  # tidy rows, as the analysis stage reads every reports/bench/*.json
    got = {r.metric: r.value for r in rows if r.model == "gpu-student-swig-shapes"}
    assert all(r.task == "bench" and r.setting.endswith("(cpu)") for r in rows)
    assert got["batch"] == 2 and got["per_batch_s"] > 0 and got["samples_per_s"] > 0 and "peak_cuda_mb" not in got
    out = capsys.readouterr().out
    assert "no GPU in use" in out and "student training at SWiG shapes" in out
    assert "(cpu)" in (tmp_path / "gpu.md").read_text()


def test_stage_times_from_status(tmp_path):
    (tmp_path / "status.json").write_text(json.dumps({"stages": {"data": {"seconds": 1.5}, "teacher": {}}}))
    assert bench_gpu.stage_times(tmp_path) == {"data": 1.5, "teacher": None}


def test_refuses_cuda_without_it(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert bench_gpu.main(["--what", "student", "--imsitu-dir", str(_imsitu()), "--device", "cuda",
                           "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
