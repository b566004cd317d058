"""``mipd check``: every input of a run before any stage, one line per item, exit 2 on any problem; ``mipd run``
runs it first. Against the real-smoke config with a loopback LLM server (all ok), the embedded configs (all ok),
``configs/swig_real.yaml`` on a machine without its data, weights, GPU and server (every problem named with its
remedy), and a SWiG-format world with a missing image, a split naming unknown verbs and a changed file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mipd_kit.app import check, cli
from mipd_kit.language.loopback import LoopbackServer


def dead_url() -> str:
    """An http URL on loopback where nothing listens (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def lines(capsys) -> list[str]:
    out = capsys.readouterr().out.strip().splitlines()
    return out[:-1]  # the last line is the count


def test_real_smoke_config_is_all_ok_with_its_endpoint(root: Path, tmp_path: Path, capsys) -> None:
    with LoopbackServer() as srv:
        rc = check.main(["--config", str(root / "configs" / "real_smoke.yaml"),
                         "--set", f"stages.rationales.params.generator.openai.base_url={srv.base_url}",
                         "--set", f"cache_dir={tmp_path / 'cache'}", "--set", f"world_dir={tmp_path / 'world'}"])
        posts = srv.stats["requests"]
    out = lines(capsys)
    assert rc == 0, out
    assert all(line.startswith("ok ") for line in out)
    names = {line.split()[1] for line in out}
    assert {"config", "world", "weights", "device", "llm"} <= names
    assert posts == 1  # one one-token completion for generator + judge (one endpoint, one model)
    assert any("serves 'loopback' and completes" in line for line in out)


@pytest.mark.parametrize("name", ["smoke.yaml", "default.yaml"])
def test_embedded_configs_pass_with_nothing_missing(root: Path, tmp_path: Path, name: str, capsys) -> None:
    assert check.main(["--config", str(root / "configs" / name), "--set", f"cache_dir={tmp_path}"]) == 0
    assert all(line.startswith("ok ") for line in lines(capsys))


def test_endpoint_without_the_model_is_a_problem(root: Path, tmp_path: Path, capsys) -> None:
    with LoopbackServer(models=["other-model"]) as srv:
        rc = check.main(["--config", str(root / "configs" / "real_smoke.yaml"),
                         "--set", f"stages.rationales.params.generator.openai.base_url={srv.base_url}",
                         "--set", f"cache_dir={tmp_path}"])
        assert srv.stats["requests"] == 0  # no completion is tried for a model the server does not list
    llm = [line for line in lines(capsys) if line.split()[1] == "llm"]
    assert rc == 2 and llm[0].startswith("problem") and "['other-model'], not 'loopback'" in llm[0]


def test_swig_real_on_this_machine_lists_every_missing_input(root: Path, tmp_path: Path, capsys) -> None:
    import torch
    rc = check.main(["--config", str(root / "configs" / "swig_real.yaml"), "--set", f"world_dir={tmp_path / 'w'}",
                     "--set", f"cache_dir={tmp_path / 'cache'}",
                     "--set", f"stages.rationales.params.generator.openai.base_url={dead_url()}"])
    out = lines(capsys)
    assert rc == 2
    problems = {line.split()[1] for line in out if line.startswith("problem")}
    assert {"world", "llm"} <= problems
    assert all("-- remedy: " in line for line in out if line.startswith("problem"))
    world = next(line for line in out if line.split()[1] == "world")
    assert "imsitu_space.json" in world and "ov_split.json" in world and "mipd data prepare swig" in world
    weights = [line for line in out if line.split()[1] == "weights"]
    assert len(weights) == 2  # the BLIP-2 teacher and the CLIP student backbone
    assert any("Salesforce/blip2-itm-vit-g" in line for line in weights)
    if not torch.cuda.is_available():
        assert "device" in problems
    disk = next(line for line in out if line.split()[1] == "disk")
    assert "GB (projected" in disk  # BLIP-2 257 x 1408 + CLIP 576 x 1024 fp16 tokens for SWiG's images


def test_mipd_run_checks_first_and_no_check_skips(root: Path, tmp_path: Path, capsys) -> None:
    args = ["run", "--config", str(root / "configs" / "swig_real.yaml"), "--set", f"world_dir={tmp_path / 'w'}",
            "--set", f"reports_dir={tmp_path / 'r'}", "--set", f"cache_dir={tmp_path / 'c'}",
            "--set", f"stages.rationales.params.generator.openai.base_url={dead_url()}", "--dry-run"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "problem world" in err and "--no-check" in err
    assert cli.main(args + ["--no-check"]) == 0  # the dry run plans without the inputs
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("status.json"))


def test_a_swig_world_with_a_missing_image_an_unknown_verb_and_a_changed_file(root: Path, tmp_path: Path,
                                                                              capsys) -> None:
    from mipd_kit.data.prepare import sha256_file
    from mipd_kit.student.testing import write_tiny_world

    w = tmp_path / "w"
    write_tiny_world(w, n_per_verb=2)
    base = ["--config", str(root / "configs" / "swig_real.yaml"), "--set", f"world_dir={w}",
            "--set", f"cache_dir={tmp_path / 'c'}", "--set", f"stages.rationales.params.generator.openai.base_url={dead_url()}"]
    check.main(base)
    out = {line.split()[1]: line for line in lines(capsys)}
    assert out["world"].startswith("ok ") and out["split"].startswith("ok ")
    n = sum(len(json.loads((w / f"{s}.json").read_text())) for s in ("train", "dev", "test"))
    assert "feature caches of" in out["disk"] and "not prepared" not in out["disk"]
    # a missing image, a verb the frame space does not know, a file changed since it was prepared
    first = sorted(json.loads((w / "test.json").read_text()))[0]
    (w / "images" / first).unlink()
    split = json.loads((w / "ov_split.json").read_text())
    split["seen"].append("flying")
    (w / "ov_split.json").write_text(json.dumps(split))
    (w / "prepared.json").write_text(json.dumps({"dataset": "swig", "files": {
        "train.json": sha256_file(w / "train.json"), "dev.json": "0" * 64}}))
    assert check.main(base) == 2
    out = {line.split()[1]: line for line in lines(capsys)}
    assert out["world"].startswith("problem") and f"1 of {n} images" in out["world"] and first in out["world"]
    assert out["split"].startswith("problem") and "flying" in out["split"]
    assert out["checksum"].startswith("problem") and "dev.json" in out["checksum"]
