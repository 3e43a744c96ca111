"""The encoder-vs-decoder page puts MiniLM's full attention beside SmolLM2's masked one (both the models' own), reads
the model facts from the live models, proves with the future-edit test which earlier vectors move, and computes
what each model is for; it follows its share link and survives odd input."""
import numpy as np
import pytest
import torch

from engine.inside.causal_mask import later_share
from engine.model.encoder import embed_sentences, load_encoder
from engine.decoding.generation import next_token_distribution
from engine.tokens.offsets import token_ids
from tests.future_edit_checks import assert_future_edit_shown, charts, heatmap_z, metric
from tests.pages import assert_no_exception, open_page, shown_text

DEFAULT_TEXT = "I went to the bank to get some money"


@pytest.fixture(scope="module")
def enc():
    return load_encoder()


def later_token_metrics(at) -> tuple[list[str], list[str]]:
    """The weight-on-later-tokens metrics under the two maps, MiniLM's first: (this head, all heads)."""
    return ([m.value for m in at.metric if m.label == "This head"],
            [m.value for m in at.metric if m.label.startswith("All ") and m.label.endswith(" heads")])


def minilm_attentions(enc, text: str) -> np.ndarray:
    with enc.tokenizing() as tok:
        batch = tok(text, return_tensors="pt")
    with torch.inference_mode():
        return torch.stack(enc.model(**batch, output_attentions=True).attentions)[:, 0].numpy()


def smollm2_attentions(lm, text: str) -> np.ndarray:
    with torch.inference_mode():
        out = lm.eager(torch.tensor([token_ids(lm, text)]), output_attentions=True, use_cache=False)
    return torch.stack(out.attentions)[:, 0].numpy()


def assert_maps_are_the_models_own(at, lm, enc, text, enc_layer, enc_head, layer, head) -> tuple[np.ndarray, np.ndarray]:
    found = charts(at)
    left, right = heatmap_z(found["map_encoder"]), heatmap_z(found["map_decoder"])
    mini, smol = minilm_attentions(enc, text), smollm2_attentions(lm, text)
    np.testing.assert_allclose(left, mini[enc_layer - 1, enc_head - 1], atol=1e-6)
    np.testing.assert_allclose(right, smol[layer - 1, head - 1], atol=1e-5)
    n = right.shape[0]
    assert np.all(right[np.triu_indices(n, 1)] == 0.0)                        # the decoder's mask, exactly
    assert left[np.triu_indices(left.shape[0], 1)].sum() > 0.5                # the encoder reads ahead
    return mini, smol


def test_defaults_compare_the_two_models_on_one_sentence(lm, enc):
    at = open_page("encoder-vs-decoder")
    assert_no_exception(at)
    assert (at.slider(key="enc_layer").value, at.slider(key="enc_head").value) == (2, 9)
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (2, 3)
    mini, smol = assert_maps_are_the_models_own(at, lm, enc, DEFAULT_TEXT, 2, 9, 2, 3)
    this_head, all_heads = later_token_metrics(at)
    assert this_head == [f"{later_share(mini)[1, 8]:.1%}", "0"]             # MiniLM reads ahead; SmolLM2 cannot
    assert all_heads == [f"{later_share(mini).mean():.1%}", "0"]

    facts = next(m.value for m in at.markdown if m.value.startswith("| | MiniLM"))
    params = sum(p.numel() for p in enc.model.parameters())
    for fact in (f"{params:,}", f"{lm.card.parameters:,}", "6 × 12", "30 × 9", "384 numbers", "576 numbers",
                 "30,522 WordPiece", "49,152 byte-level BPE", f"{mini.shape[-1]} tokens, with [CLS] and [SEP]",
                 f"| {smol.shape[-1]} tokens |"):
        assert fact in facts, fact

    edited = "I went to the bank to get some fish"
    assert_future_edit_shown(at, lm, enc, DEFAULT_TEXT, edited)

    vectors = embed_sentences(enc, [DEFAULT_TEXT, edited])
    assert metric(at, "MiniLM: similarity of the two sentences") == f"{float(vectors[0] @ vectors[1]):.3f}"
    top = next_token_distribution(lm, DEFAULT_TEXT).top(lm, 1)[0]
    assert metric(at, "SmolLM2: its most likely next token") == f"“{top.text.replace(' ', '␣')}”"
    bars = charts(at)["next"]["data"][0]
    assert bars["x"][0] == pytest.approx(100 * top.probability)


def test_share_link_state_is_restored(lm, enc):
    text = "The keys to the cabinet are on the table."
    params = {"text": text, "word": "shelf", "enc_layer": "6", "enc_head": "1", "layer": "17", "head": "1",
              "edit_model": "SmolLM2 (causal decoder)"}
    at = open_page("encoder-vs-decoder", params)
    assert_no_exception(at)
    assert at.text_area(key="text").value == text and at.text_input(key="word").value == "shelf"
    assert [at.slider(key=k).value for k in ("enc_layer", "enc_head", "layer", "head")] == [6, 1, 17, 1]
    mini, _ = assert_maps_are_the_models_own(at, lm, enc, text, 6, 1, 17, 1)
    assert later_token_metrics(at)[0] == [f"{later_share(mini)[5, 0]:.1%}", "0"]
    assert_future_edit_shown(at, lm, enc, text, text.replace("table", "shelf"))
    assert np.all(heatmap_z(charts(at)["edit_depths"]) == 0)                  # the decoder's layers: nothing moved
    assert "after the edit" in str(charts(at)["embeddings"]["data"][0]["y"])


@pytest.mark.parametrize("params, expected", [
    ({"text": ""}, "Type a sentence"),
    ({"text": "money"}, "no token before its last word"),
    ({"text": "$$ %% !!"}, "no word to replace"),
    ({"word": "money"}, "already the last word"),
    ({"text": "<b>Bold</b> 🍓 日本語 `x` [a](b) Snow", "word": "SNOW"}, "MiniLM cannot see this edit"),
])
def test_odd_input_gets_a_clear_message(lm, params, expected):
    at = open_page("encoder-vs-decoder", params)
    assert_no_exception(at)
    assert expected in shown_text(at)
    assert bool(at.get("plotly_chart")) == (params.get("text") != "")        # the rest of the demo still runs
