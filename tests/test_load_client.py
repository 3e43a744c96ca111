"""The load client (tests/bench/st_client.py) runs real pages over Streamlit's websocket, as a browser does."""
import pytest

from tests.bench.st_client import run_page, widget_key
from tests.browser import streamlit_process

DISTINCTIVE = "Zanzibar quokkas audit seventeen lighthouses"
TIMEOUT = 60


@pytest.fixture(scope="module")
def app():
    with streamlit_process() as (base_url, _):
        yield base_url


def test_widget_keys_are_read_from_element_ids():
    assert widget_key("$$ID-5f2c9a-append-0") == "append-0"   # a key may itself contain "-"
    assert widget_key("$$ID-5f2c9a-None") is None             # a widget made without a key
    assert widget_key("plain") is None


def test_a_page_in_its_default_state(app):
    run = run_page(app, "self-attention", timeout=TIMEOUT)
    assert run.ok, run.error
    assert run.charts > 0
    assert "text" in run.text_widget_keys and {"layer", "head"} <= set(run.widget_keys)
    assert any(t == "Try it" for t in run.texts)


def test_share_link_state_reaches_the_script(app):
    # The greedy continuation prints the prompt it continued: the text went URL -> widget -> script -> page.
    run = run_page(app, "next-token", {"prompt": DISTINCTIVE, "greedy": "true", "greedy_len": "5"},
                   timeout=TIMEOUT)
    assert run.ok, run.error
    assert run.charts > 0
    assert run.text_widgets["prompt"].value == DISTINCTIVE
    assert any(t.startswith(DISTINCTIVE) and t != DISTINCTIVE for t in run.texts), run.texts


@pytest.mark.parametrize("slug, query", [
    ("no-such-page", None),                                # Streamlit shows its default page instead
    ("next-token", {"prompt": "x" * 200_000}),             # a link too long for the server to accept
    ("next-token", {"prompt": "\x00<b>" * 3000, "k": "1e400", "greedy": "maybe"}),
])
def test_hostile_links_end_cleanly(app, slug, query):
    run = run_page(app, slug, query, timeout=TIMEOUT)
    assert run.ok or run.error
    if slug == "no-such-page":
        assert not run.ok and "page not found" in run.error
