"""engine.inside.gqa: the head layout matches the traced forward, the byte counts come from real tensors, pooling the
KV heads is what kv_groups=1 does (in every layer or only some), and the shared weights are never touched."""
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.inside.gqa import (PooledKV, attention_variants, head_differences, pooled_interventions, query_groups,
                        sibling_summary, traced_kv_bytes)
from engine.serving.kv_cache import PUBLISHED, live_element_size, live_spec
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace

TEXT = "The quick brown fox jumps over the lazy dog, and then the dog chases the fox back across the field."


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


def test_query_groups_follow_the_config_and_the_kernel(lm):
    assert query_groups(9, 3) == ((0, 1, 2), (3, 4, 5), (6, 7, 8))
    assert query_groups(lm.card.heads, lm.card.kv_heads) == query_groups(9, 3)
    assert query_groups(4, 4) == ((0,), (1,), (2,), (3,)) and query_groups(4, 1) == ((0, 1, 2, 3),)
    with pytest.raises(ValueError):
        query_groups(9, 2)
    # The traced pass's explicit path gives query head h the KV head h // 3: with a KV head's values zeroed
    # (by zeroing its rows of v_proj in layer 0), exactly that group's head outputs vanish.
    def no_kv_head_1(name, w):
        if name != "layers.0.self_attn.v_proj":
            return w
        w = w.clone()
        w[64:128] = 0
        return w
    tp = trace(lm, token_ids(lm, "One two three four"), record={"head_out"}, layers=[0],
               interventions=Interventions(weight_transform=no_kv_head_1))
    silent = [h for h in range(9) if np.abs(tp.at("head_out", 0)[h]).max() == 0]
    assert silent == [3, 4, 5]


def test_head_differences():
    rng = np.random.default_rng(0)
    probs = rng.random((3, 5, 5))
    probs = np.tril(probs)
    probs /= probs.sum(-1, keepdims=True)
    probs[1] = probs[0]                                   # head 2 is a copy of head 1
    d = head_differences(probs)
    assert d.shape == (3, 3) and np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    assert d[0, 1] == 0 and 0 < d[0, 2] <= 1
    one_hot = np.zeros((2, 3, 3))
    one_hot[0, :, 0] = 1                                  # head 1: all weight on token 1
    one_hot[1, 0, 0], one_hot[1, 1, 1], one_hot[1, 2, 2] = 1, 1, 1   # head 2: on itself
    assert head_differences(one_hot)[0, 1] == pytest.approx(1.0)      # queries 2 and 3 share nothing
    s = sibling_summary(np.array([[0, .1, .5, .5], [.1, 0, .5, .5], [.5, .5, 0, .3], [.5, .5, .3, 0]]),
                        ((0, 1), (2, 3)))
    assert s.within == pytest.approx(0.2) and s.across == pytest.approx(0.5)


def test_attention_variants_and_traced_bytes(lm, ids):
    spec, element = live_spec(lm), live_element_size(lm)
    assert element == 4
    variants = {v.kind: v for v in attention_variants(spec, element)}
    assert {k: v.bytes_per_token for k, v in variants.items()} == {"MHA": 138_240, "GQA": 46_080, "MQA": 15_360}
    assert variants["GQA"].configured and not variants["MHA"].configured
    llama2_7b = next(s for s in PUBLISHED if s.name == "LLaMA-2-7B")          # itself MHA: no GQA row
    assert [v.kind for v in attention_variants(llama2_7b, 2)] == ["MHA", "MQA"]

    # Bytes read from the tensors: the traced pass's own K and V, and the model's real DynamicCache.
    grouped, shape = traced_kv_bytes(lm, ids)
    pooled, pooled_shape = traced_kv_bytes(lm, ids, Interventions(kv_groups=1))
    assert shape == (3, len(ids), 64) and pooled_shape == (1, len(ids), 64)
    assert grouped == 46_080 * len(ids) and pooled == 15_360 * len(ids)
    from transformers import DynamicCache
    cache = DynamicCache(config=lm.model.config)
    with torch.inference_mode():
        lm.model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
    real = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert real == grouped and tuple(cache.layers[0].keys.shape) == (1, 3, len(ids), 64)


