from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.causal import attention_map, vector_strips
from charts.distributions import next_token_bars
from engine.inside.causal_mask import first_token_share, later_share
from engine.tokens.offsets import visible
from ui import concept_page, encoder, lm, prompt_input
from ui.attention import captured
from ui.cached import next_token
from ui.causal import MAX_TOKENS, encoder_captured, future_edit_section, minilm_card, sentence_vectors
from ui.charts import figure, show_chart
from ui.inputs import layer_and_head, stop_if_empty
from ui.text import described_metric

DEFAULT_TEXT = "I went to the bank to get some money"
DEFAULT_WORD = "fish"
# Shown 1-based. On the default text MiniLM's layer 2 head 9 reads mostly the NEXT token, which no decoder head
# can do, and SmolLM2's layer 2 head 3 reads mostly the previous one.
DEFAULT_ENCODER_LAYER, DEFAULT_ENCODER_HEAD = 2, 9
DEFAULT_LAYER, DEFAULT_HEAD = 2, 3


def map_table(tokens: list[str], weights: np.ndarray) -> pd.DataFrame:
    q, k = np.indices(weights.shape).reshape(2, -1)
    return pd.DataFrame({"query_position": q + 1, "query_token": [tokens[i] for i in q], "key_position": k + 1,
                         "key_token": [tokens[j] for j in k], "weight": weights[q, k]})


def facts_table(card, enc, enc_tokens: int, dec_tokens: int) -> str:
    """Both models side by side, every number read from the live models."""
    rows = [("Class", f"`{enc.architecture}`", f"`{type(lm().model).__name__}`"),
            ("Attention", "bidirectional: every token reads every token", "causal: each token reads itself and "
                                                                           "earlier ones"),
            ("Layers × heads", f"{enc.layers} × {enc.heads}", f"{card.layers} × {card.heads} "
                                                              f"({card.kv_heads} key/value heads)"),
            ("Vector per token", f"{enc.d_model} numbers", f"{card.d_model} numbers"),
            ("Parameters", f"{enc.parameters:,}", f"{card.parameters:,}"),
            ("Vocabulary", f"{enc.vocab_size:,} WordPiece, lowercased", f"{card.vocab_size:,} byte-level BPE"),
            ("Your text", f"{enc_tokens} tokens, with [CLS] and [SEP]", f"{dec_tokens} tokens"),
            ("What comes out", f"one sentence vector ({enc.d_model} numbers)", f"a probability for each of "
                                                                               f"{card.vocab_size:,} next tokens")]
    lines = ["| | MiniLM (all-MiniLM-L6-v2) | SmolLM2-135M-Instruct |", "|---|---|---|"]
    return "\n".join(lines + [f"| **{a}** | {b} | {c} |" for a, b, c in rows])


