"""engine.inside.moe: the experts partition each FFN exactly, k = 8 is the dense model bit for bit, fewer experts keep
exactly the router's top k, perplexity rises as k falls, and the parameter counts match the published ones."""
import numpy as np
import pytest
import torch

from engine.inside.moe import (EXPERTS, PUBLISHED_MOE, ExpertRouting, active_parameters, balanced_assignment,
                        balanced_kmeans, expert_neurons, expert_outputs, ffn_parameters, layer_routing,
                        moe_interventions, router_scores, sweep_k, top_k_mask)
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace

TEXT = ("The printing press changed Europe in a single lifetime. Around 1450 Johannes Gutenberg combined movable "
        "metal type, an oil-based ink and a wooden screw press.")


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


def test_balanced_assignment_and_kmeans():
    sim = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.2]])
    assert balanced_assignment(sim, 2).tolist() == [0, 0, 1, 1]     # row 2 prefers 0, but 0 is full
    with pytest.raises(ValueError):
        balanced_assignment(sim, 3)
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16)) * 5
    points = np.concatenate([c + rng.normal(size=(10, 16)) for c in centres])
    labels = balanced_kmeans(points, 4)
    assert np.bincount(labels).tolist() == [10, 10, 10, 10]
    assert all(len(set(labels[i * 10:(i + 1) * 10])) == 1 for i in range(4))   # well-separated clusters recovered


@pytest.mark.parametrize("grouping", ["clustered", "index"])
def test_experts_partition_every_layers_neurons(lm, grouping):
    for layer in (0, 14, 29):
        split = expert_neurons(lm, layer, grouping)
        assert split.shape == (EXPERTS, 192)
        assert sorted(split.reshape(-1).tolist()) == list(range(1536))
        assert expert_neurons(lm, layer, grouping) is split                 # computed once, shared
    assert expert_neurons(lm, 3, "index")[1].tolist() == list(range(192, 384))
    assert not np.array_equal(expert_neurons(lm, 3, "clustered"), expert_neurons(lm, 3, "index"))
    with pytest.raises(ValueError):
        expert_neurons(lm, 3, "alphabetical")


def test_the_experts_sum_to_the_dense_ffn(lm, ids):
    tp = trace(lm, ids, record={"product", "down"}, layers=[7])
    product = torch.from_numpy(np.array(tp.at("product", 7)))
    outputs = expert_outputs(lm, 7, product, expert_neurons(lm, 7))
    assert outputs.shape == (len(ids), EXPERTS, 576)
    dense = tp.at("down", 7)
    assert np.abs(outputs.sum(1).numpy() - dense).max() <= 1e-5 * np.abs(dense).max()
    # one expert by hand, in float64: its 192 columns of down_proj times its 192 products
    cols = expert_neurons(lm, 7)[2]
    down = lm.model.model.layers[7].mlp.down_proj.weight.detach().numpy().astype(np.float64)
    by_hand = product.numpy().astype(np.float64)[:, cols] @ down[:, cols].T
    np.testing.assert_allclose(outputs[:, 2].numpy(), by_hand, atol=1e-4)


def test_all_eight_experts_are_the_dense_model_bit_for_bit(lm, ids):
    plain = trace(lm, ids, record={"down"})
    eight = trace(lm, ids, record={"down"},
                  interventions=Interventions(ffn_product_transform=ExpertRouting(frozenset(range(30)), 8, lm=lm)))
    np.testing.assert_array_equal(eight.logits, plain.logits)
    np.testing.assert_array_equal(eight["down"], plain["down"])
    assert moe_interventions(lm, range(30), 8) == Interventions()


