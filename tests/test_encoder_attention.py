"""engine.inside.encoder_attention: MiniLM's own attention maps (full, unmasked) and hidden states, read without changing
the shared encoder, consistent with the sentence embeddings other pages use, and safe across threads."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from engine.model.encoder import embed_sentences, load_encoder
from engine.inside.encoder_attention import capture_encoder, encoder_card, encoder_ids

TEXT = "I went to the bank to get some money"


@pytest.fixture(scope="module")
def enc():
    return load_encoder()


@pytest.fixture(scope="module")
def cap(enc):
    return capture_encoder(enc, TEXT)


def test_capture_shapes_tokens_and_rows(enc, cap):
    cfg = enc.model.config
    n = cap.length
    assert cap.tokens[0] == "[CLS]" and cap.tokens[-1] == "[SEP]" and "bank" in cap.tokens
    assert cap.attentions.shape == (cfg.num_hidden_layers, cfg.num_attention_heads, n, n) == (6, 12, n, n)
    assert cap.hidden_states.shape == (7, n, 384)
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, atol=1e-5)
    upper = np.triu_indices(n, 1)
    assert cap.attentions[..., upper[0], upper[1]].sum(-1).min() > 0   # every head reads later tokens: no mask
    assert not cap.attentions.flags.writeable and not cap.hidden_states.flags.writeable
    assert not cap.truncated


def test_capture_is_the_models_own_output_and_changes_nothing(enc, cap):
    before = embed_sentences(enc, [TEXT])
    with enc.tokenizing() as tok:
        batch = tok(TEXT, return_tensors="pt")
    with torch.inference_mode():
        out = enc.model(**batch, output_attentions=True, output_hidden_states=True)
    np.testing.assert_array_equal(cap.attentions, torch.stack(out.attentions)[:, 0].numpy())
    np.testing.assert_array_equal(cap.hidden_states, torch.stack(out.hidden_states)[:, 0].numpy())
    assert enc.model.config._attn_implementation == "eager"                     # the shared config is untouched
    # the last layer, mean-pooled and normalised, is the sentence embedding the other pages compute
    pooled = cap.hidden_states[-1].mean(0)
    np.testing.assert_allclose(pooled / np.linalg.norm(pooled), before[0], atol=1e-6)
    np.testing.assert_array_equal(embed_sentences(enc, [TEXT]), before)


def test_long_text_is_cut_like_the_tokenizer_cuts(enc):
    ids, cut = encoder_ids(enc, TEXT, max_tokens=5)
    with enc.tokenizing() as tok:
        expected = tok(TEXT, truncation=True, max_length=5)["input_ids"]
    assert cut and ids == expected and len(ids) == 5
    short = capture_encoder(enc, TEXT, max_tokens=5)
    assert short.truncated and short.tokens[-1] == "[SEP]" and short.attentions.shape[-1] == 5


def test_empty_text_is_refused(enc):
    with pytest.raises(ValueError):
        capture_encoder(enc, "   ")


def test_card_is_read_from_the_model(enc):
    card = encoder_card(enc)
    assert (card.architecture, card.layers, card.heads, card.d_model, card.vocab_size) == ("BertModel", 6, 12, 384,
                                                                                         30522)
    assert card.parameters == sum(p.numel() for p in enc.model.parameters()) > 20_000_000


def test_threads_share_the_encoder_safely(enc, cap):
    texts = [TEXT, "A different sentence entirely.", TEXT, "Short one"] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: capture_encoder(enc, t), texts))
    for text, result in zip(texts, results):
        if text == TEXT:
            np.testing.assert_array_equal(result.hidden_states, cap.hidden_states)
