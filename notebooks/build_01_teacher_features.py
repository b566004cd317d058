"""Builds notebooks/01_teacher_features.ipynb (outputs cleared). Run from the repository root."""
import nbformat as nbf
nb = nbf.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
md = lambda s: nbf.v4.new_markdown_cell(s)
code = lambda s, **kw: nbf.v4.new_code_cell(s, **kw)
cells = [
md("""# 01 · Teacher features

Trains (or loads, by config + data fingerprint) the **embedded teacher**: a small image tower trained CLIP-style
against the frozen real all-MiniLM-L6-v2 on the world's *pretraining captions only*. Reports its training curve and
wall time, its **zero-shot** verb accuracy on the GSR test split by seen / rare / unseen (and unseen kinds), writes
`teacher` rows to `run_dir/metrics.json` and `run_dir/teacher_evidence.json`, and caches the teacher features of
the world's train / dev / test / unlabeled images (`mipd_kit.teachers.cache`)."""),
code("""run_dir: str = "../reports/nb-smoke"  # run folder (metrics.json, figures/, ...)
world_dir: str = "../data/synthsitu/smoke-seed0"  # the SynthSitu world (or a real dataset folder)
cache_dir: str = "../data/cache"  # checkpoints and feature caches
seed: int = 0  # seeds everything in this stage
teacher_smoke: bool = True  # True: EmbeddedTeacherConfig.smoke() (seconds); False: the default config (minutes)
teacher_epochs: int = 0  # override the number of epochs of the config (0 keeps it)
teacher_max_pairs: int = 0  # override the number of pretraining pairs used (0 keeps the config value)
teacher_threads: int = 0  # torch threads while training (0 leaves the torch default)
eval_split: str = "test"  # GSR split for zero-shot evaluation
extract_features: bool = True  # cache teacher features of train/dev/test/unlabeled images
feature_batch_size: int = 64  # images per forward when extracting features""", metadata={"tags": ["parameters"]}),
code("""import json, time
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import display

from mipd_kit.metrics import merge_rows
from mipd_kit.teachers import embedded as E
from mipd_kit.teachers.cache import cache_world_features, cached_text_features

run = Path(run_dir); figures = run / "figures"; figures.mkdir(parents=True, exist_ok=True)
cfg = E.EmbeddedTeacherConfig.smoke() if teacher_smoke else E.EmbeddedTeacherConfig()
cfg.seed = seed
cfg.threads = teacher_threads
if teacher_epochs > 0:
    cfg.epochs = teacher_epochs
if teacher_max_pairs > 0:
    cfg.max_pairs = teacher_max_pairs
cfg"""),
md("## Train or load the teacher"),
code("""t0 = time.time()
teacher = E.load_or_train(world_dir, cache_dir, cfg)
info = teacher.info
print(f"{'loaded' if teacher.loaded_from_cache else 'trained'} {teacher.checkpoint_dir} in {time.time() - t0:.1f}s;",
      f"training wall time {info['wall_time_s']:.1f}s on {info['n_pairs']} pairs ({info['n_unique_captions']} distinct captions);",
      f"fingerprint {teacher.fingerprint}")"""),
code("""hist = info["history"]
fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
ax[0].plot([h["step"] for h in hist], [h["loss"] for h in hist], lw=0.8)
ax[0].set(xlabel="step", ylabel="contrastive loss", title=f"teacher pretraining ({info['wall_time_s']:.0f}s)")
ax[1].plot([h["step"] for h in hist], [h["temperature"] for h in hist])
ax[1].set(xlabel="step", ylabel="temperature", title="learned temperature")
fig.tight_layout(); fig.savefig(figures / "teacher_training.png", dpi=120); plt.show()"""),
md("## Zero-shot verb recognition (prompts from the frame space: abstract + definition)"),
code("""preds, rows = E.zero_shot_verbs(teacher, world_dir, eval_split, seed=seed)
merge_rows(run / "metrics.json", rows)
table = E.zero_shot_table(rows)
display(table)"""),
code("""img = table["image"]
fig, ax = plt.subplots(figsize=(7, 3))
x = range(len(img))
ax.bar([i - 0.2 for i in x], img["top1"], width=0.4, label="top-1")
ax.bar([i + 0.2 for i in x], img["top5"], width=0.4, label="top-5")
ax.set_xticks(list(x)); ax.set_xticklabels(img.index, rotation=20)
ax.set(ylabel="verb accuracy (%)", title=f"teacher zero-shot verbs ({eval_split})"); ax.legend()
fig.tight_layout(); fig.savefig(figures / "teacher_zero_shot.png", dpi=120); plt.show()"""),
md("## Teacher evidence for the rationale generator (top verbs, role nouns on box crops)"),
code("""evidence = E.teacher_evidence(teacher, world_dir, run / "teacher_evidence.json")
first = sorted(evidence)[0]
print(len(evidence), "train images;", first, json.dumps(evidence[first])[:400])"""),
md("## Feature cache"),
code("""if extract_features:
    t0 = time.time()
    feats = cache_world_features(teacher, world_dir, cache_dir, batch_size=feature_batch_size)
    for split, enc in feats.items():
        print(f"{split:<10} tokens {tuple(enc.tokens.shape)}  pooled {tuple(enc.pooled.shape)}")
    space = E.load_frame_space(Path(world_dir) / "imsitu_space.json")
    prompts = [p for ps in E.verb_prompts(space).values() for p in ps]
    txt = cached_text_features(teacher, prompts, cache_dir, dataset="verb-prompts")
    print(f"verb prompts: tokens {tuple(txt.tokens.shape)}; features cached in {time.time() - t0:.1f}s")"""),
]
nb.cells = cells
nbf.write(nb, "notebooks/01_teacher_features.ipynb")
