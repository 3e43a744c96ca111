"""The prompt-caching page: cached and from-scratch answers agree, the times and cache bytes shown are the measured
ones, and the token counts (prefix length, prefill saved, tokens reused after an edit) are computed right."""
import json

import pytest
import torch

from engine.serving.prompt_cache import new_cache, shared_prefix_length
from engine.tokens.offsets import decode, token_ids
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text
from ui.text import human_bytes

SUFFIX = "\nQuestion: {}\nAnswer:"


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def chart_titled(at, start: str) -> dict:
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    found = [f for f in figures if f["layout"].get("title", {}).get("text", "").startswith(start)]
    assert found, [f["layout"].get("title") for f in figures]
    return found[0]


def timed(at) -> bool:
    return any(m.label == "Greedy tokens" for m in at.metric)


def is_greedy_continuation(lm, ids: list[int], answer: list[int]) -> bool:
    """One pass without any cache over prompt + answer: every answer token must be the argmax before it."""
    with torch.inference_mode():
        logits = lm.model(torch.tensor([ids + answer]), use_cache=False).logits[0]
    return logits[len(ids) - 1:len(ids) - 1 + len(answer)].argmax(-1).tolist() == answer


def stored_result(prefix: str, questions: list[str], steps: int):
    """The run the page shows, from the server's job store (the page shows its text; its token ids are here)."""
    from engine.runtime.jobs import job_registry
    return job_registry().get(("prompt-cache timing", prefix, tuple(questions), steps)).result


def check_measurement(at, lm, prefix: str, questions: list[str], steps: int) -> None:
    """Everything the timing section shows, recomputed independently."""
    run_until(at, timed)
    assert_no_exception(at)
    prefix_ids = token_ids(lm, prefix)
    suffixes = [token_ids(lm, SUFFIX.format(q)) for q in questions]

    # Token counts: prefix length and the saved share of prefill.
    assert metric(at, "Shared prefix").value == f"{len(prefix_ids)} tokens"
    saved, total = len(prefix_ids) * len(suffixes), sum(len(prefix_ids) + len(s) for s in suffixes)
    assert metric(at, "Prefill saved").value == f"{saved / total:.0%}"
    split = chart_titled(at, "Each request's prompt")["data"]
    assert list(plotly_array(split[0]["x"])) == [len(prefix_ids)] * len(suffixes)
    assert list(plotly_array(split[1]["x"])) == [len(s) for s in suffixes]
    assert split[0]["text"] == [f"{len(prefix_ids)} tokens, {len(prefix_ids) / (len(prefix_ids) + len(s)):.0%} saved"
                                for s in suffixes]

    # Cached and uncached continuations identical, and equal to a greedy loop run here without any cache.
    assert metric(at, "Greedy tokens").value == "identical ✓"
    answers = at.dataframe[0].value
    shown = list(answers["answer"])
    result = stored_result(prefix, questions, steps)
    for suffix, reader in zip(suffixes, result.readers):
        assert reader.suffix_ids == suffix and reader.warm.new_ids == reader.cold.new_ids
        assert len(reader.warm.new_ids) == steps and is_greedy_continuation(lm, prefix_ids + suffix,
                                                                             reader.warm.new_ids)
    assert shown == [decode(lm, r.warm.new_ids) for r in result.readers]
    assert list(answers["identical"]) == ["✓"] * len(questions)

    # The cache size shown is the bytes of a cache filled here with the prefix.
    cache = new_cache(lm)
    with torch.inference_mode():
        lm.model(torch.tensor([prefix_ids]), past_key_values=cache, use_cache=True)
    by_hand = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert metric(at, "Cache size").value == human_bytes(by_hand)
    assert metric(at, "Cache size").delta == f"K and V of {len(prefix_ids)} tokens"

    # The times shown are the chart's measured ones.
    chart = chart_titled(at, "Time to first token")
    cold, warm = (plotly_array(trace["x"]) for trace in chart["data"][:2])
    assert len(warm) == len(questions) and (warm > 0).all()
    assert metric(at, "First token, cached").value == f"{warm.mean():.0f} ms"
    assert metric(at, "First token, from scratch").value == f"{cold.mean():.0f} ms"
    assert f"first token **{cold.sum() / warm.sum():.1f}× faster**" in shown_text(at)
    assert list(plotly_array(chart["data"][1]["customdata"])) == [len(s) for s in suffixes]
    assert list(plotly_array(chart["data"][0]["customdata"])) == [len(prefix_ids) + len(s) for s in suffixes]
    assert "still held only the prefix" in shown_text(at)


def test_defaults_measure_reuse_for_three_readers(lm):
    at = open_page("prompt-caching")
    assert_no_exception(at)
    prefix = at.text_area(key="prefix").value
    questions = at.text_area(key="questions").value.splitlines()
    assert len(questions) == 3 and at.slider(key="n").value == 8
    check_measurement(at, lm, prefix, questions, 8)
    # Default edit at character 40: the tokens before it are reused, the rest recomputed.
    edited = prefix[:40] + "#" + prefix[41:]
    reused = shared_prefix_length(token_ids(lm, prefix), token_ids(lm, edited))
    assert 0 < reused < len(token_ids(lm, prefix)) // 4
    assert metric(at, "Tokens reused").value == f"{reused} of {len(token_ids(lm, edited))}"


def test_share_link_state_is_restored_and_measured(lm):
    prefix = ("Recipe notes. Bake the bread at 220 degrees for thirty minutes. Let the dough rise twice, "
              "for an hour each time. Use strong flour, warm water, salt and a little yeast.")
    questions = ["How hot is the oven?", "How long does the dough rise?"]
    at = open_page("prompt-caching", {"prefix": prefix, "questions": "\n".join(questions), "n": "4",
                                      "edit_at": "100"})
    assert_no_exception(at)
    assert at.slider(key="n").value == 4 and at.slider(key="edit_at").value == 100
    check_measurement(at, lm, prefix, questions, 4)
    edited = prefix[:100] + "#" + prefix[101:]
    edited_ids = token_ids(lm, edited)
    reused = shared_prefix_length(token_ids(lm, prefix), edited_ids)
    assert metric(at, "Tokens reused").value == f"{reused} of {len(edited_ids)}"
    assert metric(at, "Tokens to recompute").value == str(len(edited_ids) - reused)


@pytest.mark.parametrize("params", [{"prefix": ""}, {"questions": "  \n \n"}, {"prefix": "x", "questions": ""}])
def test_empty_inputs_explain_what_to_type(lm, params):
    at = open_page("prompt-caching", params)
    assert_no_exception(at)
    assert "Type a shared prefix" in shown_text(at) and not timed(at)
