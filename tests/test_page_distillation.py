"""The distillation page shows SmolLM2's soft targets and a KL equal to its formula, and trains two students."""
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ui.distillation
from engine.training.distillation import Setup, default_position, train_student, transfer_set
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, run_until, shown_text
from tests.test_distillation import model_logits

DEFAULT = "My favourite fruits are apples, pears and bananas, but my sister prefers oranges."
MARKET = "On Monday I went to the market and bought three kilos of potatoes, two onions and a cabbage."


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def metric(at, label_start):
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def check_the_kl_shown(at, lm, text, t, alpha, removed, position):
    """The table's distributions are the model's, each term is p ln(p/q) of the shown p and q, and the KL shown
    is the sum of all of them, as torch's kl_div computes it."""
    block = range((30 - removed) // 2, (30 - removed) // 2 + removed)     # the middle of the 30 layers
    teacher, student = model_logits(lm, text)[position - 1], model_logits(lm, text, block)[position - 1]
    log_p, log_q = F.log_softmax(teacher / t, -1), F.log_softmax(student / t, -1)
    kl = float(F.kl_div(log_q, log_p, reduction="sum", log_target=True))
    table = at.dataframe[0].value
    p, q, terms = (table[c].to_numpy() for c in ("teacher p_T", "student q_T", "p_T · ln(p_T / q_T)"))
    top = torch.argsort(-teacher, stable=True)[:5]
    np.testing.assert_allclose(p[:5], log_p[top].exp().numpy(), rtol=1e-4)
    np.testing.assert_allclose(q[:5], log_q[top].exp().numpy(), rtol=2e-3)
    np.testing.assert_allclose(terms[:5], p[:5] * np.log(p[:5] / q[:5]), rtol=1e-9, atol=1e-15)
    assert p.sum() == pytest.approx(1.0) and q.sum() == pytest.approx(1.0)
    assert terms.sum() == pytest.approx(kl, rel=2e-3, abs=2e-4)
    shown_kl = float(metric(at, "KL(teacher ‖ student) at T").split()[0])
    assert shown_kl == pytest.approx(terms.sum(), abs=6e-5)
    latex = [e.value for e in at.get("latex")]
    assert f"&= {shown_kl:.4f}\\ \\text{{nats}}" in latex[0]
    ce = -float(F.log_softmax(student, -1)[token_ids(lm, text)[position]])
    total = alpha * t * t * kl + (1 - alpha) * ce
    shown_total = float(re.search(r"&= ([-0-9.]+)\s*\\end\{aligned\}", latex[1]).group(1))
    assert shown_total == pytest.approx(total, rel=2e-3, abs=2e-4)
    assert float(metric(at, "Soft term T² · KL")) == pytest.approx(t * t * kl, rel=2e-3, abs=2e-4)
    return kl


def test_defaults_show_soft_targets_and_the_kl_formula_filled_in(lm):
    at = open_page("distillation")
    assert_no_exception(at)
    assert at.slider(key="t").value == 2.0 and at.slider(key="alpha").value == 1.0
    assert at.slider(key="drop").value == 8
    assert "layers 12 to 19 are removed" in shown_text(at)
    ids = token_ids(lm, DEFAULT)
    teacher = model_logits(lm, DEFAULT)
    position = default_position(teacher.numpy(), ids)
    assert at.slider(key="pos").value == position

    bars = charts(at)[0]["data"]           # hard label, teacher at T = 1, soft targets at T
    hard, t1, soft = (np.array([np.nan if v is None else v for v in trace["x"]], dtype=float) for trace in bars)
    labels = [y.replace("\u200b", "") for y in bars[0]["y"]]
    order = torch.argsort(-teacher[position - 1], stable=True)[:10]
    assert [row[0] for row in bars[1]["customdata"]] == [int(i) for i in order]    # oranges is in the top 10
    np.testing.assert_allclose(t1, 100 * F.softmax(teacher[position - 1], -1)[order].numpy(), rtol=1e-4)
    np.testing.assert_allclose(soft, 100 * F.softmax(teacher[position - 1] / 2, -1)[order].numpy(), rtol=1e-4)
    assert labels[int(np.nanargmax(hard))] == "␣oranges" and np.nansum(hard) == 100.0
    assert soft.sum() < t1.sum()     # T = 2 moves probability from the favourites into the 49,152-token tail
    p2 = F.softmax(teacher[position - 1] / 2, -1)
    entropy = -float((p2 * torch.log2(p2.clamp_min(1e-300))).sum())
    assert metric(at, "Entropy at T = 2") == f"{entropy:.2f} bits"
    assert charts(at)[0]["layout"]["xaxis"]["type"] == "log"   # the default: small probabilities stay visible

    check_the_kl_shown(at, lm, DEFAULT, 2.0, 1.0, 8, position)
    gradient = charts(at)[1]["data"]
    temps, without, scaled = (np.array(gradient[0]["x"]), np.array(gradient[0]["y"]), np.array(gradient[1]["y"]))
    student = model_logits(lm, DEFAULT, range(11, 19))[position - 1]
    for t in (1.0, 2.0, 10.0):   # autograd on the model's logits: the size of d(loss)/d(student logits)
        s = student.clone().requires_grad_()
        kl = F.kl_div(F.log_softmax(s / t, -1), F.softmax(teacher[position - 1] / t, -1), reduction="sum")
        (grad,) = torch.autograd.grad(kl, s)
        i = int(np.flatnonzero(temps == t)[0])
        assert without[i] == pytest.approx(float(grad.norm()), rel=1e-3)
        assert scaled[i] == pytest.approx(t * t * float(grad.norm()), rel=1e-3)
    assert without[-1] < without[0] / 50            # without T² the pull all but vanishes at T = 10
    assert f"×{without[-1] / without[0]:.2g}" in shown_text(at)


def test_share_link_restores_the_state_and_its_trained_students(lm):
    params = {"text": MARKET, "t": "4", "alpha": "0.5", "pos": "6", "drop": "12", "steps": "100", "seed": "3",
              "curve": "KL to the teacher", "log": "false"}
    at = open_page("distillation", params)
    assert_no_exception(at)
    assert at.text_area(key="text").value == MARKET and at.slider(key="t").value == 4.0
    assert at.slider(key="pos").value == 6 and at.slider(key="drop").value == 12 and not at.toggle(key="log").value
    assert charts(at)[0]["layout"]["xaxis"].get("type") != "log"
    check_the_kl_shown(at, lm, MARKET, 4.0, 0.5, 12, 6)

    at = run_until(at, lambda a: any(m.label.startswith("KL to the teacher, soft") for m in a.metric))
    assert_no_exception(at)
    ts = transfer_set(lm)
    setup = Setup(temperature=4.0, alpha=0.5, steps=100, seed=3)
    hard, soft = train_student(ts, setup, soft=False), train_student(ts, setup, soft=True)
    assert metric(at, "KL to the teacher, soft") == f"{soft.final.kl_to_teacher:.3f} nats"
    assert metric(at, "Agrees with the teacher, soft") == f"{100 * soft.final.agreement:.1f}%"
    assert metric(at, "Held-out loss, soft") == f"{soft.final.loss:.3f} nats"
    assert f"vs hard ({hard.final.loss:.3f})" in next(m.delta for m in at.metric
                                                      if m.label.startswith("Held-out loss, soft"))
    curves = charts(at)[2]["data"]
    np.testing.assert_allclose(curves[0]["y"], hard.held_kl, rtol=1e-9)
    np.testing.assert_allclose(curves[1]["y"], soft.held_kl, rtol=1e-9)
    assert curves[0]["x"][-1] == 100
    assert f"trained for 100 steps on {int((~ts.held_out).sum()):,} positions" in shown_text(at)


def test_moving_t_and_the_position_runs_no_forward_pass(monkeypatch):
    at = open_page("distillation")
    before = charts(at)[0]["data"][2]["x"]
    default_job = ui.distillation.training_job

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a slider move")
    monkeypatch.setattr(ui.distillation, "forward", no_forward)
    monkeypatch.setattr(ui.distillation, "trace", no_forward)
    monkeypatch.setattr(ui.distillation, "training_job", lambda setup: default_job(Setup()))  # no new training
    at.slider(key="t").set_value(6.0).run()
    assert_no_exception(at)
    after = charts(at)[0]["data"][2]["x"]
    assert after != before and max(after) < max(before)
    at.slider(key="pos").set_value(3).run()
    assert_no_exception(at)
    assert at.slider(key="pos").value == 3


@pytest.mark.parametrize("params, hint", [
    ({"text": ""}, "Type a sentence"), ({"text": "Hello"}, "single token"),
    ({"text": "🍓 emoji 日本語 <b>x</b> $y$"}, None),
    ({"t": "abc", "alpha": "7", "pos": "-3", "drop": "0", "steps": "5", "seed": "x", "curve": "nope"}, None),
])
def test_bad_input_never_shows_a_traceback(lm, monkeypatch, params, hint):
    default_job = ui.distillation.training_job
    monkeypatch.setattr(ui.distillation, "training_job", lambda setup: default_job(Setup()))
    at = open_page("distillation", params)
    assert_no_exception(at)
    if hint:
        assert hint in shown_text(at)
    else:
        assert charts(at) and 1.0 <= at.slider(key="t").value <= 10.0
