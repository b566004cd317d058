"""The planted-signal world's rows: which settings carry rationale words to unseen verbs, and which cut kills them.

The world of ``mipd_kit.student.planted`` (three unseen verbs that differ only by an item's colour no labelled image
shows; a teacher that knows nothing): for each student seed, verb top-1 on the test images of the unseen and the
seen verbs, and their harmonic mean, for the rows of ``tests/test_planted_signal.py`` (the carrying settings: text
anchor 3, cosine distillation x30), each link cut once, the authors' distillation (L1 x2) and the rows without the
pool. Writes ``OUT.json`` and ``OUT.md``.

    python benchmarks/planted_signal.py --seeds 0 1 2 --out reports/bench/positive-control/planted-signal
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

#: (row, variant, overrides of the carrying settings, what it shows)
ROWS = (
    ("mipd-feat-unlabeled", "feat-unlabeled", {}, "the teacher's features on the pool (they know nothing)"),
    ("mipd-oracle-unlabeled", "oracle-unlabeled", {}, "the oracle's words on the pool"),
    ("cut: rationale content", "oracle-unlabeled", {"_constant": True}, "every rationale says the same thing"),
    ("cut: text in the target", "oracle-unlabeled", {"text_anchor": 0.0}, "NMPA's aligned feature alone"),
    ("cut: distillation", "oracle-unlabeled", {"w_scene": 0.0}, "the pool's targets never reach the student"),
    ("cut: verb table", "oracle-unlabeled", {"_names_only": True}, "verb table from the names only"),
    ("authors' distillation", "oracle-unlabeled", {"distill_kind": "l1", "w_scene": 2.0}, "L1 x2, the authors'"),
    ("mipd-oracle (no pool)", "oracle", {}, "the oracle's words on the labelled images only"),
    ("baseline", "baseline", {}, "labels only"),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="student seeds")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    from mipd_kit.student.config import StudentConfig
    from mipd_kit.student.data import prepare_world
    from mipd_kit.student.planted import CARRYING_SETTINGS as SETTINGS
    from mipd_kit.student.planted import constant_rationales, write_planted_world
    from mipd_kit.student.targets import with_rationales
    from mipd_kit.student.testing import hashed_text_embedder
    from mipd_kit.student.train import fit, verb_top1
    from mipd_kit.teachers import zero_shot
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    torch.set_num_threads(1)
    t0 = time.time()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        info = write_planted_world(d / "w", n_train=12, n_eval=8, n_pool=8, seed=a.world_seed)

        def world():
            return prepare_world(d / "w", d / "cache", TinyRandomTeacher(dim=256), image_size=32,
                                 embed_texts=hashed_text_embedder(), collected=info["collected"])

        base = world()
        names_only = zero_shot.verb_prompts
        for row, variant, over, what in ROWS:
            over = dict(over)
            w = base
            if over.pop("_constant", False):
                w = with_rationales(base, constant_rationales(info["collected"]), "cut")
            if over.pop("_names_only", False):
                zero_shot.verb_prompts = lambda space, templates=None: names_only(  # noqa: E731
                    space, templates=("a photo of someone {verb}.",))
                try:
                    w = world()
                finally:
                    zero_shot.verb_prompts = names_only
            for seed in a.seeds:
                cfg = dataclasses.replace(StudentConfig.smoke(variant), threads=1, seed=seed, **{**SETTINGS, **over})
                model = fit(w, cfg).model
                unseen = ~w.vocab.train_verbs[w.test.verb]
                u, s = verb_top1(model, w.test, unseen), verb_top1(model, w.test, ~unseen)
                results.append({"row": row, "what": what, "seed": seed, "unseen": round(u, 1), "seen": round(s, 1),
                                "h": round(2 * u * s / (u + s), 1) if u + s else 0.0})
                print(results[-1], flush=True)
    cmd = "python benchmarks/planted_signal.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": cmd, "settings": SETTINGS, "rows": results}, indent=1))
    lines = ["# The planted-signal world", "",
             f"`{cmd}` ({time.time() - t0:.0f} s, 1 thread). Verb top-1 (%) on the test images of the three unseen "
             "verbs (chance among them 33.3) and of the six seen verbs, mean over student seeds "
             f"{', '.join(map(str, a.seeds))} (each seed's unseen value in brackets); H: harmonic mean. Carrying "
             f"settings: {', '.join(f'{k}={v}' for k, v in SETTINGS.items())}.", "",
             "| row | what | unseen | seen | H |", "|---|---|---|---|---|"]
    for row, _, _, what in ROWS:
        rs = [r for r in results if r["row"] == row]
        per = ", ".join(f"{r['unseen']:g}" for r in rs)
        lines.append(f"| {row} | {what} | {statistics.mean(r['unseen'] for r in rs):.1f} ({per}) | "
                     f"{statistics.mean(r['seen'] for r in rs):.1f} | {statistics.mean(r['h'] for r in rs):.1f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
