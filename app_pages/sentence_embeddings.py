from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.sentence_embeddings import benchmark_by_layer, query_bars, sentence_map, similarity_heatmap
from engine.inside.sentence_embeddings import (MAX_SENTENCES, Benchmark, POOLING_NAMES, POOLINGS, cosine_matrix, mean_off_diagonal,
                                        parse_sentences, rank_by_similarity, rank_of, split_preset)
from ui import concept_page, encoder, lm, prompt_input, samples
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.sentence_embeddings import benchmark_job, map_2d, minilm_vectors, smollm2_states
from ui.text import escape_markdown, ordinal

SETS = {name: split_preset(text) for name, text in samples.load("sentence_sets").items()}   # assets/samples.toml
DEFAULT_SET = next(iter(SETS))
BENCHMARK_TEXT = next(iter(samples.load("sentence_benchmarks").values()))
NO_PARAPHRASE = "none"


def load_set() -> None:
    text, marked = SETS.get(st.session_state.get("set"), SETS[DEFAULT_SET])
    st.session_state["sentences"] = text
    st.session_state["para"] = str(marked) if marked else NO_PARAPHRASE


def label(i: int, paraphrase: int | None) -> str:
    return f"{i + 1} query" if i == 0 else f"{i + 1} paraphrase" if i == paraphrase else f"{i + 1}"


def axis_label(i: int, paraphrase: int | None) -> str:
    """Short, for the matrices' axes on a narrow screen: Q for the query, P for its paraphrase."""
    return f"{i + 1} Q" if i == 0 else f"{i + 1} P" if i == paraphrase else f"{i + 1}"


def rank_metric(column, model: str, sims: np.ndarray, paraphrase: int | None, sentences) -> None:
    n_other = sims.shape[0] - 1
    if paraphrase is None:
        top = rank_by_similarity(sims)[0]
        column.metric(f"{model}: closest to the query", f"line {top + 1}", width="content",
                      help=f"Cosine {sims[0, top]:.3f}: {sentences[top][:80]}")
    else:
        rank = rank_of(sims, paraphrase)
        column.metric(f"{model}: the paraphrase ranks", f"{ordinal(rank)} of {n_other}", width="content",
                      help=f"Among the other {n_other} sentences, by cosine with the query "
                           f"({sims[0, paraphrase]:.3f}).")


def show_benchmark(bench: Benchmark, layer: int, pooling: str) -> None:
    wins = {p: bench.decoder_wins[p].sum(axis=1).astype(int).tolist() for p in POOLINGS}
    best_pooling, best_layer = max(((p, l) for p in POOLINGS for l in range(len(wins[p]))),
                                   key=lambda pl: wins[pl[0]][pl[1]])
    row = st.container(horizontal=True, gap="large")
    row.metric("Test: MiniLM", f"{int(bench.encoder_wins.sum())} of {bench.size}", width="content",
               help="Triples where the paraphrase is closer to the query than the distractor is.")
    row.metric("Test: SmolLM2, your layer and pooling", f"{wins[pooling][layer]} of {bench.size}", width="content")
    row.metric("Test: SmolLM2, its best layer and pooling", f"{wins[best_pooling][best_layer]} of {bench.size}",
               width="content", help=f"Layer {best_layer}, {POOLING_NAMES[best_pooling]}: the best of all "
                   f"{len(POOLINGS) * len(wins[pooling])} choices, picked after seeing the answers.")
    show_chart(figure(benchmark_by_layer, list(range(len(wins[pooling]))), wins, POOLING_NAMES,
                      int(bench.encoder_wins.sum()), bench.size, layer, pooling,
                      f"Paraphrase closer than the distractor, of {bench.size} triples"),
               partial(pd.DataFrame, [{"layer": l, "pooling": p, "paraphrase_wins": wins[p][l], "triples": bench.size,
                                       "mean_cosine_between_sentences": float(bench.decoder_spread[p][l])}
                                      for p in POOLINGS for l in range(len(wins[p]))]),
               name="paraphrase-benchmark-by-layer", key="benchmark")
    with st.expander(f"The {bench.size} triples, with each model's margin"):
        st.dataframe(pd.DataFrame({
            "query": [t[0] for t in bench.triples], "paraphrase": [t[1] for t in bench.triples],
            "distractor": [t[2] for t in bench.triples], "MiniLM margin": bench.encoder_margin,
            f"SmolLM2 margin (layer {layer}, {POOLING_NAMES[pooling]})": bench.decoder_margin[pooling][layer]}),
            hide_index=True, width="stretch")
        st.caption("Margin = cos(query, paraphrase) − cos(query, distractor); above 0 the paraphrase wins.")


