"""CL-HOI's control rows on one world: the positive control of the context path, the weakly supervised baseline and
the ceiling, beside the label-free rows, with paired differences over the student seeds.

Runs only what CL-HOI needs (the world must exist: ``mipd synth --size quick``; the teacher and captioner are the run
config's, released weights by default), through the same ``run_clhoi`` the stage calls with the stage's parameters
from the run config (``configs/default.yaml``), plus ``--set`` overrides of ``CLHOIConfig`` fields. ``--split dev``
holds out ``dev_frac`` of ``hoi_train`` (choose settings there only). Writes ``OUT/controls.json`` (the table, the
differences, the descriptions' precision / recall against the truth) and ``OUT/controls.md``.

    OMP_NUM_THREADS=1 python benchmarks/clhoi_controls.py --world data/synthsitu/quick-seed0 --out /tmp/ctl \
        --cache data/cache --split dev --seeds 0 1 2 [--set w_describe=1.0] [--tag attempt-1]
    python benchmarks/clhoi_controls.py aggregate reports/clhoi-controls/test W0/controls.json W1/controls.json ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: the paired differences reported (a - b)
PAIRS = (("clhoi-oracle", "icn"), ("clhoi-oracle", "clhoi-oracle-shuffled"), ("clhoi", "icn"),
         ("clhoi", "weak-mil"), ("clhoi", "teacher_crop"), ("upper", "icn"), ("weak-mil", "icn"))


def stage_params(config: Path) -> tuple[dict, dict]:
    """The run config's ``cl_hoi`` stage parameters and its ``teacher:`` block."""
    import yaml
    d = yaml.safe_load(config.read_text())
    return dict(((d.get("stages") or {}).get("cl_hoi") or {}).get("params") or {}), dict(d.get("teacher") or {})


