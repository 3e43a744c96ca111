from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.moe import expert_load, perplexity_over_k, routing_map
from engine.inside.moe import EXPERTS, PUBLISHED_MOE, active_parameters, ffn_parameters
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.moe import MAX_TOKENS, moe_perplexity, routing, sweep_job, token_labels
from ui.text import described_metric, ratio_delta

DEFAULT_TEXT = ("The printing press changed Europe in a single lifetime. Around 1450 Johannes Gutenberg combined "
                "movable metal type, an oil-based ink and a wooden screw press into a system that could print "
                "hundreds of identical pages a day.")
GROUPING_LABELS = {"clustered": "clustered by weights", "index": "in index order"}
DEFAULT_K = 4


def controls(card):
    c1, c2 = st.columns([3, 2])
    chosen = c1.slider("Layers made sparse", 1, card.layers, (1, card.layers), key="layers", bind="query-params",
                       help="Their FFNs become mixtures of experts; the other layers stay dense. One layer alone "
                            "costs little; all of them a lot.")
    first, last = sorted(chosen)   # a link may give the two ends in either order
    k = c2.slider(f"Experts kept per token (k of {EXPERTS})", 1, EXPERTS, DEFAULT_K, key="k", bind="query-params",
                  help=f"k = {EXPERTS} keeps every neuron: the dense model. Mixtral keeps 2 of 8.")
    grouping = st.segmented_control(
        "How the 1,536 neurons are split into experts", list(GROUPING_LABELS), default="clustered", key="grouping",
        bind="query-params", format_func=lambda g: GROUPING_LABELS.get(g, g),
        help="Clustered: neurons whose gate weights point the same way (so respond to similar inputs) share an "
             "expert (balanced k-means). Index order: neurons 1-192, 193-384, ... (an arbitrary split).")
    return first, last, k, grouping if grouping in GROUPING_LABELS else "clustered"


def headline(text: str, first: int, last: int, k: int, grouping: str) -> None:
    card = lm().card
    dense, sparse, dense_top1, sparse_top1 = moe_perplexity(text, first - 1, last - 1, k, grouping)
    layers = last - first + 1
    active = active_parameters(card.parameters, card.d_model, card.ffn_dim, layers, k)
    where = f"layer {first}" if layers == 1 else f"layers {first}-{last}"
    a, b, c, d = metric_row(4, width=220)
    described_metric(a, "Perplexity, dense", f"{dense:,.1f}", "all 8 experts (as built)")
    b.metric(f"Perplexity, {k} of {EXPERTS} experts", f"{sparse:,.1f}", ratio_delta(sparse, dense),
             delta_color="inverse", help=f"Your text scored with {where} sparse: exp(mean negative log-likelihood "
                                         "of each next token).")
    c.metric("Top-1 accuracy", f"{sparse_top1:.0%}", f"{100 * (sparse_top1 - dense_top1):+.0f} points "
             f"(dense {dense_top1:.0%})", help="How often the most likely next token is the real one.")
    described_metric(d, "Active parameters per token", f"{active / 1e6:,.1f} M",
                     f"of {card.parameters / 1e6:,.1f} M ({active / card.parameters:.0%})",
                     f"Each sparse layer uses {k}/{EXPERTS} of its {ffn_parameters(card.d_model, card.ffn_dim):,} FFN "
                     "weights per token. Here that saves nothing: the router below runs every expert to choose.")


def routing_section(text: str, first: int, last: int, k: int, grouping: str, labels: list[str]) -> None:
    st.subheader("2 · What the router chose, token by token", anchor=False)
    if first == last:
        layer = first
        st.caption(f"Layer {layer} is the only sparse layer.")
    else:
        layer = ranged_slider("Show the routing of layer", first, last, min(max(10, first), last), key="layer",
                              help="Any layer you made sparse; its input comes from the sparse layers before it.")
    r = routing(text, first - 1, last - 1, k, layer - 1, grouping)
    show_chart(figure(routing_map, r.shares, r.chosen, labels,
                      title=f"Layer {layer}: each expert's share of the FFN output; rings = kept (top {k})"),
               partial(pd.DataFrame, [{"layer": layer, "position": t + 1, "token": labels[t], "expert": e + 1,
                                       "output_norm": float(r.output_norms[t, e]),
                                       "share": float(r.shares[t, e]), "kept": bool(r.chosen[t, e])}
                                      for t in range(len(labels)) for e in range(EXPERTS)]),
               name=f"moe-layer{layer}-routing", key="routing")
    left, right = st.columns([3, 2], gap="medium")
    with left:
        show_chart(figure(expert_load, r.load, k, title=f"Layer {layer}: load on each expert"),
                   partial(pd.DataFrame, {"layer": layer, "expert": range(1, EXPERTS + 1),
                                          "share_of_tokens": r.load, "tokens": r.chosen.sum(0)}),
                   name=f"moe-layer{layer}-load", key="load")
    with right:
        busiest = int(np.argmax(r.load))
        described_metric(st, "Output kept per token", f"{r.kept_share.mean():.0%}",
                         "of the summed expert output norms",
                         f"Mean over your {len(labels)} tokens of (norms of the kept experts' outputs) ÷ (norms of "
                         "all 8 experts' outputs).")
        described_metric(st, f"{EXPERTS} experts summed − dense FFN", f"{r.max_sum_error:.1e}",
                         f"max |difference|; outputs reach {r.dense_scale:,.0f}",
                         "Each expert's output is its 192 columns of down_proj times its 192 products. Summed over "
                         "the 8 experts they give the dense FFN output; the tiny gap is float32 rounding (the sums "
                         "run in another order). With k = 8 the sparse pass is the dense pass bit for bit.")
        st.caption(f"Expert {busiest + 1} takes {r.load[busiest]:.0%} of the tokens where a balanced router would "
                   f"give each {k / EXPERTS:.0%}. Trained MoEs add a load-balancing loss so that no expert idles "
                   "and none is swamped; these experts were never trained to share the work.")