with concept_page("encoder-vs-decoder"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help=f"Up to {MAX_TOKENS} SmolLM2 tokens; longer text is cut with a note. Both models read "
                             "the same text, each with its own tokenizer.")
    stop_if_empty(text, "Type a sentence above, for example *I went to the bank to get some money*, to run it through "
                        "an encoder and a decoder side by side.")
    encoder()   # loaded here, where its spinner can show
    with st.spinner("Running MiniLM and SmolLM2 over your text..."):
        enc_cap, dec_cap = encoder_captured(text), captured(text)
    enc_card, card = minilm_card(), lm().card
    enc_labels, dec_labels = [visible(t) for t in enc_cap.tokens], [visible(t) for t in dec_cap.tokens]

    st.subheader("1. The same sentence, two ways of reading it", anchor=False)
    st.markdown(facts_table(card, enc_card, enc_cap.length, dec_cap.length))
    if enc_cap.truncated:
        st.caption(f":material/content_cut: MiniLM reads at most {enc_cap.length} word pieces: the end of your text "
                   "was cut for it.")
    enc_later, dec_later = later_share(enc_cap.attentions), later_share(dec_cap.attentions)
    st.markdown("Pick a head in each model. Under each map, its **weight on later tokens**: each query's weights on "
                "keys after it, summed, then averaged over the queries.")
    enc_col, dec_col = st.columns(2, gap="medium")
    with enc_col:
        st.markdown("**MiniLM**, the encoder")
        enc_layer_col, enc_head_col = st.columns(2)
        enc_layer = enc_layer_col.slider(f"Layer (1-{enc_card.layers})", 1, enc_card.layers, DEFAULT_ENCODER_LAYER,
                                         key="enc_layer", bind="query-params")
        enc_head = enc_head_col.slider(f"Head (1-{enc_card.heads})", 1, enc_card.heads, DEFAULT_ENCODER_HEAD,
                                       key="enc_head", bind="query-params")
        enc_weights = enc_cap.attentions[enc_layer - 1, enc_head - 1]
        show_chart(figure(attention_map, enc_weights, enc_labels, f"MiniLM L{enc_layer} H{enc_head}: both ways",
                          "dash"),
                   partial(map_table, enc_cap.tokens, enc_weights), name=f"minilm-layer{enc_layer}-head{enc_head}",
                   key="map_encoder")
        m1, m2 = st.columns(2)
        described_metric(m1, "This head", f"{enc_later[enc_layer - 1, enc_head - 1]:.1%}", "reads ahead",
                         help="From the model's own attention weights.")
        described_metric(m2, f"All {enc_later.size} heads", f"{enc_later.mean():.1%}", "mean")
    with dec_col:
        st.markdown("**SmolLM2**, the decoder")
        layer, head = layer_and_head(*st.columns(2), DEFAULT_LAYER, DEFAULT_HEAD)
        dec_weights = dec_cap.attentions[layer - 1, head - 1]
        show_chart(figure(attention_map, dec_weights, dec_labels, f"SmolLM2 L{layer} H{head}: causal", "solid"),
                   partial(map_table, dec_cap.tokens, dec_weights), name=f"smollm2-layer{layer}-head{head}",
                   key="map_decoder")
        m3, m4 = st.columns(2)
        described_metric(m3, "This head", f"{dec_later[layer - 1, head - 1]:.3g}", "by the mask")
        described_metric(m4, f"All {dec_later.size} heads", f"{dec_later.max():.3g}", "the largest")
    sinks = ""
    if dec_cap.length > 1:   # with one token there is no query but the first
        enc_sinks, dec_sinks = (int((first_token_share(c.attentions) > 0.5).sum()) for c in (enc_cap, dec_cap))
        sinks = (f" Both models park spare attention on their first token: {enc_sinks} of MiniLM's {enc_later.size} "
                 f"heads and {dec_sinks} of SmolLM2's {dec_later.size} put over half their weight there.")
    st.caption(f"Rows are queries (the tokens attending), columns the keys they read, by position. [CLS] and [SEP] "
               f"are marker tokens MiniLM's tokenizer adds.{sinks} The vermillion line is the mask's edge: SmolLM2 has "
               "no weight to the right of it; on MiniLM's map, dashed, it only marks where a mask would cut.")

    st.subheader("2. The future-edit test: change the last word", anchor=False)
    st.markdown("An encoder's vector for a token depends on the whole text; a decoder's only on the tokens up to it. "
                "Change the last word and recompute both: which earlier vectors move? SmolLM2 with its mask removed "
                "runs too, to show that the mask, not the weights, is what keeps the past fixed.")
    result = future_edit_section(text, DEFAULT_WORD, key="edit")

    st.subheader("3. What each is for, both computed", anchor=False)
    edited = result.edit.edited if result is not None else text
    left, right = st.columns(2, gap="large")
    with left:
        vectors = sentence_vectors(text, edited)
        cosine = float(vectors[0] @ vectors[1])
        described_metric(st, "MiniLM: similarity of the two sentences", f"{cosine:.3f}",
                         "cosine of their sentence vectors", help="MiniLM's last-layer token vectors are averaged and "
                         "scaled to length 1 (as sentence-transformers does); the cosine of two such vectors is 1 for "
                         "the same meaning and near 0 for unrelated texts.")
        rows = np.vstack([vectors, vectors[1] - vectors[0]])
        names = ["your text", "after the edit" if edited != text else "your text again", "difference"]
        show_chart(figure(vector_strips, rows, names, title="One vector per sentence: for search, clustering, "
                                                            "retrieval"),
                   partial(pd.DataFrame, rows.T, columns=names), name="minilm-sentence-vectors", key="embeddings")
    with right:
        dist = next_token(text)
        top = dist.top(lm(), 8)
        described_metric(st, "SmolLM2: its most likely next token", f"“{visible(top[0].text)}”",
                         f"{top[0].probability:.1%} of the probability")
        show_chart(figure(next_token_bars, [visible(t.text) for t in top], [t.probability for t in top],
                          [t.id for t in top], [t.logit for t in top], title="A distribution over what comes next: "
                                                                              "generation"),
                   partial(pd.DataFrame, {"token": [t.text for t in top], "id": [t.id for t in top],
                                          "probability": [t.probability for t in top]}),
                   name="smollm2-next-token", key="next")
    st.caption(f"MiniLM has no head that predicts tokens: it was trained to place sentences that mean the same close "
               f"together. SmolLM2 can continue any text but was never trained to make sentence vectors. With "
               f"{enc_card.parameters / 1e6:.0f}M and {card.parameters / 1e6:.0f}M parameters both are small; larger "
               f"encoders and decoders draw the same shapes with more skill.")
