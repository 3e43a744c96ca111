"""engine.model.traced: the plain-torch pass is the model (parity), each intervention changes what it claims and
nothing before it, and no pass ever changes the shared model."""
import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.tokens.offsets import token_ids
from engine.model.traced import LAYER_NAMES, LENS_TOP_K, Interventions, trace

TEXT = ("The animal didn't cross the street because it was too tired, so it lay down by the old stone wall "
        "and slept until morning.")
EVERYTHING = LAYER_NAMES | {"final_norm", "logit_lens"}


def checksums(model) -> dict[str, str]:
    """A digest of every parameter and buffer: equal digests mean not one bit changed."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {name: hashlib.blake2b(t.detach().numpy().tobytes(), digest_size=16).hexdigest()
            for name, t in tensors.items()}


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def ids(lm):
    ids = token_ids(lm, TEXT)
    assert 20 <= len(ids) <= 40
    return ids


@pytest.fixture(scope="module", autouse=True)
def model_before(lm, reference):
    """Taken before any traced pass of this module; the last test compares against it. After `reference`,
    because transformers installs its own output-capturing hooks on the first output_hidden_states call."""
    return checksums(lm.model), hook_count(lm.model)


@pytest.fixture(scope="module")
def reference(lm, ids):
    """The model's own answers: SDPA logits and hidden states, eager attention weights."""
    with torch.inference_mode():
        sdpa = lm.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
        eager = lm.eager(torch.tensor([ids]), output_attentions=True, use_cache=False)
    return dict(logits=sdpa.logits[0].numpy(), hidden=torch.stack(sdpa.hidden_states)[:, 0].numpy(),
                attentions=torch.stack(eager.attentions)[:, 0].numpy())


@pytest.fixture(scope="module")
def base(lm, ids):
    """Every intermediate of every layer, no intervention."""
    return trace(lm, ids, record=EVERYTHING)


def scale_of(a: np.ndarray) -> float:
    return float(np.abs(a).max())


# --- parity with the model ----------------------------------------------------------------------------------

def test_logits_equal_the_models(lm, ids, reference, base):
    plain = trace(lm, ids)
    assert np.abs(plain.logits - reference["logits"]).max() <= 1e-4
    assert np.abs(base.logits - reference["logits"]).max() <= 1e-4   # the explicit-scores path too
    assert plain.logits.shape == (len(ids), 49152) and plain.recorded == {} and plain.lens is None


def test_attention_probs_equal_the_eager_modules(base, reference):
    for layer, head in [(0, 0), (3, 5), (14, 8), (22, 1), (29, 4)]:
        np.testing.assert_allclose(base.at("probs", layer)[head], reference["attentions"][layer, head], atol=1e-5)
    assert np.abs(base["probs"] - reference["attentions"]).max() <= 1e-5   # and all 270 heads at once


def test_residual_stream_equals_the_models_hidden_states(lm, ids, reference):
    hidden = reference["hidden"]
    tp = trace(lm, ids, record={"resid_in", "resid_out", "final_norm"})
    for layer in range(30):   # hidden_states[L] is the residual entering layer L
        tol = 1e-6 * max(scale_of(hidden[layer]), 1.0)
        np.testing.assert_allclose(tp.at("resid_in", layer), hidden[layer], atol=tol)
        if layer < 29:
            np.testing.assert_array_equal(tp.at("resid_out", layer), tp.at("resid_in", layer + 1))
    np.testing.assert_allclose(tp.final_norm, hidden[30], atol=1e-5 * scale_of(hidden[30]))   # after the final norm


