"""Build notebooks/00_data.ipynb (outputs cleared). Run: .venv/bin/python notebooks/build_00_data.py"""

from pathlib import Path

import nbformat as nbf

CELLS = [
    ("md", """# 00 · Data: the SynthSitu world

Generates (or reuses) the SynthSitu world, copies its open-vocabulary split into the run folder, shows contact sheets
with boxes and role labels per verb and split, statistics (images per verb, roles per frame, box sizes, annotator
agreement, seen / rare / unseen table, HOI and caption corpus numbers) and the two **difficulty baselines**
(`pixel_linear`, `small_cnn`) on the test split, whose rows go to `run_dir/metrics.json`."""),
    ("code_params", """run_dir: str = "../reports/nb-smoke"  # run folder (metrics.json, figures/, ov_split.json)
world_dir: str = "../data/synthsitu/smoke-seed0"  # the SynthSitu world (generated here if absent or different)
cache_dir: str = "../data/cache"  # checkpoints and feature caches (unused by this stage)
seed: int = 0  # seeds the generated world and the baselines
synth_size: str = "smoke"  # smoke | default | large
per_verb: int = 3  # examples per verb in the contact sheets
run_baselines: bool = True  # train and evaluate the two difficulty baselines
baseline_smoke: bool = True  # short baseline training (smoke); False = full settings
threads: int = 2  # torch CPU threads for the baselines"""),
    ("code", """import json, shutil, time
from pathlib import Path

import pandas as pd
from IPython.display import display

from mipd_kit.viz import world as S
from mipd_kit.data.synthsitu.generate import SynthConfig, ensure_world, read_generation_info
from mipd_kit.data.synthsitu.world import VERBS
from mipd_kit.metrics import merge_rows

run = Path(run_dir)
figures = run / "figures"
figures.mkdir(parents=True, exist_ok=True)
world = Path(world_dir)
cfg = SynthConfig.from_size(synth_size, seed)"""),
    ("md", "## Generate (or reuse) the world"),
    ("code", """t0 = time.perf_counter()
meta, generated = ensure_world(cfg, world)
print("generated now" if generated else "reused existing world (same config)", f"in {time.perf_counter() - t0:.1f} s")
shutil.copyfile(world / "ov_split.json", run / "ov_split.json")
print("generation timings (s):", read_generation_info(world).get("timings"))
pd.Series({k: v for k, v in meta["counts"].items() if not isinstance(v, dict)}, name="count").to_frame()"""),
    ("md", "## Seen / rare / unseen verbs and their primitives"),
    ("code", """display(S.summary_table(world))
S.split_table(world)"""),
    ("md", """## Contact sheets per split and verb kind
Boxes and `role: noun` labels of the first annotator; roles without a box (place) are listed under each image.
Unseen verbs have no training images by construction."""),
    ("code", """kinds = ["seen", "rare", "unseen_compositional", "unseen_novel"]
for split in ["train", "test"]:
    for kind in kinds:
        verbs = [v.name for v in VERBS if v.kind == kind]
        if split == "train" and kind.startswith("unseen"):
            continue
        sheet = S.verb_sheet(world, split, verbs, per_verb=per_verb, seed=seed)
        path = figures / f"data_sheet_{split}_{kind}.png"
        sheet.save(path)
        print(path, sheet.size)
display(S.verb_sheet(world, "test", [v.name for v in VERBS if v.kind == "unseen_novel"], per_verb=per_verb, seed=seed))"""),
    ("code", """hs = S.hoi_sheet(world, "hoi_train", n=8)
hs.save(figures / "data_sheet_hoi_train.png")
ps, caps = S.pretrain_sheet(world, n=12)
ps.save(figures / "data_sheet_pretrain.png")
display(hs); display(ps); caps[["image", "caption", "verbs", "noisy"]]"""),
    ("md", "## Statistics"),
    ("code", """import matplotlib.pyplot as plt
ipv = S.images_per_verb(world, "train")
fig, ax = plt.subplots(figsize=(10, 3))
ipv.plot.bar(ax=ax)
ax.set_ylabel("train images"); ax.set_title("images per verb (train); unseen verbs have none")
fig.tight_layout(); fig.savefig(figures / "data_images_per_verb.png", dpi=100)
fs = S.frame_statistics(world, "train")
display(fs["roles_per_frame"]); display(fs["box_sizes"]); display(fs["agreement"])
fig, ax = plt.subplots(figsize=(6, 3))
fs["boxes"].boxplot(column="rel_area", by="role", ax=ax, rot=45)
ax.set_ylabel("box area / image area"); fig.suptitle(""); fig.tight_layout()
fig.savefig(figures / "data_box_sizes.png", dpi=100)"""),
    ("code", """hoi = S.hoi_statistics(world)
print(f"{len(hoi)} HOI classes, {int(hoi.rare.sum())} rare (< 10 training instances), {int(hoi.zero_shot.sum())} zero-shot")
display(hoi.sort_values("train", ascending=False).head(10))
pd.Series(S.pretrain_statistics(world), name="pretraining corpus").to_frame()"""),
    ("md", """## Difficulty baselines (closed set, trained on seen + rare verbs)
`pixel_linear`: logistic regression on 32x32 raw pixels; `small_cnn`: a 4-layer CNN. For each ranked verb the frame
is the training prior of that verb (most frequent noun per role over the 3 annotators, mean training box per role);
neither model localises anything, and neither can name an unseen verb. The ceiling is 100 (ground truth scored as
a prediction)."""),
    ("code", """if run_baselines:
    from mipd_kit.eval.baselines import BaselineConfig, run_baselines as _run
    bcfg = BaselineConfig.smoke() if baseline_smoke else BaselineConfig()
    bcfg.seed, bcfg.threads = seed, threads
    rows, info = _run(world, bcfg, split="test", seed=seed)
    merge_rows(run / "metrics.json", rows)
    print({k: v for k, v in info.items() if k != "predictions"})
    df = pd.DataFrame([r.__dict__ for r in rows])
    sel = df[(df["mean"] == "image") & df.setting.isin(["top1", "gt_verb"])]
    display(sel.pivot_table(index=["model", "setting", "metric"], columns="split", values="value").round(1))"""),
]


def build(path: Path) -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in CELLS:
        if kind == "md":
            nb.cells.append(nbf.v4.new_markdown_cell(src))
        else:
            c = nbf.v4.new_code_cell(src)
            if kind == "code_params":
                c.metadata["tags"] = ["parameters"]
            nb.cells.append(c)
    nbf.write(nb, path)


if __name__ == "__main__":
    build(Path(__file__).with_name("00_data.ipynb"))
