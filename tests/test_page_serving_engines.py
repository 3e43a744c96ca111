"""The serving-engines page: the engine table is the checked TOML (links to live pages), the planned work is counted
from the requests' real tokens, and a shared link's engine run answers exactly as plain greedy decoding with the
latency and throughput it charts."""
import json
import tomllib

import pytest
import torch

from concepts import load_catalogue
from engine.runtime.jobs import job_registry
from engine.serving.serving_engine import ENGINES_FILE, EngineOptions, planned_work
from engine.tokens.offsets import decode
from tests.pages import assert_no_exception, open_page, run_until, shown_text

TINY = {"system": "Printing costs ten cents a page.", "questions": "How much does printing cost?\nHi", "n": "6",
        "kv": "true", "batch": "false", "prefix": "true", "spec": "true"}


def chart(at, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key}")


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def template_ids(lm, system: str, question: str) -> list[int]:
    with lm.tokenizing() as tok:
        out = tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": question}],
                                      tokenize=True, add_generation_prompt=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def greedy(lm, ids: list[int], max_new: int) -> list[int]:
    seq, out = list(ids), []
    with torch.inference_mode():
        while len(out) < max_new:
            token = int(lm.model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax())
            out.append(token)
            seq.append(token)
            if token == lm.tokenizer.eos_token_id or "\n" in decode(lm, [token]):
                break
    return out


def test_defaults_show_the_checked_table_and_the_planned_work(lm):
    at = open_page("serving-engines")
    assert_no_exception(at)
    with ENGINES_FILE.open("rb") as f:
        data = tomllib.load(f)
    table = at.dataframe[0].value.set_index("Technique")
    assert list(table.columns) == [e["name"] for e in data["engines"]]
    names = {t["slug"]: t["name"] for t in data["techniques"]}
    assert list(table.index) == list(names.values())
    for e in data["engines"]:
        assert {slug for slug, name in names.items() if table.loc[name, e["name"]] == "✓"} == set(e["uses"])
        assert set(table[e["name"]]) <= {"✓", "·"}
    assert (table["Ollama"] == "✓").sum() == 3 and (table["vLLM"] == "✓").sum() == 8
    catalogue = load_catalogue()
    links = {p.proto.label for p in at.get("page_link")}
    for slug, name in names.items():   # every technique with a live page is linked
        assert (name in links) == catalogue.get(slug).live
    assert [at.toggle(key=k).value for k in ("kv", "batch", "prefix", "spec")] == [True, True, True, False]
    system, questions = at.text_area(key="system").value, at.text_area(key="questions").value.splitlines()
    prompts = [template_ids(lm, system, q) for q in questions]
    plan = chart(at, "plan_chart")
    shared = min(len(p) for p in prompts)
    shared = next(i for i in range(shared) if any(p[i] != prompts[0][i] for p in prompts))   # the common prefix
    expected = [planned_work([len(p) for p in prompts], shared, 24, o)
                for o in (EngineOptions(), EngineOptions(True, True, True, False))]
    assert plan["data"][0]["y"] == [e.forward_passes for e in expected]
    assert plan["data"][2]["y"] == [e.padding for e in expected]
    assert [u + p for u, p in zip(plan["data"][1]["y"], plan["data"][2]["y"])] == [e.positions for e in expected]
    assert "The work planned for 3 requests × 24 answer tokens" in plan["layout"]["title"]["text"]
    # The prose's worked example is these requests' own plan.
    prose = open("concepts/serving-engines.md", encoding="utf-8").read()
    own = sorted(len(p) - shared for p in prompts)
    assert f"three questions of {own[0]} to {own[-1]} tokens each after a shared prefix of {shared} tokens" in prose
    plain, yours = expected
    assert f"the plain baseline runs {plain.forward_passes} passes over {plain.positions:,} token positions" in prose
    assert (f"take {yours.forward_passes} passes over {yours.positions:,} positions ({yours.padding} of them "
            "padding)") in prose


def test_share_link_runs_the_engine_and_the_baseline_and_checks_the_answers(lm):
    at = open_page("serving-engines", TINY)
    run_until(at, lambda a: any(m.label == "Throughput" for m in a.metric) or bool(a.exception), timeout=240)
    assert_no_exception(at)
    assert at.slider(key="n").value == 6 and not at.toggle(key="batch").value and at.toggle(key="spec").value
    questions = ("How much does printing cost?", "Hi")
    key = ("serving engine", TINY["system"], questions, 6)
    plain = job_registry().get(key + (EngineOptions(),)).result
    yours = job_registry().get(key + (EngineOptions(True, False, True, True),)).result
    expected = [greedy(lm, template_ids(lm, TINY["system"], q), 6) for q in questions]
    assert [list(r.new_ids) for r in plain.requests] == expected == [list(r.new_ids) for r in yours.requests]
    assert metric(at, "Answers vs plain greedy").value == "identical ✓"
    assert metric(at, "Throughput").value == f"{yours.generated / yours.total_s:.1f} tokens/s"
    assert metric(at, "Throughput").delta == f"plain: {plain.generated / plain.total_s:.1f} tokens/s"
    assert metric(at, "Speed-up").value == f"{plain.total_s / yours.total_s:.1f}×"
    latency = sum(r.finished_s for r in yours.requests) / len(questions)
    assert metric(at, "Mean latency").value == f"{latency:.2f} s"
    times = chart(at, "times_chart")
    assert times["data"][0]["x"] == pytest.approx([r.finished_s for r in plain.requests])
    assert times["data"][2]["x"] == pytest.approx([r.finished_s for r in yours.requests])
    assert times["data"][3]["x"] == pytest.approx([r.first_token_s for r in yours.requests])
    # Served one by one, the second request gets its first token after the first request's last.
    assert yours.requests[1].first_token_s >= yours.requests[0].finished_s
    answers = at.dataframe[1].value
    assert list(answers["answer"]) == [decode(lm, e).replace("<|im_end|>", "").strip() for e in expected]
    assert list(answers["identical"]) == ["✓", "✓"]
    assert f"{yours.drafted} tokens and the model kept {yours.accepted}" in shown_text(at) or yours.drafted == 0
    assert "KV cache + prefix reuse + speculation" in times["layout"]["annotations"][1]["text"]


def test_without_the_cache_prefix_reuse_and_speculation_are_off(lm):
    at = open_page("serving-engines", {"kv": "false", "batch": "false", "prefix": "true", "spec": "true"})
    assert_no_exception(at)
    assert at.toggle(key="prefix").proto.disabled and at.toggle(key="spec").proto.disabled
    assert "with the cache off they are off too" in shown_text(at)
    plan = chart(at, "plan_chart")
    assert plan["data"][0]["y"][0] == plan["data"][0]["y"][1]   # the plain baseline's plan: nothing else applies


@pytest.mark.parametrize("questions", ["", " \n \n", "\x00\x07"])
def test_no_question_asks_for_one(lm, questions):
    at = open_page("serving-engines", {"questions": questions})
    assert_no_exception(at)
    assert any("Type at least one question" in i.value for i in at.info)