def aggregate(reports: Sequence[Path], out: Path) -> str:
    """One table over several worlds' ``controls.json`` (pairs: (world, student seed)): mean ± std per model and the
    paired differences of :data:`PAIRS` with their 95% paired bootstrap interval; written to ``out`` (.md, .json)."""
    from mipd_kit.metrics import paired_bootstrap, seed_stats

    per: dict[str, dict[tuple[str, str], float]] = {}
    runs, models = [], []
    for path in reports:
        r = json.loads(Path(path).read_text())
        runs.append({"world": r["world"], "split": r["split"], "sets": r["sets"], "wall_s": r["wall_s"],
                     "descriptions_vs_truth": r["descriptions_vs_truth"]})
        for key, t in r["table"].items():
            models.append(key.split("|")[0])
            for seed, v in t["seeds"].items():
                per.setdefault(key, {})[(r["world"], str(seed))] = float(v)
    models = list(dict.fromkeys(models))
    lines = [f"# CL-HOI controls over {len(reports)} world(s) ({', '.join(sorted({x['split'] for x in runs}))} split)",
             "", "| model | full mAP | unseen mAP | rare mAP | V-COCO role AP | pairs |", "|---|---|---|---|---|---|"]
    for m in models:
        cells, n = [], 0
        for s, k in (("full", "map"), ("unseen", "map"), ("rare", "map"), ("full", "role_ap")):
            v = per.get(f"{m}|{s}|{k}")
            st = seed_stats(v.values()) if v else None
            n = max(n, len(v or {}))
            cells.append(f"{st.mean:.1f} ± {st.std:.1f}" if st else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {n} |")
    diffs = {}
    lines += ["", "| difference | full mAP | unseen mAP | V-COCO role AP |", "|---|---|---|---|"]
    for a, b in PAIRS:
        cells = []
        for s, k in (("full", "map"), ("unseen", "map"), ("full", "role_ap")):
            va, vb = per.get(f"{a}|{s}|{k}"), per.get(f"{b}|{s}|{k}")
            common = sorted(set(va or {}) & set(vb or {}))
            if not common:
                cells.append("-")
                continue
            m_, lo, hi = paired_bootstrap([va[c] for c in common], [vb[c] for c in common])
            diffs[f"{a} - {b}|{s}|{k}"] = {"mean": m_, "lo": lo, "hi": hi, "n": len(common)}
            cells.append(f"{m_:+.1f} [{lo:+.1f}, {hi:+.1f}]")
        lines.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
    g_or, g_cl = diffs.get("clhoi-oracle - icn|full|map"), diffs.get("clhoi - icn|full|map")
    if g_or and g_cl and abs(g_or["mean"]) > 1e-9:
        lines += ["", f"Share of the oracle's gain over `icn` (full mAP) that `clhoi` recovers: "
                      f"{g_cl['mean'] / g_or['mean']:.0%}"]
    for r in runs:
        c = (r["descriptions_vs_truth"] or {}).get("captioner")
        if c:
            lines.append(f"- world `{r['world']}`: captioner descriptions name the true interactions with precision "
                         f"{c['precision']:.2f}, recall {c['recall']:.2f} ({int(c['images'])} images); run "
                         f"{r['wall_s']:.0f} s, sets {r['sets']}")
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"runs": runs, "differences": diffs}, indent=1))
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "aggregate":  # aggregate OUT REPORT.json ...
        print(aggregate([Path(p) for p in argv[2:]], Path(argv[1])))
        return 0
    from mipd_kit.hoi.controls import description_precision_recall
    from mipd_kit.hoi.descriptions import DESCRIBE_PROMPT, DescriptionStore, prompt_key
    from mipd_kit.hoi.config import MODELS
    from mipd_kit.hoi.world import dev_world, labelled_training_images, load_hoi_world
    from mipd_kit.app.stages.clhoi_runs import run_clhoi
    from mipd_kit.metrics import paired_bootstrap, seed_stats
    from mipd_kit.overrides import split_set
    from mipd_kit.app.stages.cl_hoi import Config
    from mipd_kit.app.stages.teacher import build

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default="data/cache")
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--split", default="dev", choices=("dev", "test"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tag", default="")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a CLHOIConfig field")
    args = ap.parse_args(list(argv) if argv is not None else None)

    params, teacher_block = stage_params(Path(args.config))
    params.update(world_dir=args.world, cache_dir=args.cache, seeds=list(args.seeds), threads=args.threads,
                  workers=args.workers, teacher_config=teacher_block)
    scfg = Config(**{k: v for k, v in params.items() if k in Config.__dataclass_fields__})
    out = Path(args.out)
    ccfg = scfg.clhoi_config(out)
    d = {**ccfg.__dict__, "models": tuple(args.models), "eval_split": args.split}
    for kv in args.set:
        k, v = split_set(kv)
        d[k] = v
    ccfg = type(ccfg).from_dict(d)
    t0 = time.time()
    teacher = build(teacher_block, args.world, args.cache)
    res = run_clhoi(ccfg, teacher=teacher, progress=True)
    wall = time.time() - t0

    per: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in res.rows:
        if r.seed is None:
            continue
        if r.metric == "map" and r.setting == "default" and r.split in ("full", "unseen", "rare"):
            per.setdefault((r.model, r.split, "map"), {})[r.seed] = r.value
        if r.metric == "role_ap" and r.setting == "scenario_1" and r.split == "full":
            per.setdefault((r.model, "full", "role_ap"), {})[r.seed] = r.value
    table = {f"{m}|{s}|{k}": {"mean": seed_stats(v.values()).mean, "std": seed_stats(v.values()).std,
                              "seeds": v} for (m, s, k), v in per.items()}
    diffs = {}
    for a, b in PAIRS:
        for split, key in (("full", "map"), ("unseen", "map"), ("full", "role_ap")):
            va, vb = per.get((a, split, key)), per.get((b, split, key))
            if not va or not vb:
                continue
            common = sorted(set(va) & set(vb))
            m, lo, hi = paired_bootstrap([va[s] for s in common], [vb[s] for s in common])
            diffs[f"{a} - {b}|{split}|{key}"] = {"mean": m, "lo": lo, "hi": hi, "n": len(common)}
    world = load_hoi_world(args.world)
    if args.split == "dev":
        world = dev_world(world, ccfg.dev_frac, ccfg.dev_seed)
    labelled = labelled_training_images(world)
    vs_truth = {}
    desc = res.info.get("descriptions") or {}
    if desc.get("describer"):
        store = DescriptionStore(out / "clhoi" / "descriptions.jsonl")
        texts = {im.filename: store.get(im.filename, desc["describer"], prompt_key(DESCRIBE_PROMPT))
                 for im in world.train}
        store.close()
        vs_truth["captioner"] = description_precision_recall({k: v for k, v in texts.items() if v}, labelled,
                                                             world.prompts)
    if "oracle" in (res.info.get("controls") or {}):
        vs_truth["oracle"] = res.info["controls"]["oracle"]["vs_truth"]
    share = None
    g_or = diffs.get("clhoi-oracle - icn|full|map")
    g_cl = diffs.get("clhoi - icn|full|map")
    if g_or and g_cl and abs(g_or["mean"]) > 1e-9:
        share = g_cl["mean"] / g_or["mean"]
    report = {"tag": args.tag, "world": Path(args.world).name, "split": args.split, "seeds": args.seeds, "sets": args.set,
              "wall_s": wall, "table": table, "differences": diffs, "descriptions_vs_truth": vs_truth,
              "captioner_share_of_oracle_gain_full": share, "controls": res.info.get("controls"),
              "descriptions": {k: v for k, v in desc.items() if k != "examples"}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "controls.json").write_text(json.dumps(report, indent=1, default=str))
    lines = [f"# CL-HOI controls {args.tag} ({args.split} split, seeds {args.seeds}, {wall:.0f} s)", "",
             f"sets: {args.set}", "", "| model | full | unseen | rare | V-COCO role AP |", "|---|---|---|---|---|"]
    for m in args.models:
        cells = []
        for s, k in (("full", "map"), ("unseen", "map"), ("rare", "map"), ("full", "role_ap")):
            t = table.get(f"{m}|{s}|{k}")
            cells.append(f"{t['mean']:.1f} ± {t['std']:.1f}" if t else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "| difference | split | mean [95% paired bootstrap] |", "|---|---|---|"]
    for k, v in diffs.items():
        name, split, key = k.split("|")
        lines.append(f"| {name} | {split} {key} | {v['mean']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}] |")
    lines += ["", f"descriptions vs truth: {json.dumps(vs_truth)}",
              f"captioner share of the oracle gain (full): {share}"]
    (out / "controls.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
