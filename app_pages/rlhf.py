from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.preferences import best_of_n_curves, policy_vs_reference, proxy_vs_judge
from engine.decoding.divergence import kl_divergence_bits
from engine.tokens.offsets import decode_each, visible
from engine.training.reward_model import best_of_n, fit_bradley_terry, softmax_rows, training_agreement
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty, whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.rlhf import ANSWER_TOKENS, PAIRS, POOL, SAMPLE_TEMPERATURE, first_token_logits, pool_job
from ui.text import escape_markdown

DEFAULT_QUESTION = "Give me one tip for sleeping better."
# Read from the default samples (seed 0) by a human: the on-topic answer in pairs 1-5; in pair 6 the shorter one, as
# a labeller with a taste for brevity would. One such quirk is enough for the proxy to learn it.
DEFAULT_LABELS = "ABABAB"
CHOICES = ["A", "B", "Skip"]
L2_STRENGTHS = [0.01, 0.1, 1.0, 10.0]
BEST_OF = [1, 2, 4, 8, 16, 32]
TOP_TOKENS = 12


def reference_and_policy(question: str) -> None:
    st.subheader("Stage 1 · The reference: the model as supervised fine-tuning left it", anchor=False)
    st.markdown("RLHF starts from an SFT model and keeps a frozen copy of it, the **reference**. The policy being "
                "tuned pays a penalty $\\beta\\,\\mathrm{KL}(\\pi\\,\\|\\,\\pi_\\text{ref})$ for drifting away from "
                "it. Tuned policies tend to grow sharper (more confident); here a temperature stands in for that "
                "change, on the model's real distribution for the first token of its answer.")
    tau = st.slider("Policy temperature (the reference is 1.0)", 0.3, 2.0, 0.6, 0.05, key="tau", bind="query-params",
                    help="The policy's logits divided by this. Below 1 it is sharper than the reference, above 1 "
                         "flatter; at exactly 1 the two distributions are identical and the KL is 0.")
    logits = first_token_logits(question)
    reference, policy = softmax_rows(logits[None])[0], softmax_rows(logits[None], tau)[0]
    kl = kl_divergence_bits(policy, reference)
    entropy = [float(-(p[p > 0] * np.log2(p[p > 0])).sum()) for p in (reference, policy)]
    m = metric_row(3)
    m[0].metric("KL(policy ‖ reference)", f"{kl:.4f} bits", help="Summed over all 49,152 tokens of the "
                "vocabulary (engine.decoding.divergence). Zero only when the two distributions are the same.")
    m[1].metric("Entropy of the reference", f"{entropy[0]:.2f} bits")
    m[2].metric("Entropy of the policy", f"{entropy[1]:.2f} bits", f"{entropy[1] - entropy[0]:+.2f} bits",
                delta_color="off", delta_arrow="off")
    top = np.argsort(-np.maximum(reference, policy), kind="stable")[:TOP_TOKENS]
    pieces = [visible(p) for p in decode_each(lm(), [int(i) for i in top])]
    show_chart(figure(policy_vs_reference, pieces, reference[top], policy[top],
                      title=f"First answer token: reference vs policy (T = {tau:g})"),
               partial(pd.DataFrame, {"token": pieces, "token_id": top, "reference_p": reference[top],
                                      "policy_p": policy[top]}), name="rlhf-first-token", key="kl_chart")


def label_pairs(texts: tuple[str, ...]) -> list[tuple[int, int]]:
    """The reader's labels as (chosen, rejected) sample indices; pair k holds samples 2k (A) and 2k + 1 (B)."""
    st.markdown(f"Which answer is better? Pick **A** or **B** for each pair (or skip it). These {PAIRS} pairs are the "
                "model's own samples; your picks are the only training data of the reward model below.")
    chosen = []
    for k in range(PAIRS):
        a, b = 2 * k, 2 * k + 1
        with st.container(border=True):
            left, right = st.columns(2)
            left.markdown(f"**A** · {escape_markdown(texts[a]) or '*(empty)*'}")
            right.markdown(f"**B** · {escape_markdown(texts[b]) or '*(empty)*'}")
            choice = st.segmented_control(f"Pair {k + 1}: the better answer", CHOICES, default=DEFAULT_LABELS[k],
                                          key=f"p{k + 1}", bind="query-params") or "Skip"
        if choice == "A":
            chosen.append((a, b))
        elif choice == "B":
            chosen.append((b, a))
    return chosen


