"""The sampling page: the samples are `generate`'s seeded samples, the same link draws the same ones, T = 0 is
greedy, and the diversity numbers are computed from the samples shown."""
import json

import pytest

from engine.decoding.diversity import distinct_n, mean_pairwise_similarity
from engine.model.encoder import embed_sentences, load_encoder
from engine.decoding.generation import generate
from tests.pages import assert_no_exception, open_page, run_until

DEFAULT = "My favourite thing about the weekend is"


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def shown_samples(at, prompt):
    bodies = [m.value.replace("\\", "") for m in at.markdown if m.value.startswith(f"*{prompt}")]
    return [b[len(prompt) + 2:] for b in bodies]


def test_defaults_draw_the_seeded_samples_and_measure_them(lm):
    at = open_page("sampling")
    assert_no_exception(at)
    runs = [generate(lm, DEFAULT, 16, temperature=0.8, seed=i) for i in range(4)]
    assert shown_samples(at, DEFAULT) == [r.new_text for r in runs]
    assert metric(at, "Distinct 2-grams") == f"{100 * distinct_n([r.new_ids for r in runs], 2):.0f}%"
    similarity = mean_pairwise_similarity(embed_sentences(load_encoder(), [r.new_text for r in runs]))
    assert metric(at, "Meaning similarity") == f"{100 * similarity:.0f}%"
    again = open_page("sampling")
    assert shown_samples(again, DEFAULT) == shown_samples(at, DEFAULT)      # same seed, same samples


def test_share_link_at_zero_temperature_is_greedy_and_the_sweep_arrives(lm):
    prompt = "A good name for a pet turtle is"
    at = open_page("sampling", {"prompt": prompt, "t": "0", "n": "3", "len": "6", "seed": "42"})
    assert_no_exception(at)
    assert shown_samples(at, prompt) == [generate(lm, prompt, 6).new_text] * 3
    assert metric(at, "Different samples") == "1 of 3"
    first_draw = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    greedy_first = generate(lm, prompt, 1).new_ids[0]
    kept = next(trace for trace in first_draw if trace["name"] == "kept")
    assert [row[0] for row in kept["customdata"]] == [greedy_first]   # T = 0: only the argmax can be drawn
    assert first_draw[-1]["x"] == pytest.approx([100.0])             # ...with all the probability
    run_until(at, lambda a: len(a.get("plotly_chart")) == 2)
    curve = json.loads(at.get("plotly_chart")[1].proto.spec)["data"]
    assert curve[0]["x"] == [0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 2.0]
    assert curve[1]["y"][0] == pytest.approx(100.0, abs=1e-3)       # T = 0: identical samples, similarity 1
    assert curve[0]["y"][-1] > curve[0]["y"][0]                     # more distinct pairs at T = 2 than at T = 0
