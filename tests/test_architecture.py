"""The transformer stages on the live model: the parameter split adds up to the model's own count, each stage's
view is the traced pass's tensor, skipping a block is a pass-through, and the prose's figures hold."""
import numpy as np
import pytest
import torch

from engine.model.architecture import (GLIMPSE_CHANNELS, STAGE_KEYS, STAGES, SkipBlocks, block_interventions, describe,
                                 model_logits, outcome, parameter_split, stage_pass, stage_view)
from engine.model.perplexity import perplexity
from engine.tokens.offsets import decode_each, token_ids
from engine.model.traced import trace

TEXT = "The Eiffel Tower is in Paris, and the Colosseum is in"


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


def test_parameter_split_adds_up_to_the_model(lm):
    split = parameter_split(lm)
    assert split.adds_up and split.total == lm.card.parameters == 134_515_008
    assert split.tied
    # the figures of concepts/transformer.md
    assert split.per_stage["embedding"] == 28_311_552
    assert split.per_layer["qkv"] + split.per_layer["o_proj"] == 884_736
    assert split.per_layer["ffn"] == 2_654_208
    assert split.per_layer["attn_norm"] + split.per_layer["ffn_norm"] == 1_152
    assert sum(split.per_layer.values()) * split.layers + split.per_stage["embedding"] + \
        split.per_stage["final_norm"] == split.model_total
    assert split.per_stage["lm_head"] == 0


def test_stage_views_are_the_traced_tensors(lm, ids):
    tp = stage_pass(lm, ids, 4)
    labels = decode_each(lm, ids)
    p = 5
    views = {k: stage_view(lm, tp, k, p, labels) for k in STAGE_KEYS}
    np.testing.assert_array_equal(views["embedding"].token_output, lm.model.model.embed_tokens.weight[ids[p]].numpy())
    np.testing.assert_array_equal(views["attn_norm"].matrix, tp.at("attn_norm_out", 4)[:, :GLIMPSE_CHANNELS])
    assert views["qkv"].matrix.shape == (9 + 3 + 3, 64)
    assert dict(views["qkv"].shapes) == {"q": (9, len(ids), 64), "k": (3, len(ids), 64), "v": (3, len(ids), 64)}
    np.testing.assert_allclose(views["attention"].matrix.sum(-1), 1.0, atol=1e-5)    # softmax rows over keys <= p
    assert views["attention"].matrix.shape == (9, p + 1)
    np.testing.assert_array_equal(views["add_ffn"].token_output, tp.at("resid_out", 4)[p])
    assert views["lm_head"].top_ids[0] == int(np.argmax(tp.logits[p]))
    # the stream after the attention add is the stream before plus the attention output
    np.testing.assert_allclose(views["add_attention"].token_output,
                               tp.at("resid_in", 4)[p] + views["o_proj"].token_output, atol=1e-5)


def test_traced_logits_equal_the_models_own(lm, ids):
    tp = stage_pass(lm, ids, 4)
    assert np.abs(model_logits(lm, ids) - tp.logits).max() < 1e-3


def test_skipping_a_block_passes_the_stream_through(lm, ids):
    tp = trace(lm, ids, record={"resid_in", "resid_out"}, layers=[7],
               interventions=block_interventions(frozenset({7})))
    np.testing.assert_array_equal(tp.at("resid_out", 7), tp.at("resid_in", 7))
    assert SkipBlocks(frozenset({7})) == SkipBlocks(frozenset({7}))   # equal keys for the perplexity cache
    w = lm.model.model.layers[7].mlp.down_proj.weight
    assert torch.count_nonzero(SkipBlocks(frozenset({7}))("layers.7.mlp.down_proj", w)) == 0
    assert SkipBlocks(frozenset({7}))("layers.8.mlp.down_proj", w) is w


def test_outcome_scores_like_the_shared_perplexity(lm, ids):
    iv = block_interventions(frozenset({0}), None)
    assert outcome(lm, ids, iv).perplexity == pytest.approx(perplexity(lm, ids, iv).perplexity, rel=1e-6)
    assert outcome(lm, ids, block_interventions()).perplexity == pytest.approx(perplexity(lm, ids).perplexity)
    early = outcome(lm, ids, block_interventions(exit_layer=10))
    assert early.perplexity > outcome(lm, ids, block_interventions()).perplexity


def test_descriptions_read_the_models_sizes(lm):
    text = describe(STAGES[STAGE_KEYS.index("qkv")], lm)
    assert f"{lm.card.heads} query heads" in text and f"{lm.card.kv_heads} key" in text
