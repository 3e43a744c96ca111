"""engine.inside.causal_mask: with the mask the model's weights above the diagonal are exactly 0 and equal the eager
module's; without it they are not; the shares mean what they say."""
import numpy as np
import pytest
import torch

from engine.inside.causal_mask import (compare_mask, even_first_token_share, first_token_share, later_share, mask_matrix,
                                next_token_share)
from engine.decoding.generation import next_token_distribution
from engine.tokens.offsets import token_ids

TEXT = "She opened the door, looked outside, and saw that it had started to snow."


@pytest.fixture(scope="module")
def cmp(lm):
    return compare_mask(lm, token_ids(lm, TEXT))


def test_masked_weights_are_the_models_own_and_exactly_zero_above_the_diagonal(lm, cmp):
    n = cmp.length
    upper = np.triu_indices(n, 1)
    assert cmp.masked.shape == cmp.unmasked.shape == (30, 9, n, n)
    assert np.all(cmp.masked[..., upper[0], upper[1]] == 0.0)                  # exactly, not approximately
    np.testing.assert_allclose(cmp.masked.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cmp.unmasked.sum(-1), 1.0, atol=1e-5)
    with torch.inference_mode():
        eager = lm.eager(torch.tensor([list(cmp.ids)]), output_attentions=True, use_cache=False).attentions
    np.testing.assert_allclose(cmp.masked, torch.stack(eager)[:, 0].numpy(), atol=1e-5)
    assert later_share(cmp.masked).max() == 0.0
    assert later_share(cmp.unmasked).mean() > 0.1                              # without the mask, weight goes ahead
    assert not cmp.masked.flags.writeable and not cmp.unmasked.flags.writeable


def test_next_token_guesses(lm, cmp):
    dist = next_token_distribution(lm, TEXT)
    assert cmp.next_masked.ids[0] == int(np.argmax(dist.logits))
    assert cmp.next_masked.probabilities[0] == pytest.approx(dist.probabilities.max(), rel=1e-4)
    assert np.all(np.diff(cmp.next_masked.probabilities) <= 0) and len(cmp.next_masked.ids) == 8
    paris = compare_mask(lm, token_ids(lm, "The capital of France is"))
    assert paris.next_masked.texts[0] == " Paris"
    assert " Paris" not in paris.next_unmasked.texts[:1]                       # the unmasked model loses it


def test_shares_on_hand_made_maps():
    n = 5
    causal_even = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]
    full_even = np.full((n, n), 1 / n)
    assert later_share(causal_even) == 0.0
    assert later_share(full_even) == pytest.approx(np.mean(np.arange(n - 1, -1, -1) / n))
    assert first_token_share(causal_even) == pytest.approx(even_first_token_share(n, True))
    assert first_token_share(full_even) == pytest.approx(even_first_token_share(n, False)) == pytest.approx(0.2)
    shifted = np.eye(n, k=1)
    shifted[-1, -1] = 1.0
    assert next_token_share(shifted) == 1.0 and next_token_share(causal_even) == 0.0
    m = mask_matrix(3)
    assert m[0, 0] == 0 and np.isneginf(m[0, 1]) and m[2, 0] == 0 and np.isneginf(m[1, 2])
    with pytest.raises(ValueError):
        first_token_share(np.ones((1, 1)))


def test_empty_text_is_refused(lm):
    with pytest.raises(ValueError):
        compare_mask(lm, [])


def test_charts_draw_the_numbers_they_are_given():
    from charts.causal import attention_map, mask_matrix, shift_bars

    weights = np.tril(np.full((3, 3), 0.5))
    weights[0, 0] = 1.0
    fig = attention_map(weights, ["a", "<b>", "c"], "t", "solid")
    heat, edge = fig.data
    assert np.array_equal(np.asarray(heat.z), weights)                        # exact zeros stay zeros, not blanks
    assert list(heat.y) == [1, 2, 3] and list(fig.layout.yaxis.ticktext) == ["a", "&lt;b&gt;", "c"]  # escaped
    assert list(edge.x) == [1.5, 1.5, 2.5, 2.5, 3.5, 3.5] and edge.line.dash == "solid"
    masked = mask_matrix(3, ["a", "b", "c"]).data[1]                          # the −∞ cells, above the diagonal
    assert np.array_equal(~np.isnan(np.asarray(masked.z, dtype=float)), np.triu(np.ones((3, 3), bool), 1))
    bars = shift_bars([("zero", ["x", "y"], np.zeros(2)), ("some", ["x", "y"], np.array([0.5, 0.004]))])
    assert list(bars.data[0].text) == ["0", "0"] and list(bars.data[1].text) == ["50%", "0.4%"]
    assert bars.layout.yaxis2.range[1] == pytest.approx(0.625)               # each row on its own scale
