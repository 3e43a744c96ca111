from functools import partial
from statistics import median

import pandas as pd
import streamlit as st

from charts.bpe import merge_chips, pair_bars, rank_scatter, tokens_per_word_curve
from engine.tokens.bpe import BYTE_ALPHABET, MAX_MERGES, MIN_PAIR_COUNT, compare_ranks
from ui import concept_page, lm, prompt_input, samples
from ui.bpe import (library_tokens, pair_label, piece_label, replayed_segments, segment_chips, smollm2_merges,
                    training)
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, stop_if_empty
from ui.text import escape_markdown

CORPORA = samples.load("corpora")    # assets/samples.toml
DEFAULT = next(iter(CORPORA))
EXCERPT_CHARS = 520                  # the start of the corpus drawn as chips
DEFAULT_STEP = 12


def load_corpus() -> None:
    st.session_state["text"] = CORPORA.get(st.session_state.get("corpus"), CORPORA[DEFAULT]).strip()


def move(delta: int, last: int) -> None:
    kept = st.session_state.get("k", DEFAULT_STEP)
    kept = kept if isinstance(kept, int) else DEFAULT_STEP
    st.session_state["k"] = min(max(kept + delta, 0), last)


def excerpt(text: str) -> str:
    """The start of the corpus, cut before a space so no pre-token is cut in two."""
    if len(text) <= EXCERPT_CHARS:
        return text
    cut = text.rfind(" ", 0, EXCERPT_CHARS)
    return text[:cut if cut > 0 else EXCERPT_CHARS]


def merges_table(run, ranks, upto: int) -> pd.DataFrame:
    found = compare_ranks(list(run.merges[:upto]), *ranks)
    steps = run.replay.merges[:upto]
    return pd.DataFrame({
        "merge": [m.step for m in steps],
        "pair": [pair_label(m.left, m.right) for m in steps],
        "new token": [piece_label(m.token) for m in steps],
        "pair → token": [f"{pair_label(m.left, m.right)} → {piece_label(m.token)}" for m in steps],
        "count": [m.count for m in steps],
        "corpus tokens after": [m.tokens_after for m in steps],
        "SmolLM2 rank": [f.other_rank for f in found],
        "in SmolLM2 vocabulary": [f.token_in_vocab for f in found]})


