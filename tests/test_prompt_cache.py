"""Prefix KV reuse on the live model: copies are independent, answers match runs from scratch, bytes are real."""
import pytest
import torch

from engine.serving.prompt_cache import (compare_prefix_reuse, copy_cache, new_cache, prefill_share_saved,
                                 shared_prefix_length)
from engine.tokens.offsets import token_ids


def test_shared_prefix_length_and_saved_share():
    assert shared_prefix_length([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert shared_prefix_length([1, 2], [1, 2, 3]) == 2
    assert shared_prefix_length([], [1]) == 0 and shared_prefix_length([5], [6]) == 0
    assert prefill_share_saved(1900, 100) == pytest.approx(0.95)
    assert prefill_share_saved(0, 0) == 0.0


def test_a_copied_cache_is_independent_of_the_original(lm):
    ids = token_ids(lm, "The river runs past the old mill and under the stone bridge.")
    cache = new_cache(lm)
    with torch.inference_mode():
        lm.model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
        before = cache.layers[3].values.clone()
        copied = copy_cache(cache)
        lm.model(torch.tensor([ids[:2]]), past_key_values=copied, use_cache=True)
    assert copied.get_seq_length() == len(ids) + 2 and cache.get_seq_length() == len(ids)
    assert torch.equal(cache.layers[3].values, before)
    assert copied.layers[3].values.data_ptr() != cache.layers[3].values.data_ptr()


def test_reuse_gives_the_answers_of_a_run_from_scratch_and_weighs_the_real_cache(lm):
    prefix = token_ids(lm, "Notes: the ferry leaves at six, the museum closes at five, tickets cost four euros.")
    suffixes = [token_ids(lm, "\nQuestion: When does the ferry leave?\nAnswer:"),
                token_ids(lm, "\nQuestion: What do tickets cost?\nAnswer:")]
    result = compare_prefix_reuse(lm, prefix, suffixes, 4)
    assert len(result.readers) == 2 and result.prefix_cache_unchanged
    assert result.cache_tokens == len(prefix) and result.layers == lm.model.config.num_hidden_layers
    config = lm.model.config
    head_dim = config.hidden_size // config.num_attention_heads
    assert result.cache_bytes == 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4 * len(prefix)
    for reader, suffix in zip(result.readers, suffixes):
        # An independent greedy loop without any cache: the whole sequence every step.
        seq, expected = prefix + suffix, []
        with torch.inference_mode():
            for _ in range(4):
                expected.append(int(torch.argmax(lm.model(torch.tensor([seq]), use_cache=False).logits[0, -1])))
                seq = seq + expected[-1:]
        assert reader.warm.new_ids == expected == reader.cold.new_ids and reader.identical
        assert 0 < reader.warm.first_token_s <= reader.warm.total_s
    assert result.saved_shares() == [len(prefix) / (len(prefix) + len(s)) for s in suffixes]


def test_empty_inputs_are_refused(lm):
    with pytest.raises(ValueError):
        compare_prefix_reuse(lm, [], [[1]], 2)
    with pytest.raises(ValueError):
        compare_prefix_reuse(lm, [1, 2], [[]], 2)
