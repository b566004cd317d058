"""Calibrate the embedded testbed on premises that do not depend on the method (targets T1 and T4, half of T3).

For each frozen backbone named on the command line, on the **dev** split of a SynthSitu world:

- T1: a linear probe on the pooled image embedding (trained on the seen + rare training images, penalty chosen on a
  held-out fifth of them) reads the verb of seen dev images (target >= 75 on the default world, >= 65 on quick);
- T4: probes of the same kind read the agent's pose, its relation to the object and the drawn motion cue
  (``rendered.jsonl``; target >= 60 each), beside the majority level of each;
- T3 (backbone half): the backbone's own zero-shot verb accuracy on the dev-only unseen verbs (target <= 15 for the
  student backbone; the other half, teacher - baseline on unseen, needs a trained student: ``--run``);
- T6 (transfer probe): the teacher's zero-shot answers through the best linear map (ridge) from the backbone's
  features to the teacher's embedding, fit on the seen + rare training images: the most feature distillation could
  carry to unseen verbs; target: at least half the teacher's own unseen_dev accuracy.

With ``--run RUN_DIR`` (a run's ``predictions-dev/``): T2 (``baseline`` seen >= teacher zero-shot seen + 5), T3
(teacher - ``baseline`` on unseen_dev >= 40), T5 (<= 10% of seen dev images given an unseen verb by ``baseline``)
and the positive control (``mipd-oracle`` - ``mipd-feat`` >= +10 on unseen_dev).

Backbones: ``released:NAME`` (a released embedded model, e.g. ``released:embedded-teacher-student``),
``size:NAME[:FIELD=VALUE...]`` (``EmbeddedTeacherConfig.of_size(NAME)``, with those fields changed, trained on the
world's corpus, or loaded from ``--cache``),
``random:NAME`` (that config with its random initial weights: the floor).

    python benchmarks/calibrate_testbed.py --world data/synthsitu/default-seed0 \\
        --backbone released:embedded-teacher-default --backbone released:embedded-teacher-student \\
        --backbone random:student --out reports/bench/calibration/default-seed0

Writes ``OUT.json`` (tidy rows: task ``calibration``, model = backbone, split ``dev_seen`` / ``dev_seen_rare`` /
``unseen_dev``, setting ``probe`` | ``zero_shot``, metric ``verb`` | ``pose`` | ``relation`` | ``motion``, and the
majority levels as metric ``<name>_majority``) and ``OUT.md``; ``--record-release NAME`` also stores the rows and
the command in that release's manifest entry (``calibration``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"T1 verb probe (default world)": 75.0, "T1 verb probe (quick world)": 65.0, "T4 pose / relation / motion": 60.0,
           "T3 student-zs unseen_dev": 15.0}


def load_backbone(spec: str, world: Path, cache: Path, threads: int):
    """A frozen embedded backbone from ``released:NAME`` / ``size:NAME`` / ``random:NAME``."""
    from mipd_kit.teachers import embedded as E
    kind, _, name = spec.partition(":")
    if kind == "released":
        return E.load_released_teacher(name)
    name, *over = name.split(":")  # size:student:epochs=20 -> the config of the size with that field changed
    cfg = E.EmbeddedTeacherConfig.of_size(name)
    for kv in over:
        k, _, v = kv.partition("=")
        setattr(cfg, k, type(getattr(cfg, k))(v) if getattr(cfg, k) is not None else int(v))
    cfg.threads = threads
    if kind == "size":
        return E.load_or_train(world, cache, cfg, progress=False)
    if kind == "random":
        torch.manual_seed(cfg.seed)
        return E.EmbeddedTeacher(cfg).eval()
    raise ValueError(f"backbone {spec!r}: expected released:NAME, size:NAME or random:NAME")


def agent_labels(world: Path, images: Sequence[str]) -> dict[str, list[str]]:
    """Pose, relation and drawn motion cue of each image's (first) agent, from ``rendered.jsonl``."""
    from mipd_kit.data.synthsitu.generate import read_rendered
    rend = read_rendered(world)
    out: dict[str, list[str]] = {"pose": [], "relation": [], "motion": []}
    for i in images:
        inst = rend[f"images/{i}"]["instances"][0]
        out["pose"].append(inst["pose"])
        out["relation"].append(inst["relation"])
        out["motion"].append(inst["motion"] if inst["motion_drawn"] else "none")
    return out


