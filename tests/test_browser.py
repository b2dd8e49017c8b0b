"""In a real browser: JupyterLab runs chapter 9, a latent slider moves, and the decoded image
changes.

Starts JupyterLab on 127.0.0.1 with a token, drives headless Chromium (Debian's ``chromium``;
Playwright for Python with ``executable_path``, since browsers cannot be downloaded here), runs all
cells, moves a slider of the latent explorer, and asserts that the rendered image changes and that
no widget shows an error. A screenshot is saved to ``build/browser/`` on failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = os.environ.get("VAELIB_BROWSER_NOTEBOOK", "09_latent_space.ipynb")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic"]
SCREENSHOTS = ROOT / "build" / "browser"
WIDGET_ERRORS = ["Error displaying widget", "model not found", "Failed to load model class"]

pytestmark = [
    pytest.mark.slow,  # a Jupyter server and a browser
    pytest.mark.skipif(CHROMIUM is None,
                       reason="Chromium is not installed (apt-get install chromium; "
                              ".ci/run installs it)"),
    pytest.mark.skipif(not (ROOT / "chapters" / NOTEBOOK).exists(),
                       reason=f"chapters/{NOTEBOOK} does not exist yet"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1, isolated from the user's Jupyter settings."""
    home = tmp_path_factory.mktemp("jupyter")
    work = tmp_path_factory.mktemp("chapters")
    # the run's outputs stay out of the repo
    shutil.copy(ROOT / "chapters" / NOTEBOOK, work / NOTEBOOK)
    # chapter 8's checkpoint, if it ran: chapter 9 loads it
    if (ROOT / "chapters" / "runs").is_dir():
        shutil.copytree(ROOT / "chapters" / "runs", work / "runs")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "lab"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={work}", "--allow-root",
               "--LabApp.news_url=", "--ServerApp.port_retries=0"]
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n"
                                       + (home / "lab.log").read_text())
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_latent_slider_changes_the_decoded_image(lab):
    from playwright.sync_api import sync_playwright

    url, token = lab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            try:  # JupyterLab may ask which kernel to start: take the notebook's own (python3)
                page.click(".jp-Dialog .jp-mod-accept", timeout=10_000)
            except Exception:  # noqa: BLE001 - no dialog: the kernel started by itself
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=120_000)
            page.click("text=Run", timeout=30_000)
            page.click("li[data-command='runmenu:run-all']", timeout=30_000)
            # Wait until every code cell has run: no prompt left at [*] or [ ].
            page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                    return prompts.length > 0
                        && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
                }""", timeout=480_000)
            text = page.inner_text(".jp-Notebook")
            for error in WIDGET_ERRORS:
                assert error not in text, f"a widget shows {error!r}"
            assert "Traceback" not in text, "a cell raised an error"

            explorer = page.locator(
                ".jp-OutputArea-output:has(.widget-slider):has(.widget-image)").first
            explorer.scroll_into_view_if_needed(timeout=30_000)
            image = explorer.locator(".widget-image").first
            before = image.get_attribute("src")
            handle = explorer.locator(".widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(8):
                handle.press("ArrowRight")
            page.wait_for_function(
                "([el, before]) => el.getAttribute('src') !== before",
                arg=[image.element_handle(), before], timeout=30_000)
            assert image.get_attribute("src") != before
            text = page.inner_text(".jp-Notebook")
            for error in WIDGET_ERRORS:
                assert error not in text, f"a widget shows {error!r} after the move"
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
