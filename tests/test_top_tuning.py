"""Top-of-model tuning: the private top stack is the model itself until trained; LoRA counts, learns and merges."""
import numpy as np
import pytest
import torch

from engine.tokens.offsets import token_ids
from engine.training.top_tuning import Fact, TopStack, frozen_input, lora_parameter_formula, lora_stack, split_fact, \
    train_lora


def shapes(lm):
    """(d_in, d_out) of every LoRA target, from the config (independent of the module walk in the engine)."""
    c = lm.model.config
    d, kv, ffn = c.hidden_size, c.num_key_value_heads * (c.hidden_size // c.num_attention_heads), c.intermediate_size
    return {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
            "gate_proj": (d, ffn), "up_proj": (d, ffn), "down_proj": (ffn, d)}


def test_split_fact():
    assert split_fact("The capital of Vorlandia is Zell.") == Fact("The capital of Vorlandia is", " Zell")
    assert split_fact("  Zorbs   are purple!  ") == Fact("Zorbs are", " purple")
    assert split_fact("Zell.") is None and split_fact("   ") is None


def test_top_stack_is_the_model_until_trained(lm):
    ids = token_ids(lm, "The capital of France is Paris, and the capital of Italy is Rome")
    stack = TopStack(lm, 3)
    with torch.no_grad():
        ours = stack(frozen_input(lm, ids, lm.card.layers - 3).hidden)
        theirs = lm.model(torch.tensor([ids])).logits
    assert float((ours - theirs).abs().max()) < 1e-4
    assert not any(p is q for p in stack.parameters() for q in lm.model.parameters())


ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize("rank,targets,blocks", [(4, ("q_proj", "v_proj"), 1), (2, ALL, 2)])
def test_trainable_count_matches_peft_and_formula(lm, rank, targets, blocks):
    trainable, _ = lora_stack(lm, blocks, rank, targets).get_nb_trainable_parameters()
    by_hand = blocks * sum(rank * sum(shapes(lm)[t]) for t in targets)
    assert trainable == by_hand == lora_parameter_formula(lm, blocks, rank, targets)


def test_lora_teaches_a_fact_merges_exactly_and_leaves_the_model_alone(lm):
    weight = lm.model.model.layers[-1].self_attn.q_proj.weight
    before_weight = weight.detach().clone()
    run = train_lora(lm, [split_fact("The capital of Vorlandia is Zell.")], split_fact("The opposite of hot is cold."),
                     rank=4, targets=("q_proj", "v_proj"), blocks=1, steps=8, lr=3e-2, timing_steps=1)
    fact = run.facts[0]
    # "before" is the full model's own probability of the answer tokens
    ids = token_ids(lm, fact.fact.prompt) + token_ids(lm, fact.fact.answer)
    start = len(token_ids(lm, fact.fact.prompt))
    with torch.no_grad():
        probs = torch.softmax(lm.model(torch.tensor([ids])).logits[0], -1)
    expected = [float(probs[i - 1, ids[i]]) for i in range(start, len(ids))]
    np.testing.assert_allclose(fact.token_probs_before, expected, rtol=1e-4)
    assert fact.after > 10 * fact.before and run.losses[-1] < run.losses[0]
    assert run.merge_max_diff < 1e-5
    assert len(run.singular_values) == 2 and all(len(v) == 4 for v in run.singular_values)
    assert run.lora_optimizer_bytes == 2 * 4 * run.trainable   # Adam: two float32 moments per trainable weight
    assert torch.equal(weight, before_weight)
