"""What the causal-mask and encoder-vs-decoder pages show for the future-edit test, recomputed straight from the
models (their own forward passes, not the page's engine code), for both pages' AppTests."""
from __future__ import annotations

import json

import numpy as np
import torch

from engine.model.traced import Interventions, trace
from tests.pages import plotly_array


def metric(at, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def _prefix(a, b) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def expected_shifts(lm, enc, original: str, edited: str) -> dict[str, float]:
    """The largest |difference| of any earlier token's vector at any depth, for each of the three runs."""
    with lm.tokenizing() as tok:
        a, b = (tok(t, add_special_tokens=False)["input_ids"] for t in (original, edited))
    n = _prefix(a, b)
    with torch.inference_mode():
        ha, hb = (torch.stack(lm.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
                              .hidden_states)[:-1, 0] for ids in (a, b))     # the embedding and the 30 layers
    decoder = float((ha[:, :n] - hb[:, :n]).abs().max()) if n else 0.0
    # Without the mask there is no model forward to ask: the traced pass is the only way to run it.
    ua, ub = (trace(lm, ids, record={"resid_out"}, interventions=Interventions(causal_mask=False))["resid_out"]
              for ids in (a, b))
    unmasked = float(np.abs(ua[:, :n] - ub[:, :n]).max()) if n else 0.0
    with enc.tokenizing() as tok:
        ea, eb = (tok(t, return_tensors="pt") for t in (original, edited))
    m = _prefix(ea["input_ids"][0].tolist(), eb["input_ids"][0].tolist())
    with torch.inference_mode():
        sa, sb = (torch.stack(enc.model(**batch, output_hidden_states=True).hidden_states)[:, 0] for batch in (ea, eb))
    encoder = float((sa[:, :m] - sb[:, :m]).abs().max())
    return {"SmolLM2": decoder, "No mask": unmasked, "MiniLM": encoder}


def assert_future_edit_shown(at, lm, enc, original: str, edited: str) -> dict[str, float]:
    """The three max |Δ| metrics equal the recomputed values; the decoder's is 0 (below 1e-6), the others not."""
    expected = expected_shifts(lm, enc, original, edited)
    shown = {name: float(metric(at, f"{name}: max |Δ|")) for name in expected}
    assert shown["SmolLM2"] < 1e-6 and expected["SmolLM2"] < 1e-6
    assert shown["SmolLM2"] == 0.0                                    # shown as exactly 0: bit for bit the same
    for name in ("No mask", "MiniLM"):
        assert shown[name] > 1e-3
        assert shown[name] == float(f"{expected[name]:.4g}") or abs(shown[name] - expected[name]) < 1e-3 * expected[name]
    assert any("Nothing leaked backwards" in s.value and "max |difference| = 0" in s.value for s in at.success)
    return shown


def charts(at) -> dict[str, dict]:
    """Each chart's spec by its user key (Streamlit's element ids read "$$ID-<hash>-<key>")."""
    return {c.proto.id.split("-", 2)[2]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def heatmap_z(spec: dict, index: int = 0) -> np.ndarray:
    heatmaps = [d for d in spec["data"] if d["type"] == "heatmap"]
    return plotly_array(heatmaps[index]["z"])
