"""The kv-cache page shows the model's own cache bytes and timings, follows its share link, and survives bad input."""
import json
import math

import pytest
import torch

from engine.decoding.generation import generate
from engine.serving.kv_cache import PUBLISHED, growth_points, kv_bytes_per_token
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, run_until, shown_text

TIMED_PROMPT = "Once upon a time there was a small robot who loved to count tokens."


def charts(at) -> dict[str, dict]:
    """Each plotly chart's figure, keyed by its title text."""
    out = {}
    for chart in at.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        out[figure["layout"].get("title", {}).get("text", "")] = figure
    return out


def chart_titled(at, start: str) -> dict:
    found = [f for title, f in charts(at).items() if title.startswith(start)]
    assert found, list(charts(at))
    return found[0]


def metric(at, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, [m.label for m in at.metric]
    return values[0]


def calculator_row(at, model: str) -> dict:
    table = at.dataframe[0].value
    return table[table["model"] == model].iloc[0].to_dict()


def test_defaults_show_the_measured_cache_bytes_and_the_calculator(lm):
    at = open_page("kv-cache")
    assert_no_exception(at)
    assert metric(at, "Per token, formula") == "46,080 B"
    assert metric(at, "Per token, measured") == "46,080 B"
    assert metric(at, "Formula = tensors") == "✓ equal"
    growth = chart_titled(at, "SmolLM2's cache grows")
    formula, measured = growth["data"][0], growth["data"][1]
    ids = token_ids(lm, at.text_area(key="prompt").value)
    assert len(ids) > 64 and measured["x"] == growth_points(len(ids))   # the prompt's own tokens, all of them
    assert measured["y"] == pytest.approx([46_080 * t / 1e6 for t in measured["x"]])
    assert formula["y"] == measured["y"]

    # The page's measurement agrees with a cache filled here by hand.
    from transformers import DynamicCache
    cache = DynamicCache(config=lm.model.config)
    with torch.inference_mode():
        lm.model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
    by_hand = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert measured["y"][-1] == pytest.approx(by_hand / 1e6)


def test_a_short_prompt_is_repeated_so_the_growth_line_has_points(lm):
    at = open_page("kv-cache", {"prompt": "Hello there"})
    growth = chart_titled(at, "SmolLM2's cache grows")["data"][1]
    assert growth["x"] == [1, 16, 32, 64]
    assert "A prompt of 2 tokens, the length of yours, repeated up to 64 tokens, is fed" in shown_text(at)

    llama = calculator_row(at, "LLaMA-2-7B")  # defaults: fp16, 4k tokens, batch 1
    assert llama["bytes_per_token"] == 524_288
    assert llama["kv_cache_gb"] == pytest.approx(524_288 * 4096 / 1e9)
    smol = calculator_row(at, "SmolLM2-135M-Instruct")
    assert smol["bytes_per_token"] == 46_080 / 2 and smol["weights_gb"] == f"{lm.card.parameters * 2 / 1e9:,.2f}"
    assert len(at.dataframe[0].value) == 6
    assert "Time it live" in shown_text(at) and not at.toggle(key="run").value
    assert "identical" not in shown_text(at)  # nothing is timed until asked


def test_timing_share_link_runs_both_ways_and_gets_identical_tokens(lm):
    params = {"prompt": TIMED_PROMPT, "n": "16", "run": "true"}
    at = open_page("kv-cache", params)
    assert_no_exception(at)
    timed = lambda page: any(m.label == "Greedy tokens" for m in page.metric)   # noqa: E731
    if not timed(at):   # the job runs outside the script run; its progress shows meanwhile
        assert "Stop here" in [b.label for b in at.button]
    run_until(at, timed)
    assert_no_exception(at)
    assert metric(at, "Greedy tokens") == "identical ✓"
    timing = chart_titled(at, "Time per generated token")
    without, with_cache, speedup = timing["data"][:3]
    steps = len(with_cache["x"])  # 16 unless a very busy machine spent the time budget first (the page says so)
    assert steps == 16 or f"Stopped after {steps} of 16 tokens" in shown_text(at)
    assert with_cache["x"] == list(range(1, steps + 1)) and len(without["y"]) == steps
    expected = generate(lm, TIMED_PROMPT, steps, stop_at_eos=False)
    assert any(t.value == TIMED_PROMPT + expected.new_text for t in at.text)
    prompt_len = len(token_ids(lm, TIMED_PROMPT))
    assert without["customdata"] == list(range(prompt_len, prompt_len + steps))  # the whole sequence, every step
    total_with, total_without = sum(with_cache["y"]) / 1000, sum(without["y"]) / 1000
    assert metric(at, "With cache") == f"{total_with:.2f} s"
    assert metric(at, "Without cache") == f"{total_without:.2f} s"
    assert speedup["y"][-1] == pytest.approx(total_without / total_with)
    assert metric(at, "Speed-up") == f"{total_without / total_with:.1f}×"
    assert "Measured at" in shown_text(at)

    # The same link opened again shows the stored run; "Measure again" replaces it.
    again = open_page("kv-cache", params)
    assert chart_titled(again, "Time per generated token")["data"][1]["y"] == with_cache["y"]
    again.button(key="again").click().run()
    run_until(again, timed)
    assert_no_exception(again)
    assert chart_titled(again, "Time per generated token")["data"][1]["y"] != with_cache["y"]
    assert metric(again, "Greedy tokens") == "identical ✓"


def test_calculator_share_link_state_is_restored(lm):
    at = open_page("kv-cache", {"dtype": "fp32", "batch": "8", "ctx": "32k", "logy": "true",
                                "layers": "48", "heads": "48", "kv_heads": "6", "head_dim": "96"})
    assert_no_exception(at)
    assert at.select_slider(key="ctx").value == 32768
    assert at.number_input(key="batch").value == 8
    assert at.toggle(key="logy").value
    llama = calculator_row(at, "LLaMA-2-7B")
    assert llama["bytes_per_token"] == 1_048_576
    assert llama["kv_cache_gb"] == pytest.approx(1_048_576 * 32768 * 8 / 1e9)
    custom = calculator_row(at, "Your config")
    assert custom["bytes_per_token"] == 2 * 48 * 6 * 96 * 4 and custom["attention"].startswith("GQA")
    assert custom["weights_gb"] == "—"  # unknown without the rest of a config
    context = chart_titled(at, "KV cache vs context length (fp32, batch 8)")
    assert context["layout"]["yaxis"]["type"] == "log"
    gqa = chart_titled(at, "Cache as a share")
    mha_share, configured_share, mqa_share = (trace["y"] for trace in gqa["data"])
    names = gqa["data"][0]["x"]
    for spec in PUBLISHED:
        i = names.index(spec.name)
        assert configured_share[i] == pytest.approx(100 * spec.kv_heads / spec.heads)
        assert mqa_share[i] == pytest.approx(100 / spec.heads)
    assert configured_share[names.index("Your config")] == pytest.approx(100 * 6 / 48)
    assert kv_bytes_per_token(PUBLISHED[0], 4) == 1_048_576


@pytest.mark.parametrize("params", [
    {"prompt": ""}, {"prompt": "   \n  "}, {"prompt": "a" * 100_000}, {"prompt": "🍓 emoji 日本語 العربية Ελληνικά"},
    {"prompt": "ctrl \x00\x07\x1b[0m chars"},
    {"prompt": "<script>alert(1)</script> **bold** [x](y)"},
    {"layers": "-5", "heads": "0", "kv_heads": "1e400", "head_dim": "abc", "batch": str(10 ** 12)},
    {"ctx": "banana", "dtype": "<script>", "n": "9999", "run": "maybe", "logy": "-1", "unknown": "x"},
    {"n": "1e400", "batch": "inf", "layers": "nan", "ctx": "1e400", "run": "1e400"},
    {"batch": "-3", "ctx": "999999999", "dtype": "", "kv_heads": "64", "heads": "8"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("kv-cache", params)
    assert_no_exception(at)
    text = shown_text(at)
    table = at.dataframe[0].value  # the calculator always works
    assert len(table) == 6
    assert all(math.isfinite(v) and v > 0 for v in table["kv_cache_gb"])
    custom = calculator_row(at, "Your config")
    assert 1 <= custom["bytes_per_token"] <= 2 * 512 * 1024 * 4096 * 4
    if params.get("prompt", "x").strip() == "":
        assert "Type a prompt" in text
    elif len(params.get("prompt", "")) > 10_000:
        assert "Cut to the first" in text
    else:
        assert metric(at, "Formula = tensors") == "✓ equal"


def test_the_cache_is_weighed_once_per_length_whatever_the_words(lm, monkeypatch):
    import ui.kv_cache

    calls = []
    real = ui.kv_cache.measure_cache_growth
    monkeypatch.setattr(ui.kv_cache, "measure_cache_growth", lambda *a, **k: calls.append(1) or real(*a, **k))
    first, second = "Seven cats sat on a warm red mat today.", "Seven dogs sat on a cold red mat today."
    assert len(token_ids(lm, first)) == len(token_ids(lm, second))
    a = open_page("kv-cache", {"prompt": first})
    b = open_page("kv-cache", {"prompt": second})
    assert_no_exception(b)
    assert len(calls) == 1
    assert chart_titled(a, "SmolLM2's cache grows")["data"][1]["y"] == chart_titled(b, "SmolLM2's cache grows")["data"][1]["y"]
    assert "measures each length once" in shown_text(b)
