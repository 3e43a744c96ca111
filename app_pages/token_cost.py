from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.token_cost import chunk_bars, cost_bars, density_heatmap
from charts.tokens import token_count_bars
from engine.tokens.token_cost import Price, cost, density, reply_tokens, usd
from engine.tokens.tokenizers import BERT, SPECS
from ui import concept_page, encoder, prompt_input, samples
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, stop_if_empty, whole_number_input
from ui.text import escape_markdown
from ui.token_cost import chunk_table, chunks_with_recount, price_table
from ui.tokens import comparison

DOCUMENTS = samples.load("corpora")           # assets/samples.toml
DEFAULT_DOCUMENT = next(iter(DOCUMENTS))
SAMPLES = samples.load("tokenizer_texts")     # the same story in three languages, plus code, emoji, numbers
PRICED = [spec for spec in SPECS if spec.key != BERT.key]    # BERT encodes; it writes no output tokens
EXAMPLE = Price(input=0.15, output=0.60)
EXAMPLE_SOURCE = ("Fireworks AI's serverless price for gpt-oss-120b and for Qwen3 VL 30B A3B "
                  "(docs.fireworks.ai/serverless/pricing, read on 24 November 2026)")
MEASURES = {"tokens per 100 characters": (".1f", "per_100_characters"), "tokens per word": (".2f", "per_word")}


def load_document() -> None:
    st.session_state["text"] = DOCUMENTS.get(st.session_state.get("doc"), DOCUMENTS[DEFAULT_DOCUMENT]).strip()