with concept_page("bpe"):
    corpus_col, _ = st.columns([1, 2])
    preset = corpus_col.selectbox("Sample corpus", list(CORPORA), key="corpus", bind="query-params",
                                  on_change=load_corpus, help="Load a sample, then edit it or paste your own.")
    text = prompt_input("text", CORPORA.get(preset, CORPORA[DEFAULT]).strip(), "Training corpus", height=160,
                        max_chars=4000, max_tokens=2000)
    stop_if_empty(text, "Paste a few paragraphs above (or pick a sample) to train a tokenizer on them.")
    run = training(text)
    learned = len(run.merges)
    if not learned:
        st.info(f"No pair of neighbouring symbols occurs {MIN_PAIR_COUNT} times in this text, so the trainer "
                "learned no merge. Paste a longer text, or one that repeats words.", icon=":material/edit:")
        st.stop()

    st.caption(f"Trained by the `tokenizers` library (byte-level BPE, the kind SmolLM2 uses) on your "
               f"{run.replay.characters:,} characters: it learned **{learned:,} merges**"
               + (", the most this page asks for." if learned >= MAX_MERGES else
                  f" and then stopped, because no pair was left that occurs {MIN_PAIR_COUNT} times or more."))
    slider_col, back_col, next_col = st.columns([6, 1, 1], vertical_alignment="bottom")
    back_col.button("Back", icon=":material/chevron_left:", key="back", on_click=move, args=(-1, learned),
                    width="stretch")
    next_col.button("Next", icon=":material/chevron_right:", key="next", on_click=move, args=(1, learned),
                    width="stretch")
    k = ranged_slider(f"Merges applied (0-{learned:,})", 0, learned, min(DEFAULT_STEP, learned), "k",
                      container=slider_col, help="Replay the trainer's merge list one merge at a time. "
                                                 "0 is the raw bytes; the vocabulary is 256 bytes + k merges.")
    replay = run.replay
    ranks = smollm2_merges()
    row = st.container(horizontal=True, gap="large")    # wraps on a narrow window instead of cutting numbers
    row.metric("Vocabulary", f"{BYTE_ALPHABET + k:,}", help="256 single bytes plus one entry per merge.",
               width="content")
    row.metric("Corpus tokens", f"{replay.tokens_after(k):,}",
               f"{replay.tokens_after(k) - replay.tokens_before:+,} vs {replay.tokens_before:,} bytes",
               delta_color="off", help="Counted on the whole corpus after the first k merges.", width="content")
    row.metric("Tokens per word", f"{replay.tokens_per_word(k):.2f}", width="content",
               help=f"Corpus tokens ÷ its {replay.words:,} whitespace-separated words.")
    row.metric("SmolLM2, tokens per word", f"{run.smollm2_tokens / replay.words:.2f}" if replay.words else "—",
               width="content", help=f"On the same corpus: {run.smollm2_tokens:,} tokens with SmolLM2's own "
                                     f"{lm().card.vocab_size:,}-entry tokenizer.")

    if k:
        latest = replay.merges[k - 1]
        st.markdown(f"**Merge {k}:** {escape_markdown(pair_label(latest.left, latest.right))} → "
                    f"**{escape_markdown(piece_label(latest.token))}**, the most frequent pair at that moment: "
                    f"**{latest.count:,}** times (the next most frequent: {latest.runner_up:,}). "
                    f"Each merge replaces every occurrence, so the corpus shrank by "
                    f"{replay.tokens_after(k - 1) - latest.tokens_after:,} tokens.")
    else:
        st.markdown("**Before any merge** every byte is its own token. Move the slider or press *Next* to "
                    "apply the trainer's first merge.")
    shown = excerpt(text)
    segments = replayed_segments(shown, text, k)
    chips, fresh = segment_chips(shown, segments, k)
    show_chart(figure(merge_chips, chips, fresh, 72, f"The start of your corpus after {k:,} merges: "
                                                     f"{len(segments):,} tokens for {len(shown):,} characters",
                      f"made by merge {k}"),
               partial(pd.DataFrame, {"token": [piece_label(s.piece) for s in segments],
                                      "made_by_merge": [s.made_at for s in segments],
                                      "start": [s.start for s in segments], "end": [s.end for s in segments]}),
               name=f"corpus-after-{k}-merges", key="chips")
    mine = [s.piece for s in replayed_segments(text, text, k)]
    theirs = library_tokens(text, k, text)
    if mine == theirs:
        st.success(f"Checked: replaying the first {k:,} merges cuts your whole corpus into the same "
                   f"{len(mine):,} tokens, one for one, as the library's own tokenizer trained with "
                   f"{k:,} merges.", icon=":material/check_circle:")
    else:
        st.warning(f"The replay gives {len(mine):,} tokens and the library's tokenizer {len(theirs):,}: they "
                   "disagree on this text.", icon=":material/warning:")

    counts_col, table_col = st.columns(2, gap="large")
    with counts_col:
        pairs = replay.top_pairs[k]
        upcoming = replay.merges[k] if k < learned else None
        chosen = next((i for i, p in enumerate(pairs) if upcoming and (p.left, p.right) ==
                       (upcoming.left, upcoming.right)), None)
        show_chart(figure(pair_bars, [pair_label(p.left, p.right) for p in pairs], [p.count for p in pairs],
                          chosen, f"Pair counts now (orange: merge {k + 1})" if upcoming else
                          "Pair counts now: none left to merge"),
                   partial(pd.DataFrame, {"pair": [pair_label(p.left, p.right) for p in pairs],
                                          "count": [p.count for p in pairs]}),
                   name=f"pair-counts-after-{k}", key="pairs")
        st.caption("Counted over every pre-token (a word with its leading space, a run of punctuation or "
                   "spaces): merges never cross those borders. A tie goes to the pair the library ranks first.")
    with table_col:
        table = merges_table(run, ranks, k)
        st.markdown("**The merges so far** (latest first), and where SmolLM2's own list has the same pair")
        st.dataframe(table.iloc[::-1], hide_index=True, width="stretch", height=360,
                     column_order=["merge", "pair → token", "count", "SmolLM2 rank"], column_config={
            "SmolLM2 rank": st.column_config.NumberColumn(help=f"1 = SmolLM2's first merge; empty: not among "
                                                               f"its {len(ranks[0]):,} merges", format="localized"),
            "merge": st.column_config.NumberColumn(width="small"), "count": st.column_config.NumberColumn(width="small")})

    st.subheader("More merges, fewer tokens per word", anchor="curve")
    sizes = list(range(BYTE_ALPHABET, BYTE_ALPHABET + learned + 1))
    per_word = [replay.tokens_per_word(i) for i in range(learned + 1)]
    smol_per_word = run.smollm2_tokens / replay.words if replay.words else None
    show_chart(figure(tokens_per_word_curve, sizes, per_word, BYTE_ALPHABET + k, smol_per_word,
                      f"SmolLM2 ({lm().card.vocab_size:,} entries, trained on far more text)",
                      "Tokens per word of your corpus, measured after every merge"),
               partial(pd.DataFrame, {"vocabulary": sizes, "merges": range(learned + 1),
                                      "corpus_tokens": [replay.tokens_after(i) for i in range(learned + 1)],
                                      "tokens_per_word": per_word}),
               name="tokens-per-word-by-vocabulary", key="curve")
    st.caption(f"Measured on the training corpus itself, so the last merges (pairs seen only {MIN_PAIR_COUNT} or "
               "3 times) mostly memorize its own words: on new text the curve would flatten sooner. The "
               "first merges buy the most, because they join the most frequent pairs.")

    st.subheader("Did SmolLM2 learn the same merges?", anchor="smollm2")
    found = compare_ranks(list(run.merges), *ranks)
    first = found[:max(k, 1)]
    shared = [f.other_rank for f in first if f.other_rank is not None]
    row = st.container(horizontal=True, gap="large")
    row.metric(f"Of your first {len(first):,} merges", f"{len(shared):,} shared", width="content",
               help="The same pair of pieces appears in SmolLM2's merge list (read from its tokenizer).")
    row.metric("Their median rank in SmolLM2's list", f"{median(shared):,.0f}" if shared else "—", width="content",
               help=f"1 = SmolLM2's first merge, out of {len(ranks[0]):,}.")
    row.metric("New tokens SmolLM2 also has", f"{sum(f.token_in_vocab for f in first):,} of {len(first):,}",
               width="content", help="The merged piece exists in SmolLM2's vocabulary, by whatever route it was built.")
    labels = [f"{pair_label(a, b)} → {piece_label(a + b)}" for a, b in run.merges]
    show_chart(figure(rank_scatter, [f.step for f in found], [f.other_rank for f in found], labels,
                      100_000, k, "Every merge you trained, at its rank in SmolLM2's merge list"),
               partial(merges_table, run, ranks, learned), name="merge-ranks-vs-smollm2", key="ranks")
    st.caption("Points on the dotted line would have the same rank in both lists; grey crosses (drawn at the "
               "top) are merges SmolLM2 never made. Frequent English pairs such as ␣ + t and h + e come early in "
               "both, because they are frequent in any English text; merges particular to your corpus rank "
               "far later in SmolLM2's list or not at all.")
