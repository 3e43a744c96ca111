from functools import partial

import pandas as pd
import streamlit as st

from charts.embeddings import cosine_bars, explained_variance_bars, projection_axis_titles, word_scatter
from engine.inside.embeddings import METHOD_NAMES, embedding_matrix, lookup_word, umap_is_warm
from engine.tokens.text_limits import bound_text
from engine.tokens.offsets import visible
from ui import concept_page, lm, samples
from ui.charts import figure, show_chart
from ui.embeddings import (arithmetic, describe_analogy, nearest, projection_caption, ranked_table,
                           show_analogy_metrics, show_matrix_facts, word_map)
from ui.inputs import accept_url_alias, whole_number_input, word_input
from ui.text import escape_markdown, token_markdown

WORD_PRESETS = samples.load("word_groups")  # assets/samples.toml
CUSTOM = "Custom (edited)"
DEFAULT_PRESET = next(iter(WORD_PRESETS))
ANALOGIES = {   # a - b + c, expected
    "king - man + woman": ("king", "man", "woman", "queen"),
    "Paris - France + Italy": ("Paris", "France", "Italy", "Rome"),
    "walked - walk + swim": ("walked", "walk", "swim", "swam"),
    "bigger - big + small": ("bigger", "big", "small", "smaller"),
}
DEFAULT_ANALOGY = next(iter(ANALOGIES))
DIM_LABELS = {2: "2-D", 3: "3-D"}
SUGGESTIONS = ["king", "Paris", "cat", "Monday", "happy"]
MAX_GROUP_CHARS = 3000


# ---------------------------------------------------------------- preset callbacks (run before the rerun)

def apply_word_preset() -> None:
    preset = st.session_state.get("preset")
    if preset in WORD_PRESETS:
        st.session_state["words"] = WORD_PRESETS[preset]


def mark_words_custom() -> None:
    if st.session_state.get("words") != WORD_PRESETS.get(st.session_state.get("preset")):
        st.session_state["preset"] = CUSTOM


def apply_analogy_preset() -> None:
    chosen = ANALOGIES.get(st.session_state.get("analogy"))
    if chosen:
        for key, word in zip(("a", "b", "c", "expect"), chosen):
            st.session_state[key] = word


def mark_analogy_custom() -> None:
    current = tuple(st.session_state.get(k) for k in ("a", "b", "c", "expect"))
    if current != ANALOGIES.get(st.session_state.get("analogy")):
        st.session_state["analogy"] = CUSTOM


def take_suggestion() -> None:
    """A suggestion chip fills the word box (which the link carries), then lets go of its own selection."""
    if st.session_state.get("try"):
        st.session_state["word"] = st.session_state["try"]
    st.session_state["try"] = None


# ---------------------------------------------------------------- the page

