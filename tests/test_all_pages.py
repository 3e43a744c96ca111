"""Every live page opens cleanly with its frame, its demo and a CSV beside every chart (hostile links: test_sweep)."""
import pytest

from concepts import load_catalogue
from tests.pages import assert_no_exception, open_page, shown_text

LIVE = [c.slug for c in load_catalogue().live]


def test_the_eight_headline_pages_and_next_token_are_live():
    assert {"next-token", "tokenization", "vocabulary", "self-attention", "multi-head-attention",
            "token-embeddings", "temperature", "top-k-top-p", "kv-cache"} <= set(LIVE)


@pytest.mark.parametrize("slug", LIVE)
def test_page_renders_its_frame_and_demo(lm, slug):
    at = open_page(slug)
    assert_no_exception(at)
    concept = load_catalogue().get(slug)
    assert at.title[0].value == concept.title
    assert len(at.radio) >= len(concept.quiz)          # the quiz
    assert "This link opens the page exactly as you see it now" in shown_text(at)  # the share link
    assert at.get("plotly_chart"), "the demo shows no chart"

    # Every chart offers its numbers as CSV (show_chart's button is keyed "<chart key>-csv"), except the
    # multi-head overview, which is a clickable picker of heads rather than a figure of data.
    def user_key(element_id: str) -> str:  # Streamlit's ids read "$$ID-<hash>-<user key>"
        return element_id.split("-", 2)[2]

    downloads = {user_key(d.proto.id) for d in at.get("download_button") if d.proto.label == "Data (CSV)"}
    charts = {user_key(c.proto.id) for c in at.get("plotly_chart")} - {"overview"}
    assert charts and {f"{key}-csv" for key in charts} <= downloads, (charts, downloads)


@pytest.mark.parametrize("slug, key", [("temperature", "seed"), ("token-embeddings", "seed"), ("kv-cache", "batch")])
@pytest.mark.parametrize("absurd", ["1e400", "inf", "-inf", "nan"])
def test_whole_number_inputs_survive_absurd_link_values(lm, slug, key, absurd):
    at = open_page(slug, {key: absurd})
    assert_no_exception(at)
    assert at.number_input(key=key).value == at.number_input(key=key).proto.default