@torch.no_grad()
def features(model, paths: Sequence[Path], batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, E) normalised pooled embeddings and (N, E + D) those beside the mean patch token (what the student head
    reads) of the images."""
    from mipd_kit.teachers.base import open_image
    pooled, both = [], []
    for s in range(0, len(paths), batch_size):
        e = model.encode_images([open_image(p) for p in paths[s:s + batch_size]])
        p = torch.nn.functional.normalize(e.pooled.float(), dim=-1)
        pooled.append(p)
        both.append(torch.cat([p, e.tokens.float().mean(1)], 1))
    return torch.cat(pooled), torch.cat(both)


def calibrate(spec: str, world: Path, cache: Path, threads: int, teacher=None) -> list[dict]:
    """Probe, zero-shot and (given the ``teacher``) transfer rows of one backbone on the world's dev split."""
    from mipd_kit.data.swig import load_situations
    from mipd_kit.eval.probes import linear_probe
    from mipd_kit.data.splits import load_ov_split
    from mipd_kit.teachers.zero_shot import zero_shot_verbs
    ov = load_ov_split(world)
    trainable = set(ov["seen"]) | set(ov["rare"])
    tr = {k: s for k, s in load_situations(world / "train.json").items() if s.verb in trainable}
    dv = load_situations(world / "dev.json")
    t0 = time.time()
    model = load_backbone(spec, world, cache, threads)
    tr_names, dv_names = sorted(tr), sorted(dv)
    xtr, ttr = features(model, [world / "images" / n for n in tr_names])
    xdv, tdv = features(model, [world / "images" / n for n in dv_names])
    rows = []

    def add(split: str, setting: str, metric: str, value: float) -> None:
        rows.append({"task": "calibration", "model": spec, "seed": None, "split": split, "setting": setting,
                     "metric": metric, "mean": "image", "value": round(float(value), 2)})

    seen = [i for i, n in enumerate(dv_names) if dv[n].verb in ov["seen"]]
    known = [i for i, n in enumerate(dv_names) if dv[n].verb in trainable]
    r = linear_probe(xtr, [tr[n].verb for n in tr_names], xdv[seen], [dv[dv_names[i]].verb for i in seen])
    add("dev_seen", "probe", "verb", r.accuracy)
    add("dev_seen", "probe", "verb_majority", r.majority)
    ltr, ldv = agent_labels(world, tr_names), agent_labels(world, dv_names)
    for what in ("pose", "relation", "motion"):
        r = linear_probe(xtr, ltr[what], xdv[known], [ldv[what][i] for i in known])
        add("dev_seen_rare", "probe", what, r.accuracy)
        add("dev_seen_rare", "probe", f"{what}_majority", r.majority)
        # what the student's head reads: the pooled embedding and the mean of the patch tokens
        r = linear_probe(ttr, ltr[what], tdv[known], [ldv[what][i] for i in known])
        add("dev_seen_rare", "probe_tokens", what, r.accuracy)
    _, zs = zero_shot_verbs(model, world, "dev")
    for z in zs:
        if z.mean == "image" and z.setting == "top1" and z.split in ("seen", "rare", "unseen_dev"):
            add(z.split, "zero_shot", "verb", z.value)
    if teacher is not None and teacher is not model:
        # T6: the teacher's zero-shot answers through the best linear map from these features to its embedding
        from mipd_kit.eval.probes import ridge_transfer
        from mipd_kit.data.swig import load_frame_space
        from mipd_kit.teachers.zero_shot import class_embeddings, verb_prompts
        ytr, _ = features(teacher, [world / "images" / n for n in tr_names])
        ydv, _ = features(teacher, [world / "images" / n for n in dv_names])
        names, cls = class_embeddings(teacher, verb_prompts(load_frame_space(world / "imsitu_space.json")))
        for who, emb in (("teacher", ydv), ("transfer", ridge_transfer(ttr, ytr, tdv))):
            pred = [names[i] for i in (torch.nn.functional.normalize(emb, dim=-1) @ cls.T).argmax(1).tolist()]
            for split in ("seen", "unseen_dev", "unseen_dev_compositional", "unseen_dev_novel"):
                sel = [i for i, n in enumerate(dv_names) if dv[n].verb in ov.get(split, [])]
                if sel:
                    add(split, "transfer" if who == "transfer" else "teacher_zero_shot", "verb",
                        100.0 * sum(pred[i] == dv[dv_names[i]].verb for i in sel) / len(sel))
    print(f"[calibrate] {spec}: {time.time() - t0:.1f}s", file=sys.stderr)
    return rows


