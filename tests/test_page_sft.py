"""The sft page masks exactly the template's prompt, shows the loss transformers computes with those labels, and its
SFT steps lower the labelled loss."""
import json

import numpy as np
import torch

from engine.runtime.jobs import job_registry
from engine.training.sft import IGNORE
from tests.pages import assert_no_exception, open_page, run_until, shown_text

USER, ANSWER = "What is the capital of Vorlandia?", "The capital of Vorlandia is Zell."
MASKED = "rgba(136,136,136,0.45)"


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def independent_labels(lm, user, answer, mask_end=False):
    """Labels built from the tokenizer's own template: -100 on the prompt (rendered up to the assistant header)
    and after the answer's <|im_end|>."""
    tok = lm.tokenizer
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    ids = list(tok.apply_chat_template(msgs, tokenize=True)["input_ids"])
    prompt = list(tok.apply_chat_template(msgs[:1], tokenize=True, add_generation_prompt=True)["input_ids"])
    end = len(ids) - 1 - ids[::-1].index(tok.convert_tokens_to_ids("<|im_end|>"))
    last = end - 1 if mask_end else end
    labels = [t if len(prompt) <= i <= last else IGNORE for i, t in enumerate(ids)]
    return ids, labels


def hf_loss(lm, ids, labels):
    with torch.no_grad():
        return float(lm.model(torch.tensor([ids]), labels=torch.tensor([labels])).loss)


def bar_colours(at, index=0):
    return json.loads(at.get("plotly_chart")[index].proto.spec)["data"][0]["marker"]["color"]


def test_defaults_mask_the_prompt_where_the_template_says(lm):
    at = open_page("sft")
    assert_no_exception(at)
    ids, labels = independent_labels(lm, USER, ANSWER)
    trained = [c != MASKED for c in bar_colours(at)]
    assert trained == [label != IGNORE for label in labels[1:]]
    assert metric(at, "Tokens with a label").value == str(sum(trained))
    expected = f"{hf_loss(lm, ids, labels):.4f} nats"
    assert metric(at, "SFT loss").value == expected == metric(at, "transformers' loss").value
    assert "Switch on **Run the SFT steps**" in shown_text(at)


def test_every_token_mode_labels_all_but_the_first(lm):
    at = open_page("sft", {"mode": "everything"})
    assert_no_exception(at)
    ids, _ = independent_labels(lm, USER, ANSWER)
    assert metric(at, "Tokens with a label").value == str(len(ids) - 1)
    assert metric(at, "SFT loss").value == f"{hf_loss(lm, ids, [IGNORE] + ids[1:]):.4f} nats"


def test_share_link_drops_the_end_token_and_trains(lm):
    pairs = "Who rules Vorlandia? | King Tavik rules Vorlandia."
    at = open_page("sft", {"pairs": pairs, "mode": "drop-end", "steps": "4", "lr": "0.0003", "train": "true"})
    assert_no_exception(at)
    ids, labels = independent_labels(lm, "Who rules Vorlandia?", "King Tavik rules Vorlandia.", mask_end=True)
    assert [c != MASKED for c in bar_colours(at)] == [label != IGNORE for label in labels[1:]]
    assert metric(at, "SFT loss").value == f"{hf_loss(lm, ids, labels):.4f} nats"
    run_until(at, lambda a: any(m.label.startswith("Trained parameters") for m in a.metric))
    assert_no_exception(at)
    (job,) = [j for k, j in job_registry()._finished.items() if k[0] == "sft" and k[2] == "drop-end"]
    run = job.result
    assert run.steps_done == 4 and run.losses[-1] < run.losses[0]
    keep = np.array([label != IGNORE for label in labels[1:]])
    after = float(run.token_losses_after[keep].mean())
    assert after < hf_loss(lm, ids, labels)
    assert metric(at, "Labelled loss after").value == f"{after:.4f} nats"
    assert metric(at, "End-of-turn probability").value == f"{100 * run.end_prob_after:.1f}%"


def test_a_line_without_a_bar_explains_itself():
    at = open_page("sft", {"pairs": "just a question"})
    assert_no_exception(at)
    assert any("Write a pair" in i.value for i in at.info)