with concept_page("token-embeddings"):
    model = lm()
    matrix = embedding_matrix(model)
    rows, width = matrix.shape
    show_matrix_facts(model, matrix)

    space = st.toggle("Look words up with a leading space", value=True, key="space", bind="query-params",
                      help="Inside running text a word is preceded by a space, and BPE folds that space into the "
                           "token: ' king' and 'king' are different rows with different vectors.")
    with_space, without_space = lookup_word(model, "king", True), lookup_word(model, "king", False)
    form = ("␣word (with a leading space), its usual form in running text" if space else
            "word (no space), its form at the very start of a text")
    st.caption(f"Every word below is looked up as {form}. For example ␣king is token {with_space.ids[0]:,} and king is token {without_space.ids[0]:,}: "
               "two separate rows. A word that splits into several tokens is drawn at the mean of its tokens' rows.")

    # ------------------------------------------------------------ 1. word groups projected
    st.subheader("1 · Word groups in 2-D and 3-D", anchor="word-map")
    controls, chart = st.columns([1, 2.2], gap="large")
    with controls:
        preset = st.selectbox("Preset", [*WORD_PRESETS, CUSTOM], key="preset", bind="query-params",
                              on_change=apply_word_preset)
        raw_groups = st.text_area(
            "Word groups, one per line",
            value=WORD_PRESETS.get(preset, WORD_PRESETS[DEFAULT_PRESET]), height=220, key="words",
            bind="query-params", on_change=mark_words_custom,
            help="Write each group as `name: word, word, ...` (the name is optional). Up to 7 groups, "
                 "30 words per group and 150 words in all; each group gets its own colour.")
        bounded = bound_text(raw_groups, lambda text: [], MAX_GROUP_CHARS)
        for note in bounded.notes:
            st.caption(f":material/content_cut: {note}")
        aliased = accept_url_alias("method", METHOD_NAMES)   # ?method=tsne as well as ?method=t-SNE
        method_label = st.segmented_control("Projection", list(METHOD_NAMES.values()), required=True,
                                            default=None if aliased else "PCA", key="method", bind="query-params",
                                            help="PCA: linear, fast, global layout. t-SNE and UMAP: non-linear, "
                                                 "keep local neighbourhoods.")
        method = {v: k for k, v in METHOD_NAMES.items()}.get(method_label, "pca")
        aliased = accept_url_alias("dims", {"2": "2-D", "3": "3-D", "2d": "2-D", "3d": "3-D"})
        dims_label = st.segmented_control("Dimensions", list(DIM_LABELS.values()), required=True,
                                          default=None if aliased else "2-D", key="dims", bind="query-params")
        dims = 3 if dims_label == "3-D" else 2
        seed = whole_number_input("Random seed", 0, 999, 0, "seed", disabled=method == "pca",
                                  help="t-SNE and UMAP start from a random layout: another seed gives another "
                                       "arrangement of the same neighbourhoods. PCA has no randomness.")
        background = st.slider("Grey context tokens", 0, 500, 0, 50, key="context", bind="query-params",
                               help="Adds the N lowest-id vocabulary entries that are a space plus letters "
                                    "(BPE's earliest merges: frequent words and word starts) as grey points.")

    with chart:
        if method == "umap" and not umap_is_warm():
            message = ("Running UMAP. Its first run on this server compiles numba code (about 10 s); "
                       "later runs take well under a second.")
        else:
            message = f"Projecting with {METHOD_NAMES[method]}..."
        with st.spinner(message):
            view = word_map(bounded.text, space, method, dims, background, int(seed) if method != "pca" else 0)
        words = view.points[view.points["kind"] == "word"]
        for note in view.notes:
            st.caption(f":material/info: {escape_markdown(note)}")
        if len(words) < 2:
            st.info("Type at least two words in the box on the left, or pick a preset, to see where their "
                    "vectors lie. Example line: `fruit: apple, pear, plum, cherry`.", icon=":material/edit:")
        else:
            proj = view.projection
            used = METHOD_NAMES[proj.method]
            axis_titles = projection_axis_titles(used, proj.explained, dims, linear=proj.method == "pca")
            groups = list(dict.fromkeys(words["group"]))
            fig = figure(word_scatter, view.points, groups, dims, axis_titles,
                               title=f"{len(words)} words in {len(groups)} group(s): {used} of their "
                                     f"{width}-dimensional vectors")
            show_chart(fig, view.points, name=f"token-embeddings-{proj.method}-{dims}d", key="map_chart")
            st.caption(escape_markdown(projection_caption(proj, dims, several_tokens=bool(words["multi"].any()))))

    if len(words) >= 2:
        left, right = st.columns([1.25, 1], gap="large")
        with left:
            st.markdown("**Are the groups real clusters?** Measured in all 576 dimensions, no projection:")
            table = pd.DataFrame(view.cohesion, columns=["group", "words", "mean cosine within",
                                                         "mean cosine to the other groups"])
            st.dataframe(table, hide_index=True, width="stretch", column_config={
                "mean cosine within": st.column_config.NumberColumn(format="%.3f"),
                "mean cosine to the other groups": st.column_config.NumberColumn(format="%.3f")})
            clear = table[table["mean cosine within"] > table["mean cosine to the other groups"]]
            if len(table) > 1:
                st.caption(f"{len(clear)} of {len(table)} groups are tighter inside than towards the others. "
                           "A cosine of 1 means the same direction, 0 unrelated directions.")
        with right:
            if view.projection.method == "pca":
                show_chart(figure(explained_variance_bars, view.projection.explained, dims),
                           partial(pd.DataFrame, {"component": [f"PC{i + 1}" for i in range(len(view.projection.explained))],
                                         "explained_variance_ratio": view.projection.explained}),
                           name="pca-explained-variance", key="variance_chart")
            else:
                st.markdown(f"**{METHOD_NAMES[view.projection.method]} has no explained variance.** Its axes "
                            "are not directions in the 576-dimensional space, so they carry no units. Switch to "
                            "PCA to see how much of the variance a flat picture can keep.")

    # ------------------------------------------------------------ 2. nearest neighbours
    st.subheader("2 · Nearest neighbours by cosine", anchor="neighbours")
    controls, chart = st.columns([1, 2.2], gap="large")
    with controls:
        word = word_input("Word or token", "word", "king")
        st.pills("Try", SUGGESTIONS, key="try", on_change=take_suggestion, label_visibility="collapsed", wrap=True)
        k = st.slider("Neighbours shown", 5, 40, 15, key="k", bind="query-params")
        exclude_self = st.toggle("Leave out the word's own token(s)", value=False, key="self", bind="query-params")
        hide_variants = st.toggle("Hide spelling variants", value=False, key="variants", bind="query-params",
                                  help="Drop tokens that are the same word up to capitalisation and spacing, "
                                       "such as ' King' and 'king' for ' king'.")
    with chart:
        if not word:
            st.info("Type a word or token to list its nearest rows in the embedding matrix.", icon=":material/edit:")
        else:
            found = nearest(word, space, k, exclude_self, hide_variants)
            query = found.query
            roles = ["query" if r.is_query else "variant" if r.variant else "other" for r in found.rows]
            role_names = {"query": "the query's own token", "variant": "same word, other spelling"}
            fig = figure(cosine_bars, [r.text for r in found.rows], [r.cosine for r in found.rows],
                              [r.id for r in found.rows], roles, role_names=role_names,
                              title=f"Closest of all {rows:,} tokens to {visible(query.form)}")
            show_chart(fig, partial(ranked_table, found.rows), name=f"neighbours-{query.word}",
                       key="neighbours_chart")
            if query.multi:
                pieces = " + ".join(token_markdown(p) for p in query.pieces)
                st.caption(f"{token_markdown(query.form)} is not one token but {len(query.ids)}: {pieces}. Its vector is "
                           "their mean, so the pieces themselves tend to top the list.")
            variants = sum(r.variant and not r.is_query for r in found.rows)
            caption = ("Grey: the word's own token (cosine 1 with itself). Light blue: the same word in another "
                       f"spelling, {variants} of the {len(found.rows)} shown. ")
            if found.hidden_variants:
                caption += f"{found.hidden_variants} spelling variant(s) hidden. "
            st.caption(caption + "Each spelling and capitalisation is a separate token with its own learned row; "
                       "they end up close because they are used alike. That is an honest property of token "
                       "embeddings, not a bug of this page.")

    # ------------------------------------------------------------ 3. vector arithmetic
    st.subheader("3 · Vector arithmetic: a − b + c", anchor="arithmetic")
    fields = st.columns([1.4, 1, 1, 1, 1], vertical_alignment="bottom")
    with fields[0]:
        analogy_name = st.selectbox("Preset", [*ANALOGIES, CUSTOM], key="analogy", bind="query-params",
                                    on_change=apply_analogy_preset)
    defaults = ANALOGIES.get(analogy_name, ANALOGIES[DEFAULT_ANALOGY])
    with fields[1]:
        a = word_input("a", "a", defaults[0], mark_analogy_custom)
    with fields[2]:
        b = word_input("minus b", "b", defaults[1], mark_analogy_custom)
    with fields[3]:
        c = word_input("plus c", "c", defaults[2], mark_analogy_custom)
    with fields[4]:
        expected = word_input("expected answer", "expect", defaults[3], mark_analogy_custom,
                              help="Optional: its rank and cosine are reported below.")

    solved = arithmetic(a, b, c, expected, space) if a and b and c else None
    if solved is None:
        st.info("Fill in all three words a, b and c, for example king, man and woman.", icon=":material/edit:")
    else:
        role_names = {"input": "one of the input tokens", "expected": "the expected answer",
                      "variant": "another spelling of an input word"}
        equation = f"{visible(solved.a.form)} − {visible(solved.b.form)} + {visible(solved.c.form)}"
        left, right = st.columns(2, gap="large")
        for column, found_rows, title, key in (
                (left, solved.including, "All tokens (inputs included)", "analogy_all"),
                (right, solved.excluding, "Inputs excluded (the word2vec convention)", "analogy_excl")):
            with column:
                fig = figure(cosine_bars, [r.text for r in found_rows], [r.cosine for r in found_rows],
                                  [r.id for r in found_rows], [solved.role(r) for r in found_rows],
                                  role_names=role_names,
                                  title=f"{title}")
                show_chart(fig, partial(ranked_table, found_rows), name=f"arithmetic-{key}", key=key)
        st.caption(f"Cosine of every one of the {rows:,} rows with {escape_markdown(equation)}. Grey: an input token; light "
                   "blue: another spelling of an input word (the convention does not exclude these); orange: the "
                   "expected answer.")

        show_analogy_metrics(solved, equation, rows)

        st.markdown(describe_analogy(solved, escape_markdown(equation), rows))
        st.caption("Multi-token words use the mean of their tokens' rows. A 576-dimensional table of a 135M model, "
                   "de-quantized from 4 bits, is a harder test than the 300-dimensional word2vec vectors the "
                   "classic demo used: a miss here says little about larger models.")