def run_rows(run: Path, world: Path, teacher: str, cache: Path, threads: int) -> list[dict]:
    """T2, T3 (student half), T5 and the positive control on dev, from a run's ``predictions-dev/`` files and the
    teacher's zero-shot answers on dev: verb top-1 on seen and on dev-only unseen verbs per model (mean over its
    seeds), and the share of seen dev images whose top-1 verb is an unseen verb."""
    from mipd_kit.data.swig import load_situations
    from mipd_kit.data.splits import load_ov_split
    from mipd_kit.teachers.zero_shot import zero_shot_verbs
    ov = load_ov_split(world)
    unseen = set(ov["unseen"])
    dv = load_situations(world / "dev.json")
    seen_imgs = [i for i, s in dv.items() if s.verb in ov["seen"]]
    udev = [i for i, s in dv.items() if s.verb in ov.get("unseen_dev", [])]
    per_model: dict[str, list[dict[str, float]]] = {}
    for f in sorted((run / "predictions-dev").glob("*-seed*.json")):
        model = f.stem.rsplit("-seed", 1)[0]
        preds = json.loads(f.read_text())
        top1 = {i: (p["verbs"][0]["verb"] if p.get("verbs") else None) for i, p in preds.items()}
        acc = lambda imgs: 100.0 * sum(top1.get(i) == dv[i].verb for i in imgs) / max(1, len(imgs))  # noqa: E731
        per_model.setdefault(model, []).append({
            "seen": acc(seen_imgs), "unseen_dev": acc(udev),
            "seen_as_unseen": 100.0 * sum(top1.get(i) in unseen for i in seen_imgs) / max(1, len(seen_imgs))})
    model = load_backbone(teacher, world, cache, threads)
    _, zs = zero_shot_verbs(model, world, "dev")
    rows = [{"task": "calibration", "model": "teacher", "seed": None, "split": z.split, "setting": "zero_shot",
             "metric": "verb", "mean": "image", "value": round(float(z.value), 2)}
            for z in zs if z.mean == "image" and z.setting == "top1" and z.split in ("seen", "unseen_dev")]
    for m, runs in per_model.items():
        for k in ("seen", "unseen_dev", "seen_as_unseen"):
            vals = [r[k] for r in runs]
            rows.append({"task": "calibration", "model": m, "seed": None, "split": "dev_" + k if k != "unseen_dev"
                         else k, "setting": "top1", "metric": "verb", "mean": "image",
                         "value": round(sum(vals) / len(vals), 2), "n_seeds": len(vals)})
    return rows


