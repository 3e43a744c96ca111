import math
from functools import partial

import pandas as pd
import streamlit as st

from charts.hallucination import meaning_groups, similarity_grid, token_confidence
from engine.decoding.semantic_entropy import cluster_sizes, meaning_clusters, semantic_entropy_bits
from engine.tokens.offsets import decode
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.hallucination import greedy_confidence, sampling_job
from ui.inputs import whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.sampling import chart_label, token_texts
from ui.text import described_metric, escape_markdown

NAMES = ("A", "B")
PRESETS = {   # (a real question, an invented one)
    "Capitals": ("What is the capital of France?", "What is the capital of the country Vorlandia?"),
    "Chemical symbols": ("What is the chemical symbol for gold?",
                         "What is the chemical symbol for the element zorbium?"),
    "Authors": ("Who wrote Romeo and Juliet?", "Who wrote the novel The Glass Orchard of Maren Tulle?"),
    "Planets": ("What is the largest planet in the Solar System?", "What is the largest moon of the planet Zentara?"),
}
COMPARE = {"whole": "Whole answers", "new": "New words only"}
QUESTION_HELP = "Up to 64 tokens. Asked in the model's own chat template, as a user would ask it."


def use_pair(pair: tuple[str, str]) -> None:
    st.session_state["qa"], st.session_state["qb"] = pair


def percent(p: float) -> str:
    return "no answer" if math.isnan(p) else f"{100 * p:.0f}%"


def entropy_sum(sizes: tuple[int, ...]) -> str:
    """The formula with this result's numbers, e.g. -(5/6·log₂(5/6) + 1/6·log₂(1/6))."""
    n = sum(sizes)
    return "−(" + " + ".join(f"{s}/{n}·log₂({s}/{n})" for s in sizes) + ")"


