"""Devices (``device: auto | cpu | cuda[:N]``) without a GPU: the resolver, and that the student, NMPA and CL-HOI put
their modules and batches on the configured device.

A CUDA-less machine has one real device, so the non-default path is exercised on PyTorch's ``meta`` device: a
module moved there and a batch gathered there (through the same ``StudentData.take`` / ``PairData.to`` /
``align_data_to`` that training uses) run the forward passes and losses with shapes only, and any tensor that the
code creates on the CPU instead of on its inputs' device raises "Tensor on device meta is not on the expected
device cpu". The training loops themselves are checked by recording what they move through
``mipd_kit.machine.to_device``. The GPU comparison of the same runs is ``tests/test_gpu.py`` (marker ``gpu``).
"""

import dataclasses

import pytest
import torch
from hoi_tinyworld import tiny_pair_data

from mipd_kit import machine
from mipd_kit.machine import resolve_device
from mipd_kit.student.testing import hashed_text_embedder, write_tiny_world
from mipd_kit.student.config import StudentConfig
from mipd_kit.student.data import prepare_world
from mipd_kit.student.evaluate import predict_swig
from mipd_kit.student.targets import attach_targets
from mipd_kit.student.train import compute_losses, fit
from mipd_kit.teachers.tiny import TinyRandomTeacher

META = torch.device("meta")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("devworld")
    info = write_tiny_world(d / "w")
    torch.set_num_threads(1)
    return prepare_world(d / "w", d / "cache", TinyRandomTeacher(), image_size=32, embed_texts=hashed_text_embedder(),
                         collected=info["collected"])


def _cfg(variant: str = "full", **kw) -> StudentConfig:
    return dataclasses.replace(StudentConfig.smoke(variant), threads=1, epochs=1, **kw)


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device(torch.device("cpu")) == CPU
    auto = resolve_device("auto")
    assert resolve_device(None) == resolve_device("") == auto
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        assert resolve_device("cuda").index is not None


def test_device_and_amp_do_not_change_identities():
    """Where a run computes is not what it is: checkpoints and stage fingerprints stay those of fp32 CPU runs."""
    from mipd_kit.teachers import TeacherConfig

    c = StudentConfig.smoke("full")
    assert dataclasses.replace(c, device="cuda:1").fingerprint() == c.fingerprint()
    assert dataclasses.replace(c, amp=True).fingerprint() != c.fingerprint()
    t = TeacherConfig()
    assert "amp" not in t.identity() and "device" not in t.identity()
    assert TeacherConfig(device="auto").identity() == t.identity() != TeacherConfig(amp=True).identity()


def test_student_forward_and_losses_follow_the_device(tiny):
    """Every loss part of the full variant on a batch gathered on another device (meta) stays there."""
    from mipd_kit.student.model import build_student

    w = tiny
    cfg = _cfg("full")
    tr, _, _ = attach_targets(w, cfg)
    model = build_student(cfg, w.vocab).to(META)
    ids = torch.nonzero(w.vocab.train_verbs).flatten()
    tmap = torch.full((len(w.vocab.verbs),), -1, dtype=torch.long)
    tmap[ids] = torch.arange(len(ids))
    b = tr.take(torch.arange(8), META)
    assert {b.x.device, b.verb.device, b.scene_t.device, b.kd.device, b.neg.device} == {META}
    parts = compute_losses(model, b, 8, cfg, tmap.to(META), ids.to(META))
    assert set(parts) >= {"verb", "noun", "box_l1", "box_giou", "box_exists", "distill_scene", "neg", "kd"}
    assert {v.device for v in parts.values()} == {META}


def test_student_fit_moves_model_and_batches(tiny, monkeypatch):
    """``fit`` sends the model and every batch through ``to_device`` to the resolved device; the trained model and
    its predictions' source tensors live there."""
    import mipd_kit.student.data as D
    import mipd_kit.student.train as T

    seen: list[tuple[str, torch.device]] = []
    real = machine.to_device

    def recording(x, device):
        seen.append((type(x).__name__, device))
        return real(x, device)

    monkeypatch.setattr(T, "to_device", recording)  # the model
    monkeypatch.setattr(D, "to_device", recording)  # the batches (StudentData.take)
    res = fit(tiny, _cfg("unlabeled", device="auto"))
    want = resolve_device("auto")
    assert ("OvGSRStudent", want) in seen
    assert sum(1 for k, _ in seen if k == "Tensor") >= 2 * 13  # at least one labelled + one unlabeled batch
    assert {d for _, d in seen} == {want}
    assert {p.device for p in res.model.parameters()} == {want}
    preds = predict_swig(res.model, tiny.test, tiny.vocab)
    assert len(preds) == len(tiny.test)


def test_cpu_device_is_the_default_path_bit_for_bit(tiny):
    """``device: cpu`` and (without CUDA) ``auto`` give exactly the default run: same seed, same thread count."""
    a = fit(tiny, _cfg("full"))
    b = fit(tiny, _cfg("full", device="cpu"))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and a.history == b.history
    if not torch.cuda.is_available():
        c = fit(tiny, _cfg("full", device="auto"))
        assert c.history == a.history
        assert all(torch.equal(sa[k], v) for k, v in c.model.state_dict().items())


def test_nmpa_forward_follows_the_device(tiny):
    from mipd_kit.align.nmpa import NMPAConfig, align_data_to, build_nmpa

    a = align_data_to(tiny.align, META)
    assert a.tokens.device == a.bank.tokens.device == a.glimpse_pos.device == META
    assert align_data_to(tiny.align, CPU) is tiny.align  # no copy on its own device
    n = build_nmpa(NMPAConfig.smoke(), tiny.align).to(META)
    scene, att = n.scene(a.tokens[:6], a.pooled[:6], a.bank, a.glimpse_pos[:6], need_weights=True)
    inst, raw = n.instances(a.tokens[:6], a.boxes[:6], a.box_exists[:6], a.bank, a.gaze_pos[:6])
    assert {scene.device, att.device, inst.device, raw.device} == {META}


