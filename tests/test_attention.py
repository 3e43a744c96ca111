"""engine.inside.attention: captured maps are real softmax rows, the hand-made row is the model's row, statistics mean
what they say, and nothing touches the shared model."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from engine.inside.attention import attention_step, capture, findings, head_stats, pooled
from engine.model.forward import forward
from engine.tokens.offsets import token_ids

TEXT = "The animal didn't cross the street because it was too tired"


@pytest.fixture(scope="module")
def cap(lm):
    return capture(lm, TEXT)


def test_capture_shapes_rows_and_mask(lm, cap):
    n = len(token_ids(lm, TEXT))
    assert cap.attentions.shape == (30, 9, n, n)
    assert cap.hidden_states.shape == (31, n, 576)
    assert cap.tokens[8] == " it"
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, atol=1e-5)
    assert np.all(cap.attentions[..., np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] == 0)
    assert np.all(cap.attentions[:, :, 0, 0] == pytest.approx(1.0))   # the first token can only see itself
    assert not cap.attentions.flags.writeable and not cap.hidden_states.flags.writeable


def test_capture_rejects_empty_text(lm):
    with pytest.raises(ValueError):
        capture(lm, "")


@pytest.mark.parametrize("layer, head, query", [(0, 0, 11), (13, 8, 8), (29, 4, 5), (7, 2, 0), (20, 6, 11)])
def test_hand_computed_row_is_the_models_row(lm, cap, layer, head, query):
    step = attention_step(lm, cap, layer, head, query)
    assert step.kv_head == head // 3
    assert step.max_abs_difference < 1e-5
    np.testing.assert_allclose(step.weights, cap.attentions[layer, head, query], atol=1e-5)
    # every stage is what it claims to be
    np.testing.assert_allclose(step.raw_scores, step.keys @ step.q)
    np.testing.assert_allclose(step.scaled_scores, step.raw_scores / 8.0)
    assert np.all(np.isneginf(step.masked_scores[query + 1:]))
    np.testing.assert_array_equal(step.masked_scores[:query + 1], step.scaled_scores[:query + 1])
    assert step.weights[query + 1:].sum() == 0 and step.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(step.output, step.weights @ step.values)
    # the 9 hand-made head outputs rebuild the model's next hidden state (so hidden_states[L] is layer L's input)
    scale = np.abs(cap.hidden_states[layer + 1, query]).max()
    assert step.layer_output_check < 1e-5 * max(scale, 1.0) + 1e-4


def test_query_heads_of_one_group_share_keys_and_values(lm, cap):
    a, b, c = (attention_step(lm, cap, 5, h, 11) for h in (3, 4, 6))
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.q, b.q)            # different queries, so different rows
    assert not np.allclose(a.keys, c.keys)      # head 7 reads another KV head


def test_a_different_text_gives_different_vectors(lm, cap):
    other = capture(lm, "The animal didn't cross the street because it was too wide")
    s1, s2 = attention_step(lm, cap, 10, 1, 11), attention_step(lm, other, 10, 1, 11)
    assert not np.allclose(s1.q, s2.q)
    # causal: positions before the changed last word keep their keys and their attention rows
    np.testing.assert_allclose(s1.keys[:11], s2.keys[:11], atol=1e-4)
    early1, early2 = attention_step(lm, cap, 10, 1, 5), attention_step(lm, other, 10, 1, 5)
    np.testing.assert_allclose(early1.weights, early2.weights, atol=1e-5)


def test_out_of_range_indices_raise(lm, cap):
    for args in [(30, 0, 0), (0, 9, 0), (0, 0, cap.length), (-1, 0, 0)]:
        with pytest.raises(IndexError):
            attention_step(lm, cap, *args)


def test_the_shared_model_is_untouched_and_threads_agree(lm, cap):
    before = {k: v.clone() for k, v in list(lm.model.state_dict().items())[:12]}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())
    with ThreadPoolExecutor(4) as pool:
        steps = list(pool.map(lambda h: attention_step(lm, cap, 12, h % 9, 11), range(8)))
    for h in range(8):
        np.testing.assert_array_equal(steps[h].weights, attention_step(lm, cap, 12, h % 9, 11).weights)
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules()) == hooks
    for k, v in before.items():
        assert torch.equal(lm.model.state_dict()[k], v)
    assert lm.model.config._attn_implementation == "sdpa"


def test_stats_on_known_patterns():
    n = 6
    previous = np.zeros((1, 3, n, n))
    previous[0, 0, 0, 0] = 1
    previous[0, 0, np.arange(1, n), np.arange(n - 1)] = 1           # head 0: always the previous token
    previous[0, 1, :, 0] = 1                                          # head 1: always the first token
    previous[0, 2] = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]   # head 2: even spread
    stats = head_stats(previous)
    assert stats.previous_token_share[0, 0] == pytest.approx(1) and stats.mean_distance[0, 0] == pytest.approx(1)
    assert stats.entropy_bits[0, 0] == pytest.approx(0)
    assert stats.first_token_share[0, 1] == pytest.approx(1)
    assert stats.mean_distance[0, 1] == pytest.approx(np.mean(np.arange(1, n)))
    assert stats.entropy_bits[0, 2] == pytest.approx(np.mean(np.log2(np.arange(2, n + 1))))
    assert stats.self_share[0, 2] == pytest.approx(np.mean(1 / np.arange(2, n + 1)))
    found = findings(stats)
    assert [(l, h) for l, h, _ in found.previous_token_heads] == [(0, 0)]
    assert found.strongest_sink[:2] == (0, 1)
    assert found.uniform_share == pytest.approx(np.mean(1 / np.arange(2, n + 1)))
    with pytest.raises(ValueError):
        head_stats(np.ones((1, 1, 1, 1)))


def test_real_model_has_previous_token_heads_and_a_sink(cap):
    stats = head_stats(cap.attentions)
    assert stats.entropy_bits.shape == (30, 9)
    assert np.all(stats.entropy_bits >= 0) and np.all(stats.entropy_bits <= np.log2(cap.length) + 1e-9)
    found = findings(stats)
    assert found.previous_token_heads, "expected at least one head with >50% on the previous token"
    assert len(found.sink_layers) >= 10
    l, h, share = found.previous_token_heads[0]
    assert share == pytest.approx(float(np.mean([cap.attentions[l, h, i, i - 1] for i in range(1, cap.length)])))


def test_pooled_thumbnails_keep_rows_summing_to_one(cap):
    small = pooled(cap.attentions, 5)
    assert small.shape == (30, 9, 5, 5)
    np.testing.assert_allclose(small.sum(-1), 1.0, atol=1e-5)
    assert pooled(cap.attentions, 64) is cap.attentions


def test_forward_hidden_state_enters_the_layer(lm, cap):
    """hidden_states[0] is the embedding output: the first layer's input."""
    emb = lm.model.model.embed_tokens.weight[cap.ids].detach().numpy()
    np.testing.assert_allclose(cap.hidden_states[0], emb, atol=1e-6)
    fp = forward(lm, cap.ids)
    np.testing.assert_allclose(fp.logits[-1], forward(lm, cap.ids, attentions=True).logits[-1], atol=1e-3)
