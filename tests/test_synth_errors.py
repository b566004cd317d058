"""SynthSitu bad input: unknown size, unwritable / non-empty folders, interrupted generation."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mipd_kit.data.records import DataError
from mipd_kit.data.synthsitu import generate as G
from mipd_kit.data.synthsitu.generate import SynthConfig, SynthError, ensure_world, generate, main, read_meta


def tiny(seed: int = 0) -> SynthConfig:
    return replace(SynthConfig.smoke(seed), n_train=80, rare_train=2, n_dev=35, n_test=35, n_unlabeled=35,
                   n_hoi_train=20, n_hoi_test=10, n_pretrain=40, workers=1)


def test_unknown_size_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SynthError, match="unknown SynthSitu size 'huge'.*smoke, quick, default, large"):
        SynthConfig.from_size("huge")
    assert main(["--out", str(tmp_path / "w"), "--size", "huge"]) == 2
    assert "unknown SynthSitu size" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_sizes_have_the_documented_scale():
    s, d = SynthConfig.from_size("smoke"), SynthConfig.from_size("default")
    assert (s.n_train, s.n_dev, s.n_test, s.n_hoi_train, s.n_hoi_test, s.n_pretrain) == (300, 100, 100, 150, 60, 1500)
    assert (d.n_train, d.n_dev, d.n_test, d.n_hoi_train, d.n_hoi_test) == (6000, 1500, 1500, 3000, 1000)
    assert d.n_pretrain >= 10000 and d.n_unlabeled == 3000
    assert SynthConfig.from_size("large").n_train > d.n_train
    q = SynthConfig.from_size("quick")  # make reproduce's world: a tenth of the default's training images
    assert (q.n_train, q.n_dev, q.n_test, q.n_unlabeled, q.n_hoi_train, q.n_hoi_test) == (600, 300, 1000, 300, 400, 300)
    assert q.rare_train == d.rare_train and q.ov_protocol == d.ov_protocol == "v2"


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SynthError, match="a_file"):
        generate(tiny(), blocker / "world")
    with pytest.raises(SynthError, match="not a folder"):
        generate(tiny(), blocker)
    assert isinstance(SynthError("x"), DataError)


def test_non_empty_folder_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "w"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty.*--overwrite"):
        generate(tiny(), out)
    with pytest.raises(SynthError, match="not part of a SynthSitu world.*notes.txt"):
        generate(tiny(), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert main(["--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_overwrite_replaces_a_world(tmp_path):
    out = tmp_path / "w"
    generate(tiny(0), out)
    first = (out / "train.json").read_bytes()
    generate(tiny(1), out, overwrite=True)
    assert read_meta(out)["seed"] == 1 and (out / "train.json").read_bytes() != first


def test_interrupted_generation_leaves_no_accepted_world(tmp_path, monkeypatch):
    out = tmp_path / "w"
    calls = {"n": 0}
    real = G._run

    def dying(tasks, fn, workers):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill during rendering")
        return real(tasks, fn, workers)

    monkeypatch.setattr(G, "_run", dying)
    with pytest.raises(KeyboardInterrupt):
        generate(tiny(), out)
    assert read_meta(out) is None
    assert not list(out.glob("*.json"))  # JSON files are only written after every image exists

    # killed while writing the JSON files: the partial file has a temporary name, meta.json is absent
    monkeypatch.setattr(G, "_run", real)
    real_write = G._write_json

    def dying_write(path, obj, indent=None):
        if path.name == "hoi_zero_shot.json":
            path.with_name(path.name + ".tmp").write_text('{"unseen_composition": [1, 2')  # half-written
            raise KeyboardInterrupt("simulated kill while writing")
        return real_write(path, obj, indent)

    monkeypatch.setattr(G, "_write_json", dying_write)
    with pytest.raises(KeyboardInterrupt):
        generate(tiny(), out, overwrite=True)
    assert read_meta(out) is None and not (out / "hoi_zero_shot.json").exists()
    for p in out.glob("*.json"):
        json.loads(p.read_text())  # every file under a final name is complete

    # ensure_world notices the incomplete world and regenerates it
    monkeypatch.setattr(G, "_write_json", real_write)
    meta, made = ensure_world(tiny(), out, verbose=False)
    assert made and read_meta(out) == meta
    meta2, made2 = ensure_world(tiny(), out, verbose=False)
    assert not made2 and meta2["config"] == meta["config"]
    _, made3 = ensure_world(tiny(seed=5), out, verbose=False)
    assert made3 and read_meta(out)["seed"] == 5


def test_cli_writes_a_world(tmp_path, capsys, monkeypatch):
    small = tiny()
    monkeypatch.setattr(G.SynthConfig, "smoke", classmethod(lambda cls, seed=0: replace(small, seed=seed)))
    from mipd_kit.app.cli import main as mipd
    assert mipd(["synth", "--out", str(tmp_path / "w"), "--seed", "3", "--size", "smoke"]) == 0
    assert "images/s" in capsys.readouterr().out
    assert read_meta(tmp_path / "w")["seed"] == 3
