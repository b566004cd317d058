"""``mipd release-student``: one trained student of a finished run released in the package weights (fp16).

The released student is what ``mipd predict IMAGE`` and ``mipd export-onnx`` use without ``--checkpoint``: the
default run's ``mipd`` row (the paper's student head on the frozen embedded backbone), seed 0, as a single
self-contained ``mipd-student/2`` file (:mod:`mipd_kit.student.checkpoint`): its dev-selected weights and frozen text
tables rounded to fp16, its config and vocabulary, and the names of the frozen models it needs -- the backbone release
(``embedded-teacher-student``) whose tokens it reads and the teacher release whose text tower made its verb table
(the table itself is in the file). A student whose backbone or teacher is not a release (a saved folder, a cache path)
is refused: it would not work after install.

The manifest entry (``mipd_kit.weights``, kind ``student``) records the exact command, the run (id, config file and
hash, git commit), the world and the fingerprint of its labelled data, the student's config and fingerprint, the
names and fingerprints of the backbone and teacher releases, the training record (best epoch, seconds), the machine
the run trained on and the row's test numbers in that run. Nothing time- or path-dependent goes into the file itself
(the manifest holds the run's id and paths): releasing the same checkpoint twice gives the same bytes.

``main(argv)``: ``mipd release-student --run RUN_DIR [--model mipd] [--seed 0] [--name embedded-student-default]
[--out WEIGHTS_DIR] [--run-command CMD]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence


from ..data.records import DataError
from ..weights import ReleaseError, get_release, write_release
from .checkpoint import RELEASE, RELEASE_FILE, CheckpointFormatError, read_student_file
#: the labelled files of a world whose bytes make the student's data fingerprint
WORLD_FILES: tuple[str, ...] = ("train.json", "dev.json", "imsitu_space.json", "ov_split.json")


def world_fingerprint(world_dir: str | Path) -> str:
    """sha256 (16 hex) over the names and bytes of the world's labelled files (:data:`WORLD_FILES` present)."""
    h = hashlib.sha256()
    for f in WORLD_FILES:
        p = Path(world_dir) / f
        if p.is_file():
            h.update(f.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _release_of(desc: Optional[dict[str, Any]], kind: str, path: Path) -> str:
    """The release name a frozen-model description (``sources[kind]``) points at; ``ReleaseError`` otherwise."""
    cfg = (desc or {}).get("config") or {}
    name = cfg.get("checkpoint") if cfg.get("backend") == "checkpoint" else None
    if not name or get_release(str(name)) is None:
        raise ReleaseError(f"{path}: the student's {kind} is {cfg or desc!r}, not a weights release: a released "
                           f"student must name released frozen models (train it with weights: released / released-any)")
    return str(name)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: not found (is --run a finished run folder?)") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e


def fp16_file(src: Path, dest: Path, release: dict[str, Any]) -> None:
    """Write the student of checkpoint ``src`` as one fp16 ``mipd-student/2`` file: the dev-selected weights
    (unprefixed) and the vocabulary tensors, floating tensors rounded to fp16, integer ones kept; the metadata of
    ``src`` (format, config, fingerprint, vocabulary, sources, epoch) plus ``release`` (JSON)."""
    from safetensors.torch import save_file

    from .checkpoint import vocab_payload
    sf = read_student_file(src)
    vt, vm = vocab_payload(sf.vocab)
    tensors = {**sf.weights, **vt}
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sorted(tensors.items())}
    meta = {"format": vm["format"], "vocab": vm["vocab"], "sources": vm["sources"], "config": sf.meta["config"],
            "fingerprint": sf.fingerprint, "release": json.dumps(release, sort_keys=True)}
    if "epoch" in sf.meta:
        meta["epoch"] = sf.meta["epoch"]
    save_file(half, str(dest), metadata=meta)
    canonical_header(dest)


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys (the writer orders metadata keys at random), so that
    the same tensors and metadata always give the same bytes; the tensor data and offsets are unchanged."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header with spaces to 8-byte alignment
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n:])


