"""torchrun DDP (gloo, CPU, 2 processes) gives the single-process result up to float tolerance.

The file doubles as the worker script: ``python tests/test_student_ddp.py WORLD CACHE OUT`` trains the
``unlabeled`` variant (every loss term active) and rank 0 writes the final weights to OUT.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _worker(world: str, cache: str, out: str) -> None:
    import dataclasses
    import json

    from safetensors.torch import save_file

    from mipd_kit.student.testing import hashed_text_embedder
    from mipd_kit.student.config import StudentConfig
    from mipd_kit.student.data import prepare_world
    from mipd_kit.student.distributed import init_distributed
    from mipd_kit.student.train import fit
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    torch.set_num_threads(1)
    init_distributed()
    collected = json.loads((Path(world) / "collected.json").read_text())
    w = prepare_world(world, cache, TinyRandomTeacher(), image_size=32, embed_texts=hashed_text_embedder(),
                      collected=collected)
    cfg = dataclasses.replace(StudentConfig.smoke("unlabeled"), epochs=2, batch_size=8, threads=1)
    res = fit(w, cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({k: v.contiguous() for k, v in res.model.state_dict().items()}, out)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    import json

    from safetensors.torch import load_file

    from mipd_kit.student.testing import hashed_text_embedder, write_tiny_world
    from mipd_kit.student.data import prepare_world
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    info = write_tiny_world(tmp_path / "w")
    (tmp_path / "w" / "collected.json").write_text(json.dumps(info["collected"]))
    # fill the feature caches once, so the ranks only read them
    prepare_world(tmp_path / "w", tmp_path / "cache", TinyRandomTeacher(), 32, hashed_text_embedder(),
                  collected=info["collected"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    args = [str(tmp_path / "w"), str(tmp_path / "cache")]
    one = subprocess.run([sys.executable, __file__, *args, str(tmp_path / "one.safetensors")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          __file__, *args, str(tmp_path / "two.safetensors")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        x, y = a[k], b[k]
        if k.endswith("in_proj_bias"):
            # the key bias of attention has an exactly-zero gradient (softmax is shift invariant per query), so
            # Adam turns float rounding noise into steps of ~lr/100 there; it cannot change any output: skip it
            d = x.numel() // 3
            x, y = torch.cat([x[:d], x[2 * d:]]), torch.cat([y[:d], y[2 * d:]])
        # Adam divides each gradient by its running RMS, so an element whose gradient is near zero moves by up to
        # ~lr per step on float summation noise alone (the 2-process sum runs in another order). Seen on a few conv
        # weights (<0.5% of a tensor, |diff| <= 5e-4 at lr 1e-3; one batch-norm statistic follows) for some seeds and
        # not others. The bulk must agree tightly (at most 0.5% of a tensor, or one element, outside the old
        # tolerance), the rare outlier within two Adam steps.
        d = (x - y).abs()
        close = d <= 1e-4 + 1e-3 * y.abs()
        assert int((~close).sum()) <= max(1, d.numel() // 200), (k, int((~close).sum()), d.max())
        assert float(d.max()) <= 2e-3, (k, d.max())
        moved += 1
    assert moved > 10


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