with concept_page("sentence-embeddings"):
    set_col, _ = st.columns([1, 1])
    chosen = set_col.selectbox("Sentence set", list(SETS), key="set", bind="query-params", on_change=load_set,
                               help="Load a set, then edit the lines freely.")
    default_text, default_para = SETS.get(chosen, SETS[DEFAULT_SET])
    text = prompt_input("sentences", default_text, f"Sentences, one per line (the first is the query; up to "
                        f"{MAX_SENTENCES})", height=170, max_chars=1600, max_tokens=400)
    parsed = parse_sentences(text)
    for note in parsed.notes:
        st.caption(f":material/content_cut: {note}")
    sentences = parsed.items
    if len(sentences) < 2 and text.strip():
        st.info("Add at least a second line: the page compares every sentence with the first one.",
                icon=":material/edit:")
        st.stop()
    stop_if_empty(text, "Type two or more sentences, one per line, or pick a set above. The first line is the "
                        "query the others are ranked against.")

    options = [NO_PARAPHRASE] + [str(i) for i in range(2, len(sentences) + 1)]
    if st.session_state.get("para") not in (None, *options):
        st.session_state["para"] = NO_PARAPHRASE     # a kept line number the shorter list no longer has
    model = lm()
    para_col, layer_col, pool_col = st.columns([1, 2, 2])
    para_kwargs = {} if "para" in st.session_state else {
        "index": options.index(str(default_para)) if default_para and str(default_para) in options else 0}
    para = para_col.selectbox("Paraphrase of the query", options, key="para", bind="query-params",
                              help="Which line says the same as the first in other words; its rank is measured.",
                              **para_kwargs)
    paraphrase = int(para) - 1 if para and para != NO_PARAPHRASE else None
    layer = layer_col.slider(f"SmolLM2 layer (0-{model.card.layers})", 0, model.card.layers, model.card.layers,
                             key="layer", bind="query-params",
                             help=f"0 is the token embeddings; layer L is the residual stream after block L. Layer "
                                  f"{model.card.layers} is taken after the final norm, as the model outputs it.")
    pool_name = pool_col.radio("Pool SmolLM2's tokens by", [POOLING_NAMES[p] for p in POOLINGS], key="pool",
                               bind="query-params", horizontal=True,
                               help="How one vector per sentence is made from one vector per token. MiniLM "
                                    "always uses the mean of its last layer, as it was trained to.")
    pooling = next((p for p in POOLINGS if POOLING_NAMES[p] == pool_name), POOLINGS[0])

    encoder()
    with st.spinner("Running MiniLM and SmolLM2 on your sentences..."):
        enc_sims = cosine_matrix(minilm_vectors(sentences))
        states = smollm2_states(sentences)
    dec_vectors = states.vectors(layer, pooling)
    dec_sims = cosine_matrix(dec_vectors)
    smol_name = f"SmolLM2, layer {layer}, {POOLING_NAMES[pooling]}"

    row = st.container(horizontal=True, gap="large")    # wraps on a narrow window instead of cutting numbers
    rank_metric(row, "MiniLM", enc_sims, paraphrase, sentences)
    rank_metric(row, "SmolLM2", dec_sims, paraphrase, sentences)
    row.metric("MiniLM: mean cosine", f"{mean_off_diagonal(enc_sims):.2f}",
              help="Averaged over every pair of different sentences. Near 0: unrelated sentences point in unrelated directions.",
               width="content")
    row.metric("SmolLM2: mean cosine", f"{mean_off_diagonal(dec_sims):.2f}",
              help="Averaged over every pair of different sentences. Near 1: every sentence points the same way, so cosine can barely tell them apart.",
               width="content")
    if paraphrase is not None:
        enc_first, dec_first = rank_by_similarity(enc_sims)[0], rank_by_similarity(dec_sims)[0]
        verdict = {True: "ranks the paraphrase first", False: "ranks line {} first"}
        st.markdown(f"Measured on your sentences: **MiniLM {verdict[enc_first == paraphrase].format(enc_first + 1)}**"
                    f"; **{escape_markdown(smol_name)} {verdict[dec_first == paraphrase].format(dec_first + 1)}**.")

    labels = [label(i, paraphrase) for i in range(len(sentences))]
    ticks = [axis_label(i, paraphrase) for i in range(len(sentences))]
    st.dataframe(pd.DataFrame({"line": labels, "SmolLM2 tokens": states.token_counts, "sentence": sentences}),
                 hide_index=True, width="stretch", column_config={"line": st.column_config.TextColumn(width="small"),
                                                                  "SmolLM2 tokens": st.column_config.NumberColumn(
                                                                      width="small")})
    left, right = st.columns(2, gap="medium")
    with left:
        show_chart(figure(similarity_heatmap, enc_sims, ticks, list(sentences),
                          f"MiniLM ({minilm_vectors(sentences).shape[1]} numbers per sentence)"),
                   partial(pd.DataFrame, enc_sims, index=labels, columns=labels), name="minilm-cosines",
                   key="minilm")
    with right:
        show_chart(figure(similarity_heatmap, dec_sims, ticks, list(sentences),
                          f"SmolLM2, layer {layer} ({dec_vectors.shape[1]} numbers per sentence)"),
                   partial(pd.DataFrame, dec_sims, index=labels, columns=labels), name="smollm2-cosines",
                   key="smollm2")
    enc_model = encoder().model
    st.caption(f"Q is the query, P its paraphrase. Both matrices use one colour scale, 0 to 1 (1: the two vectors "
               f"point the same way); a useful "
               f"sentence embedding is bright only where the meaning is shared. Read from the live models: MiniLM "
               f"has {enc_model.config.num_hidden_layers} layers and "
               f"{sum(p.numel() for p in enc_model.parameters()) / 1e6:.1f} M parameters; SmolLM2 has "
               f"{model.card.layers} layers and {model.card.parameters / 1e6:.1f} M.")
    others = [i for i in range(1, len(sentences))]
    show_chart(figure(query_bars, [labels[i] for i in others], [enc_sims[0, i] for i in others],
                      [dec_sims[0, i] for i in others], "MiniLM", smol_name,
                      "Similarity of each sentence to the query"),
               partial(pd.DataFrame, {"line": [labels[i] for i in others], "sentence": [sentences[i] for i in others],
                                      "minilm_cosine": [enc_sims[0, i] for i in others],
                                      "smollm2_cosine": [dec_sims[0, i] for i in others]}),
               name="similarity-to-query", key="query")

    st.subheader("The sentences as points", anchor="map")
    roles = ["query" if i == 0 else "paraphrase" if i == paraphrase else "other" for i in range(len(sentences))]
    map_left, map_right = st.columns(2, gap="medium")
    for column, name, vectors, key in ((map_left, "MiniLM", minilm_vectors(sentences), "map_minilm"),
                                       (map_right, f"SmolLM2, layer {layer}", dec_vectors, "map_smollm2")):
        coords, kept = map_2d(vectors)
        with column:
            show_chart(figure(sentence_map, coords, ticks, roles, list(sentences), kept, name),
                       partial(pd.DataFrame, {"line": labels, "sentence": sentences, "pc1": coords[:, 0],
                                              "pc2": coords[:, 1]}), name=f"{key}-pca", key=key)
    st.caption("PCA of the unit-length vectors, so distances reflect cosine. With so few points a 2-D picture "
               "is rough: the matrices above are the measurement.")

    st.subheader("A fixed test: paraphrase or shared words?", anchor="benchmark")
    bench = follow(benchmark_job(BENCHMARK_TEXT), what="benchmark")
    if bench is not None:
        show_benchmark(bench, layer, pooling)
