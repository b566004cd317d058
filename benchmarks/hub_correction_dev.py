"""Dev-split diagnostic: does centring the student's verb logits undo its collapse onto one hub verb?

The default run's students give one verb to most images (``mode_share`` rows of the analysis stage; ``mipd``: the
test-unseen verb *planting* for about 65% of test images). A standard remedy for hub classes in zero-shot
classification is to centre each class's score over a pool of images: subtract ``alpha`` times the verb's mean
logit over the **training images** (their features only: no label is read;
``mipd_kit.student.model.centre_verb_logits``, which the distillation stage applies with ``verb_centring``). This
script measures it on the **dev**
split only (seen, rare and the dev-only unseen verbs ``unseen_dev*``), for every finished student of a run folder,
with its dev-selected weights (``checkpoints/<model>-seed<k>.safetensors.best``). Test is never read.

    python benchmarks/hub_correction_dev.py --run data/runs/d1 --alphas 0 0.5 1 \
        --out reports/student-dev-sweep/hub_correction

Writes ``<out>.json`` (tidy rows: task ``gsr-dev-hub``, model ``<model>@alpha=<a>``, per seed, dev splits, metric
``verb``, plus ``mode_share`` on all dev images) and ``<out>.md`` (means over seeds, the students read).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("seen", "rare", "unseen_dev", "unseen_dev_compositional", "unseen_dev_novel")


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file

    from mipd_kit.viz.analyses import prediction_concentration
    from mipd_kit.metrics import MetricRow, write_rows
    from mipd_kit.app.stages import distillation as st
    from mipd_kit.student.model import build_student, centre_verb_logits
    from mipd_kit.student.evaluate import evaluate_predictions, predict_swig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a finished run folder (its distillation stage done)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--models", nargs="*", default=None, help="rows (default: every student with a checkpoint)")
    ap.add_argument("--threads", type=int, default=2)
    # not reports/bench: the analysis stage reads every JSON there as benchmark rows of the run
    ap.add_argument("--out", default=str(ROOT / "reports" / "student-dev-sweep" / "hub_correction"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    run = Path(a.run)
    status = json.loads((run / "status.json").read_text())
    params = dict(status["stages"]["distillation"]["params"])
    cfg = st.Config(**{k: v for k, v in params.items() if k in st.Config.__dataclass_fields__})
    t0 = time.time()
    _, world = st.prepare(cfg, run)
    shape = tuple(world.train.x.shape[1:]) if cfg.student_backbone else None
    rows: list[MetricRow] = []
    done = []
    for r in cfg.row_list():
        if r.kind != "student" or (a.models and r.model not in a.models):
            continue
        for seed in cfg.seed_list:
            best = run / "checkpoints" / f"{r.model}-seed{seed}.safetensors.best"
            if not best.is_file():
                print(f"[hub] {best} absent: skipped", file=sys.stderr)
                continue
            sc = st.student_config(cfg, r.variant, seed, None, feature_shape=shape)
            model = build_student(sc, world.vocab)
            model.load_state_dict({k: v for k, v in load_file(str(best)).items() if not k.startswith("vocab.")})
            model.eval()
            for alpha in a.alphas:
                centre_verb_logits(model, world.train.x, alpha)  # the library's centring, as the run applies it
                preds = predict_swig(model, world.dev, world.vocab)
                name = f"{r.model}@alpha={alpha:g}"
                for m in evaluate_predictions(world, preds, name, seed, split="dev"):
                    if m.metric == "verb" and m.setting == "top1" and m.mean == "image" and m.split in SPLITS:
                        rows.append(MetricRow("gsr-dev-hub", name, seed, m.split, "top1", "verb", "image", m.value))
                verb, share, _ = prediction_concentration(preds)
                rows.append(MetricRow("gsr-dev-hub", name, seed, "all", "top1", "mode_share", None, share))
                print(f"[hub] {name} seed {seed}: mode {verb} {share:.0f}%", file=sys.stderr)
            done.append(f"{r.model}-seed{seed}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_rows(out.with_suffix(".json"), rows)
    means: dict[tuple[str, str, str], list[float]] = {}
    for x in rows:
        means.setdefault((x.model, x.split, x.metric), []).append(x.value)
    cols = [*SPLITS, "mode_share"]
    names = list(dict.fromkeys(x.model for x in rows))
    lines = ["# Centring the student's verb logits: dev split only", "",
             f"Run `{run}` ({len(done)} students, dev-selected weights), `python benchmarks/hub_correction_dev.py "
             f"--run {a.run} --alphas {' '.join(f'{x:g}' for x in a.alphas)}`, {a.threads} threads, "
             f"{time.time() - t0:.0f} s. Logits minus alpha x the verb's mean logit over the training images "
             "(features only). Verb top-1 (%) per dev split, per-image mean over seeds; `mode_share`: percent of dev "
             "images given the most predicted verb. Test was not read.", "",
             "Students: " + ", ".join(done) + ".", "",
             "| row | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for n in names:
        cells = []
        for c in cols:
            v = means.get((n, "all" if c == "mode_share" else c, "mode_share" if c == "mode_share" else "verb"))
            cells.append(f"{sum(v) / len(v):.1f}" if v else "–")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"[hub] {len(rows)} rows -> {out.with_suffix('.json')}, {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