with concept_page("hallucination"):
    left, right = st.columns(2)
    with left:
        qa = prompt_input("qa", PRESETS["Capitals"][0], "Question A", max_chars=300, max_tokens=64, help=QUESTION_HELP)
    with right:
        qb = prompt_input("qb", PRESETS["Capitals"][1], "Question B", max_chars=300, max_tokens=64, help=QUESTION_HELP)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(":material/compare_arrows: **A real question (A) and an invented one (B):**", width="content")
        for i, (name, pair) in enumerate(PRESETS.items()):
            st.button(name, key=f"preset-{i}", on_click=use_pair, args=(pair,), width="content",
                      help=f"A: {pair[0]}  \nB: {pair[1]}")
    c1, c2 = st.columns(2, vertical_alignment="bottom")
    short = c1.toggle("Ask for one short sentence", True, key="short", bind="query-params",
                      help='Adds "Answer in one short sentence." to each question, as Farquhar et al. asked their '
                           "chat models for one brief sentence: short answers are easier to compare.")
    length = c2.slider("Longest answer (tokens)", 8, 40, 20, key="len", bind="query-params",
                       help="Every answer (the greedy one and each sample) stops at the end of the model's turn "
                            "or at this many tokens.")
    if not (qa.strip() and qb.strip()):
        st.info("Type a question in both boxes (or pick a preset pair): one whose answer you know, and one about "
                "something that does not exist, such as *What is the capital of the country Vorlandia?*",
                icon=":material/edit:")
        st.stop()
    questions = (qa, qb)

    st.subheader("1 · How sure is the model of each token it writes?", anchor=False)
    greedy = [greedy_confidence(q, short, length) for q in questions]
    tokens = [token_texts(a.answer_ids) for a in greedy]
    for name, q, toks, a in zip(NAMES, questions, tokens, greedy):
        with st.container(border=True):
            st.caption(f"**{name}** · {escape_markdown(q)}")
            text = decode(lm(), list(a.answer_ids)).strip()
            shown = escape_markdown(text) if text else "*(the model ended its turn at once)*"
            st.markdown(shown + ("" if a.finished else " …"))
    m = metric_row(4)
    for k, (name, a) in enumerate(zip(NAMES, greedy)):
        described_metric(m[2 * k], f"{name}: mean token confidence", percent(a.mean_probability),
                         f"over {len(a.answer_ids)} tokens", help="The probability the model gave each token of its "
                         "greedy answer (the most likely token at every step), averaged over the answer.")
        described_metric(m[2 * k + 1], f"{name}: mean token entropy",
                         "no answer" if math.isnan(a.mean_entropy) else f"{a.mean_entropy:.2f} bits",
                         "spread of each prediction", help="Entropy of the model's whole next-token distribution at "
                         "each step of the answer, averaged: 0 bits means one token held all the probability.")
    show_chart(
        figure(token_confidence, [f"{n} · {q}" for n, q in zip(NAMES, questions)],
               [[chart_label(t) for t in toks] for toks in tokens], [a.probabilities for a in greedy],
               [a.entropies for a in greedy], [token_texts(a.runner_up_ids) for a in greedy],
               [a.runner_up_probabilities for a in greedy],
               title="The model's own probability of every token of its greedy answer"),
        partial(pd.DataFrame, {
            "question": [n for n, a in zip(NAMES, greedy) for _ in a.answer_ids],
            "position": [i + 1 for a in greedy for i in range(len(a.answer_ids))],
            "token": [t for toks in tokens for t in toks], "token_id": [i for a in greedy for i in a.answer_ids],
            "probability": [float(p) for a in greedy for p in a.probabilities],
            "entropy_bits": [float(e) for a in greedy for e in a.entropies]}),
        name="token-confidence", key="confidence_chart")
    pa, pb = (a.mean_probability for a in greedy)
    if not (math.isnan(pa) or math.isnan(pb)):
        least = [(toks[int(a.probabilities.argmin())].strip() or "a space", f"{100 * a.probabilities.min():.1f}%")
                 for toks, a in zip(tokens, greedy)]
        st.caption(f"Measured: the model was {'more' if pb > pa else 'less'} sure of its answer to B "
                   f"({percent(pb)} per token) than of its answer to A ({percent(pa)}). Least sure token: "
                   + " · ".join(f"{nm} *{escape_markdown(t)}* ({p})" for nm, (t, p) in zip(NAMES, least))
                   + ". A rare token inside an answer is a warning sign, not proof, and a likely one is no "
                     "guarantee: the Planets pair asks a real question, and the model names a wrong planet with "
                     "a probability above 50%.")

    st.subheader("2 · Ask again: do the answers agree in meaning?", anchor=False)
    c1, c2, c3 = st.columns(3, vertical_alignment="bottom")
    n = c1.slider("Answers per question", 2, 10, 6, key="n", bind="query-params",
                  help="Farquhar et al. sampled 10. Each answer costs one generation, so fewer answer faster.")
    t = c2.slider("Temperature T", 0.1, 1.5, 0.7, 0.05, key="t", bind="query-params",
                  help="The paper sampled at T = 1. This 135M model scatters even on easy questions at T = 1, "
                       "so the page starts at 0.7: try both.")
    seed = whole_number_input("Seed", 0, 1_000_000, 0, "seed", container=c3,
                              help="Answer i is drawn with seed + i: the same link gives the same answers.")
    d1, d2 = st.columns([3, 2], vertical_alignment="bottom")
    compare = d1.segmented_control(
        "Compare", list(COMPARE), default="whole", format_func=lambda c: COMPARE.get(c, c), key="compare",
        bind="query-params", help="Whole answers: MiniLM embeds each answer as written. New words only: the words "
        "already in the question (and filler such as 'the', 'is') are removed first, so 'The capital of France is "
        "Paris.' is compared as 'Paris'.") or "whole"
    compare = compare if compare in COMPARE else "whole"
    threshold = d2.slider("Same meaning at cosine ≥", 0.5, 0.99, 0.85, 0.01, key="tau",
                          bind="query-params", help="Two answers count as the same meaning when the cosine "
                          "similarity of their MiniLM embeddings reaches this. Higher: stricter, more groups.")
    samples = follow(sampling_job(questions, short, n, length, t, seed), what="answer sampling")
    if samples:
        sims = [s.similarity(cores=compare == "new") for s in samples]
        labels = [meaning_clusters(s, threshold) for s in sims]
        sizes = [cluster_sizes(l) for l in labels]
        entropies = [semantic_entropy_bits(z) for z in sizes]
        for name, s, z, h in zip(NAMES, samples, sizes, entropies):
            drawn, m = len(s.answers), metric_row(3)
            described_metric(m[0], f"{name}: semantic entropy", "—" if math.isnan(h) else f"{h:.2f} bits",
                             f"max log₂ {drawn} = {math.log2(drawn):.2f}" if drawn else "no answers",
                             help="Entropy of the share of answers in each meaning group, −Σ p·log₂ p. 0 bits: "
                                  "every answer meant the same.")
            described_metric(m[1], f"{name}: meaning groups", f"{len(z)} of {drawn}", "answers",
                             help="How many different meanings the sampled answers fell into.")
            described_metric(m[2], f"{name}: mean token confidence", percent(s.mean_token_probability),
                             "of the sampled tokens", help="For each sampled token, the probability the model gave "
                             "it at T = 1; averaged per answer, then over the answers.")
        firsts = [[s.answers[lab.index(g)].text or "(no answer)" for g in range(len(z))]
                  for s, lab, z in zip(samples, labels, sizes)]
        show_chart(figure(meaning_groups, [f"{nm} · {q}" for nm, q in zip(NAMES, questions)], sizes, firsts,
                          title=f"{n} sampled answers per question, grouped by meaning (T = {t:g}, seed {seed})"),
                   partial(pd.DataFrame, {
                       "question": [nm for nm, s in zip(NAMES, samples) for _ in s.answers],
                       "answer": [i + 1 for s in samples for i in range(len(s.answers))],
                       "seed": [a.seed for s in samples for a in s.answers],
                       "group": [g + 1 for lab in labels for g in lab],
                       "text": [a.text for s in samples for a in s.answers],
                       "compared_as": [a.text if compare == "whole" else c for s in samples
                                       for a, c in zip(s.answers, s.cores)],
                       "mean_token_probability": [a.mean_probability for s in samples for a in s.answers]}),
                   name="meaning-groups", key="groups_chart")
        st.caption(" · ".join(f"{nm}: {entropy_sum(z)} = {h:.2f} bits" for nm, z, h in zip(NAMES, sizes, entropies)
                              if z) + ". One group gives 0 bits; every answer different gives log₂ of their number.")
        show_chart(figure(similarity_grid, [f"Question {nm}" for nm in NAMES], sims, threshold,
                          title=f"MiniLM cosine similarity of each pair of answers · dot: ≥ {threshold:.2f}"),
                   partial(pd.DataFrame, [{"question": nm, "answer_i": i + 1, "answer_j": j + 1,
                                           "cosine": float(s[i, j])} for nm, s in zip(NAMES, sims)
                                          for i in range(s.shape[0]) for j in range(s.shape[0])]),
                   name="answer-similarity", key="similarity_chart")
        st.caption(f"Compared: {COMPARE[compare].lower()}. A dot marks a pair similar enough to count as one "
                   "meaning; an answer joins a group only if it has a dot with the group's first answer.")
        for column, nm, s, lab in zip(st.columns(2), NAMES, samples, labels):
            lines = [f"**{lab[i] + 1}** · answer {i + 1}: "
                     f"{escape_markdown(' '.join(s.answers[i].text.split())) or '*(no answer)*'}"
                     + ("" if compare == "whole" else f" → *{escape_markdown(s.cores[i])}*")
                     for i in sorted(range(len(s.answers)), key=lambda i: (lab[i], i))]
            with column.container(border=True):
                st.caption(f"**{nm}**: the {len(s.answers)} answers, by meaning group (bold: the group)"
                           + ("" if s.complete else " (the run stopped before every answer was drawn)"))
                st.markdown("  \n".join(lines))
        st.caption("How the groups are made here: each answer, in the order drawn, joins the first group whose "
                   "first answer it matches (cosine similarity of all-MiniLM-L6-v2 embeddings ≥ the threshold), "
                   "or starts a new group. Farquhar et al. group the same way but test two-way entailment with a "
                   "language model. Cosine similarity is only a stand-in: it measures how alike two texts are, so "
                   "whole answers that repeat the question look alike whatever city they name, and answers with "
                   "an extra clause can fall apart. SmolLM2-135M gets many real questions wrong too, often "
                   "consistently, and consistency is all that semantic entropy can see.")
