"""The README's inspector screenshot, taken from a real run: notebook 08 opened in JupyterLab on a run folder and driven
in headless Chromium (Debian's ``chromium``; Playwright drives it, nothing is downloaded).

The comparison widget (``CompareInspector``: model A, model B and the ground truth on one test image, both top-5s,
the teacher's zero-shot top-5, the training rationales of the gold and predicted verbs and the run's nearest training
images) is filtered to a split and a contrast, then shot (``compare.png``). In the confusion browser
(``ConfusionBrowser``) a cell of the unseen-verb confusion (``--cell``, default the last) is picked in its dropdown,
and its grid shot (``confusion.png``) once the line above the grid names that cell; ``compare.json`` records what both
widgets showed.
The run folder must hold ``predictions/`` (a run folder of ``mipd run``, not a published report, which leaves them
out).

    python benchmarks/inspector_screenshot.py --run reports/<run-id> --world data/synthsitu/quick-seed0 \\
        --out reports/browser --split unseen --contrast a_right_b_wrong --cell "chasing -> walking"
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, jupyterlab  # noqa: E402


def _pick_cell(page, out: Path, want: str = "") -> dict:
    """Pick cell ``want`` (``gold -> predicted``; empty or absent: the last one) in the confusion browser's dropdown,
    wait until the line above its grid names that cell, shoot the browser; returns the cell, that line and the
    grid's size in pixels (empty when the run has no confusion cell)."""
    browser = page.locator(".mipd-confusion").first
    browser.evaluate("e => e.scrollIntoView({block: 'start'})")
    select = browser.locator("select").first
    options = [o.replace("\xa0", " ") for o in select.locator("option").all_inner_texts()]  # ipywidgets: nbsp
    if not options:
        return {}
    cells = [o.rsplit(" (", 1)[0] for o in options]  # "gold -> predicted (count)"
    k = cells.index(want) if want in cells else len(cells) - 1
    select.select_option(index=k)
    cell = cells[k]
    page.wait_for_function(
        "(cell) => { const l = document.querySelector('.mipd-confusion-cases');"
        " return l && l.innerText.includes(cell + ':'); }", arg=cell, timeout=60_000)
    time.sleep(0.5)  # the grid's PNG arrives with the same state update
    grid = page.evaluate("() => { const i = document.querySelector('.mipd-confusion-grid');"
                         " return i ? [i.naturalWidth, i.naturalHeight] : null; }")
    browser.screenshot(path=str(out / "confusion.png"))
    return {"options": len(options), "cell": cell, "option": options[k],
            "cases": page.locator(".mipd-confusion-cases").first.inner_text(), "grid_px": grid}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a run folder with predictions/")
    ap.add_argument("--world", required=True, help="its world folder")
    ap.add_argument("--out", default="reports/browser", help="folder of the screenshots")
    ap.add_argument("--model", default="mipd")
    ap.add_argument("--model-b", default="baseline")
    ap.add_argument("--split", default="unseen")
    ap.add_argument("--contrast", default="all")
    ap.add_argument("--cache", default="", help="the run's feature cache (default: the one its stages used)")
    ap.add_argument("--cell", default="", help="confusion cell to pick, 'gold -> predicted' (default: the last)")
    a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is absent: apt-get install -y chromium", file=sys.stderr)
        return 2
    import papermill as pm
    from playwright.sync_api import sync_playwright

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mipd-shot-") as tmp:
        t = Path(tmp)
        nbdir = t / "lab"
        nbdir.mkdir()
        pm.execute_notebook(str(ROOT / "notebooks" / "08_inspector.ipynb"), str(nbdir / "08_inspector.ipynb"),
                            parameters={"run_dir": str(Path(a.run).resolve()), "world_dir": str(Path(a.world).resolve()),
                                        "model": a.model, "model_b": a.model_b, "split": a.split,
                                        "contrast": a.contrast, "confusion_split": "unseen", "demo": False,
                                        **({"cache_dir": str(Path(a.cache).resolve())} if a.cache else {})},
                            prepare_only=True, kernel_name="python3", progress_bar=False)
        with jupyterlab(nbdir, t) as server:
            t0 = time.time()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1500, "height": 2400})
                    page.goto(f"{server['base']}/lab/tree/08_inspector.ipynb?token={server['token']}", timeout=120_000)
                    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                    try:
                        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=8_000)
                        page.locator(".jp-Dialog .jp-mod-accept").first.click()
                    except Exception:  # noqa: BLE001 - no kernel dialog
                        pass
                    page.wait_for_function("() => document.body.innerText.includes('Idle')", timeout=120_000)
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                    page.wait_for_function(
                        "() => { const l = document.querySelector('.mipd-compare-label');"
                        " return l && l.innerText.includes('/'); }", timeout=300_000)
                    page.wait_for_selector("img.mipd-compare-image", timeout=60_000)
                    widget = page.locator(".mipd-compare").first
                    widget.evaluate("e => e.scrollIntoView({block: 'start'})")  # its top under the toolbar, even
                    # when the widget is taller than the viewport
                    time.sleep(1.0)
                    box = widget.bounding_box()  # the widget's top within a tall viewport: no page chrome over it
                    page.screenshot(path=str(out / "compare.png"),
                                    clip={"x": box["x"], "y": box["y"], "width": box["width"],
                                          "height": min(box["height"], 1300)})
                    label = page.locator(".mipd-compare-label").first.inner_text()
                    shown = widget.inner_text()
                    confusion = _pick_cell(page, out, a.cell)
                except Exception:
                    page.screenshot(path=str(out / "failure.png"), full_page=True)
                    (out / "failure.txt").write_text(page.locator("body").inner_text())
                    raise
                finally:
                    browser.close()
    seen = {"two_models": f"{a.model} top-5" in shown and f"{a.model_b} top-5" in shown,
            "teacher_top5": "teacher" in shown and "zero-shot" in shown,
            "gold_verb_rationales": "gold verb" in shown,  # its training rationales, or that it has none
            "nearest_training_images": "nearest training images (any verb;" in shown,
            "confusion_cell_grid": bool(confusion.get("grid_px")) and confusion.get("cell", "") in confusion.get(
                "cases", "!")}
    (out / "compare.json").write_text(json.dumps({"run": str(a.run), "label": label, "shows": seen,
                                                  "confusion": confusion,
                                                  "seconds": round(time.time() - t0, 1),
                                                  "command": " ".join(["python", "benchmarks/inspector_screenshot.py",
                                                                       *(argv or sys.argv[1:])])}, indent=1) + "\n")
    print(f"{out / 'compare.png'}: {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