def test_pooled_kv_in_every_layer_is_kv_groups_1(lm, ids):
    everywhere = Interventions(weight_transform=PooledKV(frozenset(range(30)), 3, 64))
    a = trace(lm, ids, interventions=Interventions(kv_groups=1)).logits
    b = trace(lm, ids, interventions=everywhere).logits
    assert np.abs(a - b).max() < 5e-3 * np.abs(a).max()    # the same computation, summed in another order
    assert np.abs(a - trace(lm, ids).logits).max() > 1.0
    assert pooled_interventions(lm, 0, 29) == Interventions(kv_groups=1)
    assert pooled_interventions(lm, -5, 99) == Interventions(kv_groups=1)      # clamped
    with pytest.raises(ValueError):
        pooled_interventions(lm, 9, 3)


def test_pooling_some_layers(lm, ids):
    some = pooled_interventions(lm, 4, 7)
    assert some == pooled_interventions(lm, 4, 7) and hash(some) == hash(pooled_interventions(lm, 4, 7))
    plain = trace(lm, ids, record={"k", "v", "resid_in"})
    pooled = trace(lm, ids, record={"k", "v", "resid_in"}, interventions=some)
    np.testing.assert_array_equal(pooled["resid_in"][:5], plain["resid_in"][:5])   # layers 0-4 see the same input
    np.testing.assert_array_equal(pooled.at("k", 3), plain.at("k", 3))
    k4 = pooled.at("k", 4)
    assert np.allclose(k4[0], k4[1], atol=1e-6) and np.allclose(k4[0], k4[2], atol=1e-6)    # one shared KV head
    np.testing.assert_allclose(k4[0], plain.at("k", 4).mean(0), atol=1e-5)   # = the mean of the three
    assert not np.allclose(pooled.at("k", 8)[0], pooled.at("k", 8)[1])          # layer 8 keeps its own three
    before = perplexity(lm, ids).perplexity
    assert perplexity(lm, ids, Interventions(kv_groups=1)).perplexity > 3 * before   # every layer: far worse
    assert perplexity(lm, ids, some).perplexity > before


def test_pooling_never_touches_the_shared_weights(lm, ids):
    weight = lm.model.model.layers[4].self_attn.k_proj.weight
    digest = hashlib.blake2b(weight.detach().numpy().tobytes()).hexdigest()
    transform = PooledKV(frozenset({4}), 3, 64)
    out = transform("layers.4.self_attn.k_proj", weight)
    assert out.shape == weight.shape and out.data_ptr() != weight.data_ptr()
    assert transform("layers.5.self_attn.k_proj", weight) is weight
    assert transform("layers.4.mlp.up_proj", weight) is weight
    trace(lm, ids, interventions=Interventions(weight_transform=transform))
    assert hashlib.blake2b(weight.detach().numpy().tobytes()).hexdigest() == digest


def test_the_prose_figures_are_the_models(lm):
    """concepts/gqa.md's worked example: the numbers it prints are SmolLM2's own."""
    prose = (Path(__file__).resolve().parent.parent / "concepts" / "gqa.md").read_text()
    spec = live_spec(lm)
    variants = {v.kind: v.bytes_per_token for v in attention_variants(spec, live_element_size(lm))}
    shown = {int(n.replace("{,}", "")) for n in re.findall(r"\d+\{,\}\d+", prose)}
    assert {int(variants["GQA"]), int(variants["MHA"]), int(variants["MQA"])} <= shown
    assert f"$L = {spec.layers}$, $H = {spec.heads}$, $G = {spec.kv_heads}$, $d = {spec.head_dim}$" in prose
    assert f"$2 \\times {spec.layers} \\times {spec.kv_heads} \\times {spec.head_dim} \\times 4" in prose
    assert lm.model.model.layers[0].self_attn.k_proj.weight.shape == (192, 576)           # "192 numbers instead of 576"
