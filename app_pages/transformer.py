from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.architecture import block_diagram, glimpse, parameter_bars
from charts.distributions import next_token_bars
from charts.interventions import loss_comparison, prediction_comparison
from engine.model.architecture import STAGE_KEYS, STAGES, describe, gpt2_note, stage_view
from engine.inside.norms import rms
from engine.tokens.offsets import visible
from ui import concept_page, lm, prompt_input
from ui.architecture import MAX_TOKENS, comparison, own_logits_gap, parameters, stages, token_labels, token_text
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, stop_if_empty
from ui.text import described_metric, escape_markdown, large_number, ratio_delta

DEFAULT_TEXT = "The Eiffel Tower is in Paris, and the Colosseum is in"
BY_KEY = {s.key: s for s in STAGES}


def pick_stage() -> None:
    """A click on a box of the diagram selects that stage (the select box, and so the URL, follow)."""
    state = st.session_state.get("diagram")
    points = state.selection.points if state is not None else []
    if points and "customdata" in points[0]:
        st.session_state["stage"] = STAGE_KEYS[int(points[0]["customdata"][0])]


PRESETS = {"block 1": [1], "block 2": [2], "block 15": [15], "blocks 11-20": list(range(11, 21)),
           "the last 6": list(range(25, 31)), "none": []}


def use_preset(blocks: list[int]) -> None:
    st.session_state["skip"] = blocks
    st.session_state["keep"] = lm().card.layers


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(f"{n:,}" for n in shape) + "]"


def params_note(key: str, split) -> str:
    stage = BY_KEY[key]
    if key == "lm_head":
        return "0 new (tied)" if split.tied else f"{split.per_stage[key]:,} params"
    count = split.per_layer[key] if stage.in_block else split.per_stage[key]
    return f"{count:,} params" + (" per block" if stage.in_block and count else "")


