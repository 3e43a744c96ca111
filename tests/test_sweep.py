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


def push_sliders_to_their_maximum(at) -> None:
    """Every numeric slider a reader can move (not disabled, not a range or a list of options) to its end."""
    for slider in at.slider:
        numeric = slider.proto.data_type in (slider.proto.INT, slider.proto.FLOAT) and not slider.proto.options
        if numeric and not slider.proto.disabled and not isinstance(slider.value, tuple):
            slider.set_value(type(slider.value)(slider.proto.max))


@pytest.mark.parametrize("slug", LIVE)
def test_sliders_at_their_far_end_survive_a_shorter_text(lm, slug):
    """A reader moves every slider to its maximum, then replaces the text with a much shorter one: ranges
    that depend on the text (a token position) shrink under values kept from before."""
    at = open_page(slug)
    texts = lambda: [w for kind in ("text_area", "text_input") for w in getattr(at, kind)]   # noqa: E731
    for widget in texts():   # the reader's own, longer text first, as a reader would type it
        widget.input("The quick brown fox jumps over the lazy dog while the farmer counts his sheep by the "
                     "old stone wall, and the river runs on past the mill towards the sea")
    at.run()
    push_sliders_to_their_maximum(at)
    at.run()
    assert_no_exception(at)
    for widget in texts():
        widget.input("Hi there")
    at.run()
    try:
        assert_no_exception(at)
    except AssertionError as err:
        raise AssertionError(f"{slug}, sliders at their maximum, then a two-word text: {err}") from None


def test_a_reader_walking_through_every_page_keeps_no_state_from_the_last(lm):
    """One session visits every live page, leaving each with its sliders at their maximum and its own text;
    the next page opens clean: no failure from another page's values, and its own default text."""
    at = open_page(LIVE[0])
    for i, slug in enumerate(LIVE + LIVE[-2::-1]):   # there and back, never a page to itself
        if i:
            at.switch_page(f"app_pages/{slug.replace('-', '_')}.py").run()
        try:
            assert_no_exception(at)
        except AssertionError as err:
            raise AssertionError(f"arriving at {slug}: {err}") from None
        fresh = open_page(slug)
        for kind in ("text_area", "text_input"):
            for widget, clean in zip(getattr(at, kind), getattr(fresh, kind)):
                assert widget.value == clean.value, f"{slug} shows another page's text in {widget.key}"
        push_sliders_to_their_maximum(at)
        for kind in ("text_area", "text_input"):
            for widget in getattr(at, kind):
                widget.input(f"Text typed on {slug} before leaving it")
        at.run()
