"""Run one page of the app in Streamlit's AppTest, as a visitor would open it (optionally from a share link)."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
FIRST_RUN_TIMEOUT = 180  # the first run in a process loads the model


def open_page(slug: str, params: dict | None = None, timeout: float = FIRST_RUN_TIMEOUT) -> AppTest:
    """Open /<slug> through app.py's navigation, with `params` as the link's query parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout).run()  # registers the pages
    for key, value in (params or {}).items():
        at.query_params[key] = value
    at.switch_page(f"app_pages/{slug.replace('-', '_')}.py")
    return at.run()


def run_until(at: AppTest, ready, timeout: float = 180, pause: float = 0.3) -> AppTest:
    """Rerun the page until `ready(at)` holds, as the page's polling fragment would (AppTest runs no timers).

    For pages whose long work runs as a job: the first run starts it and shows progress; a later run shows
    the result.
    """
    import time

    deadline = time.monotonic() + timeout
    while not ready(at):
        assert time.monotonic() < deadline, "the job did not finish in time"
        time.sleep(pause)
        at.run()
    return at


def shown_text(at: AppTest) -> str:
    """Everything a reader can read on the page: markdown, captions, metrics, infos, errors, code."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "code", "text")
             for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error if "This demo hit a problem" in str(e.value)]
    assert not errors, errors


def plotly_array(value) -> np.ndarray:
    """Plotly sends numpy arrays as {'dtype', 'bdata', 'shape'}; plain lists pass through."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            data = data.reshape([int(s) for s in str(shape).split(",")])
        return data.astype(np.float64)
    return np.array([np.nan if v is None else v for v in value], dtype=np.float64) \
        if not (value and isinstance(value[0], list)) else \
        np.array([[np.nan if v is None else v for v in row] for row in value], dtype=np.float64)


def chart(at: AppTest, key: str) -> dict:
    """The plotly spec of the chart shown with `key` (show_chart's key), or a failure naming the key."""
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key}")