@pytest.mark.parametrize("k", [1, 3, 6])
def test_fewer_experts_keep_exactly_the_routers_top_k(lm, ids, k):
    layers = frozenset({5, 6})
    dense = trace(lm, ids, record={"product"}, layers=[5])
    sparse = trace(lm, ids, record={"product", "resid_in"}, layers=[4, 5, 6, 7],
                   interventions=moe_interventions(lm, layers, k))
    product = torch.from_numpy(np.array(dense.at("product", 5)))
    neurons = expert_neurons(lm, 5)
    norms = expert_outputs(lm, 5, product, neurons).norm(dim=-1).numpy()
    kept = sparse.at("product", 5)
    for t in range(len(ids)):
        alive = [e for e in range(EXPERTS) if np.any(kept[t, neurons[e]] != 0)]
        assert alive == sorted(np.argsort(-norms[t])[:k].tolist())            # the k largest outputs, no others
        for e in alive:
            np.testing.assert_array_equal(kept[t, neurons[e]], product.numpy()[t, neurons[e]])
    assert np.all(sparse.at("product", 4) == trace(lm, ids, record={"product"}, layers=[4]).at("product", 4))
    assert np.count_nonzero(sparse.at("product", 7)) > np.count_nonzero(kept)   # layer 7 stays dense


def test_routing_is_keyed_by_its_settings(lm, ids):
    a = moe_interventions(lm, range(30), 3)
    b = moe_interventions(lm, range(0, 30), 3, "clustered", "largest")
    assert a == b and hash(a) == hash(b)
    assert perplexity(lm, ids, a) is perplexity(lm, ids, b)                   # one cache entry
    assert a != moe_interventions(lm, range(30), 3, router="random")
    with pytest.raises(ValueError):
        ExpertRouting(frozenset({1}), 9, lm=lm)
    scores = router_scores(lm, 2, torch.zeros(4, 1536), expert_neurons(lm, 2), "random")
    np.testing.assert_array_equal(scores, router_scores(lm, 2, torch.zeros(4, 1536), expert_neurons(lm, 2), "random"))
    assert top_k_mask(torch.tensor([[0.1, 0.9, 0.5]]), 2).tolist() == [[False, True, True]]


def test_perplexity_rises_as_k_falls(lm, ids):
    values = [perplexity(lm, ids, moe_interventions(lm, range(30), k)).perplexity for k in (1, 2, 4, 6, 8)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] == perplexity(lm, ids).perplexity
    random = perplexity(lm, ids, moe_interventions(lm, range(30), 4, router="random")).perplexity
    assert random > values[2]                                                   # choosing beats chance


def test_layer_routing(lm, ids):
    r = layer_routing(lm, ids, range(30), 2, 12)
    assert r.chosen.shape == (len(ids), EXPERTS) and np.all(r.chosen.sum(1) == 2)
    assert r.load.sum() == pytest.approx(2) and np.allclose(r.shares.sum(1), 1)
    assert r.max_sum_error <= 1e-5 * r.dense_scale
    # Its input is the sparse model's: layers 0-11 sparse, so layer 12's products differ from the dense pass's.
    dense = layer_routing(lm, ids, range(12, 30), 2, 12)
    assert not np.allclose(r.output_norms, dense.output_norms)


def test_sweep_stops_when_asked(lm, ids):
    stopped = sweep_k(lm, ids, range(30), should_stop=lambda: True)
    assert not stopped.complete and stopped.ks == tuple(range(1, 9))
    for values in stopped.by_router.values():
        assert np.isnan(values[:7]).all() and values[7] == stopped.dense


def test_parameter_counts():
    mixtral, big = PUBLISHED_MOE
    assert mixtral.total_parameters == pytest.approx(46.7e9, rel=2e-3)   # the 46.7B Mistral AI states
    assert mixtral.active_parameters == pytest.approx(12.9e9, rel=2e-3)  # and its 12.9B active
    assert round(big.total_parameters / 1e9) == 141 and round(big.active_parameters / 1e9) == 39
    assert ffn_parameters(576, 1536) == 2_654_208
    assert active_parameters(134_515_008, 576, 1536, 30, 8) == 134_515_008
    assert active_parameters(134_515_008, 576, 1536, 30, 4) == 134_515_008 - 15 * 2_654_208
