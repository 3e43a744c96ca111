"""The activation-functions page draws torch's own functions, counts every gate value SmolLM2's SiLU receives on the
reader's text, and measures the perplexity of swapping SiLU; it follows its share link and survives odd input."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ui.activations
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text

TORCH = {"ReLU": F.relu, "GELU": F.gelu, "SiLU": F.silu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert found, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def metric(at, label: str):
    found = [m for m in at.metric if m.label.startswith(label)]
    assert found, [m.label for m in at.metric]
    return found[0]


def check_curves(figure: dict, names: list[str], slopes: bool) -> None:
    """Every drawn curve (and slope) equals torch's function (and autograd gradient) at the drawn x."""
    curves = [t for t in figure["data"] if not t["name"].endswith("′")]
    assert [t["name"] for t in curves] == names
    for t in figure["data"]:
        name = t["name"].removesuffix("′")
        x = torch.tensor(plotly_array(t["x"]), dtype=torch.float64, requires_grad=True)
        y = TORCH[name](x)
        if t["name"].endswith("′"):
            y.sum().backward()
            expected = x.grad
        else:
            expected = y.detach()
        np.testing.assert_allclose(plotly_array(t["y"]), expected.numpy(), rtol=1e-9, atol=1e-12)
    assert len(figure["data"]) == (2 if slopes else 1) * len(names)


def check_histogram(lm, at, text: str, layer: int) -> int:
    """Bars (the binned values and the two tails) add up to tokens x the FFN width read from the config."""
    ids = token_ids(lm, text)
    width = lm.model.config.intermediate_size
    bars = [t for t in chart(at, "histogram")["data"] if t["type"] == "bar"]
    total = sum(int(plotly_array(t["y"]).sum()) for t in bars)
    assert total == len(ids) * width == len(ids) * 1536
    assert metric(at, "Gate values").value == f"{total:,}"
    assert metric(at, "Gate values").proto.delta == f"{len(ids)} tokens × {width:,}"
    gates = trace(lm, ids, record={"gate"}, layers=[layer - 1]).at("gate", layer - 1)
    assert metric(at, "Below zero").value == f"{100 * (gates < 0).mean():.1f}%"
    return len(ids)


def test_defaults_draw_torchs_functions_count_every_gate_and_measure_the_swap(lm):
    at = open_page("activation-functions")
    assert_no_exception(at)
    check_curves(chart(at, "curves"), ["ReLU", "GELU", "SiLU"], slopes=True)
    xs = plotly_array(chart(at, "curves")["data"][0]["x"])
    assert xs[0] == -5 and xs[-1] == 5

    text = at.text_area(key="text").value
    tokens = check_histogram(lm, at, text, 15)
    shares = chart(at, "shares")["data"]
    gates = trace(lm, token_ids(lm, text), record={"gate"})["gate"]
    np.testing.assert_allclose(shares[0]["y"], [100 * float((g < 0).mean()) for g in gates], rtol=1e-9)

    ids = token_ids(lm, text)
    shown = {}
    for name, key in (("SiLU", "silu"), ("ReLU", "relu"), ("GELU", "gelu")):
        expected = perplexity(lm, ids, Interventions(activation=key)).perplexity
        shown[name] = expected
        assert metric(at, f"Perplexity, {name}").value == f"{expected:,.1f}"
    assert shown["ReLU"] > 10 * shown["SiLU"] and shown["GELU"] > shown["SiLU"]
    ratio = shown["ReLU"] / shown["SiLU"]
    assert metric(at, "Perplexity, ReLU").proto.delta == f"{ratio:,.1f}× SiLU's"
    losses = {t["name"]: plotly_array(t["y"]) for t in chart(at, "losses")["data"]}
    silu = perplexity(lm, ids).token_nll
    np.testing.assert_allclose(losses["SiLU"], silu, rtol=1e-6)
    assert len(losses["ReLU"]) == tokens - 1


def test_share_link_restores_functions_range_layer_and_text(lm):
    text = "def mean(values):\n    return sum(values) / len(values)\n"
    at = open_page("activation-functions", {"fn": ["Tanh", "Sigmoid", "SiLU"], "span": "3", "slopes": "false",
                                            "layer": "2", "text": text})
    assert_no_exception(at)
    assert at.multiselect(key="fn").value == ["Tanh", "Sigmoid", "SiLU"]
    figure = chart(at, "curves")
    check_curves(figure, ["Tanh", "Sigmoid", "SiLU"], slopes=False)
    assert plotly_array(figure["data"][0]["x"])[-1] == 3
    check_histogram(lm, at, text, 2)
    overlay = [t["name"] for t in chart(at, "histogram")["data"] if t["type"] == "scatter"]
    assert overlay == ["Tanh(x)", "Sigmoid(x)", "SiLU(x)"]
    table = next(d.value for d in at.dataframe if "function" in d.value.columns)
    assert list(table["function"]) == ["Tanh", "Sigmoid", "SiLU"]
    assert table.set_index("function").loc["SiLU", "f(-1)"] == pytest.approx(F.silu(torch.tensor(-1.0)).item())


def test_moving_the_layer_runs_no_forward_pass(lm, monkeypatch):
    at = open_page("activation-functions")

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a slider move")
    monkeypatch.setattr(ui.activations, "gate_stats", no_forward)
    monkeypatch.setattr(ui.activations, "swapped", no_forward)
    at.slider(key="layer").set_value(30).run()
    at.slider(key="span").set_value(8).run()
    assert_no_exception(at)
    check_histogram(lm, at, at.text_area(key="text").value, 30)


def test_no_function_picked_still_draws_silu():
    at = open_page("activation-functions", {"fn": "not-a-function"})
    at.multiselect(key="fn").set_value([]).run()
    assert_no_exception(at)
    assert "Pick at least one function" in shown_text(at)
    check_curves(chart(at, "curves"), ["SiLU"], slopes=True)


@pytest.mark.parametrize("params", [{"text": ""}, {"text": "Hi"}, {"text": "🍓 <script>x</script> $y$"},
                                    {"layer": "99", "span": "-4", "slopes": "maybe"}])
def test_odd_input_is_handled(lm, params):
    at = open_page("activation-functions", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text") == "":
        assert "Type a text above" in text
    elif params.get("text") == "Hi":
        assert "at least two tokens" in text or len(token_ids(lm, "Hi")) > 1