def targets(rows: list[dict], t1: float = 75.0) -> list[tuple[str, str, bool]]:
    """The calibration targets T1-T5 and the positive control that ``rows`` can decide: (name, measured, met);
    ``t1``: the T1 threshold of the world (75 default, 65 quick)."""
    v = {(r["model"], r["split"], r["setting"], r["metric"]): r["value"] for r in rows}
    out = []
    student = [m for (m, *_rest) in v if "student" in m and m.startswith(("released:", "size:"))]
    for m in dict.fromkeys(student):
        p = v.get((m, "dev_seen", "probe", "verb"))
        if p is not None:
            out.append((f"T1 pooled probe, seen >= {t1:g} ({m})", f"{p:.1f}", p >= t1))
        probes = [v.get((m, "dev_seen_rare", "probe_tokens", k)) for k in ("pose", "relation", "motion")]
        if all(x is not None for x in probes):
            out.append((f"T4 pose / relation / motion probes, pooled + tokens ({m})", " / ".join(f"{x:.1f}" for x in probes),
                        min(probes) >= 60.0))
        z = v.get((m, "unseen_dev", "zero_shot", "verb"))
        if z is not None:
            out.append((f"T3 zero-shot unseen_dev <= 15 ({m})", f"{z:.1f}", z <= 15.0))
        t, tz = v.get((m, "unseen_dev", "transfer", "verb")), v.get((m, "unseen_dev", "teacher_zero_shot", "verb"))
        if t is not None and tz:
            out.append((f"T6 transfer probe keeps >= half the teacher's unseen_dev accuracy ({m})",
                        f"{t:.1f} of {tz:.1f}", t >= 0.5 * tz))
    t_seen, t_un = v.get(("teacher", "seen", "zero_shot", "verb")), v.get(("teacher", "unseen_dev", "zero_shot", "verb"))
    b_seen, b_un = v.get(("baseline", "dev_seen", "top1", "verb")), v.get(("baseline", "unseen_dev", "top1", "verb"))
    if None not in (t_seen, b_seen):
        out.append(("T2 baseline seen >= teacher seen + 5", f"{b_seen:.1f} vs {t_seen:.1f}", b_seen >= t_seen + 5))
    if None not in (t_un, b_un):
        out.append(("T3 teacher - baseline on unseen_dev >= 40", f"{t_un - b_un:+.1f}", t_un - b_un >= 40))
    s = v.get(("baseline", "dev_seen_as_unseen", "top1", "verb"))
    if s is not None:
        out.append(("T5 baseline: seen dev images predicted as an unseen verb <= 10%", f"{s:.1f}", s <= 10))
    o, f = v.get(("mipd-oracle", "unseen_dev", "top1", "verb")), v.get(("mipd-feat", "unseen_dev", "top1", "verb"))
    if None not in (o, f):
        out.append(("positive control: mipd-oracle - mipd-feat on unseen_dev >= +10", f"{o - f:+.1f}", o - f >= 10))
    return out


