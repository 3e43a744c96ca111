"""The temperature page shows the model's own distribution reshaped by T, follows its share link, survives bad input."""
import json

import numpy as np
import pytest

import ui.cached
from engine.decoding.generation import generate, next_token_distribution
from engine.decoding.sampling import apply_temperature, entropy_bits
from tests.pages import assert_no_exception, open_page, shown_text


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def bars(at):
    """(token labels, T = 1 percents, chosen-T percents, token ids) from the bar chart."""
    original, scaled = charts(at)[0]["data"][:2]
    return ([y.replace("\u200b", "") for y in original["y"]], original["x"], scaled["x"],
            [row[0] for row in original["customdata"]])


def metric(at, label_start):
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def test_defaults_reshape_the_models_distribution(lm):
    at = open_page("temperature")
    assert_no_exception(at)
    assert at.slider(key="t").value == pytest.approx(0.7)
    dist = next_token_distribution(lm, "My favourite food is")
    labels, original, scaled, ids = bars(at)
    order = np.argsort(-dist.probabilities, kind="stable")[:12]
    assert ids == [int(i) for i in order]
    np.testing.assert_allclose(original, 100 * dist.probabilities[order], rtol=1e-9)
    np.testing.assert_allclose(scaled, 100 * apply_temperature(dist.logits, 0.7)[order], rtol=1e-9)
    assert scaled[0] > original[0]  # T < 1 sharpens: the favourite gains
    assert metric(at, "Entropy at T = 0.70") == f"{entropy_bits(apply_temperature(dist.logits, 0.7)):.2f} bits"

    curve = charts(at)[1]["data"]
    entropies = curve[0]["y"]
    assert np.all(np.diff(entropies) > 0)   # entropy rises with T for this prompt
    expected = [entropy_bits(apply_temperature(dist.logits, t)) for t in curve[0]["x"]]
    np.testing.assert_allclose(entropies, expected, rtol=1e-9)
    assert curve[2]["x"] == [0.7]            # the current T is marked
    assert "Switch on **Generate samples**" in shown_text(at)


def test_temperature_zero_is_greedy_and_checked(lm):
    prompt = "The capital of France is"
    at = open_page("temperature", {"prompt": prompt, "t": "0"})
    assert_no_exception(at)
    _, _, scaled, ids = bars(at)
    greedy_id = generate(lm, prompt, 1).new_ids[0]
    assert ids[0] == greedy_id == int(np.argmax(next_token_distribution(lm, prompt).logits))
    assert scaled == [100.0] + [0.0] * (len(scaled) - 1)
    assert metric(at, "Entropy at T = 0 (greedy)") == "0.00 bits"
    assert any("T → 0 is greedy decoding" in s.value and "Checked" in s.value and "Paris" in s.value
               for s in at.success)


def test_share_link_restores_state_and_samples(lm):
    prompt = "The opposite of hot is"
    at = open_page("temperature", {"prompt": prompt, "t": "1.3", "top": "7", "n": "2", "len": "5",
                                   "seed": "3", "sample": "true"})
    assert_no_exception(at)
    assert at.text_area(key="prompt").value == prompt
    assert at.slider(key="t").value == pytest.approx(1.3)
    assert at.slider(key="n").value == 2 and at.slider(key="len").value == 5
    assert at.number_input(key="seed").value == 3 and at.toggle(key="sample").value
    assert len(bars(at)[0]) == 7
    samples = [generate(lm, prompt, 5, temperature=1.3, seed=3 + i) for i in range(2)]
    shown = [t.value for t in at.text]
    for s in samples:
        assert prompt + s.new_text in shown
    mean = np.mean([np.mean(s.chosen_probabilities) for s in samples])
    assert metric(at, "Average per-token probability") == f"{100 * mean:.1f}%"


def test_moving_the_slider_runs_no_forward_pass(monkeypatch):
    at = open_page("temperature")
    before = bars(at)[2]

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a slider move")
    monkeypatch.setattr(ui.cached, "next_token_distribution", no_forward)
    monkeypatch.setattr(ui.cached, "generate", no_forward)
    at.slider(key="t").set_value(1.6).run()
    assert_no_exception(at)
    after = bars(at)[2]
    assert after != before and after[0] < before[0]


def test_preset_button_sets_the_prompt():
    at = open_page("temperature")
    at.button(key="preset-confident-0").click().run()
    assert_no_exception(at)
    assert at.text_area(key="prompt").value == "The capital of France is"
    assert bars(at)[0][0] == "␣Paris"


@pytest.mark.parametrize("params", [
    {"prompt": ""}, {"prompt": "   "}, {"prompt": "a" * 100_000}, {"prompt": "🍓 emoji 日本語 العربية Ελληνικά"},
    {"prompt": "ctrl \x00\x07\x1b[0m chars"}, {"prompt": "<script>alert(1)</script> $x$ **b** :red[x]"},
    {"t": "abc", "top": "banana"}, {"t": "-1"}, {"t": "7"}, {"t": "nan"},
    {"n": "99", "len": "-3", "seed": "abc", "sample": "maybe", "unknown": "x"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("temperature", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("prompt", "x").strip() == "":
        assert "Type a prompt" in text
    elif len(params.get("prompt", "")) > 10_000:
        assert "Cut to the first" in text
    else:
        scaled = bars(at)[2]
        assert 0 <= at.slider(key="t").value <= 2 and sum(scaled) <= 100.0 + 1e-9
