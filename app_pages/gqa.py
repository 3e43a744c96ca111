from functools import partial

import pandas as pd
import streamlit as st

from charts.gqa import head_distances, sharing_diagram, sibling_maps, token_surprise
from charts.kv_cache import memory_vs_context
from engine.inside.gqa import attention_variants, query_groups, sibling_summary
from engine.serving.kv_cache import GB, PUBLISHED, kv_bytes_per_token, kv_cache_bytes, live_element_size, live_spec
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.gqa import MAX_TOKENS, distances, layer_probs, mqa_tensor_bytes, pooling_cost, token_labels
from ui.inputs import stop_if_empty
from ui.kv_cache import cache_growth
from ui.layout import metric_row
from ui.text import described_metric, human_bytes, ratio_delta, short_tokens

DEFAULT_TEXT = ("The printing press changed Europe in a single lifetime. Around 1450 Johannes Gutenberg combined "
                "movable metal type, an oil-based ink and a wooden screw press into a system that could print "
                "hundreds of identical pages a day.")
DEFAULT_LAYER = 3   # 1-based; on the default text the three heads of KV head 1 attend in three clear ways
CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]


def layout_section(groups) -> None:
    card = lm().card
    st.subheader("1 · Nine query heads, three key/value heads", anchor=False)
    attn = lm().model.model.layers[0].self_attn
    q_rows, k_rows = attn.q_proj.weight.shape[0], attn.k_proj.weight.shape[0]
    a, b, c, d = metric_row(4)
    described_metric(a, "Query heads", f"{card.heads}", f"q_proj gives {q_rows} = {card.heads} × {card.head_dim}")
    described_metric(b, "Key/value heads", f"{card.kv_heads}", f"k_proj gives {k_rows} = {card.kv_heads} × "
                     f"{card.head_dim}")
    described_metric(c, "Query heads per KV head", f"{card.heads // card.kv_heads}", "a group")
    described_metric(d, "Head size", f"{card.head_dim}", f"{card.d_model} ÷ {card.heads} query heads",
                     help="Read from the live model's config and the shapes of its projection weights.")
    show_chart(figure(sharing_diagram, groups, title="Which key/value head each query head reads (all 30 layers)"),
               partial(pd.DataFrame, {"query_head": [h + 1 for g in groups for h in g],
                                      "kv_head": [i + 1 for i, g in enumerate(groups) for _ in g]}),
               name="gqa-head-sharing", key="diagram")
    st.caption(f"Read from the model's config: {card.heads} query heads, {card.kv_heads} KV heads, so query head h "
               f"reads KV head ⌈h ÷ {card.heads // card.kv_heads}⌉. Only the KV heads are cached during "
               "generation.")


def siblings_section(text: str, groups, labels: list[str]) -> None:
    card = lm().card
    st.subheader("2 · Same keys and values, different attention", anchor=False)
    c1, c2 = st.columns([3, 2])
    layer = c1.slider(f"Layer (1-{card.layers})", 1, card.layers, DEFAULT_LAYER, key="layer", bind="query-params",
                      help="Each layer has its own query, key and value projections.")
    kv = c2.segmented_control("Key/value head", [g + 1 for g in range(len(groups))], default=1, key="kv",
                              bind="query-params", help="The group of query heads that read this KV head.")
    kv = kv if kv in range(1, len(groups) + 1) else 1
    probs = layer_probs(text, layer - 1)
    heads = groups[kv - 1]
    show_chart(figure(sibling_maps, probs[list(heads)], labels, heads, kv - 1,
                      title=f"Layer {layer}: the {len(heads)} query heads that read KV head {kv}"),
               partial(pd.DataFrame, [{"layer": layer, "query_head": h + 1, "kv_head": kv, "query_position": i + 1,
                                       "key_position": j + 1, "weight": float(probs[h, i, j])}
                                      for h in heads for i in range(len(labels)) for j in range(i + 1)]),
               name=f"gqa-layer{layer}-kv{kv}-maps", key="maps")
    matrix = distances(text, layer - 1)
    summary = sibling_summary(matrix, groups)
    a, b = metric_row(2, width=260)
    described_metric(a, "Heads sharing a KV head", f"{summary.within:.2f}", "mean distance",
                     "Half the summed |difference| of two heads' attention rows, averaged over queries 2..T: "
                     "0 = identical rows, 1 = no overlap.")
    described_metric(b, "Heads with different KV heads", f"{summary.across:.2f}", "mean distance")
    show_chart(figure(head_distances, matrix, groups, title=f"Layer {layer}: how differently two heads attend"),
               partial(pd.DataFrame, [{"layer": layer, "head_a": i + 1, "head_b": j + 1,
                                       "mean_distance": float(matrix[i, j])}
                                      for i in range(card.heads) for j in range(card.heads)]),
               name=f"gqa-layer{layer}-head-distances", key="distances")
    st.caption("The three heads of a group read the very same keys, yet each has its own queries, so each weighs "
               "the tokens its own way: sharing costs them their own keys and values, not their own pattern. Heads "
               "of one group (outlined) are a little more alike than heads of different groups in most layers; "
               "move the layer slider to compare.")


