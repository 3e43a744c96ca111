"""The dpo page: ln 2 at step 0, the reference's log-probabilities are SmolLM2's own, and every loss it shows after
training equals -log sigmoid(beta (chosen margin - rejected margin)) recomputed from the log-probabilities it shows."""
import math

import numpy as np
import pytest
import torch

from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until, shown_text

PROMPT, CHOSEN, REJECTED = ("What is the capital of France?", "The capital of France is Paris.",
                            "France is a country in Europe and it has many cities.")


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def trained(at):
    return any(m.label.startswith("DPO loss after") for m in at.metric)


def answer_logprob(lm, prompt, answer):
    """Summed ln p of the answer's tokens (through <|im_end|>) after the templated prompt, by a plain forward."""
    tok = lm.tokenizer
    head = list(tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                        add_generation_prompt=True)["input_ids"])
    full = list(tok.apply_chat_template([{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": answer}], tokenize=True)["input_ids"])
    end = max(i for i, t in enumerate(full) if t == tok.convert_tokens_to_ids("<|im_end|>"))
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([full])).logits[0].double(), -1)
    return sum(float(logp[t - 1, full[t]]) for t in range(len(head), end + 1))


def check_shown_losses(at, beta):
    table = at.dataframe[0].value
    for _, row in table.iterrows():
        chosen_margin = row["log π(chosen)"] - row["log π_ref(chosen)"]
        z = beta * (chosen_margin - (row["log π(rejected)"] - row["log π_ref(rejected)"]))
        assert row["DPO loss"] == pytest.approx(-math.log(1 / (1 + math.exp(-z))), abs=1e-6)
        assert row["chosen margin"] == pytest.approx(row["log π(chosen)"] - row["log π_ref(chosen)"], abs=1e-9)
    assert metric(at, "DPO loss after").value == f"{table['DPO loss'].mean():.4f}"
    accurate = int((table["chosen margin"] > table["rejected margin"]).sum())
    assert metric(at, "Reward accuracy").value == f"{accurate} of {len(table)}"
    return table


def test_defaults_start_at_ln2_and_show_consistent_losses(lm):
    at = open_page("dpo")
    assert_no_exception(at)
    assert metric(at, "DPO loss at step 0").value == f"{math.log(2):.4f}"
    ref_c = answer_logprob(lm, PROMPT, CHOSEN)
    assert metric(at, "log π_ref(chosen)").value == f"{ref_c:.3f} nats"
    assert metric(at, "log π_ref(rejected)").value == f"{answer_logprob(lm, PROMPT, REJECTED):.3f} nats"
    assert len(at.get("plotly_chart")) >= 1      # the reference map comes before the training job
    run_until(at, trained, timeout=300)
    assert_no_exception(at)
    table = check_shown_losses(at, 0.1)
    assert table["log π_ref(chosen)"][0] == pytest.approx(ref_c, abs=2e-3)
    steps = chart(at, "steps_chart")["data"]
    chosen = plotly_array(steps[0]["y"])
    assert len(chosen) == 9 and chosen[-1] == pytest.approx(table["log π(chosen)"][0], abs=1e-9)
    assert ("Both fell" in shown_text(at)) == (chosen[-1] < chosen[0])
    loss = plotly_array(chart(at, "loss_chart")["data"][0]["y"])
    assert loss[-1] == pytest.approx(table["DPO loss"].mean(), abs=1e-9)


def test_share_link_with_one_pair_a_larger_beta_and_the_rejected_heat_map(lm):
    pairs = "What is 2 + 2? | 2 + 2 is 4. | I like turtles."
    at = open_page("dpo", {"pairs": pairs, "beta": "0.5", "steps": "3", "lr": "0.0003"})
    assert_no_exception(at)
    assert metric(at, "DPO loss at step 0").value == "0.6931"
    run_until(at, trained, timeout=300)
    assert_no_exception(at)
    table = check_shown_losses(at, 0.5)
    assert len(table) == 1 and table["chosen margin"][0] > table["rejected margin"][0]
    rewards = chart(at, "reward_chart")["data"][0]
    z = plotly_array(rewards["z"])
    assert np.nansum(z[0]) == pytest.approx(0.5 * table["chosen margin"][0], abs=1e-6)
    assert np.nansum(z[1]) == pytest.approx(0.5 * table["rejected margin"][0], abs=1e-6)


def test_a_line_without_bars_explains_itself():
    at = open_page("dpo", {"pairs": "just a prompt"})
    assert_no_exception(at)
    assert any("Write a line" in i.value for i in at.info)
