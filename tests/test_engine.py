"""The numbers the pages show are the model's numbers."""
import numpy as np
import pytest
import torch

from engine.model.forward import forward
from engine.decoding.generation import filter_logits, generate, next_token_distribution
from engine.tokens.text_limits import bound_text, clean_text
from engine.tokens.offsets import token_ids, token_offsets, tokenize


def test_model_card_reads_the_real_architecture(lm):
    card = lm.card
    assert (card.layers, card.d_model, card.heads, card.kv_heads, card.head_dim) == (30, 576, 9, 3, 64)
    assert card.vocab_size == 49152 and card.tied_embeddings
    assert 134_000_000 < card.parameters < 136_000_000


def test_eager_view_shares_weights_and_agrees(lm):
    assert lm.model.model.embed_tokens.weight.data_ptr() == lm.eager.model.embed_tokens.weight.data_ptr()
    ids = token_ids(lm, "Shared weights, two kernels.")
    sdpa = forward(lm, ids)
    eager = forward(lm, ids, attentions=True, hidden_states=True)
    assert np.allclose(sdpa.logits, eager.logits, atol=1e-3)
    assert eager.attentions.shape == (30, 9, len(ids), len(ids))
    assert np.allclose(eager.attentions.sum(-1), 1.0, atol=1e-5)
    assert np.allclose(np.triu(eager.attentions, k=1), 0.0)  # causal: nothing above the diagonal
    assert eager.hidden_states.shape == (31, len(ids), 576)


def test_next_token_probabilities_sum_to_one_and_match_forward(lm):
    dist = next_token_distribution(lm, "The capital of France is")
    assert dist.probabilities.sum() == pytest.approx(1.0, abs=1e-9)
    full = forward(lm, dist.prompt_ids)
    assert np.allclose(dist.logits, full.logits[-1], atol=1e-4)


def test_capital_of_france_is_paris(lm):
    top = next_token_distribution(lm, "The capital of France is").top(lm, 5)
    assert top[0].text == " Paris"
    assert top[0].probability > 0.5
    assert [t.probability for t in top] == sorted([t.probability for t in top], reverse=True)


def test_greedy_is_deterministic_and_cache_does_not_change_tokens(lm):
    a = generate(lm, "Once upon a time", 16)
    b = generate(lm, "Once upon a time", 16)
    uncached = generate(lm, "Once upon a time", 16, use_cache=False)
    assert a.new_ids == b.new_ids == uncached.new_ids
    first = next_token_distribution(lm, "Once upon a time").top(lm, 1)[0]
    assert a.new_ids[0] == first.id


def test_sampling_is_reproducible_by_seed(lm):
    runs = [generate(lm, "My favourite colour is", 12, temperature=1.0, seed=s).new_ids for s in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = torch.isfinite(filter_logits(logits, 1.0, 0, 0.8))
    assert kept.tolist() == [True, True, False, False]
    kept = torch.isfinite(filter_logits(logits, 1.0, 0, 0.81))
    assert kept.tolist() == [True, True, True, False]
    assert torch.isfinite(filter_logits(logits, 1.0, 0, 0.01)).sum() == 1  # never empty
    assert torch.isfinite(filter_logits(logits, 1.0, 2, 1.0)).tolist() == [True, True, False, False]


def test_tokenize_offsets_cover_the_text(lm):
    text = "Tokens 🍓 héllo 世界\nend"
    toks = tokenize(lm, text)
    assert [t.id for t in toks] == token_ids(lm, text)
    assert toks[0].start == 0 and toks[-1].end == len(text)
    assert lm.tokenizer.decode([t.id for t in toks]) == text


@pytest.mark.parametrize("raw", ["", "   ", "a" * 100_000, "emoji 🍓🙂 and mixed 日本語 العربية",
                                 "ctrl\x00\x07\x1b[31mred", "<script>alert(1)</script>", ["list", "value"], None])
def test_bound_text_never_raises_and_respects_limits(lm, raw):
    bounded = bound_text(raw, lambda t: token_offsets(lm, t), max_chars=4000, max_tokens=64)
    assert isinstance(bounded.text, str)
    assert len(bounded.text) <= 4000
    assert len(token_ids(lm, bounded.text)) <= 64
    assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in bounded.text)


def test_bound_text_notes_say_what_was_cut(lm):
    bounded = bound_text("word " * 499 + "word", lambda t: token_offsets(lm, t), max_chars=4000, max_tokens=64)
    assert len(token_ids(lm, bounded.text)) == 64
    assert any("64 of 500 tokens" in n for n in bounded.notes)
    assert clean_text("a\x00b")[0] == "ab"


@pytest.mark.parametrize("raw, threads", [("1", 1), (" 2 ", 2), ("", None), ("0", None), ("-1", None),
                                          ("abc", None), ("1e9", None), ("100000", None)])
def test_torch_thread_setting_accepts_only_a_sane_whole_number(monkeypatch, raw, threads):
    from engine.runtime.gate import THREADS_VARIABLE, torch_threads_from_env
    monkeypatch.setenv(THREADS_VARIABLE, raw)
    assert torch_threads_from_env() == threads