def rlhf_demo() -> None:
    question = prompt_input("question", DEFAULT_QUESTION, "The question (the prompt every sample answers)",
                            max_chars=300, max_tokens=60)
    stop_if_empty(question, "Type a question such as *Give me one tip for sleeping better.*: the page samples the "
                            "model's answers to it for you to rank.")
    reference_and_policy(question)

    st.subheader("Stage 2 · Your preferences become a reward model", anchor=False)
    seed = whole_number_input("Sample set (seed)", 0, 9999, 0, "seed", help="Each seed draws a different set of "
                              f"{POOL} answers ({ANSWER_TOKENS} tokens at most, temperature {SAMPLE_TEMPERATURE:g}).")
    pool = follow(pool_job(question, seed), what=f"sampling of {POOL} answers")
    if pool is None:
        return
    pairs = label_pairs(pool.samples.texts)
    if not pairs:
        st.info("Every pair is skipped: pick A or B in at least one pair to fit a reward model.",
                icon=":material/touch_app:")
        return
    l2 = st.select_slider("L2 penalty of the reward model", L2_STRENGTHS, value=0.1, key="l2", bind="query-params",
                          help="A few labels in 384 dimensions: without a penalty the fit could grow its weights "
                               "without bound. Weaker penalty = a sharper, more overfitted proxy.")
    emb = pool.embeddings
    chosen, rejected = emb[[c for c, _ in pairs]], emb[[r for _, r in pairs]]
    reward = fit_bradley_terry(chosen, rejected, l2)
    proxy = reward.score(emb)
    agreement = training_agreement(reward, chosen, rejected)
    m = metric_row(3)
    m[0].metric("Labelled pairs", f"{len(pairs)}", help="Skipped pairs are left out of the fit.")
    m[1].metric("Training agreement", f"{100 * agreement:.0f}%", help="Labelled pairs whose chosen answer the "
                "fitted reward model scores higher: P(chosen wins) = sigmoid(r(chosen) - r(rejected)) > 0.5.")
    win = 1 / (1 + np.exp(-(reward.score(chosen) - reward.score(rejected))))
    m[2].metric("Mean P(chosen wins)", f"{np.mean(win):.3f}",
                help="The Bradley-Terry probability the model gives your choices, averaged over the labelled pairs.")
    role = ["unlabelled"] * pool.size
    for c, r in pairs:
        role[c], role[r] = "chosen", "rejected"
    texts = [t.replace("\n", " ") for t in pool.samples.texts]
    show_chart(figure(proxy_vs_judge, proxy, pool.judge, role, texts,
                      title=f"{pool.size} sampled answers: reward model vs judge"),
               partial(pd.DataFrame, {"sample": range(1, pool.size + 1), "text": texts, "role": role,
                                      "proxy_reward": proxy, "judge_score": pool.judge}),
               name="rlhf-proxy-vs-judge", key="scatter_chart")
    st.caption("The **judge** never sees your labels. It is a transparent rule: MiniLM cosine similarity between "
               "the answer and the question, minus 0.5 x the fraction of repeated words, minus 0.1 x how far the "
               "length is from about 20 words (on a log scale). It stands in for the 'true' preference that Gao "
               "et al. modelled with a large gold reward model.")

    st.subheader("Stage 3 · Optimise against the proxy: best-of-n", anchor=False)
    st.markdown("PPO would now update the policy to raise the proxy reward minus the KL penalty. The simplest "
                "optimiser with the same goal is **best-of-n**: draw n answers, keep the one the reward model likes "
                f"best. Over the pool of {pool.size} answers the expected score of that winner is computed exactly "
                "for every n (no resampling noise).")
    bon = best_of_n(proxy, pool.judge, BEST_OF)
    sd_proxy, sd_judge = float(np.std(proxy)) or 1.0, float(np.std(pool.judge)) or 1.0
    proxy_gain, judge_gain = (bon.proxy - bon.proxy[0]) / sd_proxy, (bon.judge - bon.judge[0]) / sd_judge
    peak = int(np.argmax(judge_gain))
    m = metric_row(3)
    m[0].metric(f"Proxy gain at n = {bon.n[-1]}", f"{proxy_gain[-1]:+.2f} SD", help="Expected proxy reward of the "
                "winner minus that of a random answer, in standard deviations of the pool.")
    m[1].metric("Judge peaks at", f"n = {bon.n[peak]}", f"{judge_gain[peak]:+.2f} SD", delta_color="off",
                delta_arrow="off")
    m[2].metric(f"Judge gain at n = {bon.n[-1]}", f"{judge_gain[-1]:+.2f} SD",
                f"{judge_gain[-1] - judge_gain[peak]:+.2f} from its peak", delta_color="off", delta_arrow="off")
    show_chart(figure(best_of_n_curves, bon.n, proxy_gain, judge_gain, bon.kl_bound_nats,
                      title="Best-of-n: proxy reward vs judge score"),
               partial(pd.DataFrame, {"n": bon.n, "proxy_expected": bon.proxy, "judge_expected": bon.judge,
                                      "proxy_gain_sd": proxy_gain, "judge_gain_sd": judge_gain,
                                      "kl_bound_nats": bon.kl_bound_nats}), name="rlhf-best-of-n", key="bon_chart")
    if peak < len(bon.n) - 1 and judge_gain[-1] < judge_gain[peak] - 0.05:
        st.markdown(f"**Over-optimisation, measured:** the judge's score of the proxy's favourite rises up to n = "
                    f"{bon.n[peak]} and falls after, while the proxy keeps rising. The proxy's top answers win on "
                    "directions your few labels happened to reward, not on what the judge measures.")
    else:
        st.markdown("**No over-optimisation on this set:** the judge does not fall as n grows. With so few labels it "
                    "depends on the draw; try weakening the L2 penalty, relabelling, or another seed.")
    best, judged = int(np.argmax(proxy)), int(np.argmax(pool.judge))
    st.markdown(f"The proxy's favourite (sample {best + 1}): {escape_markdown(texts[best])}  \n"
                f"The judge's favourite (sample {judged + 1}): {escape_markdown(texts[judged])}")
    st.caption(f"KL of the best-of-n policy from the sampler is at most ln n - (n - 1)/n nats: "
               f"{bon.kl_bound_nats[-1]:.2f} nats at n = {bon.n[-1]} (hover the chart). Gao et al. plot the gold "
               "score against the square root of that KL.")


with concept_page("rlhf"):
    rlhf_demo()