with concept_page("token-cost"):
    doc_col, _ = st.columns([1, 2])
    doc = doc_col.selectbox("Sample document", list(DOCUMENTS), key="doc", bind="query-params",
                            on_change=load_document, help="Load a sample, then edit it or paste your own.")
    text = prompt_input("text", DOCUMENTS.get(doc, DOCUMENTS[DEFAULT_DOCUMENT]).strip(), "Your document",
                        height=150, max_chars=4000, max_tokens=2000)
    stop_if_empty(text, "Paste a document above (an email, some code, a page in any language) to count its "
                        "tokens and price it.")
    encoder()
    with st.spinner("Counting with six tokenizers..."):
        results = comparison(text)
    names = [r.spec.name for r in results]
    counts = [r.stats.tokens for r in results]

    st.subheader("Tokens for this document", anchor="counts")
    row = st.container(horizontal=True, gap="large")    # wraps on a narrow window instead of cutting numbers
    row.metric("Characters", f"{len(text):,}", width="content", help=f"{len(text.split()):,} whitespace-separated "
               f"words; {len(text.encode('utf-8')):,} UTF-8 bytes.")
    row.metric("Fewest tokens", f"{min(counts):,}", width="content",
               help=", ".join(n for n, c in zip(names, counts) if c == min(counts)))
    row.metric("Most tokens", f"{max(counts):,}", f"{max(counts) / min(counts):.2f}× the fewest" if min(counts) else None,
               delta_color="off", width="content", help=", ".join(n for n, c in zip(names, counts) if c == max(counts)))
    show_chart(figure(token_count_bars, names, counts, [r.vocab.total for r in results],
                      [r.stats.chars_per_token for r in results],
                      title=f"The same {len(text):,} characters, counted by each tokenizer itself"),
               partial(pd.DataFrame, {"tokenizer": names, "tokens": counts, "characters": len(text),
                                      "chars_per_token": [r.stats.chars_per_token for r in results],
                                      "words_per_token": [r.stats.words_per_token for r in results]}),
               name="token-counts", key="counts")
    st.caption("Each count is the length of that tokenizer's own encoding of your text (special tokens "
               "such as a start marker not included). A provider bills the count of the tokenizer its model uses.")

    st.subheader("What it costs", anchor="cost")
    st.caption(f"**Prices are yours to enter**: they change often and differ between providers. Every row starts "
               f"at the same example, \\${EXAMPLE.input:.2f} per million input tokens and \\${EXAMPLE.output:.2f} per "
               f"million output tokens: {EXAMPLE_SOURCE}. It is not the price of every model listed; with one "
               "price for all, the differences below come from the token counts alone.")
    with st.container(border=True):
        prices = price_table(PRICED, EXAMPLE)
    left, right = st.columns(2)
    reply_share = left.slider("Reply length (× the document's tokens)", 0.0, 2.0, 0.25, 0.05, key="reply",
                              bind="query-params", help="0.25: a summary a quarter as long; 1: a translation of "
                              "about the same length. Counted in each tokenizer's own tokens.")
    requests = whole_number_input("Requests", 1, 100_000_000, 1000, "requests", container=right,
                                  help="How many times this document is sent (each with its reply).")
    by_key = {r.spec.key: r for r in results}
    costs = [cost(by_key[s.key].stats.tokens, reply_tokens(by_key[s.key].stats.tokens, reply_share),
                  prices[s.key], requests) for s in PRICED]
    cheapest = min(range(len(costs)), key=lambda i: costs[i].total_usd)
    dearest = max(range(len(costs)), key=lambda i: costs[i].total_usd)
    row = st.container(horizontal=True, gap="large")
    row.metric(f"Cheapest: {PRICED[cheapest].name}", usd(costs[cheapest].total_usd), width="content",
               help=f"{requests:,} requests; {usd(costs[cheapest].per_request_usd)} each.")
    row.metric(f"Dearest: {PRICED[dearest].name}", usd(costs[dearest].total_usd), width="content",
               help=f"{requests:,} requests; {usd(costs[dearest].per_request_usd)} each.")
    row.metric("Difference", f"{costs[dearest].total_usd / costs[cheapest].total_usd:.2f}×"
               if costs[cheapest].total_usd else "—", width="content",
               help="Dearest ÷ cheapest for this document at these prices.")
    cost_frame = pd.DataFrame({
        "tokenizer": [s.name for s in PRICED], "input tokens": [c.input_tokens for c in costs],
        "output tokens": [c.output_tokens for c in costs], "input $/1M": [prices[s.key].input for s in PRICED],
        "output $/1M": [prices[s.key].output for s in PRICED], "requests": requests,
        "input cost $": [c.input_usd for c in costs], "output cost $": [c.output_usd for c in costs],
        "total $": [c.total_usd for c in costs]})
    show_chart(figure(cost_bars, [s.name for s in PRICED], [c.input_usd for c in costs],
                      [c.output_usd for c in costs], [usd(c.total_usd) for c in costs],
                      title=f"{requests:,} requests of this document, each with a reply of "
                            f"{reply_share:.2f}× its length"),
               cost_frame, name="token-cost", key="cost")
    st.caption("Cost = requests × (input tokens × input price + output tokens × output price) ÷ 1,000,000. "
               "Real bills add rules this page leaves out: cheaper cached input, batch discounts, a chat "
               "template's extra tokens, and reasoning tokens billed as output.")

    st.subheader("Prose, code and other languages", anchor="languages")
    measure = st.radio("Measure", list(MEASURES), horizontal=True, key="measure", bind="query-params")
    value_format, attribute = MEASURES.get(measure, next(iter(MEASURES.values())))
    sample_results = {name: comparison(sample) for name, sample in SAMPLES.items()}
    grid = np.array([[getattr(density(SAMPLES[name], r.stats.tokens), attribute) for r in rows]
                     for name, rows in sample_results.items()])
    show_chart(figure(density_heatmap, grid, list(SAMPLES), names, value_format, measure or "",
                      title=f"{(measure or '').capitalize()}: the same tokenizers on different kinds of text"),
               partial(pd.DataFrame, [{"sample": name, "tokenizer": r.spec.name, "tokens": r.stats.tokens,
                                       "characters": len(SAMPLES[name]), "words": len(SAMPLES[name].split())}
                                      for name, rows in sample_results.items() for r in rows]),
               name="tokens-by-kind-of-text", key="density")
    story = [n for n in ("English prose", "German", "Chinese") if n in sample_results]
    if len(story) == 3:
        row = st.container(horizontal=True, gap="large")
        for language in story[1:]:
            ratios = {a.spec.name: b.stats.tokens / a.stats.tokens for a, b in
                      zip(sample_results["English prose"], sample_results[language])
                      if a.stats.tokens and a.spec.key != BERT.key}
            row.metric(f"The same story in {language}: tokens ÷ English",
                       f"{min(ratios.values()):.2f}-{max(ratios.values()):.2f}×", width="content",
                       help="Tokens for this sample ÷ tokens for the English version: "
                            + "; ".join(f"{n} {v:.2f}×" for n, v in ratios.items())
                            + ". At one price per token, that is also the ratio of the bills. (BERT is left out: "
                              "it turns characters it lacks into [UNK].)")
        st.caption("The English, German and Chinese samples tell the same short story, so their counts compare "
                   "like for like. Per word is not a fair measure for Chinese, which does not separate words by "
                   "spaces: per character is. BERT's low counts for emoji and Chinese are [UNK] tokens: text it "
                   "cannot represent, so lost rather than cheap.")

    st.subheader("Cutting a document into chunks", anchor="chunks")
    a, b, c = st.columns(3)
    chunker_name = a.selectbox("Count with", names, key="chunker", bind="query-params")
    chunker = next((r.spec.key for r in results if r.spec.name == chunker_name), SPECS[0].key)
    size = b.slider("Chunk size (tokens)", 16, 512, 128, 16, key="size", bind="query-params",
                    help="Retrieval systems cut documents into pieces that fit their embedding model.")
    overlap = ranged_slider("Overlap (tokens)", 0, size // 2, 0, "overlap", container=c,
                            help="Each chunk repeats this many tokens from the end of the one before.")
    chunks, recount = chunks_with_recount(chunker, text, size, overlap)
    table = chunk_table(text, chunks, recount)
    show_chart(figure(chunk_bars, [ch.tokens for ch in chunks], size, overlap,
                      title=f"{len(chunks):,} chunks of {by_key[chunker].stats.tokens:,} tokens"),
               table, name="chunks", key="chunks")
    moved = sum(n != ch.tokens for n, ch in zip(recount, chunks))
    st.caption(f"{moved} of {len(chunks)} chunks have a different count when their text is tokenized on its own: a "
               "cut can fall inside a word, and the piece at the border is then split differently. "
               "Chunkers that cut at sentence or paragraph breaks avoid that." if moved else
               "Every chunk's text, tokenized on its own, gives back exactly its tokens.")
    st.dataframe(table, hide_index=True, width="stretch", height=240)
    st.caption(f"First chunk, as text: {escape_markdown(table['text'].iloc[0][:300])}" if len(table) else "")
