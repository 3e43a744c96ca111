"""Screenshots of pages as a reader sees them: light and dark, 1,400 and 820 px wide.

    .venv/bin/python -m tests.shoot rope causal-mask            # starts its own server on a free port
    .venv/bin/python -m tests.shoot --url http://localhost:8501 rope "rope?text=Hello"

Writes /tmp/shots/<page>-<light|dark>-<width>.png (override with --out) and prints the paths: look at them.
A page with a query string is shot at that state. Not a test: for judging a page by eye before it lands.
"""
from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path

from tests.browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server, wait_until_idle

MODES = ("light", "dark")
WIDTHS = (1400, 820)


def shoot(base: str, pages: list[str], out: Path, height: int = 3000) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for page_path in pages:
                name = re.sub(r"[^A-Za-z0-9_-]+", "_", page_path)[:80]
                for mode in MODES:
                    for width in WIDTHS:
                        page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=mode)
                        try:
                            page.goto(f"{base}/{page_path}")
                            wait_until_idle(page, timeout_ms=180_000)
                            page.wait_for_timeout(800)   # plotly's lazy component
                            path = out / f"{name}-{mode}-{width}.png"
                            page.screenshot(path=str(path), full_page=True)
                            written.append(path)
                        finally:
                            page.close()
        finally:
            browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", nargs="+", help="page paths, e.g. rope or 'rope?layer=3'")
    parser.add_argument("--url", help="a running app's base URL; default: start one")
    parser.add_argument("--out", default="/tmp/shots", type=Path)
    parser.add_argument("--height", default=3000, type=int,
                        help="viewport height: Streamlit scrolls inside the page, so a tall window shows the demo")
    args = parser.parse_args()
    with (contextlib.nullcontext(args.url) if args.url else streamlit_server(timeout_s=300)) as base:
        for path in shoot(base.rstrip("/"), args.pages, args.out, args.height):
            print(path)


if __name__ == "__main__":
    main()
