"""The README's inspector screenshot, taken from a real run: notebook 08 opened in JupyterLab on a run folder and driven
in headless Chromium (Debian's ``chromium``; Playwright drives it, nothing is downloaded).

The comparison widget (``CompareInspector``: model A, model B and the ground truth on one test image, both top-5s,
the teacher's zero-shot top-5 and the training rationales of the gold and predicted verbs) is filtered to a split and
a contrast, then shot; so is the confusion browser. The run folder must hold ``predictions/`` (a run folder of
``mipd run``, not a published report, which leaves them out).

    python benchmarks/inspector_screenshot.py --run reports/<run-id> --world data/synthsitu/quick-seed0 \\
        --out reports/browser --split unseen --contrast a_right_b_wrong
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a run folder with predictions/")
    ap.add_argument("--world", required=True, help="its world folder")
    ap.add_argument("--out", default="reports/browser", help="folder of the screenshots")
    ap.add_argument("--model", default="mipd")
    ap.add_argument("--model-b", default="baseline")
    ap.add_argument("--split", default="unseen")
    ap.add_argument("--contrast", default="all")
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
                                        "contrast": a.contrast, "confusion_split": "unseen", "demo": False},
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
                    widget.scroll_into_view_if_needed()
                    time.sleep(1.0)
                    box = widget.bounding_box()  # the widget's top within a tall viewport: no page chrome over it
                    page.screenshot(path=str(out / "compare.png"),
                                    clip={"x": box["x"], "y": box["y"], "width": box["width"],
                                          "height": min(box["height"], 1300)})
                    label = page.locator(".mipd-compare-label").first.inner_text()
                    shown = widget.inner_text()
                finally:
                    browser.close()
    seen = {"two_models": f"{a.model} top-5" in shown and f"{a.model_b} top-5" in shown,
            "teacher_top5": "teacher" in shown and "zero-shot" in shown,
            "gold_verb_rationales": "gold verb" in shown}  # its training rationales, or that it has none
    (out / "compare.json").write_text(json.dumps({"run": str(a.run), "label": label, "shows": seen,
                                                  "seconds": round(time.time() - t0, 1),
                                                  "command": " ".join(["python", "benchmarks/inspector_screenshot.py",
                                                                       *(argv or sys.argv[1:])])}, indent=1) + "\n")
    print(f"{out / 'compare.png'}: {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