def memory_section(text: str, groups) -> None:
    model = lm()
    st.subheader("3 · What sharing saves: cache bytes per token", anchor=False)
    spec, element = live_spec(model), live_element_size(model)
    growth = cache_growth(text)
    mqa_bytes, mqa_tokens, mqa_shape = mqa_tensor_bytes(text)
    variants = attention_variants(spec, element)
    by_kind = {v.kind: v for v in variants}
    st.markdown(f"Each cached token stores one key and one value vector per KV head in each of the {spec.layers} "
                f"layers: $2 \\times {spec.layers} \\times \\text{{KV heads}} \\times {spec.head_dim} \\times "
                f"{element}$ bytes ({growth.dtype}).")
    a, b, c = metric_row(3, width=240)
    described_metric(a, f"MHA, {spec.heads} KV heads", f"{by_kind['MHA'].bytes_per_token:,.0f} B", "formula only",
                     "The model has no such heads to measure: 2 × layers × 9 × head size × bytes.")
    described_metric(b, f"GQA, {spec.kv_heads} (as built)", f"{growth.per_token_measured:,.0f} B",
                     f"real cache {'= formula ✓' if growth.matches else '≠ formula ✗'}",
                     f"The model's DynamicCache after {growth.tokens[-1]} tokens of your text (repeated if shorter): "
                     f"bytes of every layer's key and value tensors ÷ tokens. Formula: "
                     f"{by_kind['GQA'].bytes_per_token:,.0f} B.")
    mqa_matches = mqa_bytes / mqa_tokens == by_kind["MQA"].bytes_per_token
    described_metric(c, "MQA, 1 KV head", f"{mqa_bytes / mqa_tokens:,.0f} B",
                     f"pooled {'= formula ✓' if mqa_matches else '≠ formula ✗'}",
                     f"The K and V tensors of a pass with the KV heads pooled into one in every layer (section 4), "
                     f"one KV head per layer (shape "
                     f"{' × '.join(map(str, mqa_shape))} per layer), summed over {spec.layers} layers ÷ {mqa_tokens} "
                     "tokens.")
    context = st.select_slider("Context length (tokens)", CONTEXTS, value=8192, key="ctx", bind="query-params",
                               format_func=short_tokens, help="Tokens held in the cache for one sequence.")
    context = context if context in CONTEXTS else 8192
    series = [{"name": f"{v.kind}, {v.kv_heads} KV head{'s' if v.kv_heads > 1 else ''}", "contexts": CONTEXTS,
               "trained_context": spec.context,
               "gb": [kv_cache_bytes(spec.with_kv_heads(v.kv_heads), element, t) / GB for t in CONTEXTS]}
              for v in variants]
    show_chart(figure(memory_vs_context, series, context, True,
                      title=f"SmolLM2's KV cache for one sequence ({growth.dtype})"),
               partial(pd.DataFrame, [{"variant": s["name"], "context_tokens": t, "kv_cache_gb": g}
                                      for s in series for t, g in zip(s["contexts"], s["gb"])]),
               name="gqa-cache-vs-context", key="context_chart")
    at_context = {v.kind: kv_cache_bytes(spec.with_kv_heads(v.kv_heads), element, context) for v in variants}
    st.caption(f"At {context:,} tokens: MHA {human_bytes(at_context['MHA'])}, GQA {human_bytes(at_context['GQA'])}, "
               f"MQA {human_bytes(at_context['MQA'])}. GQA divides the MHA cache by {spec.heads // spec.kv_heads}, "
               f"MQA by {spec.heads}: on the log scale the three lines stay the same distance apart. Dotted "
               f"beyond SmolLM2's {spec.context:,}-token context. Served models usually "
               "keep the cache in 16-bit numbers, half these sizes.")
    rows = [{"model": s.name, "attention": s.attention, "query heads": s.heads, "KV heads": s.kv_heads,
             "as built bytes/token": kv_bytes_per_token(s, 2),
             "MHA bytes/token": kv_bytes_per_token(s.with_kv_heads(s.heads), 2),
             "MQA bytes/token": kv_bytes_per_token(s.with_kv_heads(1), 2),
             f"as built at {short_tokens(context)} (GB)": round(kv_cache_bytes(s, 2, context) / GB, 3)}
            for s in PUBLISHED]
    st.markdown("**Published configurations**, cache at 16 bits per number:")
    bytes_column = partial(st.column_config.NumberColumn, format="localized")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "MHA bytes/token": bytes_column(help="One KV head per query head."),
        "as built bytes/token": bytes_column(help="2 × layers × KV heads × head size × 2 bytes."),
        "MQA bytes/token": bytes_column(help="A single KV head.")})
    st.caption("Sources: " + "; ".join(f"{s.name}: {s.source}" for s in PUBLISHED) + ".")


