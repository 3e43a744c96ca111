from functools import partial

import pandas as pd
import streamlit as st

from charts.tokens import embedding_bars, token_chips, token_count_bars
from engine.tokens.tokenizers import DTYPE_BYTES, embedding_size
from ui import concept_page, encoder, lm, prompt_input, samples
from ui.charts import figure, show_chart
from ui.tokens import chips_for, comparison, token_table

PRESETS = samples.load("tokenizer_texts")  # assets/samples.toml
DEFAULT_PRESET = next(iter(PRESETS))
# Widths of well-known models, as published in their papers and configs.
D_MODELS = {768: "BERT-base, GPT-2 small", 1024: "BERT-large, GPT-2 medium", 2048: "TinyLlama-1.1B, Llama-3.2-1B",
            4096: "LLaMA-2-7B, Llama-3-8B", 8192: "LLaMA-2-70B, Llama-3-70B"}


def load_preset() -> None:
    st.session_state["text"] = PRESETS.get(st.session_state.get("preset"), PRESETS[DEFAULT_PRESET])


def show_counts(results) -> None:
    names = [r.spec.name for r in results]
    smol = results[0].stats.tokens
    table = pd.DataFrame({
        "tokenizer": names,
        "used by": [r.spec.used_by for r in results],
        "algorithm": [r.spec.algorithm for r in results],
        "vocabulary": [r.vocab.total for r in results],
        "special": [r.vocab.special for r in results],
        "tokens": [r.stats.tokens for r in results],
        "chars/token": [round(r.stats.chars_per_token, 2) for r in results],
        "words/token": [round(r.stats.words_per_token, 2) for r in results],
        "× SmolLM2": [round(r.stats.tokens / smol, 2) if smol else None for r in results],
    })
    counts = [r.stats.tokens for r in results]
    fewest = [r.spec.name for r in results if r.stats.tokens == min(counts)]
    most = [r.spec.name for r in results if r.stats.tokens == max(counts)]
    cols = st.columns(4)
    cols[0].metric("Fewest tokens", f"{min(counts):,}", help="Tokenizer(s): " + ", ".join(fewest))
    cols[1].metric("Most tokens", f"{max(counts):,}", help="Tokenizer(s): " + ", ".join(most))
    cols[2].metric("Spread", f"{max(counts) / min(counts):.2f}×" if min(counts) else "—",
                   help="Most tokens ÷ fewest tokens for this text.")
    cols[3].metric("SmolLM2 chars/token", f"{results[0].stats.chars_per_token:.2f}",
                   help="Characters ÷ tokens with the tokenizer of this app's model.")
    show_chart(figure(token_count_bars, names, counts, [r.vocab.total for r in results],
                                [r.stats.chars_per_token for r in results],
                                title=f"Tokens for the same {results[0].stats.characters:,} characters"),
               table, name="token-counts", key="counts")
    notes = [f"Fewest: {', '.join(fewest)}. Most: {', '.join(most)}."]
    unknown = sum(t.kind == "unknown" for t in results[-1].tokens)
    if unknown:
        notes.append(f"BERT WordPiece turned {unknown} piece{'s' if unknown != 1 else ''} into [UNK]: fewer "
                     "tokens, but that text is lost. Byte-level BPE never needs [UNK].")
    notes.append("Vocabulary sizes are read from each tokenizer: the largest id + 1, special tokens included.")
    st.caption(" ".join(notes))
    shown_columns = [c for c in table.columns if c != "words/token"]   # kept in the CSV
    st.dataframe(table, hide_index=True, width="stretch", column_order=shown_columns, column_config={
        "vocabulary": st.column_config.NumberColumn(format="localized", help="Largest id + 1, read from the "
                                                    "tokenizer: the rows its embedding matrix needs."),
        "special": st.column_config.NumberColumn(help="Control tokens among them (<|endoftext|>, [CLS], ...)."),
        "tokens": st.column_config.NumberColumn(format="localized"),
        "chars/token": st.column_config.NumberColumn(format="%.2f"),
        "words/token": st.column_config.NumberColumn(format="%.2f"),
        "× SmolLM2": st.column_config.NumberColumn(format="%.2f×", help="Tokens ÷ SmolLM2's tokens")})


