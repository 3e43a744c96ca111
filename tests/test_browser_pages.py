"""Every live page in a real browser (one server): it draws, its first control moves into the share link.

The eight headline pages also get a named control moved and their figure checked for the change.
"""
import os
import re

import pytest

from concepts import load_catalogue

from tests.browser import ARTIFACTS, CHROMIUM, browser_page, streamlit_server, wait_until_idle

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")

# (page, kind of control, its label, what to do with it, the URL parameter that must follow)
MOVES = [
    ("tokenization", "toggle", "Show token ids instead of text", None, "ids=true"),
    ("vocabulary", "slider", "Model width d_model", "ArrowRight", "d="),
    ("self-attention", "slider", "Head (1-9)", "ArrowLeft", "head="),
    ("multi-head-attention", "slider", "Layer (1-30)", "ArrowRight", "layer="),
    ("token-embeddings", "segment", "Dimensions", "3-D", "dims="),
    ("temperature", "slider", "Temperature T", "ArrowRight", "t="),
    ("top-k-top-p", "slider", "Temperature T", "ArrowRight", "t="),
    ("kv-cache", "segment", "Cache precision", "int8", "dtype=int8"),
]

# A hash of every drawn chart's SVG: any change of data, axes or labels changes it.
FIGURES = """() => { let h = 0;
  for (const svg of document.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg')) {
    const s = svg.innerHTML;
    for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  }
  return String(h); }"""


def move(page, kind: str, label: str, action: str | None) -> None:
    if kind == "toggle":
        page.get_by_text(label, exact=True).click()
    elif kind == "slider":
        widget = page.locator("[data-testid='stSlider']").filter(has_text=label).first
        thumb = widget.get_by_role("slider").first
        thumb.focus()
        thumb.press(action)
    elif kind == "segment":
        group = page.locator("[data-testid='stButtonGroup']").filter(has_text=label).first
        group.get_by_role("radio", name=action, exact=True).first.click()


def figures_signature(page) -> str:
    return page.evaluate(FIGURES)


@pytest.mark.parametrize("slug, kind, label, action, param", MOVES, ids=[m[0] for m in MOVES])
def test_page_reacts_to_its_control(slug, kind, label, action, param, browser_server):
    base, page = browser_server
    page.goto(f"{base}/{slug}")
    wait_until_idle(page, timeout_ms=120_000, figures=1)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Traceback" not in body and "This demo hit a problem" not in body
    before = figures_signature(page)
    move(page, kind, label, action)
    page.wait_for_function("(p) => location.search.includes(p)", arg=param, timeout=30_000)
    page.wait_for_function(f"(before) => ({FIGURES})() !== before", arg=before, timeout=60_000)
    wait_until_idle(page, timeout_ms=120_000, figures=1)
    assert figures_signature(page) != before
    page.screenshot(path=str(ARTIFACTS / f"{slug}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser_server():
    with streamlit_server() as base, browser_page(height=1600) as page:
        yield base, page


def test_a_reader_in_dark_mode_gets_the_dark_theme(browser_server):
    """The app follows the reader's system setting (config.toml sets only per-mode colours)."""
    base, light_page = browser_server
    page = light_page.context.browser.new_page(viewport={"width": 1400, "height": 1600}, color_scheme="dark")
    try:
        page.goto(f"{base}/self-attention")
        wait_until_idle(page, timeout_ms=120_000, figures=1)
        background = page.evaluate("() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]'))"
                                   ".backgroundColor")
        red, green, blue = (int(float(c)) for c in re.findall(r"[\d.]+", background)[:3])
        assert max(red, green, blue) < 80, f"the page background is {background}, not dark"
        page.screenshot(path=str(ARTIFACTS / "self-attention-dark.png"), full_page=True)
    finally:
        page.close()


# The first control of a page's demo, moved generically: a slider one step, a toggle flipped, another option
# picked in a segmented control or a select box. The quiz below the demo is not part of it.
FIRST_CONTROL = """() => {
  const demo = document.querySelector('[data-testid="stMain"]');
  const quiz = [...demo.querySelectorAll('h3')].find(h => h.textContent.includes('Check yourself'));
  const before = el => !quiz || (el.compareDocumentPosition(quiz) & Node.DOCUMENT_POSITION_FOLLOWING);
  const kinds = ['stSlider', 'stCheckbox', 'stButtonGroup', 'stSelectbox'];
  const all = [...demo.querySelectorAll(kinds.map(k => `[data-testid="${k}"]`).join(','))].filter(before);
  return all.length ? all[0].getAttribute('data-testid') : null; }"""


def move_first_control(page) -> str:
    kind = page.evaluate(FIRST_CONTROL)
    main = page.locator("[data-testid='stMain']")
    before = page.url
    if kind == "stSlider":
        thumb = main.locator("[data-testid='stSlider']").first.get_by_role("slider").first
        thumb.focus()
        thumb.press("ArrowRight")
        page.wait_for_timeout(600)
        if page.url == before:   # the slider was at its maximum
            thumb.press("ArrowLeft")
            thumb.press("ArrowLeft")
    elif kind == "stCheckbox":
        main.locator("[data-testid='stCheckbox']").first.locator("label").first.click()
    elif kind == "stButtonGroup":
        main.locator("[data-testid='stButtonGroup']").first.locator(
            "button[aria-checked='false'], [role='radio'][aria-checked='false']").first.click()
    elif kind == "stSelectbox":
        box = main.locator("[data-testid='stSelectbox']").first
        box.click()
        page.get_by_role("option").nth(1).click()
    else:
        raise AssertionError("the demo has no control to move")
    return kind


@pytest.mark.parametrize("slug", [c.slug for c in load_catalogue().live])
def test_every_live_page_draws_and_its_first_control_reaches_the_share_link(slug, browser_server):
    base, page = browser_server
    page.goto(f"{base}/{slug}")
    wait_until_idle(page, timeout_ms=120_000, figures=1)
    opened = page.url
    kind = move_first_control(page)
    page.wait_for_function("(opened) => location.href !== opened", arg=opened, timeout=30_000)
    wait_until_idle(page, timeout_ms=120_000, figures=1)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Traceback" not in body and "This demo hit a problem" not in body, f"{slug} after moving its {kind}"
    page.screenshot(path=str(ARTIFACTS / f"sweep-{slug}.png"), full_page=True)
