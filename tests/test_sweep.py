"""Every live page (from the catalogue) survives hostile links on every key it binds (read from the page)."""
import pytest

from concepts import load_catalogue
from tests.pages import assert_no_exception, open_page
from tests.sweep import bound_widgets, hostile_states

LIVE = [c.slug for c in load_catalogue().live]


def shows_a_figure_or_says_what_to_type(at) -> bool:
    """A figure, or the page's own hint for an input it cannot draw (an empty text, a one-token text)."""
    return bool(at.get("plotly_chart")) or any(i.value for i in at.info)


@pytest.mark.parametrize("slug", LIVE)
def test_every_bound_key_survives_hostile_link_values(lm, slug):
    widgets = bound_widgets(open_page(slug))
    assert widgets, f"{slug} binds no widget to its URL: its state cannot be shared"
    for state, params in hostile_states(widgets).items():
        at = open_page(slug, params)
        try:
            assert_no_exception(at)
        except AssertionError as err:
            raise AssertionError(f"{slug}, link state {state!r}: {err}") from None
        assert shows_a_figure_or_says_what_to_type(at), f"{slug}, link state {state!r}: no figure"
