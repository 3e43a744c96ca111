"""The repetition-penalty page: the already-seen tokens' logits are the model's, penalised by each formula
(sign-aware for the multiplicative one), and the greedy runs are the engine's penalised decoding."""
import json
from collections import Counter

import numpy as np
import pytest
import torch

from engine.decoding.generation import generate
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, shown_text

DEFAULT = "I love you. I love you. I"


def first_logits(lm, text):
    with torch.inference_mode():
        return lm.model(torch.tensor([token_ids(lm, text)])).logits[0, -1].float().numpy()


def bars(at):
    return {trace["name"]: trace["y"] for trace in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}


def expected_after(logits, ids, theta, alpha, beta):
    counts = Counter(ids)
    shown = sorted(counts, key=lambda t: -logits[t])[:10]
    z = logits[shown]
    c = np.array([counts[t] for t in shown], dtype=np.float32)
    return z, {"multiplicative": np.where(z > 0, z / theta, z * theta), "frequency": z - alpha * c,
               "presence": z - beta}


@pytest.mark.parametrize("params, theta, alpha, beta", [
    ({}, 1.3, 0.5, 1.0),
    ({"prompt": "Colours: red, green, blue, yellow,", "theta": "1.8", "alpha": "1.5", "beta": "0.3"}, 1.8, 1.5, 0.3),
])
def test_seen_tokens_logits_follow_each_formula(lm, params, theta, alpha, beta):
    at = open_page("repetition-penalty", params)
    assert_no_exception(at)
    text = params.get("prompt", DEFAULT)
    z, after = expected_after(first_logits(lm, text), token_ids(lm, text), theta, alpha, beta)
    shown = bars(at)
    np.testing.assert_allclose(shown["no penalty"], z, rtol=1e-4, atol=1e-4)
    for kind, values in after.items():
        name = next(n for n in shown if n.startswith(kind))
        np.testing.assert_allclose(shown[name], values, rtol=1e-4, atol=1e-4)
        assert all(a < b for a, b in zip(shown[name], z))   # every penalty lowers every seen logit
    # Seen tokens' logits here are positive, so the negative case is worked on the step's lowest real logit.
    logits = first_logits(lm, text)
    low = float(logits.min())
    assert low < 0
    text_shown = shown_text(at)
    assert f"would take it to {low * theta:.2f}" in text_shown and f"would give {low / theta:.2f}" in text_shown


def test_the_table_compares_real_runs_and_no_penalty_is_greedy(lm):
    at = open_page("repetition-penalty")
    table = at.dataframe[0].value
    assert list(table["penalty"]) == ["none", "multiplicative θ=1.30", "frequency α=0.5", "presence β=1.0"]
    assert table.iloc[0]["continuation"] == generate(lm, DEFAULT, 24).new_text
    assert table.iloc[0]["longest loop (tokens)"] > table.iloc[1]["longest loop (tokens)"]


def test_not_counting_the_prompt_says_why_the_first_step_is_unchanged(lm):
    at = open_page("repetition-penalty", {"prompt_counts": "false"})
    assert_no_exception(at)
    assert "Nothing has been seen yet" in shown_text(at)