def test_recorded_intermediates_fit_together(lm, base):
    """Each recorded stage is what its name says, computed from the stages before it."""
    layer = 7
    at = lambda name: base.at(name, layer).astype(np.float64)
    block = lm.model.model.layers[layer]
    gain = block.input_layernorm.weight.detach().numpy()
    x = at("resid_in")
    np.testing.assert_allclose(at("attn_norm_out"), x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5) * gain,
                               rtol=1e-4, atol=1e-5)
    scores = at("scores")
    rotated = at("q_rot") @ np.repeat(at("k_rot"), 3, axis=0).transpose(0, 2, 1) / 8.0
    upper = np.triu_indices(scores.shape[-1], 1)
    assert np.all(np.isneginf(scores[:, upper[0], upper[1]]))
    lower = np.tril_indices(scores.shape[-1])
    np.testing.assert_allclose(scores[:, lower[0], lower[1]], rotated[:, lower[0], lower[1]], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(at("head_out"), at("probs") @ np.repeat(at("v"), 3, axis=0), atol=1e-4)
    np.testing.assert_allclose(at("resid_mid"), at("resid_in") + at("attn_out"), atol=1e-4)
    np.testing.assert_allclose(at("act"), at("gate") / (1 + np.exp(-at("gate"))), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(at("product"), at("act") * at("up"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(at("resid_out"), at("resid_mid") + at("down"), atol=1e-4)


def test_shapes_order_and_read_only(lm, ids, base):
    t = len(ids)
    shapes = {"resid_in": (t, 576), "q": (9, t, 64), "k": (3, t, 64), "v": (3, t, 64), "q_rot": (9, t, 64),
              "k_rot": (3, t, 64), "scores": (9, t, t), "probs": (9, t, t), "head_out": (9, t, 64),
              "gate": (t, 1536), "product": (t, 1536), "down": (t, 576)}
    for name, shape in shapes.items():
        assert base[name].shape == (30, *shape), name
    assert base.final_norm.shape == (t, 576)
    assert base.lens.top_ids.shape == base.lens.top_probs.shape == (30, t, LENS_TOP_K)
    assert base.lens.last_logits.shape == (30, 49152)
    for array in [base.logits, base.final_norm, base.lens.top_probs, *base.recorded.values()]:
        assert array.dtype == np.float32 and not array.flags.writeable
    picked = trace(lm, ids, record={"probs", "gate"}, layers=[12, 3])
    ascending = trace(lm, ids, record={"probs", "gate"}, layers=[3, 12])
    assert set(picked.recorded) == {"probs", "gate"} and picked.layers == (12, 3)
    np.testing.assert_array_equal(picked["probs"][0], ascending["probs"][1])   # stacked in the order asked
    np.testing.assert_array_equal(picked.at("gate", 3), ascending["gate"][0])
    np.testing.assert_allclose(picked.at("probs", 12), base.at("probs", 12), atol=1e-5)
    with pytest.raises(KeyError):
        picked["resid_in"]
    with pytest.raises(KeyError):
        picked.at("probs", 4)


def test_logit_lens_of_the_last_layer_is_the_output(lm, ids, base):
    assert base.lens.positions == tuple(range(len(ids)))
    np.testing.assert_allclose(base.lens.last_logits[29], base.logits[-1], atol=1e-4)
    np.testing.assert_array_equal(base.lens.top_ids[29, :, 0], base.logits.argmax(-1))
    assert np.all(np.diff(base.lens.top_probs, axis=-1) <= 0)          # most probable first
    assert not np.array_equal(base.lens.top_ids[2, :, 0], base.lens.top_ids[29, :, 0])   # early layers differ
    last = trace(lm, ids, record={"logit_lens_last", "probs"}).lens   # the cheap form, the same attention path
    assert last.positions == (len(ids) - 1,) and last.top_ids.shape == (30, 1, LENS_TOP_K)
    np.testing.assert_allclose(last.last_logits, base.lens.last_logits, atol=1e-4)
    np.testing.assert_array_equal(last.top_ids[:, 0], base.lens.top_ids[:, -1])
    np.testing.assert_allclose(last.top_probs[:, 0], base.lens.top_probs[:, -1], atol=1e-5)


def test_bad_arguments_are_refused(lm, ids):
    bad = [Interventions(activation="tanh"), Interventions(kv_groups=2), Interventions(kv_groups=0),
           Interventions(position_shift=-1), Interventions(unit_norm_gain=frozenset({"embedding"})),
           Interventions(ablate_heads=frozenset({(30, 0)})), Interventions(ablate_heads=frozenset({(0, 9)})),
           Interventions(ablate_neurons=frozenset({(0, 1536)})), Interventions(ablate_neurons=frozenset({(-1, 0)})),
           Interventions(exit_layer=31)]
    for iv in bad:
        with pytest.raises(ValueError):
            trace(lm, ids, interventions=iv)
    for kwargs in [dict(record={"attention"}), dict(record={"probs"}, layers=[30]), dict(layers=[1, 1]),
                   dict(layers=[5], interventions=Interventions(exit_layer=5))]:
        with pytest.raises(ValueError):
            trace(lm, ids, **kwargs)
    with pytest.raises(ValueError):
        trace(lm, [])


# --- interventions ------------------------------------------------------------------------------------------

def test_causal_mask(lm, ids, base):
    cut = 9
    prefix = trace(lm, ids[:cut], record={"probs", "resid_out"})
    # With the mask, the first tokens cannot see the later ones: cutting the text changes nothing before the cut.
    np.testing.assert_allclose(prefix.logits, base.logits[:cut], atol=1e-4)
    np.testing.assert_allclose(prefix["probs"], base["probs"][:, :, :cut, :cut], atol=1e-5)

    open_ = trace(lm, ids, record={"probs", "resid_in"}, interventions=Interventions(causal_mask=False))
    open_prefix = trace(lm, ids[:cut], interventions=Interventions(causal_mask=False))
    assert open_["probs"][0, :, 0, 1:].sum() > 0.1               # position 0 now looks at later tokens
    assert np.abs(open_.logits[0] - base.logits[0]).max() > 1.0   # so its output changes
    assert np.abs(open_prefix.logits[0] - open_.logits[0]).max() > 1.0   # and depends on the text after it
    np.testing.assert_array_equal(open_.at("resid_in", 0), base.at("resid_in", 0))   # the embeddings do not


@pytest.mark.parametrize("iv", [
    Interventions(causal_mask=False), Interventions(rope=False), Interventions(position_shift=50),
    Interventions(kv_groups=1), Interventions(ablate_heads=frozenset({(3, 2), (20, 8)})),
], ids=["no-mask", "no-rope", "shift", "mqa", "ablate"])
def test_fused_and_explicit_attention_agree_under_interventions(lm, ids, iv):
    """Attention runs a fused kernel unless scores are recorded; both paths must apply every intervention."""
    fused = trace(lm, ids, interventions=iv)
    explicit = trace(lm, ids, record={"probs"}, interventions=iv)
    assert np.abs(fused.logits - explicit.logits).max() <= 1e-3


def test_position_shift_keeps_relative_positions(lm, ids, base):
    shifted = trace(lm, ids, record={"q", "q_rot", "k_rot", "scores", "probs"},
                    interventions=Interventions(position_shift=100))
    finite = np.isfinite(base["scores"])
    np.testing.assert_array_equal(np.isfinite(shifted["scores"]), finite)
    np.testing.assert_allclose(shifted["scores"][finite], base["scores"][finite], atol=1e-3)
    np.testing.assert_allclose(shifted["probs"], base["probs"], atol=1e-4)
    np.testing.assert_allclose(shifted.logits, base.logits, atol=1e-3)
    np.testing.assert_array_equal(shifted.at("q", 0), base.at("q", 0))          # before RoPE: the same
    assert np.abs(shifted.at("q_rot", 0) - base.at("q_rot", 0)).max() > 1.0     # after: turned further
    assert np.abs(shifted.at("k_rot", 0) - base.at("k_rot", 0)).max() > 1.0


def test_rope_off(lm, ids, base):
    flat = trace(lm, ids, record={"q", "q_rot", "k", "k_rot", "scores"}, layers=[0],
                 interventions=Interventions(rope=False))
    np.testing.assert_array_equal(flat.at("q_rot", 0), flat.at("q", 0))
    np.testing.assert_array_equal(flat.at("k_rot", 0), flat.at("k", 0))
    np.testing.assert_array_equal(flat.at("q", 0), base.at("q", 0))
    finite = np.isfinite(base.at("scores", 0))
    assert np.abs(flat.at("scores", 0)[finite] - base.at("scores", 0)[finite]).max() > 1.0
    # Position 0 is not rotated even with RoPE on (angle 0), so its query is the same either way.
    np.testing.assert_allclose(flat.at("q_rot", 0)[:, 0], base.at("q_rot", 0)[:, 0], atol=1e-5)


@pytest.mark.parametrize("activation, function", [("relu", F.relu), ("gelu", F.gelu)])
def test_activation_swap(lm, ids, base, activation, function):
    swapped = trace(lm, ids, record={"probs", "resid_mid", "gate", "act"}, layers=[0, 1],
                    interventions=Interventions(activation=activation))
    # Layer 0's attention runs before the first FFN: untouched.
    np.testing.assert_array_equal(swapped.at("probs", 0), base.at("probs", 0))
    np.testing.assert_array_equal(swapped.at("resid_mid", 0), base.at("resid_mid", 0))
    np.testing.assert_array_equal(swapped.at("gate", 0), base.at("gate", 0))
    np.testing.assert_allclose(swapped.at("act", 0), function(torch.from_numpy(base.at("gate", 0).copy())).numpy(),
                               atol=1e-6)
    assert np.abs(swapped.at("probs", 1) - base.at("probs", 1)).max() > 1e-3   # later layers see the change
    assert np.abs(swapped.logits - base.logits).max() > 1.0


def test_kv_groups(lm, ids, base):
    same = trace(lm, ids, interventions=Interventions(kv_groups=3))
    np.testing.assert_array_equal(same.logits, trace(lm, ids).logits)
    mqa = trace(lm, ids, record={"k", "v", "k_rot", "q_rot", "scores"}, layers=[0, 15],
                interventions=Interventions(kv_groups=1))
    assert mqa.at("k", 0).shape == (1, len(ids), 64)
    # Layer 0 sees the same input, so its one KV head is the mean of the three.
    np.testing.assert_allclose(mqa.at("k", 0)[0], base.at("k", 0).mean(0), atol=1e-5)
    np.testing.assert_allclose(mqa.at("v", 0)[0], base.at("v", 0).mean(0), atol=1e-5)
    for layer in (0, 15):   # every one of the 9 query heads scores against that one key set
        keys = mqa.at("k_rot", layer)[0]
        expected = mqa.at("q_rot", layer) @ keys.T / 8.0
        lower = np.tril_indices(len(ids))
        np.testing.assert_allclose(mqa.at("scores", layer)[:, lower[0], lower[1]],
                                   expected[:, lower[0], lower[1]], rtol=1e-4, atol=1e-4)
    assert np.abs(mqa.logits - base.logits).max() > 0.1


def test_unit_norm_gains(lm, ids, base):
    hidden_final = trace(lm, ids, record={"resid_out", "final_norm"}, interventions=Interventions(
        unit_norm_gain=frozenset({"final"})))
    np.testing.assert_array_equal(hidden_final["resid_out"], trace(lm, ids, record={"resid_out"})["resid_out"])
    x = hidden_final.at("resid_out", 29).astype(np.float64)
    np.testing.assert_allclose(hidden_final.final_norm, x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5),
                               rtol=1e-4, atol=1e-5)
    assert np.abs(hidden_final.logits - base.logits).max() > 1.0

    attention = trace(lm, ids, record={"attn_norm_out", "resid_mid", "ffn_norm_out"}, layers=[0],
                      interventions=Interventions(unit_norm_gain=frozenset({"attention"})))
    x = base.at("resid_in", 0).astype(np.float64)
    np.testing.assert_allclose(attention.at("attn_norm_out", 0), x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5),
                               rtol=1e-4, atol=1e-5)
    assert np.abs(attention.at("resid_mid", 0) - base.at("resid_mid", 0)).max() > 1e-3

    ffn = trace(lm, ids, record={"resid_mid", "ffn_norm_out"}, layers=[0],
                interventions=Interventions(unit_norm_gain=frozenset({"ffn"})))
    plain = trace(lm, ids, record={"resid_mid", "ffn_norm_out"}, layers=[0])
    np.testing.assert_array_equal(ffn.at("resid_mid", 0), plain.at("resid_mid", 0))   # the FFN norm comes later
    assert np.abs(ffn.at("ffn_norm_out", 0) - plain.at("ffn_norm_out", 0)).max() > 1e-2
    assert np.abs(ffn.logits - base.logits).max() > 0.1


def test_ablating_a_head(lm, ids, base):
    layer, head = 10, 4
    cut = trace(lm, ids, record={"resid_in", "probs", "head_out", "resid_mid"},
                interventions=Interventions(ablate_heads=frozenset({(layer, head)})))
    np.testing.assert_array_equal(cut["resid_in"][:layer + 1], base["resid_in"][:layer + 1])   # before: the same
    np.testing.assert_array_equal(cut.at("probs", layer), base.at("probs", layer))  # the head still attends...
    assert np.all(cut.at("head_out", layer)[head] == 0)                          # ...but its output is gone
    assert np.abs(base.at("head_out", layer)[head]).max() > 0.01
    others = [h for h in range(9) if h != head]
    np.testing.assert_array_equal(cut.at("head_out", layer)[others], base.at("head_out", layer)[others])
    assert np.abs(cut.at("resid_mid", layer) - base.at("resid_mid", layer)).max() > 1e-3
    assert np.abs(cut.logits - base.logits).max() > 1e-3


def test_ablating_a_neuron(lm, ids, base):
    layer, neuron = 6, int(np.abs(base.at("product", 6)).sum(0).argmax())   # the busiest neuron of layer 6
    names = {"resid_in", "act", "product", "resid_out"}
    plain = trace(lm, ids, record=names, layers=[layer])
    cut = trace(lm, ids, record=names, layers=[layer],
                interventions=Interventions(ablate_neurons=frozenset({(layer, neuron)})))
    assert np.all(cut.at("product", layer)[:, neuron] == 0)
    assert np.abs(plain.at("product", layer)[:, neuron]).max() > 0.1
    np.testing.assert_array_equal(np.delete(cut.at("product", layer), neuron, axis=1),
                                  np.delete(plain.at("product", layer), neuron, axis=1))
    np.testing.assert_array_equal(cut.at("act", layer), plain.at("act", layer))
    np.testing.assert_array_equal(cut.at("resid_in", layer), plain.at("resid_in", layer))
    assert np.abs(cut.at("resid_out", layer) - plain.at("resid_out", layer)).max() > 1e-3


@pytest.mark.parametrize("exit_layer", [1, 12, 30])
def test_exit_layer_is_the_logit_lens(lm, ids, base, exit_layer):
    early = trace(lm, ids, record={"resid_out"}, interventions=Interventions(exit_layer=exit_layer))
    assert early.layers == tuple(range(exit_layer))
    # final norm + lm_head applied by hand to the residual leaving layer exit_layer - 1
    x = base.at("resid_out", exit_layer - 1).astype(np.float64)
    gain = lm.model.model.norm.weight.detach().numpy().astype(np.float64)
    embedding = lm.model.model.embed_tokens.weight.detach().numpy().astype(np.float64)
    by_hand = (x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5) * gain) @ embedding.T
    np.testing.assert_allclose(early.logits, by_hand, atol=2e-3)
    np.testing.assert_allclose(base.lens.last_logits[exit_layer - 1], by_hand[-1], atol=2e-3)
    if exit_layer < 30:
        assert np.abs(early.logits - base.logits).max() > 1.0


def test_weight_transforms(lm, ids, base):
    plain = trace(lm, ids, record={"resid_in", "resid_out"})
    seen = []

    def identity(name, weight):
        seen.append(name)
        return weight.clone()

    same = trace(lm, ids, record={"resid_out"}, interventions=Interventions(weight_transform=identity))
    np.testing.assert_array_equal(same.logits, plain.logits)
    np.testing.assert_array_equal(same["resid_out"], plain["resid_out"])
    assert len(seen) == 30 * 7 + 1 and seen[:2] == ["layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj"]
    assert "layers.29.mlp.down_proj" in seen and seen[-1] == "lm_head"

    def no_down_proj_in_layer_5(name, weight):
        return torch.zeros_like(weight) if name == "layers.5.mlp.down_proj" else weight

    pruned = trace(lm, ids, record={"resid_in", "down", "resid_mid", "resid_out"},
                   interventions=Interventions(weight_transform=no_down_proj_in_layer_5))
    np.testing.assert_array_equal(pruned["resid_in"][:6], plain["resid_in"][:6])   # layers 0-5 read the same input
    assert np.all(pruned.at("down", 5) == 0)
    np.testing.assert_array_equal(pruned.at("resid_out", 5), pruned.at("resid_mid", 5))
    assert np.abs(pruned.at("resid_out", 5) - plain.at("resid_out", 5)).max() > 1e-3
    assert np.abs(pruned.at("resid_out", 20) - plain.at("resid_out", 20)).max() > 1e-3

    def in_place(name, weight):
        return weight.mul_(1.0)   # the same values, but written into the shared tensor

    with pytest.raises(RuntimeError, match="in place"):
        trace(lm, ids, interventions=Interventions(weight_transform=in_place))
    with pytest.raises(ValueError):
        trace(lm, ids, interventions=Interventions(weight_transform=lambda name, w: w[:1]))


def test_ffn_product_transform(lm, ids, base):
    plain = trace(lm, ids, record={"product", "down", "resid_out"})
    seen = []

    def identity(layer, product):
        seen.append((layer, tuple(product.shape)))
        return product.clone()

    same = trace(lm, ids, record={"product", "down", "resid_out"},
                 interventions=Interventions(ffn_product_transform=identity))
    np.testing.assert_array_equal(same.logits, plain.logits)      # bit for bit
    np.testing.assert_array_equal(same["down"], plain["down"])
    assert seen == [(layer, (len(ids), 1536)) for layer in range(30)]

    def silence_layer_5(layer, product):
        return torch.zeros_like(product) if layer == 5 else product

    cut = trace(lm, ids, record={"product", "down", "resid_out"},
                interventions=Interventions(ffn_product_transform=silence_layer_5))
    assert np.all(cut.at("product", 5) == 0) and np.all(cut.at("down", 5) == 0)   # recorded: what down_proj read
    np.testing.assert_array_equal(cut["down"][:5], plain["down"][:5])             # earlier layers untouched
    assert np.abs(cut.at("resid_out", 20) - plain.at("resid_out", 20)).max() > 1e-3
    assert np.abs(cut.logits - plain.logits).max() > 1e-2
    with pytest.raises(ValueError, match="shape"):
        trace(lm, ids, interventions=Interventions(ffn_product_transform=lambda layer, p: p[:, :10]))


def test_the_shared_model_is_unchanged(lm, ids, model_before):
    """Last in the file: after every pass above (and one with every intervention at once), not one bit of the
    shared model changed and no hook is registered on it."""
    everything = Interventions(causal_mask=False, rope=True, position_shift=7, activation="gelu", kv_groups=1,
                               unit_norm_gain=frozenset({"attention", "ffn", "final"}),
                               ablate_heads=frozenset({(2, 3)}), ablate_neurons=frozenset({(4, 100)}),
                               exit_layer=20, weight_transform=lambda name, w: w * 0.5)
    tp = trace(lm, ids, record=EVERYTHING, interventions=everything)
    assert np.isfinite(tp.logits).all()
    sums, hooks = model_before
    assert checksums(lm.model) == sums
    assert hook_count(lm.model) == hooks   # transformers' own (output capturing), none added
    assert lm.model.config._attn_implementation == "sdpa"
