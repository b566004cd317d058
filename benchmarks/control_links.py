"""Where the positive control's signal is lost: each link from an oracle rationale to an unseen-verb decision, measured.

On a finished run folder whose ``rationales-oracle.jsonl`` also describes the unlabeled pool (the rationales stage
writes it with control ``oracle``), in the teacher's joint space, against the teacher's verb table (what the
student's verb head compares with):

1. **The text itself**: each image's mean positive oracle glimpse embedding, read as a zero-shot answer (the most any
   route can carry from these words).
2. **The target**: the distillation targets of the training and pool images: the raw teacher feature (``mipd-feat``),
   NMPA's aligned feature trained on the oracle rationales (the run's NMPA settings), and that feature with
   ``text_anchor`` (``mipd_kit.align.nmpa.text_anchored``); with each target's cosine to the teacher's feature.
3. **The reach**: what a head fit on the labelled (seen + rare) training images can carry to the dev images of
   dev-only unseen verbs: the best linear maps (``mipd_kit.eval.probes.ridge_transfer``) from the student
   backbone's features (pooled + mean token, what the head reads) to the teacher's feature (T6) and to the oracle
   text's embedding, and from the teacher's own feature to the oracle text.

Pool rows read the pool's ground truth (``unlabeled_gt.json``), as the ``upper`` row does: a diagnosis, never a
selection. Verb top-1, %, per verb kind.

    python benchmarks/control_links.py data/study-r12/world0 --out reports/bench/positive-control/control-links
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
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("seen", "rare", "unseen_compositional", "unseen_novel")


def zero_shot(emb: torch.Tensor, gold: Sequence[str], table: torch.Tensor, names: Sequence[str],
              kind_of: dict[str, str]) -> dict[str, float]:
    """Verb top-1 (%) of ``emb`` rows read against the verb ``table``, per verb kind of the gold verbs."""
    pred = (F.normalize(emb.float(), dim=-1) @ table.T).argmax(1).tolist()
    out = {}
    for k in KINDS:
        sel = [i for i, g in enumerate(gold) if kind_of.get(g) == k]
        if sel:
            out[k] = round(100.0 * sum(names[pred[i]] == gold[i] for i in sel) / len(sel), 1)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="a finished run folder (config.yaml, rationales-oracle.jsonl, nmpa/index.json)")
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    ap.add_argument("--anchor", type=float, default=1.0, help="text_anchor of the anchored target")
    ap.add_argument("--fidelity", type=float, nargs="*", default=[0.1, 0.0],
                    help="also NMPA trained with these fidelity weights (w_fidelity; the run's is 1)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from calibrate_testbed import features
    from mipd_kit.align.nmpa import NMPAConfig, aligned_targets, pooled_mean, text_anchored, train_nmpa
    from mipd_kit.app.stages import distillation as D
    from mipd_kit.data.splits import load_ov_split
    from mipd_kit.data.swig import load_situations
    from mipd_kit.eval.probes import ridge_transfer
    from mipd_kit.overrides import known_fields
    from mipd_kit.rationales.oracle import oracle_rationales
    from mipd_kit.rationales.store import collect, read_rationales
    from mipd_kit.student.targets import with_rationales

    t0 = time.time()
    run = Path(a.run_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    seed = int(cfg.get("seed", 0))
    p = dict(cfg["stages"]["distillation"]["params"])
    world_dir = Path(str(cfg["world_dir"]).replace("${seed}", str(seed)))
    p.update(world_dir=str(world_dir), cache_dir=cfg["cache_dir"], seed=seed, teacher_config=cfg["teacher"],
             rows=["mipd"])
    C = D.Config(**known_fields(D.Config, p))
    teacher, world = D.prepare(C, run)
    ov = load_ov_split(world_dir)
    kind_of = {v: k for k in KINDS for v in ov.get(k, [])}
    names, table = world.vocab.verbs, F.normalize(world.vocab.verb_emb_teacher.float(), dim=-1)
    w = with_rationales(world, collect(read_rationales(run / "rationales-oracle.jsonl")), "oracle")
    a_tr, a_u = w.align, w.align_unlabeled
    gold_tr = [names[i] for i in world.train.verb.tolist()]
    if world.unlabeled_gt is None or a_u is None:
        raise SystemExit(f"{world_dir}: the world has no unlabeled pool with ground truth")
    gold_u = [names[i] for i in world.unlabeled_gt.verb.tolist()]
    if not bool((a_u.glimpse_pos >= 0).any()):
        raise SystemExit(f"{run / 'rationales-oracle.jsonl'}: no oracle rationale of an unlabeled pool image (of "
                         f"{len(gold_u)}); rerun stage rationales with control 'oracle' (it also describes the pool)")
    rows: list[dict] = []

    def add(link: str, what: str, where: str, acc: dict[str, float], **extra: float) -> None:
        rows.append({"link": link, "what": what, "images": where, **acc, **extra})

    # 1. the text itself
    for where, al, gold in (("train", a_tr, gold_tr), ("pool", a_u, gold_u)):
        text, has = pooled_mean(al.bank, al.glimpse_pos)
        sel = has.nonzero().flatten().tolist()
        add("1 text", "oracle positive glimpses (mean embedding)", where,
            zero_shot(text[sel], [gold[i] for i in sel], table, names, kind_of), coverage=round(100.0 * len(sel) / len(gold), 1))
    # 2. the target
    base = json.loads((run / "nmpa" / "index.json").read_text())["base"]
    ncfg = NMPAConfig(**{**base, "seed": seed})
    model, _ = train_nmpa(a_tr, ncfg)
    others = {f: train_nmpa(a_tr, NMPAConfig(**{**base, "seed": seed, "w_fidelity": f}))[0] for f in a.fidelity}
    for where, al, gold in (("train", a_tr, gold_tr), ("pool", a_u, gold_u)):
        raw = al.pooled.float()
        aligned = aligned_targets(model, al)["scene"].float()
        anchored = text_anchored(aligned, al, a.anchor)
        targets = [("raw teacher feature (mipd-feat)", raw), ("NMPA aligned on oracle rationales", aligned),
                   *((f"NMPA aligned, w_fidelity {f:g}", aligned_targets(m, al)["scene"].float())
                     for f, m in others.items()),
                   (f"NMPA aligned + text_anchor {a.anchor:g}", anchored)]
        for what, t in targets:
            add("2 target", what, where, zero_shot(t, gold, table, names, kind_of),
                cos_teacher=round(float(F.cosine_similarity(t, raw, dim=-1).mean()), 3))
    # 3. the reach: linear maps fit on the labelled training images, applied to dev images
    tr = load_situations(world_dir / "train.json")
    dv = load_situations(world_dir / "dev.json")
    trainable = set(ov["seen"]) | set(ov["rare"])
    trn = sorted(n for n, s in tr.items() if s.verb in trainable)
    dvn = sorted(dv)
    img = lambda ns: [world_dir / "images" / n for n in ns]  # noqa: E731
    _, xtr = features(world.backbone, img(trn))
    _, xdv = features(world.backbone, img(dvn))
    ytr, _ = features(teacher, img(trn))
    ydv, _ = features(teacher, img(dvn))
    orc = collect(oracle_rationales(world_dir, {n: tr[n] for n in trn}))
    etr = F.normalize(teacher.text_embeddings([orc[n]["glimpse"]["positive"][0] for n in trn]).float(), dim=-1)
    orc_dv = collect(oracle_rationales(world_dir, dv))
    edv = F.normalize(teacher.text_embeddings([orc_dv[n]["glimpse"]["positive"][0] for n in dvn]).float(), dim=-1)
    gold_dv = [dv[n].verb for n in dvn]
    udev = set(ov.get("unseen_dev", []))
    dev_kind = {v: ("seen" if v in ov["seen"] else "rare" if v in ov["rare"] else
                    f"unseen_dev_{'compositional' if v in ov.get('unseen_compositional', []) else 'novel'}")
                for v in set(gold_dv) if v in trainable or v in udev}

    def dev_acc(e: torch.Tensor) -> dict[str, float]:
        pred = (F.normalize(e.float(), dim=-1) @ table.T).argmax(1).tolist()
        out = {}
        for k in ("seen", "unseen_dev_compositional", "unseen_dev_novel"):
            sel = [i for i, g in enumerate(gold_dv) if dev_kind.get(g) == k]
            if sel:
                out[k] = round(100.0 * sum(names[pred[i]] == gold_dv[i] for i in sel) / len(sel), 1)
        return out

    add("3 reach", "the oracle text of the dev image itself", "dev", dev_acc(edv))
    add("3 reach", "the teacher's feature of the dev image (zero-shot)", "dev", dev_acc(ydv))
    add("3 reach", "student backbone -> teacher feature (T6)", "dev", dev_acc(ridge_transfer(xtr, ytr, xdv)))
    add("3 reach", "student backbone -> oracle text", "dev", dev_acc(ridge_transfer(xtr, etr, xdv)))
    add("3 reach", "teacher feature -> oracle text", "dev", dev_acc(ridge_transfer(ytr, etr, ydv)))

    cmd = "python benchmarks/control_links.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.with_suffix(".json")).write_text(json.dumps({"command": cmd, "run": str(run), "world": str(world_dir),
                                                      "seconds": round(time.time() - t0, 1), "rows": rows}, indent=1))
    cols = ["seen", "rare", "unseen_compositional", "unseen_novel", "unseen_dev_compositional", "unseen_dev_novel"]
    lines = [f"# Where the positive control's signal is lost ({world_dir.name})", "",
             f"`{cmd}` ({time.time() - t0:.0f} s). Verb top-1 (%) against the teacher's verb table, per verb kind "
             "of the images' gold verbs; pool rows read the pool's ground truth (a diagnosis, as `upper` does).", "",
             "| link | what | images | " + " | ".join(cols) + " | cos to teacher |",
             "|---|---|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        cells = [str(r.get(c, "")) for c in cols]
        lines.append(f"| {r['link']} | {r['what']} | {r['images']} | " + " | ".join(cells) +
                     f" | {r.get('cos_teacher', '')} |")
    (out.with_suffix(".md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
