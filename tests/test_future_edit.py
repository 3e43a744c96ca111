"""engine.inside.future_edit: changing the last word leaves SmolLM2's earlier vectors bit for bit the same (checked against
the model's own forward too), moves them once the mask is removed, and moves MiniLM's."""
import numpy as np
import pytest
import torch

from engine.model.encoder import load_encoder
from engine.inside.future_edit import (decoder_hidden_states, future_edit, hidden_shift, replace_last_word,
                                shared_prefix)
from engine.tokens.offsets import token_ids

TEXT = "She opened the door, looked outside, and saw that it had started to snow."


@pytest.fixture(scope="module")
def enc():
    return load_encoder()


@pytest.mark.parametrize("text, word, edited, old", [
    ("It started to snow.", "rain", "It started to rain.", "snow"),
    ("money", "fish", "fish", "money"),
    ("end with spaces!?  ", "x", "end with x!?  ", "spaces"),
    ("Größe: Straße", "Weg", "Größe: Weg", "Straße"),
    ("a_b c1", "z", "a_b z", "c1"),
])
def test_replace_last_word(text, word, edited, old):
    edit = replace_last_word(text, word)
    assert (edit.edited, edit.old_word, edit.new_word, edit.original) == (edited, old, word, text)


def test_no_word_no_edit():
    assert replace_last_word("!!! ... 🍓", "x") is None and replace_last_word("", "x") is None


def test_shared_prefix():
    assert shared_prefix([1, 2, 3], [1, 2, 4, 5]) == 2 and shared_prefix([], [1]) == 0 and shared_prefix("ab", "ab") == 2


def test_decoder_states_match_the_models_own_forward(lm):
    ids = token_ids(lm, TEXT)
    states = decoder_hidden_states(lm, ids)
    with torch.inference_mode():
        hf = lm.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False).hidden_states
    own = torch.stack(hf[:-1])[:, 0].numpy()          # the last entry comes after the final norm
    assert states.shape == (31, len(ids), 576)
    np.testing.assert_array_equal(states[0], own[0])
    np.testing.assert_allclose(states[:30], own, atol=1e-3 * np.abs(own).max())


@pytest.mark.parametrize("word", ["rain", "windowsill", "fall again"])
def test_earlier_vectors_are_bit_identical_only_under_the_mask(lm, enc, word):
    result = future_edit(lm, enc, replace_last_word(TEXT, word))
    prefix = shared_prefix(token_ids(lm, TEXT), token_ids(lm, result.edit.edited))
    assert len(result.decoder.tokens) == prefix == len(token_ids(lm, TEXT)) - 2     # all but " snow" and "."
    assert result.decoder.bit_identical and result.decoder.largest == 0.0
    assert np.all(result.decoder.max_abs == 0.0) and np.all(result.decoder.relative == 0.0)
    unmasked = result.decoder_unmasked
    assert unmasked.largest > 1.0 and np.all(unmasked.max_abs[0] == 0.0)            # the embedding never moves
    assert np.all(unmasked.relative[-1] > 0.01)
    encoder = result.encoder
    assert encoder.sees_change and encoder.tokens[0] == "[CLS]" and len(encoder.depths) == 7
    assert np.all(encoder.max_abs[0] == 0.0) and np.all(encoder.relative[-1] > 0.01) and encoder.largest > 0.1
    # independently: the model's own forward gives bit-identical earlier hidden states too
    ids_a, ids_b = token_ids(lm, TEXT), token_ids(lm, result.edit.edited)
    with torch.inference_mode():
        a, b = (torch.stack(lm.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False).hidden_states)
                for ids in (ids_a, ids_b))
    assert float((a[:, 0, :prefix] - b[:, 0, :prefix]).abs().max()) < 1e-6


def test_an_edit_the_encoder_cannot_see(lm, enc):
    result = future_edit(lm, enc, replace_last_word("It is snow.", "SNOW"))    # MiniLM lowercases
    assert not result.encoder.sees_change and result.encoder.largest == 0.0 and not result.encoder.tokens
    assert result.decoder.bit_identical and result.decoder_unmasked.largest > 0


def test_hidden_shift_measures_what_it_says():
    before = np.zeros((2, 3, 4), np.float32)
    before[..., 0] = 2.0
    after = before.copy()
    after[1, 1, 1] = 1.0
    shift = hidden_shift("m", before, after, 2, ["a", "b"], ["embedding", "layer 1"])
    assert shift.largest == 1.0 and not shift.bit_identical
    assert shift.relative[1, 1] == pytest.approx(0.5) and shift.relative[0].sum() == 0.0
    assert hidden_shift("m", before, after, 0, [], ["e", "l"]).largest == 0.0