def pooling_section(text: str, labels: list[str]) -> None:
    card = lm().card
    st.subheader("4 · MQA-ify it: pool the three KV heads into one", anchor=False)
    st.markdown("The GQA paper turns a checkpoint into fewer KV heads by **averaging** the key and value "
                "projections of the heads in a group. Here the three KV heads are averaged into one, so all nine "
                "query heads read the same keys and values, and the model is asked to predict your text again, "
                "with no retraining.")
    chosen = st.slider("Layers pooled to one KV head", 1, card.layers, (1, card.layers), key="pooled",
                       bind="query-params", help="Pool every layer (multi-query attention throughout), or only a "
                                                 "range, to see which layers tolerate it.")
    first, last = sorted(chosen)   # a link may give the two ends in either order
    cost = pooling_cost(text, first - 1, last - 1)
    where = "every layer" if (first, last) == (1, card.layers) else (
        f"layer {first}" if first == last else f"layers {first}-{last}")
    st.caption(f"Pooled to one KV head: {where}.")
    a, b, c = metric_row(3, width=240)
    described_metric(a, "Perplexity, 3 KV heads", f"{cost.before_ppl:,.1f}", "the model as built")
    b.metric("Perplexity, 1 KV head", f"{cost.after_ppl:,.1f}",
             ratio_delta(cost.after_ppl, cost.before_ppl),
             delta_color="inverse", help="exp(mean negative log-likelihood of each next token of your text).")
    c.metric("Top-1, pooled", f"{cost.after_top1:.0%}",
             f"{100 * (cost.after_top1 - cost.before_top1):+.0f} points (from {cost.before_top1:.0%})",
             help="How often the model's most likely next token is the real one.")
    show_chart(figure(token_surprise, labels[1:], cost.before_bits, cost.after_bits, "3 KV heads",
                      f"1 KV head in {where}", title="Surprise at each token of your text, before and after pooling"),
               partial(pd.DataFrame, {"position": range(2, len(labels) + 1), "token": labels[1:],
                                      "bits_3_kv_heads": cost.before_bits, "bits_pooled": cost.after_bits}),
               name="gqa-pooling-per-token", key="surprise")
    st.caption("A model trained with three KV heads has learned three different sets of keys and values; their "
               "average is something no head was trained to read, and the error compounds through the layers. "
               "That is why Ainslie et al. continue pretraining after pooling (uptraining, about 5% of the "
               "original compute): pooling alone, as here, shows the damage before that repair. Pool a single layer "
               "to see that most layers tolerate it far better than the first few.")


with concept_page("gqa"):
    card = lm().card
    groups = query_groups(card.heads, card.kv_heads)
    layout_section(groups)
    st.divider()
    text = prompt_input("text", DEFAULT_TEXT, "Your text", max_tokens=MAX_TOKENS, height=90,
                        help=f"Used for the attention maps, the cache measurement and the perplexity. Up to "
                             f"{MAX_TOKENS} tokens; longer text is cut with a note.")
    stop_if_empty(text, "Type a sentence or two above (a paragraph of 30 to 60 tokens works well) to see the "
                        "heads attend and to measure what pooling them costs.")
    labels = token_labels(text)
    if len(labels) < 2:
        st.info("Add a few more words: attention maps and perplexity need at least two tokens.",
                icon=":material/edit:")
        st.stop()
    siblings_section(text, groups, labels)
    st.divider()
    memory_section(text, groups)
    st.divider()
    pooling_section(text, labels)
