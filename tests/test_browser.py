"""A real browser against a real server: deep links, a changed prompt, a reloaded share link."""
import shutil
from urllib.parse import quote

import pytest

from tests.browser import ARTIFACTS, CHROMIUM, browser_page, streamlit_server, wait_until_idle

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM) and not __import__("os").path.exists(CHROMIUM),
                                reason="Debian chromium is not installed (.ci/run installs it)")


def bar_labels(page) -> list[str]:
    """The token labels of the first plotly chart, read from the drawn SVG."""
    labels = page.locator("[data-testid='stPlotlyChart'] .ytick text").all_text_contents()
    return [label.replace("\u200b", "") for label in reversed(labels)]  # drawn bottom-up


def test_share_link_as_first_visit_then_edit_and_reload():
    with streamlit_server() as base, browser_page(height=1400) as page:
        # The very first request to a fresh server is a deep link with state.
        page.goto(f"{base}/next-token?prompt={quote('Hello, my name is')}&k=6")
        wait_until_idle(page, figures=1)
        body = page.locator("[data-testid='stMain']").inner_text()
        assert "Page not found" not in body and "Traceback" not in body
        assert page.locator("textarea").first.input_value() == "Hello, my name is"
        assert len(bar_labels(page)) == 6

        # From home, through the navigation, to the page; then change the prompt.
        page.goto(base)
        wait_until_idle(page)
        page.get_by_role("link", name="What is an LLM: next-token prediction").first.click()
        page.wait_for_url("**/next-token")
        page.wait_for_selector("[data-testid='stPlotlyChart'] .ytick")
        wait_until_idle(page, figures=1)
        before = bar_labels(page)
        assert before[0] == "␣Paris"
        box = page.locator("textarea").first
        box.fill("The opposite of hot is")
        box.press("Control+Enter")
        page.wait_for_function("() => new URLSearchParams(location.search).get('prompt') === 'The opposite of hot is'")
        page.wait_for_function(
            "(first) => { const t = [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .ytick text')];"
            " return t.length && t[t.length - 1].textContent.replace(/\u200b/g, '') !== first; }", arg=before[0])
        wait_until_idle(page)
        after = bar_labels(page)
        assert after and after != before
        page.locator("[data-testid='stPlotlyChart']").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "next-token.png"))

        # The address bar is the share link: a new visit shows the same state.
        link = page.url
        page.goto(link)
        wait_until_idle(page, figures=1)
        assert page.locator("textarea").first.input_value() == "The opposite of hot is"
        assert bar_labels(page) == after
