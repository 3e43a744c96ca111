"""The rlhf page: the KL it shows is the model's own (0 at temperature 1), its reward model agrees with the reader's
labels (recomputed with an independent fit), and its best-of-n curve ends at the proxy's favourite."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from engine.runtime.jobs import job_registry
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until, shown_text

QUESTION = "Give me one tip for sleeping better."


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def fitted(at):
    return any(m.label.startswith("Training agreement") for m in at.metric)


def first_token_probs(lm, temperature):
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=True,
                                           add_generation_prompt=True)["input_ids"]
    with torch.no_grad():
        logits = lm.model(torch.tensor([list(ids)])).logits[0, -1].double()
    return torch.softmax(logits / temperature, -1).numpy(), torch.softmax(logits, -1).numpy()


def pool():
    (job,) = [j for k, j in job_registry()._finished.items() if k == ("rlhf-pool", QUESTION, 0)]
    return job.result


def independent_fit(chosen, rejected, l2):
    """Bradley-Terry with L2 by L-BFGS on the penalised negative log-likelihood (not scikit-learn)."""
    diff = chosen - rejected

    def loss(w):
        m = diff @ w
        return np.logaddexp(0, -m).sum() + l2 / 2 * w @ w, -(diff * (1 / (1 + np.exp(m)))[:, None]).sum(0) + l2 * w

    return minimize(loss, np.zeros(diff.shape[1]), jac=True, method="L-BFGS-B", options={"gtol": 1e-10}).x


def check_reward_model(at, labels, l2):
    p = pool()
    pairs = [(2 * k, 2 * k + 1) if c == "A" else (2 * k + 1, 2 * k) for k, c in enumerate(labels) if c in "AB"]
    chosen, rejected = p.embeddings[[c for c, _ in pairs]], p.embeddings[[r for _, r in pairs]]
    w = independent_fit(chosen, rejected, l2)
    margins = (chosen - rejected) @ w
    assert metric(at, "Labelled pairs").value == str(len(pairs))
    assert metric(at, "Training agreement").value == f"{100 * np.mean(margins > 0):.0f}%"
    assert metric(at, "Mean P(chosen wins)").value == f"{np.mean(1 / (1 + np.exp(-margins))):.3f}"
    return p, p.embeddings @ w


def check_best_of_n(at, p, proxy):
    data = chart(at, "bon_chart")["data"]
    ns, proxy_gain, judge_gain = plotly_array(data[0]["x"]), plotly_array(data[0]["y"]), plotly_array(data[1]["y"])
    assert ns[0] == 1 and ns[-1] == p.size == 32
    assert proxy_gain[0] == 0 and np.all(np.diff(proxy_gain) >= -1e-9)    # the best of more is never worse
    assert proxy_gain[-1] == pytest.approx((proxy.max() - proxy.mean()) / proxy.std(), abs=1e-3)
    favourite = int(np.argmax(proxy))    # at n = pool size the winner is always the proxy's favourite
    assert judge_gain[-1] == pytest.approx((p.judge[favourite] - p.judge.mean()) / p.judge.std(), abs=1e-3)
    assert metric(at, "Judge peaks at").value == f"n = {int(ns[int(np.argmax(judge_gain))])}"
    falls = np.argmax(judge_gain) < len(ns) - 1 and judge_gain[-1] < judge_gain.max() - 0.05
    assert ("Over-optimisation, measured" in shown_text(at)) == falls


def test_defaults_fit_a_reward_model_that_agrees_with_the_labels(lm):
    at = open_page("rlhf")
    assert_no_exception(at)
    policy, reference = first_token_probs(lm, 0.6)
    kl = float(np.sum(policy * (np.log2(policy) - np.log2(reference))))
    assert kl > 0 and metric(at, "KL(policy").value == f"{kl:.4f} bits"
    assert len(at.get("plotly_chart")) >= 1     # the KL chart comes before the sampling job
    run_until(at, fitted, timeout=400)
    assert_no_exception(at)
    p, proxy = check_reward_model(at, "ABABAB", 0.1)
    assert metric(at, "Training agreement").value == "100%"
    check_best_of_n(at, p, proxy)
    assert len(at.segmented_control) == 6


def test_share_link_with_a_skipped_pair_and_the_reference_temperature(lm):
    at = open_page("rlhf", {"p1": "B", "p3": "Skip", "l2": "1.0", "tau": "1.0"})
    assert_no_exception(at)
    assert metric(at, "KL(policy").value == "0.0000 bits"     # identical distributions
    run_until(at, fitted, timeout=400)
    assert_no_exception(at)
    p, proxy = check_reward_model(at, "BB-BAB", 1.0)
    check_best_of_n(at, p, proxy)


def test_every_pair_skipped_explains_itself():
    at = open_page("rlhf", {f"p{k}": "Skip" for k in range(1, 7)})
    run_until(at, lambda a: any("Every pair is skipped" in i.value for i in a.info), timeout=400)
    assert_no_exception(at)