def release_from_run(run_dir: str | Path, model: str = "mipd", seed: int = 0, name: str = RELEASE,
                     out: Optional[str | Path] = None, command: str = "", run_command: str = "") -> dict[str, Any]:
    """Release ``run_dir/checkpoints/<model>-seed<seed>.safetensors`` (its ``.best`` weights) as ``name``.

    Args:
        run_dir: a finished run folder (``status.json``, ``config.yaml``, ``checkpoints/``).
        model, seed: the row and student seed to release.
        name: the release name (``embedded-student-default``).
        out: the weights folder (default: ``$MIPD_WEIGHTS_DIR`` or the package's).
        command: the command line recorded in the manifest.
        run_command: how the run was made (recorded; default ``mipd run --config <the run's config>``).

    Returns:
        the manifest entry written (with ``name``).

    Raises:
        DataError: not a finished run folder, or no such checkpoint.
        CheckpointFormatError: the checkpoint is not a usable student file.
        ReleaseError: the student's backbone or teacher is not a release, the backbone found now is not the one it
            was trained on, or the weights folder would exceed its size ceiling.
    """
    from ..machine import machine_facts
    from .predict import Predictor, PredictError
    run = Path(run_dir)
    status = _read(run / "status.json")
    if status.get("stages", {}).get("distillation", {}).get("state") != "done":
        raise DataError(f"{run / 'status.json'}: the distillation stage is not done in this run")
    ckpt = run / "checkpoints" / f"{model}-seed{seed}.safetensors"
    if not ckpt.is_file():
        folder = run / "checkpoints"
        have = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
        raise DataError(f"{ckpt}: no such checkpoint in the run (checkpoints: {have or 'none'})")
    sf = read_student_file(ckpt)
    src = sf.vocab.sources
    backbone = _release_of(src.get("backbone"), "backbone", ckpt)
    teacher = _release_of(src.get("teacher"), "teacher", ckpt)
    params = status["stages"]["distillation"].get("params", {})
    world = Path(params["world_dir"]) if params.get("world_dir") else None
    env = _read(run / "environment.json") if (run / "environment.json").is_file() else {}
    curve = run / "curves" / f"{model}-seed{seed}.json"
    cur = _read(curve) if curve.is_file() else {}
    rows = _read(run / "metrics.json") if (run / "metrics.json").is_file() else []
    test = {r["split"]: r["value"] for r in rows if r.get("model") == model and r.get("seed") == seed
            and r.get("task") == "gsr" and r.get("setting") == "top1" and r.get("metric") == "verb"
            and r.get("mean") == "image"}
    cfg = json.loads(sf.meta["config"])
    bb_entry = get_release(backbone) or {}
    record = {"name": name, "model": model, "seed": seed, "backbone": backbone, "teacher": teacher}
    entry = {
        "kind": "student", "role": f"Ov-GSR student (row {model}, student seed {seed})", "dtype": "fp16",
        "size": "default", "command": command or shlex.join(["mipd", "release-student", "--run", str(run_dir),
                                                              "--model", model, "--seed", str(seed)]),
        "run": {"id": status.get("run_id"), "config": status.get("config"), "config_hash": status.get("config_hash"),
                "command": run_command or f"mipd run --config {status.get('config')}",
                "git": env.get("git"), "checkpoint": f"checkpoints/{ckpt.name}"},
        "world": world.name if world else None,
        "data_fingerprint": world_fingerprint(world) if world and world.is_dir() else None,
        "corpus_fingerprint": bb_entry.get("corpus_fingerprint"),
        "model": model, "seed": seed, "fingerprint": sf.fingerprint, "config": cfg, "training_key": cfg,
        "backbone_release": backbone, "backbone_fingerprint": (src.get("backbone") or {}).get("fingerprint"),
        "teacher_release": teacher, "teacher_fingerprint": (src.get("teacher") or {}).get("fingerprint"),
        "text_encoder": src.get("text_encoder"),
        "verb_table": "vocab.verb_emb_teacher in the file: the teacher release's text embeddings of the verb prompts",
        "training": {"best_epoch": cur.get("best_epoch"), "train_s": (cur.get("info") or {}).get("train_s"),
                     "weights_from": sf.weights_from.name},
        "machine": env.get("machine") or machine_facts(),
        "test_verb_top1": test,
    }
    with tempfile.TemporaryDirectory(prefix=".student-release-") as tmp:
        fp16_file(ckpt, Path(tmp) / RELEASE_FILE, record)
        pred = Predictor.from_checkpoint(Path(tmp) / RELEASE_FILE)  # the file loads, and its backbone is the one
        try:
            pred._frozen("backbone")
        except PredictError as e:  # another backbone under that name now, or none
            raise ReleaseError(f"{ckpt}: {e}") from e
        write_release(name, tmp, entry, out)
    return get_release(name, out) or {}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd release-student``: see the module docstring. Exit 0, or 2 with one line on a refused run."""
    p = argparse.ArgumentParser(prog="mipd release-student", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a finished run folder (e.g. reports/<run-id> of `make reproduce`)")
    p.add_argument("--model", default="mipd", help="the row to release (default mipd)")
    p.add_argument("--seed", type=int, default=0, help="the student seed (default 0)")
    p.add_argument("--name", default=RELEASE, help=f"release name (default {RELEASE})")
    p.add_argument("--out", default=None, help="weights folder (default: the package's mipd_kit/weights)")
    p.add_argument("--run-command", default="", help="how the run was made, recorded in the manifest")
    a = p.parse_args(list(argv) if argv is not None else None)
    # the command that makes this release (the weights folder is where it went; the run's command is recorded apart)
    cmd = ["mipd", "release-student", "--run", a.run, "--model", a.model, "--seed", str(a.seed)]
    cmd += ["--name", a.name] if a.name != RELEASE else []
    try:
        e = release_from_run(a.run, a.model, a.seed, a.name, a.out, shlex.join(cmd), a.run_command)
    except (DataError, CheckpointFormatError, ReleaseError) as err:
        print(f"mipd release-student: {err}", file=sys.stderr)
        return 2
    f = e["files"][RELEASE_FILE]
    print(f"released {e['name']}: {f['bytes']} bytes, sha256 {f['sha256']}; backbone {e['backbone_release']}, "
          f"teacher {e['teacher_release']}; test verb top-1 {e['test_verb_top1']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
