"""Playwright driving Debian's chromium (Playwright's own browser download does not work here)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_process(port: int | None = None, env: dict[str, str] | None = None, extra_args=(),
                      timeout_s: float = 90):
    """Start the app on a loopback port (a free one by default); yield (base URL, Popen); stop it afterwards.

    `env` adds to (or overrides) this process's environment, e.g. {"LLM_HANDBOOK_TORCH_THREADS": "1"};
    `extra_args` go to `streamlit run` after ours, so they can override a server option. The Popen lets a
    caller watch the server itself (its pid for CPU and memory). The log goes to tests/artifacts/.
    """
    port = port or free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / f"server-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true", "--browser.gatherUsageStats", "false", *extra_args],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **env} if env else None)
    base = f"http://127.0.0.1:{port}"
    # Loopback only: a proxy named in the environment must not see these requests.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if opener.open(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early; see {log.name}")
            time.sleep(0.3)
        else:
            raise TimeoutError("streamlit did not start")
        yield base, proc
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        proc.kill()
        proc.wait()
        log.close()


@contextlib.contextmanager
def streamlit_server(port: int | None = None, timeout_s: float = 90):
    """Start the app on a free loopback port; yield its base URL; stop it afterwards."""
    with streamlit_process(port, timeout_s=timeout_s) as (base, _):
        yield base


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
DRAWN = """(least) => { const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return charts.length >= least && charts.every(c => c.querySelector('.main-svg')); }"""


def wait_until_idle(page, timeout_ms: int = 60_000, figures: int = 0) -> None:
    """Wait until Streamlit has run the script to its end and every plotly chart is drawn.

    Streamlit loads its plotly component lazily, so right after a run a chart may not exist in the DOM yet:
    a page known to draw figures passes `figures`, the least number of charts to wait for. The idle state
    must also hold after a short pause, because a run can end and another (a rerun) begin at once.
    """
    for _ in range(20):
        page.wait_for_selector(IDLE, timeout=timeout_ms)
        page.wait_for_selector("[data-testid='stMain'] h1", timeout=timeout_ms)
        page.wait_for_function(DRAWN, arg=figures, timeout=timeout_ms)
        page.wait_for_timeout(400)
        if page.locator(IDLE).count():
            return
    raise TimeoutError("the app never settled: it kept starting new runs")


if __name__ == "__main__":  # python -m tests.browser URL OUT.png : a quick screenshot of a running app
    with browser_page(height=int(sys.argv[3]) if len(sys.argv) > 3 else 1000) as page:
        page.goto(sys.argv[1])
        wait_until_idle(page)
        page.screenshot(path=sys.argv[2], full_page=True)
