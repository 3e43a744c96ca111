"""The token-cost page: every count is that tokenizer's own encoding length, and every cost is tokens x price."""
import json
import math

import pytest

from engine.model.encoder import load_encoder
from engine.tokens.token_cost import PER_MILLION
from engine.tokens.tokenizers import quicktok_encoding
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text
from ui import samples

DOCS = samples.load("corpora")
SAMPLES = samples.load("tokenizer_texts")
NAMES = ["SmolLM2", "GPT-4 cl100k", "GPT-4o o200k", "Llama 3", "Qwen2.5/3", "BERT WordPiece"]
KEYS = ["smollm2", "cl100k", "o200k", "llama3", "qwen", "bert"]


@pytest.fixture(scope="module")
def own_counts(lm):
    """Each tokenizer's own encode length, computed without the app's code paths."""
    bert = load_encoder().tokenizer

    def count(key, text):
        if key == "smollm2":
            return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        if key == "bert":
            return len(bert(text, add_special_tokens=False)["input_ids"])
        return len(quicktok_encoding(key).encode_ordinary(text))
    return count


def chart(at, key):
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))


def check_costs(at, own_counts, text, prices, reply, requests):
    counts = chart(at, "counts")["data"][0]
    assert list(counts["y"]) == NAMES
    expected = [own_counts(k, text) for k in KEYS]
    assert plotly_array(counts["x"]).tolist() == expected
    bars = chart(at, "cost")["data"]
    inputs, outputs = plotly_array(bars[0]["x"]), plotly_array(bars[1]["x"])
    for i, key in enumerate(KEYS[:5]):                      # BERT writes no output: it is not priced
        p_in, p_out = prices.get(key, (0.15, 0.60))
        n_in = expected[i]
        assert inputs[i] == pytest.approx(requests * n_in * p_in / PER_MILLION)
        assert outputs[i] == pytest.approx(requests * round(reply * n_in) * p_out / PER_MILLION)


def test_defaults_count_with_each_tokenizer_and_price_at_the_example(lm, own_counts):
    at = open_page("token-cost")
    assert_no_exception(at)
    text = DOCS["English prose"].strip()
    check_costs(at, own_counts, text, {}, 0.25, 1000)
    assert "docs.fireworks.ai/serverless/pricing" in shown_text(at) and "Prices are yours to enter" in shown_text(at)

    heat = chart(at, "density")["data"][0]
    grid = plotly_array(heat["z"]) if isinstance(heat["z"], dict) else heat["z"]
    for row, (name, sample) in zip(grid, SAMPLES.items()):
        assert list(row) == pytest.approx([100 * own_counts(k, sample) / len(sample) for k in KEYS])

    sizes = plotly_array(chart(at, "chunks")["data"][0]["y"])
    total = own_counts("smollm2", text)
    assert sizes.sum() == total and len(sizes) == math.ceil(total / 128) and sizes.max() == 128


def test_share_link_with_own_prices_and_an_overlap(lm, own_counts):
    text = DOCS["German prose"].strip()
    params = {"doc": "German prose", "text": text, "in_o200k": "2.5", "out_o200k": "10", "in_cl100k": "inf",
              "reply": "1", "requests": "10", "measure": "tokens per word", "chunker": "GPT-4 cl100k", "size": "64",
              "overlap": "16"}
    at = open_page("token-cost", params)
    assert_no_exception(at)
    assert at.number_input(key="in_o200k").value == 2.5 and at.number_input(key="in_cl100k").value == 0.15
    check_costs(at, own_counts, text, {"o200k": (2.5, 10.0)}, 1.0, 10)
    dearest = next(m for m in at.metric if m.label.startswith("Dearest"))
    assert dearest.label == "Dearest: GPT-4o o200k"
    heat = chart(at, "density")["data"][0]
    grid = plotly_array(heat["z"]) if isinstance(heat["z"], dict) else heat["z"]
    english = SAMPLES["English prose"]
    assert grid[0][1] == pytest.approx(own_counts("cl100k", english) / len(english.split()))
    sizes = plotly_array(chart(at, "chunks")["data"][0]["y"])
    total = own_counts("cl100k", text)
    assert len(sizes) == math.ceil((total - 16) / 48) and sizes[:-1].tolist() == [64] * (len(sizes) - 1)


@pytest.mark.parametrize("params, hint", [({"text": ""}, "Paste a document"), ({"text": "🍓" * 50}, None),
                                          ({"requests": "-1e400", "reply": "nan", "size": "7"}, None)])
def test_odd_links_fall_back(lm, params, hint):
    at = open_page("token-cost", params)
    assert_no_exception(at)
    assert hint in shown_text(at) if hint else bool(at.get("plotly_chart"))