def show_splits(text: str, results, shown: int, show_ids: bool) -> None:
    cols = st.columns(2, gap="medium")
    for i, r in enumerate(results):
        with cols[i % 2]:
            n = len(r.tokens)
            title = f"{r.spec.name}: {n:,} tokens"  # short, to fit half a narrow page; sizes are in the table
            fig = figure(token_chips, [("", chips_for(text, r.tokens, show_ids, limit=shown))], columns=46, title=title,
                              font_size=14)
            show_chart(fig, partial(token_table, text, r.tokens), name=f"{r.spec.key}-tokens", key=f"split-{r.spec.key}")
            if n > shown:
                st.caption(f"First {shown} of {n:,} tokens shown.")


def show_embeddings(results) -> None:
    model = lm()
    card = model.card
    widths = {card.d_model: "SmolLM2-135M, this app's model", **D_MODELS}
    left, right = st.columns([3, 2], gap="large")
    with left:
        d_model = st.select_slider("Model width d_model", list(widths), value=card.d_model, key="d",
                                   bind="query-params", help="Each vocabulary entry gets one row of d_model numbers.")
        st.caption(f"d_model {d_model:,} is the width of {widths[d_model]}.")
    with right:
        dtype = st.radio("Number format", list(DTYPE_BYTES), key="dtype", bind="query-params", horizontal=True,
                         help="fp32: 4 bytes per parameter; bf16: 2 bytes, the usual format for "
                              "inference and training today.")
        untied = st.toggle("Untied output (× 2)", key="untied", bind="query-params",
                           help="Off: the output layer reuses the embedding matrix (tied, as in SmolLM2). "
                                "On: a second vocabulary × d_model matrix, as in Llama 3.")
    sizes = [embedding_size(r.vocab.total, d_model, dtype, tied=not untied) for r in results]
    names = [r.spec.name for r in results]
    table = pd.DataFrame({"tokenizer": names, "vocabulary": [s.vocab for s in sizes], "d_model": d_model,
                          "matrices": sizes[0].matrices, "dtype": dtype, "parameters": [s.parameters for s in sizes],
                          "megabytes": [round(s.megabytes, 2) for s in sizes]})
    matrices = "2 × " if untied else ""
    show_chart(figure(embedding_bars, names, [s.vocab for s in sizes], [s.parameters for s in sizes],
                              [s.megabytes for s in sizes],
                              title=f"Embedding parameters = {matrices}vocabulary × {d_model:,}, stored in {dtype}"),
               table, name="embedding-sizes", key="embeddings")
    weight = model.model.get_input_embeddings().weight
    rows, width = weight.shape
    st.caption(f"Measured on the live model: SmolLM2's embedding matrix is {rows:,} × {width:,} = "
               f"{weight.numel():,} parameters, {100 * weight.numel() / card.parameters:.1f}% of its "
               f"{card.parameters / 1e6:.1f} M (the output layer reuses it). Widths of other models as published "
               "in their papers and model configs (BERT, GPT-2, TinyLlama, Llama 2, Llama 3). Real models may pad "
               "the matrix beyond the tokenizer's ids to a multiple convenient for the hardware.")


with concept_page("vocabulary"):
    preset_col, _ = st.columns([1, 2])
    with preset_col:
        preset = st.selectbox("Sample text", list(PRESETS), key="preset", bind="query-params", on_change=load_preset,
                              help="Load a sample, then edit it freely below.")
    text = prompt_input("text", PRESETS.get(preset, PRESETS[DEFAULT_PRESET]), "Text to tokenize", height=110,
                        max_chars=3000, max_tokens=512)
    encoder()
    with st.spinner("Tokenizing with six tokenizers..."):
        results = comparison(text)
    if not text:
        st.info("Type or paste some text above, or pick a sample, to compare the tokenizers.",
                icon=":material/edit:")
    else:
        show_counts(results)
        st.subheader("How each one splits it", anchor="splits")
        left, right = st.columns([3, 2], gap="large")
        with left:
            shown = st.slider("Tokens shown per tokenizer", 10, 200, 40, 10, key="n", bind="query-params")
        with right:
            show_ids = st.toggle("Show ids", key="ids", bind="query-params",
                                 help="Each chip shows its token id instead of its text.")
        show_splits(text, results, shown, show_ids)
        st.caption("Hover a chip for its id, vocabulary entry and bytes. BERT WordPiece lowercases, drops "
                   "spaces, marks word-internal pieces with ##, and uses [UNK] where it has no piece.")
    st.subheader("What a vocabulary costs: the embedding matrix", anchor="embedding")
    show_embeddings(results)