def markdown(rows: list[dict], world: Path, command: str) -> str:
    """The table of one calibration run: backbones as rows."""
    models = list(dict.fromkeys(r["model"] for r in rows if r["setting"] == "probe"))
    cols = [("dev_seen", "probe", "verb"), ("dev_seen_rare", "probe", "pose"), ("dev_seen_rare", "probe", "relation"),
            ("dev_seen_rare", "probe", "motion"), ("dev_seen_rare", "probe_tokens", "pose"),
            ("dev_seen_rare", "probe_tokens", "relation"), ("dev_seen_rare", "probe_tokens", "motion"),
            ("seen", "zero_shot", "verb"), ("unseen_dev", "zero_shot", "verb")]
    val = {(r["model"], r["split"], r["setting"], r["metric"]): r["value"] for r in rows}
    head = ["backbone", "verb probe (seen)", "pose probe", "relation probe", "motion probe", "pose (+tokens)",
            "relation (+tokens)", "motion (+tokens)", "zero-shot seen", "zero-shot unseen_dev"]
    out = [f"# Testbed calibration on `{world.name}` (dev split)", "", f"`{command}`", ""]
    if models:
        out += ["Frozen backbones: linear probes of the pooled embedding (majority level in brackets), of the pooled "
                "embedding beside the mean patch token (+tokens: what the student head reads), and zero-shot verb "
                "top-1.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        cells = []
        for c in cols:
            v = val.get((m, *c))
            maj = val.get((m, c[0], c[1], c[2] + "_majority"))
            cells.append("" if v is None else f"{v:.1f}" + (f" (majority {maj:.1f})" if maj is not None else ""))
        out.append(f"| `{m}` | " + " | ".join(cells) + " |")
    tr = [r for r in rows if r["setting"] in ("transfer", "teacher_zero_shot")]
    if tr:
        splits = ("seen", "unseen_dev", "unseen_dev_compositional", "unseen_dev_novel")
        out += ["", "Transfer probe (T6): the teacher's zero-shot verb top-1 on dev through the best linear map (ridge, "
                "fit on the seen + rare training images) from the backbone's features (pooled + mean token) to the "
                "teacher's embedding: what feature distillation could carry at best.", "",
                "| backbone | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        tv = {(r["model"], r["setting"], r["split"]): r["value"] for r in tr}
        for k, m in enumerate(dict.fromkeys(r["model"] for r in tr)):
            for setting, label in (("teacher_zero_shot", "the teacher itself"), ("transfer", f"`{m}` -> teacher")):
                if setting == "teacher_zero_shot" and k:
                    continue  # the teacher's own answers once
                out.append(f"| {label} | " + " | ".join(f"{tv[(m, setting, sp)]:.1f}" if (m, setting, sp) in tv else ""
                                                      for sp in splits) + " |")
    runs = [r for r in rows if r["setting"] == "top1"]
    if runs:
        out += ["", "Students of the run (dev, mean over seeds): verb top-1 on seen and on dev-only unseen verbs, and the "
                "share of seen dev images given an unseen verb.", "",
                "| model | seeds | seen | unseen_dev | seen predicted as unseen |", "|---|---|---|---|---|"]
        by = {}
        for r in runs:
            by.setdefault(r["model"], {})[r["split"]] = r
        for m, d in by.items():
            n = next(iter(d.values())).get("n_seeds", "")
            out.append(f"| `{m}` | {n} | " + " | ".join(f"{d[k]['value']:.1f}" if k in d else ""
                                                         for k in ("dev_seen", "unseen_dev", "dev_seen_as_unseen")) + " |")
    size = json.loads((world / "meta.json").read_text()).get("size") if (world / "meta.json").is_file() else None
    t = targets(rows, 65.0 if size == "quick" else 75.0)
    if t:
        out += ["", "| target | measured | met |", "|---|---|---|"] + [f"| {n} | {m} | {'yes' if ok else 'no'} |"
                                                                      for n, m, ok in t]
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True, help="SynthSitu world folder")
    ap.add_argument("--backbone", action="append", default=[], help="released:NAME | size:NAME | random:NAME")
    ap.add_argument("--run", default=None, help="a run folder: T2, T3, T5 and the positive control from its "
                    "predictions-dev/ files")
    ap.add_argument("--teacher", default="released:embedded-teacher-default",
                    help="the teacher: its zero-shot answers on dev (--run) and the target of the transfer probe (T6)")
    ap.add_argument("--cache", default="data/cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True, help="output path without suffix (.json and .md are written)")
    ap.add_argument("--record-release", default=None, help="store the rows of the released backbone of this name "
                    "in its manifest entry")
    a = ap.parse_args(args)
    torch.set_num_threads(a.threads)
    world = Path(a.world)
    command = shlex.join(["python", "benchmarks/calibrate_testbed.py", *args])
    if not a.backbone and not a.run:
        ap.error("give --backbone and/or --run")
    teacher = load_backbone(a.teacher, world, Path(a.cache), a.threads) if a.backbone else None
    rows = [r for spec in a.backbone for r in calibrate(spec, world, Path(a.cache), a.threads,
                                                        None if spec == a.teacher else teacher)]
    if a.run:
        rows += run_rows(Path(a.run), world, a.teacher, Path(a.cache), a.threads)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from mipd_kit.fileio import atomic_write_text
    atomic_write_text(out.with_suffix(".json"), json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(rows, world, command))
    print(markdown(rows, world, command))
    if a.record_release:
        from mipd_kit.weights import record_calibration
        mine = [r for r in rows if r["model"] == f"released:{a.record_release}"]
        if not mine:
            print(f"--record-release {a.record_release}: no backbone released:{a.record_release} was calibrated",
                  file=sys.stderr)
            return 2
        record_calibration(a.record_release, {"world": world.name, "command": command, "rows": mine})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
