"""engine.model.perplexity: the unchanged model's perplexity is the model's own loss; interventions raise it; cached."""
import numpy as np
import pytest
import torch

from engine.model import perplexity as ppl
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions

TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day, and the children played in the park."


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


def test_unchanged_model_matches_its_own_loss(lm, ids):
    result = ppl.perplexity(lm, ids)
    with torch.inference_mode():
        loss = lm.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert result.token_nll.shape == (len(ids) - 1,)
    assert result.mean_nll == pytest.approx(loss, rel=1e-5)
    assert result.perplexity == pytest.approx(np.exp(loss), rel=1e-5)
    assert 0 < result.top1_accuracy < 1


def test_removing_order_information_raises_perplexity(lm, ids):
    base = ppl.perplexity(lm, ids).perplexity
    assert ppl.perplexity(lm, ids, Interventions(rope=False)).perplexity > 1.5 * base
    assert ppl.perplexity(lm, ids, Interventions(causal_mask=False)).perplexity < base   # it sees the answers


def test_results_are_cached_by_tokens_and_intervention(lm, ids):
    ppl.clear_cache()
    first = ppl.perplexity(lm, ids, Interventions(kv_groups=1))
    assert ppl.perplexity(lm, list(ids), Interventions(kv_groups=1)) is first
    assert ppl.perplexity(lm, ids, Interventions(kv_groups=3)) is not first
    with pytest.raises(ValueError):
        first.token_nll[0] = 0.0


def test_a_single_token_scores_nothing(lm):
    result = ppl.perplexity(lm, token_ids(lm, "Hi")[:1])
    assert result.token_nll.size == 0 and np.isnan(result.perplexity)
