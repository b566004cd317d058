"""Writes notebooks/06_analysis.ipynb and notebooks/08_inspector.ipynb (outputs cleared): python notebooks/build_06_08.py"""
from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1]
KS = {"name": "python3", "display_name": "Python 3", "language": "python"}


def nb(cells):
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = KS
    n.metadata["language_info"] = {"name": "python"}
    out = []
    for kind, src, *tags in cells:
        c = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = tags
        c.id = f"c{len(out):02d}"  # deterministic ids: re-building gives the same file (and stage fingerprint)
        out.append(c)
    n.cells = out
    return n


COMMON = '''run_dir: str = "../reports/nb-smoke"  # run folder (metrics.json, predictions/, figures/, ...)
world_dir: str = "../data/synthsitu/smoke-seed0"  # the SynthSitu world (or a real dataset folder)
cache_dir: str = "../data/cache"  # checkpoints and feature caches
seed: int = 0  # seeds everything in this stage
'''

analysis = nb([
    ("md", "# 06 · Analysis\n\nResults tables (teacher, baseline, MIPD, ablations by seen / rare / unseen), the "
           "rare-bias picture (per-verb accuracy against training-set size), where unseen verbs go (confusion with "
           "their nearest seen verbs), grounding quality by role and the resource comparison from the benchmarks. "
           "All logic lives in `mipd_kit.analysis`; figures are saved to `run_dir/figures/` and embedded in "
           "`run_dir/results.md`. Missing inputs are listed, not fatal."),
    ("code", COMMON + '''bench_dir: str = "../reports/bench"  # benchmark JSONs (make bench); absent -> no resource section
models: list = ["baseline", "mipd"]  # GSR models drawn in the per-verb / confusion / grounding figures
''', "parameters"),
    ("code", '''from pathlib import Path

from IPython.display import Image, Markdown, display

from mipd_kit.analysis import results_frame, run_analysis
from mipd_kit.metrics import read_rows

run = Path(run_dir)'''),
    ("code", '''res = run_analysis(run_dir, world_dir, bench_dir=bench_dir, models=models)
display(Markdown("**Absent or partial inputs:**\\n\\n" + "\\n".join(f"- {n}" for n in res.notes) if res.notes
                 else "All inputs present."))'''),
    ("md", "## Results tables\n\nTop-1 setting, per-image means (percent); the full set of tables is in `results.md`."),
    ("code", '''rows = read_rows(run / "metrics.json")
for setting in ("top1", "top5", "gt_verb"):
    table = results_frame(rows, "gsr", setting, "image")
    if len(table):
        display(Markdown(f"**GSR, {setting}**"))
        display(table)
hoi = results_frame(rows, "hoi", "default", None)
if len(hoi):
    display(Markdown("**HOI, default setting (mAP)**"))
    display(hoi)'''),
    ("md", "## Figures"),
    ("code", '''for f in res.figures:
    display(Markdown(f"**{Path(f).stem.replace('_', ' ')}** (`{f}`)"))
    display(Image(filename=str(run / f)))
print("results:", res.results_md)'''),
])

inspector = nb([
    ("md", "# 08 · Error inspector\n\nStep through the test images of a run: pick the split (seen / rare / unseen), "
           "the verb, the error type (verb wrong, noun wrong, box wrong, box missing, correct) and the sort order; "
           "the image shows the prediction and the ground truth side by side with role labels, next to the top-5 "
           "verbs and the positive / negative rationales. Data preparation: `mipd_kit.viz.cases`; widget: "
           "`mipd_kit.viz.inspector`."),
    ("code", COMMON + '''model: str = "mipd"  # predictions file run_dir/predictions/<model>-seed<seed>.json
split: str = "unseen"  # initial split filter: all | seen | rare | unseen | unseen_compositional | unseen_novel
error: str = "all"  # initial error filter: all | verb_wrong | noun_wrong | box_missing | box_wrong | correct
sort_by: str = "confidence"  # confidence | loss (highest first)
test_file: str = "test.json"  # ground truth inside world_dir (SWiG format): test.json | dev.json
image_root: str = ""  # folder the images are relative to; empty: world_dir/images (missing images -> placeholders)
demo: bool = False  # inspect a generated demo world instead of run_dir (no pipeline run needed)
demo_dir: str = "../reports/inspector-demo"  # where the demo is written
hoi_model: str = "clhoi"  # HOI predictions run_dir/predictions/hoi-<hoi_model>-seed<seed>.json; "" skips the HOI part
hoi_tag: str = "unseen"  # initial HOI filter: all | unseen | rare | seen
hoi_outcome: str = "all"  # all | correct | wrong_interaction | wrong_pair | miss | no_detection
''', "parameters"),
    ("code", '''from pathlib import Path

from mipd_kit.viz.cases import summarize
from mipd_kit.viz.inspector import open_inspector, write_demo

pred_file = Path(run_dir) / "predictions" / f"{model}-seed{seed}.json"
if not demo and not pred_file.is_file():
    print(f"{pred_file} is absent (written by 05_distillation): showing the generated demo instead")
    demo = True
if demo:
    world_dir, run_dir = (str(p) for p in write_demo(demo_dir, seed=seed))
    print("DEMO data (random perturbations of the ground truth; numbers mean nothing):", run_dir)'''),
    ("code", '''ins = open_inspector(run_dir, world_dir, model=model, seed=seed, test_file=test_file,
                     image_root=image_root or None, split=split, error=error, sort_by=sort_by)
counts = summarize(ins.cases)
print(f"{len(ins.cases)} cases; primary error per split:")
for tag, d in counts.items():
    print(f"  {tag:<22}", "  ".join(f"{k}={v}" for k, v in d.items()))'''),
    ("code", "ins"),
    ("code", '''if ins.missing_images:
    print(f"{len(ins.missing_images)} image(s) not found under the image root: drawn as placeholders")'''),
    ("md", "## HOI detections (CL-HOI)\n\nThe same for the HOI test images of the run (`07_cl_hoi`): pick the tag "
           "(unseen / rare / seen HOIs annotated in the image), the annotated HOI and the outcome of the top "
           "detection (correct; wrong interaction on an annotated pair; the annotated HOI on the wrong pair; miss; "
           "no detection); sort by score or by recall of the annotated pairs among the top-5. Left: the top-5 "
           "detections (\"ok\": matched an annotated pair, \"x\": not), right: the annotated pairs (\"ok\": "
           "found). Widget: `mipd_kit.hoi.inspector`."),
    ("code", '''from mipd_kit.hoi.inspector import open_hoi_inspector, summarize_hoi

hoi_file = Path(run_dir) / "predictions" / f"hoi-{hoi_model}-seed{seed}.json"
hoi_ins = None
if demo or not hoi_model or not hoi_file.is_file():
    print("no HOI inspector:", "the demo has no HOI part" if demo else f"{hoi_file} is absent (written by 07_cl_hoi)")
else:
    hoi_ins = open_hoi_inspector(run_dir, world_dir, model=hoi_model, seed=seed, tag=hoi_tag, outcome=hoi_outcome)
    print(f"{len(hoi_ins.cases)} HOI cases; top-1 outcome per tag:")
    for tag, counts in summarize_hoi(hoi_ins.cases).items():
        print(f"  {tag:<8}", "  ".join(f"{o}={n}" for o, n in counts.items()))'''),
    ("code", "hoi_ins"),
])

nbf.write(analysis, ROOT / "notebooks" / "06_analysis.ipynb")
nbf.write(inspector, ROOT / "notebooks" / "08_inspector.ipynb")
print("written")
