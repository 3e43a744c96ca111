"""The speculative-decoding page: its output is plain greedy's, its acceptance rate is accepted ÷ proposed of the
run it charts, and its speed-up is the two measured times divided, for the defaults and for a share link."""
import json
import re

from engine.decoding.generation import generate
from engine.tokens.offsets import decode
from tests.pages import assert_no_exception, open_page, run_until, shown_text

DEFAULT = "The cat sat on the mat. The dog sat on the log. The cat"


def metric(at, label):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def finished(at):
    return any(m.label == "Measured speed-up" for m in at.metric) or bool(at.exception)


def rounds(at):
    bars = json.loads(at.get("plotly_chart")[-1].proto.spec)["data"]   # after round 1's instant chart
    return [int(y) for y in bars[0]["y"]], [int(y) for y in bars[1]["y"]]


def check_page(at, lm, prompt, new_tokens, drafter):
    assert_no_exception(at)
    greedy = generate(lm, prompt, new_tokens, temperature=0.0)
    output = metric(at, "Output vs greedy")
    assert output.value == "identical ✓" and output.delta == f"all {len(greedy.new_ids)} tokens match"
    # The greedy text shown for comparison is generate's own, and the coloured output spells the same tokens.
    assert at.text[0].value == prompt + decode(lm, greedy.new_ids)

    accepted, rejected = rounds(at)
    first = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]   # round 1, checked before the timed runs
    assert first["text"] == ["accepted"] * accepted[0] + ["rejected"] * rejected[0]
    proposed = sum(accepted) + sum(rejected)
    rate = metric(at, "Acceptance rate")
    assert rate.delta == f"{sum(accepted)} of {proposed} drafted tokens"
    assert rate.value == f"{100 * sum(accepted) / proposed:.0f}%"
    passes = metric(at, "Full-model passes")
    assert passes.value == str(len(accepted)) and passes.delta == f"greedy needs {len(greedy.new_ids)}"
    assert sum(accepted) + len(accepted) == len(greedy.new_ids)   # each round: its accepted drafts + one own token

    speed = metric(at, "Measured speed-up")
    times = re.fullmatch(r"([\d.]+) s ÷ ([\d.]+) s", speed.delta)
    assert times, speed.delta
    greedy_s, spec_s = float(times[1]), float(times[2])
    assert greedy_s > 0 and spec_s > 0
    shown = float(speed.value.rstrip("×"))
    assert abs(shown - greedy_s / spec_s) <= 0.01 + 0.01 * shown   # rounded times, rounded ratio
    assert "Measured at" in shown_text(at)
    return accepted, rejected


def test_defaults_copy_from_the_prompt_and_match_greedy(lm):
    at = run_until(open_page("speculative-decoding"), finished)
    accepted, rejected = check_page(at, lm, DEFAULT, 32, "lookup")
    assert accepted[0] == 3 and rejected[0] == 1   # " sat on the" copied, " mat" rejected, as the prose says
    assert "Early-exit drafts are not free" not in shown_text(at)


def test_share_link_early_exit_is_exact_and_honest_about_its_cost(lm):
    prompt = "List the planets of the solar system: Mercury, Venus, Earth,"
    at = run_until(open_page("speculative-decoding", {"prompt": prompt, "draft": "Early exit", "n": "8", "k": "2",
                                                      "exit": "28"}), finished)
    assert at.slider(key="exit").value == 28 and at.slider(key="k").value == 2
    check_page(at, lm, prompt, 8, "early-exit")
    assert "Early-exit drafts are not free" in shown_text(at)
    assert "runs 28 of 30 layers" in shown_text(at)
