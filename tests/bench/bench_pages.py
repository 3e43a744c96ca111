"""Every live page: its first render on defaults (model warm, the page's caches cold) and the answer to its
first control, both server-side in AppTest.

Targets (issue 7): first render < 2 s; a control that only reshapes a result < 300 ms. The first control is
the first numeric slider (moved one step) or toggle of the demo: on most pages it reshapes a cached result,
on some it asks for new model work, so read the figure with the page in mind.
"""
from __future__ import annotations

import time

import streamlit as st

from concepts import load_catalogue


def _clear_page_caches() -> None:
    """Every cached result (data and resources, the figure store too) and the engine's result caches; only
    the model loaders are kept, so the models stay loaded."""
    import sys

    from engine.model import perplexity
    from ui import models

    st.cache_data.clear()
    perplexity.clear_cache()
    keep = {id(models._model_loader), id(models._encoder_loader)}
    for name, module in list(sys.modules.items()):
        if not name.startswith("ui."):
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "clear", None)) and hasattr(value, "__wrapped__") and id(value) not in keep:
                value.clear()


def _move_first_control(at) -> str | None:
    for slider in at.slider:
        proto = slider.proto
        if proto.disabled or isinstance(slider.value, tuple) or proto.options:
            continue
        step = proto.step or 1
        value = slider.value + step if slider.value + step <= proto.max else slider.value - step
        slider.set_value(type(slider.value)(value))
        return f"slider {proto.label!r}"
    for toggle in at.toggle:
        toggle.set_value(not toggle.value)
        return f"toggle {toggle.proto.label!r}"
    return None


def page_times(slug: str) -> tuple[float, float | None, str | None]:
    from streamlit.testing.v1 import AppTest

    from tests.pages import ROOT, open_page

    open_page(slug)                 # warm: imports, the model, this page's module-level work
    _clear_page_caches()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()   # the home page, not timed
    at.switch_page(f"app_pages/{slug.replace('-', '_')}.py")
    started = time.perf_counter()
    at.run()
    first = time.perf_counter() - started
    moved = _move_first_control(at)
    if moved is None:
        return first, None, None
    started = time.perf_counter()
    at.run()
    return first, time.perf_counter() - started, moved


def run(lm):
    figures = []
    for concept in load_catalogue().live:
        first, control, what = page_times(concept.slug)
        control_text = f"{1000 * control:.0f} ms ({what})" if control is not None else "no control"
        figures.append((f"{concept.slug}: first render / first control", f"{first:.2f} s / {control_text}"))
    return figures
