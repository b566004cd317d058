"""Real-browser test of the widget inspector: JupyterLab on loopback + headless Debian Chromium via Playwright.

Opens ``notebooks/08_inspector.ipynb`` (parameterised with papermill to read a generated demo run), runs all
cells, changes the error filter in the widget, waits for the widget to redraw, and saves a screenshot to the test's
temporary folder (``MIPD_BROWSER_SHOTS=DIR`` keeps ``inspector.png``, ``inspector_widget.png`` and ``timing.json``
in ``DIR``; a test never writes into the checkout). Never downloads a browser: it
skips when ``/usr/bin/chromium`` (Debian's ``chromium`` package) is absent. Run with ``make test-browser``
(``pytest -m browser``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("MIPD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer at {url} within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture()
def lab(root: Path, tmp_path: Path):
    """A parameterised copy of the inspector notebook and a JupyterLab server on loopback serving it."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright python package is not installed")
    import papermill as pm

    from mipd_kit.viz.inspector import write_demo

    world, run = write_demo(tmp_path / "demo", seed=0)
    nbdir = tmp_path / "lab"
    nbdir.mkdir()
    pm.execute_notebook(str(root / "notebooks" / "08_inspector.ipynb"), str(nbdir / "08_inspector.ipynb"),
                        parameters={"run_dir": str(run), "world_dir": str(world), "model": "mipd", "split": "all",
                                    "error": "all", "demo": False},
                        prepare_only=True, kernel_name="python3", progress_bar=False)
    with jupyterlab(nbdir, tmp_path) as server:
        yield {"url": f"{server['base']}/lab/tree/08_inspector.ipynb?token={server['token']}", **server}


@contextlib.contextmanager
def jupyterlab(nbdir: Path, tmp: Path):
    """A JupyterLab server on loopback serving ``nbdir``, its settings, workspaces and runtime files under ``tmp``:
    every cell rendered (no virtual scrolling that leaves a widget out of the DOM), no news pop-up.
    Yields ``{"base": http://127.0.0.1:PORT, "token", "port", "log"}``."""
    settings = tmp / "settings"
    for rel, value in (("@jupyterlab/notebook-extension/tracker.jupyterlab-settings", {"windowingMode": "none"}),
                       ("@jupyterlab/apputils-extension/notification.jupyterlab-settings", {"fetchNews": "false"})):
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "jcfg"), JUPYTER_RUNTIME_DIR=str(tmp / "jrt"),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", "--ServerApp.open_browser=False", f"--ServerApp.root_dir={nbdir}",
           f"--LabApp.workspaces_dir={tmp / 'ws'}", f"--LabApp.user_settings_dir={settings}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "lab.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=nbdir)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield {"base": f"http://127.0.0.1:{port}", "token": token, "port": port, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_inspector_in_jupyterlab(root: Path, lab, tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    t0 = time.time()
    out_dir = Path(os.environ.get("MIPD_BROWSER_SHOTS") or tmp_path / "browser")
    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(lab["url"], timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # a "Select Kernel" dialog may come up: accept the proposed kernel (python3 of the venv)
            try:
                page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=8_000)
                page.locator(".jp-Dialog .jp-mod-accept").first.click()
            except PlaywrightTimeout:
                pass
            page.wait_for_function("() => document.body.innerText.includes('Idle')", timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            img = page.wait_for_selector("img.mipd-inspector-image", timeout=90_000)
            label = page.locator(".mipd-inspector-label")
            page.wait_for_function(
                "() => { const l = document.querySelector('.mipd-inspector-label');"
                " return l && l.innerText.includes('case 1/'); }", timeout=120_000)
            before = label.inner_text()
            src_before = img.get_attribute("src")
            # change a filter: the error dropdown ("error" description) -> verb_wrong
            select = page.locator(".mipd-inspector .widget-dropdown", has_text="error").locator("select")
            select.select_option("verb_wrong")
            page.wait_for_function(
                "(old) => { const l = document.querySelector('.mipd-inspector-label');"
                " return l && l.innerText !== old && l.innerText.includes('verb_wrong'); }",
                arg=before, timeout=120_000)
            after = label.inner_text()
            img = page.wait_for_selector("img.mipd-inspector-image", timeout=30_000)
            src_after = img.get_attribute("src")
            box = img.bounding_box()
            widget = page.locator(".mipd-inspector").first
            widget.scroll_into_view_if_needed()
            page.screenshot(path=str(out_dir / "inspector.png"), full_page=False)
            widget.screenshot(path=str(out_dir / "inspector_widget.png"))
            natural = page.evaluate("() => { const i = document.querySelector('img.mipd-inspector-image');"
                                    " return [i.naturalWidth, i.naturalHeight]; }")
        except Exception:
            page.screenshot(path=str(out_dir / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    seconds = time.time() - t0
    (out_dir / "timing.json").write_text(json.dumps({"test_inspector_in_jupyterlab_s": round(seconds, 1)}) + "\n")
    print(f"browser test: {seconds:.1f}s (JupyterLab start excluded), screenshot {out_dir / 'inspector.png'}")
    assert after != before and "verb_wrong" in after and "error verb_wrong" in after
    assert src_before and src_after  # blob URLs of the PNG
    assert box is not None and box["width"] > 300 and box["height"] > 200
    assert natural[0] >= 768 and natural[1] >= 384  # two panels of >= 384 px
    assert (out_dir / "inspector.png").stat().st_size > 10_000
