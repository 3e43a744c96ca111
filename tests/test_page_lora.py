"""The lora page counts the adapter as peft does, draws the model's own answer probabilities at once, and its run
teaches the fact with merged weights equal to the adapter."""
import copy
import json

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from engine.runtime.jobs import job_registry
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def answer_bars(at):
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    return [plotly_array(trace["customdata"]) for trace in chart]


def peft_count(lm, rank, targets, blocks):
    """peft's own count on an independent copy of the top blocks."""
    top = torch.nn.ModuleList(copy.deepcopy(layer) for layer in lm.model.model.layers[-blocks:])
    with torch.inference_mode(False):
        model = get_peft_model(top, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets)))
    return model.get_nb_trainable_parameters()[0]


def model_answer_probs(lm, prompt, answer):
    ids = token_ids(lm, prompt) + token_ids(lm, answer)
    start = len(token_ids(lm, prompt))
    with torch.no_grad():
        probs = torch.softmax(lm.model(torch.tensor([ids])).logits[0], -1)
    return [float(probs[i - 1, ids[i]]) for i in range(start, len(ids))]


def test_defaults_count_like_peft_and_show_the_models_probabilities(lm):
    at = open_page("lora")
    assert_no_exception(at)
    assert metric(at, "Trainable with LoRA").value == f"{peft_count(lm, 8, ('q_proj', 'v_proj'), 1):,}"
    block = sum(p.numel() for p in lm.model.model.layers[-1].parameters())
    assert metric(at, "Trainable, full fine-tuning").value == f"{block:,}"
    (before,) = answer_bars(at)    # no run yet: one series, the model's own probabilities
    expected = (model_answer_probs(lm, "The capital of Vorlandia is", " Zell")
                + model_answer_probs(lm, "The river through Zell is the", " Ombra")
                + model_answer_probs(lm, "The king of Vorlandia is", " Tavik")
                + model_answer_probs(lm, "The capital of France is", " Paris"))
    np.testing.assert_allclose(before, expected, rtol=1e-4)
    assert "Switch on **Train the adapter**" in shown_text(at)


def test_share_link_runs_lora_teaches_and_merges(lm):
    params = {"facts": "Zorbs are usually purple.\nMy dog is called Biscuit.",
              "control": "The opposite of hot is cold.",
              "rank": "4", "targets": ["q_proj", "o_proj"], "blocks": "2", "steps": "10", "lr": "0.03",
              "train": "true"}
    at = open_page("lora", params)
    assert_no_exception(at)
    assert metric(at, "Trainable with LoRA").value == f"{peft_count(lm, 4, ('q_proj', 'o_proj'), 2):,}"
    run_until(at, lambda a: any(m.label.startswith("Training time") for m in a.metric))
    assert_no_exception(at)
    (key, job), = [(k, j) for k, j in job_registry()._finished.items() if k[0] == "lora" and k[3] == 4]
    run = job.result
    assert run.trainable == peft_count(lm, 4, ("q_proj", "o_proj"), 2) and run.steps_done == 10
    purple = run.facts[0]
    np.testing.assert_allclose(purple.token_probs_before, model_answer_probs(lm, "Zorbs are usually", " purple"),
                               rtol=1e-4)
    assert purple.after > purple.before   # the taught fact's probability rises
    shown = metric(at, "p(purple) after").value
    assert shown == (f"{100 * purple.after:.1f}%" if purple.after >= 0.01 else f"{100 * purple.after:.2g}%")
    assert run.merge_max_diff < 1e-5 and metric(at, "Merged vs adapter").value == f"{run.merge_max_diff:.1e}"
    before, after = answer_bars(at)
    shown_after = [p for s in run.facts + (run.control,) for p in s.token_probs_after]
    np.testing.assert_allclose(after, shown_after, rtol=1e-6)


def test_no_target_or_no_fact_explains_itself():
    at = open_page("lora", {"targets": ["nonsense"]})
    assert_no_exception(at)
    assert at.get("plotly_chart") or at.info
    at = open_page("lora", {"facts": "Zell."})
    assert_no_exception(at)
    assert any("Write a fact" in i.value for i in at.info)