with concept_page("transformer"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80)
    stop_if_empty(text, "Type a sentence above to send it through SmolLM2, one stage at a time.")
    card, split = lm().card, parameters()
    labels = token_labels(text)
    length = len(labels)

    st.subheader("1 · One real pass, stage by stage", anchor=False)
    c1, c2, c3 = st.columns(3)
    layer = c1.slider(f"Block (1-{card.layers})", 1, card.layers, 6, key="block", bind="query-params",
                      help="Which of the identical blocks to open. Every block has the same stages and shapes, "
                           "with its own weights.")
    position = ranged_slider("Token (position)", 1, length, length, "token", container=c2,
                             help="The token followed through the stages.") if length > 1 else 1
    key = c3.selectbox("Stage", STAGE_KEYS, index=STAGE_KEYS.index("attention"), key="stage", bind="query-params",
                       format_func=lambda k: BY_KEY[k].title, help="Or click a box in the diagram.")
    L, p = layer - 1, position - 1
    with st.spinner(f"Running SmolLM2 and recording every stage of block {layer}..."):
        tp = stages(text, L)
    left, right = st.columns([2, 3], gap="medium")
    with left:
        st.plotly_chart(figure(block_diagram, [s.title for s in STAGES], [params_note(s.key, split) for s in STAGES],
                               [s.kind for s in STAGES], [s.in_block for s in STAGES], STAGE_KEYS.index(key),
                               card.layers), key="diagram", on_select=pick_stage, selection_mode="points",
                        width="stretch", config={"displaylogo": False, "scrollZoom": False})
        stage_table = partial(pd.DataFrame, {
            "stage": [s.title for s in STAGES], "repeated_in_every_block": [s.in_block for s in STAGES],
            "parameters_per_block_or_once": [split.per_layer[s.key] if s.in_block else split.per_stage[s.key]
                                             for s in STAGES], "parameters_total": [split.per_stage[s.key] for s in STAGES]})
        st.download_button("Data (CSV)", lambda: stage_table().to_csv(index=False).encode("utf-8"),
                           file_name="transformer-stages.csv", mime="text/csv", key="diagram-csv",
                           icon=":material/download:", help="The stages and their parameter counts, as drawn.")
    stage = BY_KEY[key]
    view = stage_view(lm(), tp, key, p, labels)
    with right:
        where = f"block {layer} of {card.layers}" if stage.in_block else "once, for the whole model"
        st.markdown(f"#### {stage.title} · {where}")
        st.markdown(describe(stage, lm()))
        count = params_note(key, split).split(" ")[0]
        weights = "no weights of its own" if count == "0" else \
            f"**{count}** parameters" + (f" in each of the {card.layers} blocks" if stage.in_block else "")
        st.markdown(" · ".join(f"`{n}` {shape_text(sh)}" for n, sh in view.shapes) + f"  \n{weights} "
                    f"(T = {length} tokens; shapes and counts read from the pass and the model)")
        note = gpt2_note(key, lm())
        if note:
            st.info(f"**What GPT-2 did instead.** {note}", icon=":material/history:")
        if view.matrix is not None:
            probs = key == "attention"
            show_chart(figure(glimpse, view.matrix, view.rows, view.columns,
                              highlight_row=p if len(view.rows) == length and not probs else None,
                              colour_title="weight" if probs else "value", sequential=probs,
                              title=f"Real values at token {position} “{labels[p]}”" if len(view.rows) != length
                              else f"Real values, first {view.matrix.shape[1]} channels (token {position} outlined)"),
                       partial(pd.DataFrame, view.matrix, index=list(view.rows), columns=list(view.columns)),
                       name=f"stage-{key}-block-{layer}", key="glimpse")
        else:
            top = [visible(token_text(i)) for i in view.top_ids]
            show_chart(figure(next_token_bars, top, view.top_probs, view.top_ids,
                              [float(view.token_output[i]) for i in view.top_ids],
                              title=f"Next token after token {position}: the 10 most likely of {card.vocab_size:,}"),
                       partial(pd.DataFrame, {"token": top, "token_id": view.top_ids, "probability": view.top_probs}),
                       name="lm-head-top", key="glimpse")

    rows = [stage_view(lm(), tp, s.key, p, labels) for s in STAGES]
    st.markdown(f"**Token {position} “{escape_markdown(labels[p])}” on its way through block {layer}:** what each "
                "stage hands to the next for this token.")
    st.dataframe(pd.DataFrame({
        "stage": [s.title for s in STAGES], "where": ["block " + str(layer) if s.in_block else "once" for s in STAGES],
        "tensor shape": [" · ".join(f"{n} {shape_text(sh)}" for n, sh in v.shapes) for v in rows],
        "this token's output": [f"{v.token_output.size:,} numbers" for v in rows],
        "its RMS": [float(rms(v.token_output)) for v in rows],
        "first values": [", ".join(f"{x:+.3f}" for x in v.token_output[:4]) + " …" for v in rows]}),
        hide_index=True, width="stretch", height=36 * (len(rows) + 1) + 2)
    gap = own_logits_gap(text, L)
    own = int(np.argmax(tp.logits[-1]))
    st.success(f"The traced pass predicts **{escape_markdown(visible(token_text(own)))}** after your text, and its "
               f"logits equal those of the model's own forward to within {gap:.1e} over all {length} × "
               f"{card.vocab_size:,} of them ✓" if gap < 1e-3 else f"The traced logits differ from the model's by "
               f"{gap:.1e}.", icon=":material/check_circle:")

    st.subheader(f"2 · Where the {split.model_total:,} parameters are", anchor=False)
    groups = {"Token embedding (also the LM head)": split.per_stage["embedding"],
              f"Attention, {card.layers} blocks (Q, K, V, O)": split.per_stage["qkv"] + split.per_stage["o_proj"],
              f"SwiGLU FFN, {card.layers} blocks": split.per_stage["ffn"],
              f"RMSNorm gains ({2 * card.layers + 1} norms)": split.per_stage["attn_norm"] + split.per_stage["ffn_norm"]
              + split.per_stage["final_norm"]}
    if split.adds_up:
        st.success(f"Every parameter of the model belongs to one stage, and the stages add up to {split.total:,}: "
                   "the model's own count (the sum over its parameter list) ✓", icon=":material/check_circle:")
    else:
        st.warning(f"The stages add up to {split.total:,}, the model counts {split.model_total:,}.")
    a, b, c = st.columns(3)
    described_metric(a, "Attention per block", f"{split.per_layer['qkv'] + split.per_layer['o_proj']:,}",
                     f"Q, K, V {split.per_layer['qkv']:,} · O {split.per_layer['o_proj']:,}")
    described_metric(b, "FFN per block", f"{split.per_layer['ffn']:,}", "gate, up and down")
    described_metric(c, "LM head", "tied" if split.tied else "separate",
                     "the embedding, counted once" if split.tied else "its own matrix")
    show_chart(figure(parameter_bars, list(groups), list(groups.values()), title="Parameters by part of the model"),
               partial(pd.DataFrame, {"stage": [s.title for s in STAGES],
                                      "per_block": [split.per_layer.get(s.key, 0) if s.in_block else None for s in STAGES],
                                      "total": [split.per_stage[s.key] for s in STAGES]}),
               name="parameter-split", key="params")

    st.subheader("3 · Experiment: take blocks out", anchor=False)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("Try:", width="content")
        for label, blocks in PRESETS.items():
            st.button(label, key=f"preset-{label}", on_click=use_preset, args=(blocks,), width="content")
    c1, c2 = st.columns(2)
    skipped = c1.multiselect("Skip blocks", list(range(1, card.layers + 1)), default=[2], key="skip",
                             bind="query-params", help="A skipped block adds nothing to the stream (its attention "
                             "and FFN output matrices are zeroed for this pass): the stream passes through unchanged.")
    keep = c2.slider("Run only the first N blocks", 1, card.layers, card.layers, key="keep", bind="query-params",
                     help="Then the final norm and the LM head, as if the model were N blocks deep.")
    skip = tuple(sorted(b - 1 for b in skipped or [] if 1 <= b <= keep))
    if length < 2:
        st.info("Add a word or two: the measurement scores every next token of your text.", icon=":material/edit:")
        st.stop()
    with st.spinner("Running the changed model over your text..."):
        result = comparison(text, skip, keep if keep < card.layers else None)
    change = ", ".join(f"{b + 1}" for b in skip)
    name = ((f"without block{'s' if len(skip) > 1 else ''} {change}" if skip else "") +
            (" and " if skip and keep < card.layers else "") + (f"{keep} blocks only" if keep < card.layers else "")
            ) or "unchanged"
    a, b, c = st.columns(3)
    described_metric(a, "Perplexity, intact", large_number(result.intact_perplexity),
                     f"top-1 right {result.intact_top1:.0%}")
    b.metric("Perplexity, changed", large_number(result.changed_perplexity),
             ratio_delta(result.changed_perplexity, result.intact_perplexity), delta_color="inverse")
    described_metric(c, "Next token now", visible(token_text(result.changed_top_id)),
                     f"was {visible(token_text(result.ids[0]))}")
    texts = [visible(token_text(i)) for i in result.ids]
    show_chart(figure(prediction_comparison, texts, result.intact, result.changed, name,
                      title="The next token after your text, intact and changed"),
               partial(pd.DataFrame, {"token": texts, "token_id": result.ids, "intact": result.intact,
                                      "changed": result.changed}), name="skip-prediction", key="skip_prediction")
    show_chart(figure(loss_comparison, labels[1:], result.intact_nll, result.changed_nll, name,
                      title="Loss on each next token of your text"),
               partial(pd.DataFrame, {"position": range(2, length + 1), "token": labels[1:],
                                      "loss_intact": result.intact_nll, "loss_changed": result.changed_nll}),
               name="skip-losses", key="skip_losses")
    st.caption("Because every block only adds to the stream, a block can be removed and the rest still runs: the "
               "damage measures how much the later blocks rely on what it wrote. Try block 1 or 2, then a middle "
               "one, then several. These are measurements of this 135M model on your text; other models and texts "
               "spread the work over their blocks differently.")