def sweep_section(text: str, first: int, last: int, k: int, grouping: str) -> None:
    st.subheader(f"3 · Quality against sparsity: k from {EXPERTS} down to 1", anchor=False)
    result = follow(sweep_job(text, first - 1, last - 1, grouping), what="sweep over k")
    if result is None:
        return
    show_chart(figure(perplexity_over_k, result.ks, result.by_router, result.dense, k,
                      title="Perplexity of your text with the chosen layers sparse, for every k"),
               partial(pd.DataFrame, {"k": result.ks, "dense": result.dense,
                                      **{f"perplexity_{router}": v for router, v in result.by_router.items()}}),
               name="moe-perplexity-vs-k", key="sweep")
    largest, random = result.by_router["largest"], result.by_router["random"]
    note = "" if result.complete else " The sweep stopped early; missing points were not measured."
    st.caption(f"At k = 1 the router's choice gives {largest[0]:,.0f}, random experts {random[0]:,.0f}, against "
               f"{result.dense:,.1f} dense. Every expert dropped costs quality, because this model spreads its FFN "
               "work over all its neurons; choosing well (the largest outputs) costs far less than choosing at "
               f"random. A trained MoE learns to work with k experts from the start.{note}")


def parameters_section(k: int, first: int, last: int) -> None:
    card = lm().card
    st.subheader("4 · Total against active parameters", anchor=False)
    layers = last - first + 1
    rows = [{"model": s.name, "experts": s.experts, "kept per token": s.top_k,
             "total (computed)": f"{s.total_parameters / 1e9:,.1f}B", "active (computed)":
             f"{s.active_parameters / 1e9:,.1f}B", "published": f"{s.published_total} total, "
             f"{s.published_active} active"} for s in PUBLISHED_MOE]
    active = active_parameters(card.parameters, card.d_model, card.ffn_dim, layers, k)
    rows.append({"model": f"SmolLM2, {layers} sparse layer{'s' if layers > 1 else ''} (this page)",
                 "experts": EXPERTS, "kept per token": k, "total (computed)": f"{card.parameters / 1e6:,.1f}M",
                 "active (computed)": f"{active / 1e6:,.1f}M", "published": "total counted in the live weights"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption("Total: every weight stored. Active: what one token's pass multiplies (shared attention, embeddings, "
               "the router and k experts per layer). Computed from each config with the formula in *How it works*; "
               "sources: " + "; ".join(f"{s.name}: {s.source}" for s in PUBLISHED_MOE) + ".")


with concept_page("moe"):
    card = lm().card
    text = prompt_input("text", DEFAULT_TEXT, "Your text", max_tokens=MAX_TOKENS, height=90,
                        help=f"The text the sparse model must predict. Up to {MAX_TOKENS} tokens; longer text is cut "
                             "with a note.")
    stop_if_empty(text, "Type a sentence or two above (30 to 60 tokens work well): the page measures how well the "
                        "sparse model still predicts it.")
    labels = token_labels(text)
    if len(labels) < 2:
        st.info("Add a few more words: perplexity needs at least two tokens.", icon=":material/edit:")
        st.stop()
    st.subheader("1 · Make SmolLM2 a mixture of experts", anchor=False)
    st.markdown(f"SmolLM2 is **dense**: every token runs all {card.ffn_dim:,} neurons of every feed-forward layer. "
                f"Here each chosen layer's neurons are split into **{EXPERTS} experts of "
                f"{card.ffn_dim // EXPERTS}**, and each token keeps only **k** of them: the others' outputs are "
                "dropped. The **router** keeps the experts whose outputs are largest (the norm of what each would "
                "add to the residual stream). This is a simulation over a dense model, not a trained MoE: the "
                "experts never learned to work alone, and the router cheats by running every expert to choose, "
                "so nothing is saved here. It shows what sparsity costs a model that was not built for it.")
    first, last, k, grouping = controls(card)
    headline(text, first, last, k, grouping)
    st.divider()
    routing_section(text, first, last, k, grouping, labels)
    st.divider()
    sweep_section(text, first, last, k, grouping)
    st.divider()
    parameters_section(k, first, last)
