"""Opt-in CUDA checks (marker ``gpu``: ``make test-gpu`` / ``pytest -m gpu``), skipped with the reason without CUDA.

The same seeded runs on CUDA and on the CPU: a smoke student (tiny world, variant ``full``: NMPA, distillation,
negatives, logit KD) and one CL-HOI epoch. Initialisation and data order are drawn on the CPU, so both devices start
from the same weights and see the same batches; TF32 is switched off so that CUDA matmuls are fp32.

Tolerances (stated, not tuned on a GPU -- none was at hand when they were written):
- the first training step's loss: relative 1e-4 (same weights and batch; only the kernels' summation order differs);
- every later step of the 2-epoch smoke student: relative 5e-2 (float differences compound through AdamW updates);
- the CL-HOI epoch-mean losses: relative 1e-3; its test scores: absolute 1e-3 (scores are in [0, 1]);
- bf16 autocast (``amp``): every loss finite and the last epoch's mean loss below the first's (it learns), not a
  comparison with fp32.
"""

import dataclasses
import math

import pytest
import torch
from hoi_tinyworld import tiny_pair_data

from mipd_kit.student.testing import hashed_text_embedder, write_tiny_world
from mipd_kit.student.config import StudentConfig
from mipd_kit.student.data import prepare_world
from mipd_kit.student.train import fit
from mipd_kit.teachers.tiny import TinyRandomTeacher

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


@pytest.fixture(autouse=True)
def fp32_matmuls():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpuworld")
    info = write_tiny_world(d / "w")
    torch.set_num_threads(1)
    return prepare_world(d / "w", d / "cache", TinyRandomTeacher(), image_size=32, embed_texts=hashed_text_embedder(),
                         collected=info["collected"])


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-8)


def test_smoke_student_on_cuda_matches_cpu(tiny):
    cfg = dataclasses.replace(StudentConfig.smoke("full"), threads=1)
    cpu = fit(tiny, cfg)
    gpu = fit(tiny, dataclasses.replace(cfg, device="cuda"))
    assert {p.device.type for p in gpu.model.parameters()} == {"cuda"}
    lc, lg = [h["loss"] for h in cpu.history], [h["loss"] for h in gpu.history]
    assert len(lc) == len(lg) > 2
    assert _rel(lg[0], lc[0]) < 1e-4, (lg[0], lc[0])
    worst = max(_rel(g, c) for g, c in zip(lg, lc))
    assert worst < 5e-2, f"largest relative loss difference CUDA vs CPU {worst:.3g}"


def test_smoke_student_with_bf16_autocast_learns(tiny):
    cfg = dataclasses.replace(StudentConfig.smoke("full"), threads=1, device="cuda", amp=True, epochs=3)
    res = fit(tiny, cfg)
    losses = [h["loss"] for h in res.history]
    assert all(math.isfinite(x) for x in losses)
    per_epoch = [[h["loss"] for h in res.history if h["epoch"] == e] for e in range(cfg.epochs)]
    assert sum(per_epoch[-1]) / len(per_epoch[-1]) < sum(per_epoch[0]) / len(per_epoch[0])


def test_one_clhoi_epoch_on_cuda_matches_cpu(tmp_path):
    from mipd_kit.hoi.train import student_scores, train_student

    cfg, data = tiny_pair_data(tmp_path, epochs=1)
    m_c, n_c, h_c = train_student("clhoi", data, cfg, seed=0)
    m_g, n_g, h_g = train_student("clhoi", data, dataclasses.replace(cfg, device="cuda"), seed=0)
    assert {p.device.type for p in m_g.parameters()} == {"cuda"}
    for k, v in h_c.epochs[0].items():
        if k != "epoch":
            assert _rel(h_g.epochs[0][k], v) < 1e-3, (k, h_g.epochs[0][k], v)
    s_c, s_g = student_scores(m_c, data, n_c, cfg), student_scores(m_g, data, n_g, cfg)
    assert s_g.device.type == "cpu"
    torch.testing.assert_close(s_g, s_c, atol=1e-3, rtol=0)
