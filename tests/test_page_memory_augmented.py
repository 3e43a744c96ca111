"""The memory-augmented page: a kNN-LM from the document, its perplexity against lambda (measured, and checked
here by an independent recomputation), lambda 0 as the model itself, and the chat's context budget."""
import json

import numpy as np
import pytest
import torch

import ui.knn_lm
from engine.model.perplexity import perplexity
from engine.model.traced import trace
from engine.tokens.offsets import token_ids
from engine.using.chat_template import template_ids
from engine.using.memory_budget import BUNDLED_CHAT
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text
from ui.text import large_number


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def curve(at):
    line = charts(at)[0]["data"][0]
    return plotly_array(line["x"]), np.array([np.nan if y is None else y for y in line["y"]], float)


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


@pytest.fixture(scope="module")
def texts():
    """The page's bundled document and queries, read from the page module's source (importing it would run it)."""
    import ast
    from pathlib import Path
    tree = ast.parse(Path("app_pages/memory_augmented.py").read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in ("DEFAULT_DOC", "QUERIES"):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values["DEFAULT_DOC"], values["QUERIES"]


def independent_perplexity(lm, doc, query, lam, k, temperature):
    """The kNN-LM perplexity written again from scratch: traced passes, faiss exact search, a plain softmax."""
    import faiss
    doc_ids, q_ids = token_ids(lm, doc), token_ids(lm, query)
    keys = np.asarray(trace(lm, doc_ids, record={"final_norm"}).final_norm[:-1], np.float32)
    q = trace(lm, q_ids, record={"final_norm"})
    index = faiss.IndexFlatL2(keys.shape[1])
    index.add(keys)
    d, rows = index.search(np.asarray(q.final_norm[:-1], np.float32), k)
    w = torch.softmax(torch.tensor(-d / temperature, dtype=torch.float64), -1).numpy()
    values = np.asarray(doc_ids[1:])[rows]
    targets = np.asarray(q_ids[1:])
    p_knn = (w * (values == targets[:, None])).sum(1)
    p_lm = torch.softmax(torch.tensor(np.asarray(q.logits[:-1]), dtype=torch.float64), -1).numpy()
    p_lm = p_lm[np.arange(len(targets)), targets]
    return float(np.exp(-np.mean(np.log(lam * p_knn + (1 - lam) * p_lm))))


def test_defaults_measure_the_curve(lm, texts):
    doc, queries = texts
    at = open_page("memory-augmented")
    assert_no_exception(at)
    own = perplexity(lm, token_ids(lm, queries["related"])).perplexity
    assert metric(at, "Model alone").value == large_number(own)
    xs, ys = curve(at)
    assert xs[0] == 0 and ys[0] == pytest.approx(own, rel=1e-6)
    i = int(np.argmin(np.abs(xs - 0.5)))
    assert ys[i] == pytest.approx(independent_perplexity(lm, doc, queries["related"], 0.5, 8, 100.0), rel=1e-4)
    shown = metric(at, "kNN-LM at lambda 0.25").value
    assert shown == large_number(ys[int(np.argmin(np.abs(xs - 0.25)))])
    assert float(shown.replace(",", "")) < own / 2        # the memory of the document helps the related query
    assert metric(at, "Memory entries").value == str(len(token_ids(lm, doc)) - 1)
    # the chat budget: the real chat template, the window from the config
    assert metric(at, "Whole chat, verbatim").value == f"{len(template_ids(lm, list(BUNDLED_CHAT))):,} tokens"
    assert metric(at, "Context window").value == f"{lm.model.config.max_position_embeddings:,} tokens"
    assert len(charts(at)) == 3


def test_lambda_zero_is_the_model_itself(lm, texts):
    _, queries = texts
    at = open_page("memory-augmented", {"lam": "0"})
    assert_no_exception(at)
    own = perplexity(lm, token_ids(lm, queries["related"]))
    assert metric(at, "kNN-LM at lambda 0.00").value == metric(at, "Model alone").value == large_number(own.perplexity)
    gains = plotly_array(charts(at)[1]["data"][0]["y"])
    assert np.all(gains == 0.0)                               # not one token changes at lambda 0
    assert metric(at, "Mixed probability").value == metric(at, "Model's probability").value


def test_share_link_restores_every_control(lm, texts):
    doc, queries = texts
    params = {"lam": "0.5", "k": "3", "temp": "10", "key": "ffn_input", "pos": "5", "keep": "2"}
    at = open_page("memory-augmented", params)
    assert_no_exception(at)
    assert at.slider(key="lam").value == pytest.approx(0.5) and at.slider(key="k").value == 3
    assert at.select_slider(key="temp").value == 10 and at.selectbox(key="key").value == "Last FFN input (paper)"
    assert at.slider(key="pos").value == 5 and at.slider(key="keep").value == 2
    assert "messages kept" in charts(at)[2]["layout"]["title"]["text"] and "2 messages kept" in \
        charts(at)[2]["layout"]["title"]["text"]
    assert len(at.dataframe[0].value) == 3                    # k neighbours listed


def test_moving_sliders_runs_no_forward_pass(monkeypatch):
    at = open_page("memory-augmented")
    before = curve(at)[1]

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a slider move")
    monkeypatch.setattr(ui.knn_lm, "hidden_pass", no_forward)
    at.slider(key="k").set_value(20).run()
    at.select_slider(key="temp").set_value(300).run()
    at.slider(key="lam").set_value(0.7).run()
    assert_no_exception(at)
    assert not np.allclose(curve(at)[1], before, equal_nan=True)


def test_unrelated_preset_helps_less():
    at = open_page("memory-augmented")
    related = float(metric(at, "Best lambda").delta.split()[-1].replace(",", "")) / \
        float(metric(at, "Model alone").value.replace(",", ""))
    at.button(key="preset-unrelated").click().run()
    assert_no_exception(at)
    assert at.text_area(key="query").value.startswith("The stock market")
    unrelated = float(metric(at, "Best lambda").delta.split()[-1].replace(",", "")) / \
        float(metric(at, "Model alone").value.replace(",", ""))
    assert unrelated > related     # the best the memory can do is a smaller cut on text it does not cover


@pytest.mark.parametrize("params", [
    {"doc": ""}, {"query": "a"},
    {"doc": "x" * 50_000, "query": "🍓 emoji 日本語 العربية \x00\x07 <script>alert(1)</script> $x$ **b** :red[x]"},
    {"lam": "nan", "k": "-4", "temp": "banana", "key": "nope", "pos": "9999", "keep": "1e400"},
])
def test_bad_input_never_shows_a_traceback(params):
    at = open_page("memory-augmented", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("doc") == "" or params.get("query") == "a":
        assert "Type a document" in text
    else:
        assert at.get("plotly_chart")
