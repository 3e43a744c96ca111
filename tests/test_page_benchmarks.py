"""The benchmarks page shows the model's own option scores, an accuracy that is the count of the table it shows
(with the Wilson interval of that count), and contamination numbers recomputed from plain forward passes; its
link restores its state."""
import json
import math

import numpy as np
import torch

from engine.using.benchmarks import LETTERS, cloze_prompt, letter_prompt, load_items, load_passages, wilson_interval
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, plotly_array, run_until
from tests.test_prompting import plain_logprobs


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert found, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


def table_ready(at) -> bool:
    return any("true answer" in d.value.columns for d in at.dataframe)


def expected_item_scores(lm, index: int) -> dict[str, np.ndarray]:
    """Every format's four scores recomputed with plain forward passes (no cache, no engine scoring code)."""
    item = load_items()[index]
    letters_prompt, cloze = token_ids(lm, letter_prompt(item)), token_ids(lm, cloze_prompt(item))
    letters = np.array([plain_logprobs(lm, letters_prompt, token_ids(lm, " " + x))[0] for x in LETTERS])
    summed = np.array([sum(plain_logprobs(lm, cloze, token_ids(lm, " " + c))) for c in item.choices])
    return {"letters": letters, "summed": summed,
            "per_byte": summed / np.array([len((" " + c).encode()) for c in item.choices])}


def min_k_and_perplexity(lm, text: str, k: int) -> tuple[float, float]:
    ids = token_ids(lm, text)
    with torch.inference_mode():
        logprobs = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0].float(), -1)
    lp = np.sort(logprobs[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0].numpy())
    return float(lp[:math.ceil(len(lp) * k / 100)].mean()), float(np.exp(-lp.mean()))


def check_set(at, lm, variant: str, rows) -> None:
    """The accuracy metric is the table's own count; the interval is that count's; the rows are the model's."""
    table = next(d.value for d in at.dataframe if "true answer" in d.value.columns)
    items = load_items()
    assert len(table) == len(items)
    scores = table[[f"score {x}" for x in LETTERS]].to_numpy(dtype=float)
    picked = scores.argmax(1)
    assert list(table["picked"]) == [f"{LETTERS[p]}. {i.choices[p]}" for p, i in zip(picked, items)]
    assert list(table["correct"]) == [p == i.answer for p, i in zip(picked, items)]
    correct = int(table["correct"].sum())
    shown = metric(at, "Accuracy")
    assert shown.value == f"{100 * correct / len(table):.1f}%"
    assert shown.delta == f"{correct} of {len(table)} right"
    low, high = wilson_interval(correct, len(table))
    assert metric(at, "95% interval").value == f"{100 * low:.0f}% to {100 * high:.0f}%"
    bars = chart(at, "accuracy_chart")["data"][0]
    assert math.isclose(plotly_array(bars["y"])[["letters", "summed", "per_byte"].index(variant)],
                        100 * correct / len(table), abs_tol=1e-6)
    for row in rows:
        np.testing.assert_allclose(scores[row], expected_item_scores(lm, row)[variant], atol=2e-3)


def check_contamination(at, lm, texts: dict[str, str], k: int) -> None:
    for name, text in texts.items():
        min_k, ppl = min_k_and_perplexity(lm, text, k)
        shown = metric(at, f"Min-K% ({k}%): {name}")
        assert shown.value == f"{min_k:.2f}" and shown.delta == f"perplexity {ppl:.1f}"


def test_defaults_show_the_models_scores_and_an_accuracy_counted_from_its_table(lm):
    at = open_page("benchmarks")
    assert_no_exception(at)
    item_chart = chart(at, "item_chart")["data"]
    expected = expected_item_scores(lm, 0)
    for trace, variant in zip(item_chart[:3], ("letters", "summed", "per_byte")):
        np.testing.assert_allclose(plotly_array(trace["x"]), expected[variant], atol=2e-3)
    assert metric(at, "True answer").value == "A. Mercury"
    passage = load_passages()[0]
    check_contamination(at, lm, {"verbatim": passage.verbatim, "paraphrase": passage.paraphrase}, 20)

    run_until(at, table_ready, timeout=400)
    assert_no_exception(at)
    check_set(at, lm, "letters", rows=[0, 9])


def test_a_shared_link_restores_format_question_passage_and_text(lm):
    own = "My neighbour's cat sleeps in the blue wheelbarrow every afternoon."
    items, passage = load_items(), load_passages()[2]
    at = open_page("benchmarks", {"item": f"5. {items[4].question}", "variant": "Answer text, per byte",
                                  "passage": passage.name, "k": "40", "text": own})
    assert_no_exception(at)
    assert (at.selectbox(key="item").value, at.radio(key="variant").value, at.slider(key="k").value) == \
        (f"5. {items[4].question}", "Answer text, per byte", 40)
    expected = expected_item_scores(lm, 4)
    np.testing.assert_allclose(plotly_array(chart(at, "item_chart")["data"][2]["x"]), expected["per_byte"], atol=2e-3)
    check_contamination(at, lm, {"verbatim": passage.verbatim, "paraphrase": passage.paraphrase,
                                 "your text": own}, 40)
    run_until(at, table_ready, timeout=400)
    check_set(at, lm, "per_byte", rows=[4])
