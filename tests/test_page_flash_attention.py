"""The flash-attention page tiles a real head of the reader's text exactly, follows its share link, and measures
the cost sweep (capped) rather than typing it in."""
import json

import numpy as np
import pytest

import ui.flash_attention
from engine.inside.flash_attention import BLOCK_SIZES, head_vectors, max_abs_difference, naive_attention, sweep_lengths, \
    tiled_attention
from engine.tokens.offsets import token_ids
from engine.model.traced import trace
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text

DEFAULT_TEXT = ("FlashAttention computes exactly the same attention as the textbook formula, but it never writes "
                "down the full table of scores.")


def charts(at) -> dict[str, dict]:
    return {c.proto.id.split("-", 2)[2]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def metric(at, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, [m.label for m in at.metric]
    return values[0]


def real_head(lm, text: str, layer: int, head: int):
    """1-based layer and head, as the page shows them: q, k, v straight from the traced forward."""
    tp = trace(lm, token_ids(lm, text), record={"q_rot", "k_rot", "v", "head_out"}, layers=[layer - 1])
    at = lambda name: tp.at(name, layer - 1)   # noqa: E731
    return (*head_vectors(at("q_rot"), at("k_rot"), at("v"), head - 1), at("head_out")[head - 1])


def swept(at) -> bool:
    return any(m.label.startswith("Naive peak") for m in at.metric)


def check_tiles(at, lm, text: str, layer: int, head: int, block: int, query: int, step: int) -> None:
    q, k, v, model_out = real_head(lm, text, layer, head)
    naive = naive_attention(q, k, v)
    for b in BLOCK_SIZES:   # every block size offered, on the real head: exact to float rounding
        assert max_abs_difference(tiled_attention(q, k, v, b, b).output, naive) < 1e-5
    tiled = tiled_attention(q, k, v, block, block)
    assert metric(at, "Tiled vs naive, max |difference|") == f"{max_abs_difference(tiled.output, naive):.1e}"
    assert metric(at, "Tiled vs the model's own head") == f"{max_abs_difference(tiled.output, model_out):.1e}"
    assert max_abs_difference(tiled.output, model_out) < 1e-5
    total = tiled.tiles_computed + tiled.tiles_skipped
    assert metric(at, "Tiles computed") == f"{tiled.tiles_computed} of {total}"
    assert total == (-(-len(q) // block)) ** 2
    caption = next(c.value for c in at.caption if c.value.startswith("Every block size offered"))
    for b in BLOCK_SIZES:
        assert f"{b}: " in caption
    assert "✗" not in caption

    # The running state drawn for the query row is the online softmax's, recomputed here.
    state = charts(at)["state"]["data"]
    i = query - 1
    scores = (q[i].astype(np.float64) @ k[:i + 1].T.astype(np.float64)) / np.sqrt(q.shape[1])
    tiles = [scores[s:s + block] for s in range(0, i + 1, block)]
    running_max = np.maximum.accumulate([t.max() for t in tiles])
    np.testing.assert_allclose(plotly_array(state[1]["y"]), running_max, rtol=1e-5)
    l_last = plotly_array(state[2]["y"])[-1]
    np.testing.assert_allclose(np.log(l_last) + running_max[-1], np.log(np.exp(scores - scores.max()).sum())
                               + scores.max(), rtol=1e-5)
    assert plotly_array(state[3]["y"])[-1] < 1e-5       # after the last tile: the final output
    assert at.slider(key="step").value == step if len(tiles) > 1 else True


def test_defaults_tile_a_real_head_exactly_and_measure_the_sweep(lm):
    at = open_page("flash-attention")
    assert_no_exception(at)
    text = at.text_area(key="text").value
    assert text.startswith(DEFAULT_TEXT)
    length = len(token_ids(lm, text))
    check_tiles(at, lm, text, 12, 5, 16, query=length, step=-(-length // 16))
    tile_map = charts(at)["tiles"]
    assert len(plotly_array(tile_map["data"][1]["z"])) == length

    run_until(at, swept)
    assert_no_exception(at)
    costs = charts(at)["costs"]["data"]
    lengths = costs[0]["x"]
    assert lengths == sweep_lengths(4096, 4096) == [256, 512, 1024, 2048, 4096]
    naive_mb, tiled_mb, score_mb = (plotly_array(costs[i]["y"]) for i in (3, 4, 5))
    np.testing.assert_allclose(score_mb, [n * n * 4 / 1e6 for n in lengths])
    assert np.all(naive_mb >= score_mb)                         # naive holds the whole score matrix at least
    assert np.all(tiled_mb[2:] < score_mb[2:] / 4)              # tiled never does
    assert naive_mb[-1] / naive_mb[-2] > 3.5 and tiled_mb[-1] / tiled_mb[-2] < 2.5   # T² against T
    assert metric(at, "Naive peak at 4,096").endswith("MB")
    fused = next(m for m in at.metric if m.label == "Fused kernel (torch)")
    assert fused.delta == "backend: FLASH_ATTENTION"          # read from torch's dispatcher
    assert "Measured up to" not in shown_text(at)               # nothing above the cap was asked for


def test_share_link_restores_the_state_and_the_cap_is_enforced(lm):
    text = ("The running maximum only ever grows. Whenever it does, the running sum and the partial output shrink by "
            "the same factor, and then the new tile's terms are added. After the last tile of keys, dividing the "
            "output by the sum gives exactly the softmax-weighted average of the values.")
    at = open_page("flash-attention", {"text": text, "layer": "3", "head": "8", "block": "32", "query": "40",
                                       "step": "1", "longest": "16k"})
    assert_no_exception(at)
    assert at.text_area(key="text").value == text
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (3, 8)
    assert at.slider(key="query").value == 40
    assert len(token_ids(lm, text)) > 40
    check_tiles(at, lm, text, 3, 8, 32, query=40, step=1)
    assert "Measured up to 4,096 tokens only" in shown_text(at)       # the cap, said on the page
    run_until(at, swept)
    assert charts(at)["costs"]["data"][0]["x"][-1] == 4096          # and enforced


def test_moving_the_stepper_runs_no_forward_pass(monkeypatch):
    at = open_page("flash-attention", {"block": "16"})
    before = charts(at)["state"]["data"][1]["x"]

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a stepper move")
    monkeypatch.setattr(ui.flash_attention, "trace", no_forward)
    at.slider(key="step").set_value(1).run()
    assert_no_exception(at)
    assert "after key tile 1 of" in shown_text(at)
    at.select_slider(key="block").set_value(32).run()
    assert_no_exception(at)
    assert charts(at)["state"]["data"][1]["x"] != before


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "Hi"}, {"text": "a" * 50_000}, {"block": "7", "longest": "3", "query": "-4"},
    {"text": "🍓 emoji 日本語 <script>alert(1)</script> $x$", "step": "999"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("flash-attention", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text") == "":
        assert "Type a few sentences" in text
    elif "text" in params and len(params["text"]) > 10_000:
        assert "Cut to the first" in text
    else:
        assert "Tiled vs naive" in text