def test_train_nmpa_moves_model_and_data(tiny, monkeypatch):
    from mipd_kit.align.nmpa import NMPAConfig, aligned_targets, train_nmpa

    seen: list[tuple[str, torch.device]] = []
    real = machine.to_device
    monkeypatch.setattr(machine, "to_device", lambda x, d: seen.append((type(x).__name__, d)) or real(x, d))
    model, hist = train_nmpa(tiny.align, dataclasses.replace(NMPAConfig.smoke(), epochs=1), device=CPU)
    assert ("NMPA", CPU) in seen and {d for _, d in seen} == {CPU} and hist
    assert {p.device for p in model.parameters()} == {CPU}
    tg = aligned_targets(model, tiny.align)
    assert tg["scene"].device == tg["roles"].device == CPU  # the student's data stay on the CPU


def test_clhoi_forward_and_losses_follow_the_device(tmp_path):
    from mipd_kit.hoi import losses as L
    from mipd_kit.hoi.features import normalise_spatial
    from mipd_kit.hoi.models import ModelConfig, build_student
    from mipd_kit.hoi.train import _forward

    cfg, data = tiny_pair_data(tmp_path)
    d = data.subset(torch.arange(min(6, len(data.filenames)))).to(META)
    assert {d.grid.device, d.feat_h.device, d.candidates.device, d.pair_image.device} == {META}
    model = build_student(ModelConfig(kind="clhoi", visual_dim=int(data.grid.shape[1]),
                                      text_dim=int(data.text.shape[1]), hidden=cfg.hidden,
                                      crop_dim=int(data.crops.shape[1]))).to(META)
    spatial, _, _ = normalise_spatial(d.spatial)
    out = _forward(model, d, spatial)
    assert out["context"] is not None and {v.device for v in out.values() if v is not None} == {META}
    # the distillation losses branch on their data (empty candidate sets), which the meta device cannot run: the
    # pooling they start from, the teacher description and the context term follow the device
    n = len(d.filenames)
    assert L.pool_pairs(out["pair_logits"], d.pair_image, n, cfg.pool, cfg.pool_tau).device == META
    desc = L.teacher_description(d.teacher_logits, d.text, cfg.description_temperature)
    assert L.context_distillation_loss(out["context"], desc, cfg.context_tau).device == META


def test_clhoi_train_student_moves_model_and_batches(tmp_path, monkeypatch):
    from mipd_kit.hoi.train import student_scores, train_student

    cfg, data = tiny_pair_data(tmp_path)
    seen: list[tuple[str, torch.device]] = []
    real = machine.to_device
    monkeypatch.setattr(machine, "to_device", lambda x, d: seen.append((type(x).__name__, d)) or real(x, d))
    model, norm, hist = train_student("clhoi", data, dataclasses.replace(cfg, device="cpu"), seed=0)
    assert any(k not in ("Tensor",) for k, _ in seen) and {d for _, d in seen} == {CPU}
    assert sum(1 for k, _ in seen if k == "Tensor") > 10 and len(hist.epochs) == 1
    assert {p.device for p in model.parameters()} == {CPU}
    assert student_scores(model, data, norm, cfg).device == CPU


def _square_or_fail(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative {x}")
    return x * x


def test_fork_map_keeps_job_order_whatever_the_submission_order_and_names_a_failed_job() -> None:
    from mipd_kit.machine import fork_map

    seen: list[tuple[int, int]] = []
    out = fork_map(_square_or_fail, [(1,), (2,), (3,), (4,)], 2, name=lambda i: f"job {i}", order=[3, 2, 1, 0],
                   on_result=lambda i, r: seen.append((i, r)))
    assert out == [1, 4, 9, 16] and seen == [(0, 1), (1, 4), (2, 9), (3, 16)]
    with pytest.raises(RuntimeError, match=r"job 1 failed in a worker process: ValueError: negative -2"):
        fork_map(_square_or_fail, [(1,), (-2,), (3,)], 2, name=lambda i: f"job {i}")


def _conv_in_worker(seed: int) -> tuple[int, torch.Tensor]:
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 16, 3)
    with torch.no_grad():
        return torch.get_num_threads(), conv(torch.randn(2, 3, 64, 64)) @ torch.randn(62, 62)


def _die(x: int) -> int:
    import os
    import signal
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    return x


def test_fork_map_workers_run_one_thread_after_the_parent_ran_openmp_and_a_dead_worker_is_named() -> None:
    """GNU OpenMP's thread team does not survive a fork: a forked worker that ran torch with 2 threads after this
    process had would wait for ever; fork_map runs every worker at one thread, whatever the parent's count. A worker
    killed mid-job is an error naming the job, not a wait without end."""
    from mipd_kit.machine import fork_map

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _conv_in_worker(0)  # the parent's OpenMP team is up
        got = fork_map(_conv_in_worker, [(0,), (1,)], 2, name=lambda i: f"conv {i}")
        assert [t for t, _ in got] == [1, 1] and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        for seed, (_, y) in enumerate(got):
            assert torch.allclose(y, _conv_in_worker(seed)[1], atol=1e-4)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(RuntimeError, match=r"job 1: its worker process died"):
        fork_map(_die, [(0,), (1,), (2,)], 2, name=lambda i: f"job {i}")
