"""The positional-encoding page draws the sinusoids exactly by their formula, reads SmolLM2's lack of a
position table from the model, measures what a word shuffle does with RoPE on, off, and off without the mask,
and shows that shifting every position leaves RoPE's scores unchanged; it follows its share link."""
import json

import numpy as np
import pytest
import torch

from engine.model.perplexity import perplexity
from engine.inside.positions import shuffle_words
from engine.tokens.offsets import decode, tokenize
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text

DEFAULT_TEXT = ("Every morning the old baker unlocked his shop at six, lit the ovens, swept the floor and set out "
                "the first warm loaves of")


def figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def metric(at, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def shown_percent(value: str) -> float:
    return float(value.rstrip("%")) / 100


def check_sinusoids(at, positions: int, d: int, base: float) -> None:
    z = plotly_array(figures(at)[0]["data"][0]["z"])
    assert z.shape == (positions, d)
    pos = np.arange(positions)[:, None]
    for i in range(d // 2):
        angle = pos[:, 0] / base ** (2 * i / d)
        np.testing.assert_allclose(z[:, 2 * i], np.sin(angle), atol=1e-12)
        np.testing.assert_allclose(z[:, 2 * i + 1], np.cos(angle), atol=1e-12)
    curves = [plotly_array(t["y"]) for t in figures(at)[1]["data"]]
    offsets = np.arange(positions)
    expected = np.cos(offsets[:, None] / base ** (np.arange(0, d, 2) / d)[None]).sum(1)
    for curve in curves:                                   # the same curve from every starting position
        np.testing.assert_allclose(curve, expected, atol=1e-9)


def check_experiments(at, lm, text: str, shift: int) -> None:
    tokens = tokenize(lm, text)
    ids = [t.id for t in tokens]
    seed = int(at.number_input(key="seed").value)
    same_tokens = list(shuffle_words(ids, [t.piece for t in tokens], seed))
    assert next(t.value for t in at.text) == decode(lm, same_tokens)      # the shuffle shown is the one run
    assert sorted(same_tokens) == sorted(ids) and same_tokens != ids

    measured = {}
    for label, iv in [("RoPE on, causal mask", Interventions()), ("RoPE off, causal mask", Interventions(rope=False)),
                      ("RoPE off, no mask", Interventions(rope=False, causal_mask=False))]:
        p = torch.softmax(torch.tensor(trace(lm, ids, interventions=iv).logits[-1], dtype=torch.float64), -1)
        q = torch.softmax(torch.tensor(trace(lm, same_tokens, interventions=iv).logits[-1], dtype=torch.float64), -1)
        measured[label] = float(0.5 * (p - q).abs().sum())
        assert shown_percent(metric(at, label)) == pytest.approx(measured[label], abs=6e-4 * max(1, measured[label]))
    blind = measured["RoPE off, no mask"]
    assert blind < 1e-4                                     # order-blind: only float rounding moves
    assert measured["RoPE on, causal mask"] > measured["RoPE off, causal mask"] > 100 * blind   # the mask leaks
    bars = plotly_array(figures(at)[2]["data"][0]["x"])
    np.testing.assert_allclose(bars, [100 * v for v in measured.values()], rtol=1e-4, atol=1e-6)

    on, off = perplexity(lm, ids).perplexity, perplexity(lm, ids, Interventions(rope=False)).perplexity
    assert metric(at, "Perplexity of your text, RoPE on") == f"{on:,.2f}"
    assert metric(at, "Perplexity, RoPE off") == f"{off:,.2f}"
    assert off > on

    base = trace(lm, ids, record={"scores"})
    moved = trace(lm, ids, record={"scores"}, interventions=Interventions(position_shift=shift))
    visible = np.isfinite(base["scores"])
    diff = float(np.abs(base["scores"][visible] - moved["scores"][visible]).max())
    assert diff <= 1e-4
    assert metric(at, "SmolLM2 (RoPE)") == f"{diff:.1e}"
    assert any("equal to within 1e-4" in s.value for s in at.success)
    d_model = lm.model.config.hidden_size
    pos = np.arange(len(ids) + shift)[:, None] / 10_000 ** (np.arange(0, d_model, 2) / d_model)[None]
    table = np.concatenate([np.sin(pos)[..., None], np.cos(pos)[..., None]], -1).reshape(len(pos), d_model)
    assert metric(at, "Sinusoids added") == f"{np.abs(table[shift:] - table[:len(ids)]).max():.2f}"


def test_defaults(lm):
    at = open_page("positional-encoding")
    assert_no_exception(at)
    check_sinusoids(at, 100, 128, 10_000.0)
    assert metric(at, "Position parameters") == "0"
    params = dict(lm.model.named_parameters())
    assert not any(lm.model.config.max_position_embeddings in p.shape for p in params.values())
    assert metric(at, "Input embedding") == "{:,} × {}".format(*lm.model.model.embed_tokens.weight.shape)
    assert metric(at, "Where position enters") == f"{lm.model.config.num_hidden_layers} layers"
    check_experiments(at, lm, DEFAULT_TEXT, 100)
    assert "rotary_emb.inv_freq" in shown_text(at)


def test_share_link_state(lm):
    text = "The cat sat on the mat because it was warm, and the dog slept by the"
    at = open_page("positional-encoding", {"positions": "40", "d": "32", "base": "100 (fast)", "text": text,
                                           "seed": "3", "shift": "7"})
    assert_no_exception(at)
    assert (at.slider(key="positions").value, at.select_slider(key="d").value) == (40, 32)
    assert at.selectbox(key="base").value == "100 (fast)"
    assert at.text_area(key="text").value == text and at.number_input(key="seed").value == 3
    check_sinusoids(at, 40, 32, 100.0)
    check_experiments(at, lm, text, 7)


def test_too_few_words_and_no_text(lm):
    at = open_page("positional-encoding", {"text": "Hello there world"})
    assert_no_exception(at)
    assert any("Too few words" in i.value for i in at.info)
    assert len(figures(at)) == 2                             # the sinusoids still show
    at = open_page("positional-encoding", {"text": ""})
    assert any("Type a sentence" in i.value for i in at.info)
