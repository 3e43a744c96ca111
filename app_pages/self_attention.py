import numpy as np
import pandas as pd
import streamlit as st

from charts.attention import attention_heatmap, attention_lines, score_bars, vector_rows, weight_bars, weighted_sum
from ui import concept_page, prompt_input
from ui.attention import MAX_TOKENS, captured, token_labels, worked_step
from ui.charts import figure, show_chart
from ui.text import escape_markdown
from ui.inputs import layer_and_head, ranged_slider, stop_if_empty

DEFAULT_TEXT = "The animal didn't cross the street because it was too tired"
# Shown 1-based. On the default sentence this head sends most of "it"'s attention to "animal".
DEFAULT_LAYER, DEFAULT_HEAD = 14, 9
LINE_MODES = ["selected query", "all queries"]


def default_query(tokens: list[str]) -> int:
    """1-based: the first "it" if the text has one (the classic coreference question), else the last token."""
    for i, t in enumerate(tokens):
        if t.strip().lower() == "it":
            return i + 1
    return len(tokens)


def latex_number(x: float) -> str:
    """4 significant digits, with large or tiny numbers as a power of ten."""
    mantissa, _, exponent = f"{x:.4g}".partition("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}" if exponent else mantissa


def vectors_table(names: list[str], vectors: np.ndarray, **columns) -> pd.DataFrame:
    """One row per vector, one column per dimension of the head (1-based, as on the charts)."""
    table = pd.DataFrame({"vector": names, **columns})
    dims = pd.DataFrame(vectors, columns=[f"d{k + 1}" for k in range(vectors.shape[1])])
    return pd.concat([table, dims], axis=1)


def step_row(formula_md: str, latex: list[str], note: str, fig, data: pd.DataFrame, key: str) -> None:
    left, right = st.columns([2, 3], gap="medium")
    with left:
        st.markdown(formula_md)
        for line in latex:
            st.latex(line)
        st.caption(note)
    with right:
        show_chart(fig, data, key, key)


with concept_page("self-attention"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help=f"Up to {MAX_TOKENS} tokens, so one head's map stays readable; longer text is cut "
                             "with a note.")
    pick_layer, pick_head, pick_query = st.columns(3)
    layer, head = layer_and_head(pick_layer, pick_head, DEFAULT_LAYER, DEFAULT_HEAD)

    stop_if_empty(text, "Type a sentence above, for example *The animal didn't cross the street because it was too "
                        "tired*, to see where each token looks.")

    with st.spinner("Running SmolLM2 over your text and keeping every attention map..."):
        cap = captured(text)
    labels = token_labels(cap)
    length = cap.length
    with pick_query:
        if length > 1:
            query = ranged_slider("Query token (position)", 1, length, default_query(cap.tokens), key="query",
                                  help="The token whose row is worked out step by step below. It starts on the "
                                       "first “it” if your text has one, otherwise on the last token.")
        else:
            query = 1
        st.caption(f"Query {query} of {length}: “{escape_markdown(labels[query - 1])}”")
    L, H, i = layer - 1, head - 1, query - 1
    weights = cap.attentions[L, H]
    row_sums = weights.sum(-1)

    st.subheader(f"Layer {layer}, head {head}: who attends to whom", anchor=False)
    if length <= 24:
        map_col, lines_col = st.columns([3, 2], gap="medium")
    else:  # a long text's map needs the full width to keep its token labels readable
        map_col = st.container()
        lines_col = st.columns([1, 3, 1])[1]
    with map_col:
        pairs = np.tril_indices(length)
        weight_table = pd.DataFrame({"layer": layer, "head": head, "query_position": pairs[0] + 1,
                                     "query_token": [cap.tokens[q] for q in pairs[0]], "key_position": pairs[1] + 1,
                                     "key_token": [cap.tokens[k] for k in pairs[1]], "weight": weights[pairs]})
        show_chart(figure(attention_heatmap, weights, labels, query=i,
                                     title="Rows: queries · columns: keys · grey: masked (later tokens)"),
                   weight_table, name=f"attention-layer{layer}-head{head}", key="map")
        st.caption(f"Every row is a softmax, so it sums to 1: the {length} row sums here lie between "
                   f"{row_sums.min():.6f} and {row_sums.max():.6f}. The outlined row is the query worked out below.")
    with lines_col:
        mode = st.segmented_control("Lines for", LINE_MODES, default=LINE_MODES[0], key="lines",
                                    bind="query-params", help="One query's lines, or every query's (weights "
                                    "under 2% left out).") or LINE_MODES[0]
        one = mode == LINE_MODES[0]
        show_chart(figure(attention_lines, weights, labels, query=i if one else None,
                                   title="Bolder, wider line = more weight"),
                   weight_table if not one else weight_table[weight_table.query_position == query],
                   f"attention-lines-layer{layer}-head{head}", key="lines_chart")

    step = worked_step(text, L, H, i)
    top = int(np.argmax(step.weights))
    st.subheader(f"Step by step: query {query} “{escape_markdown(labels[i])}” in layer {layer}, head {head}", anchor=False)
    st.markdown(f"Every number below comes from the model's own vectors: the residual stream entering layer "
                f"{layer} at each position, normalised by the layer's RMSNorm, projected by its $W_Q$, $W_K$, "
                f"$W_V$ and rotated by RoPE. Head {head} reads key/value head {step.kv_head + 1}, which it shares "
                f"with two other query heads.")

    row_table = pd.DataFrame({
        "key position": np.arange(1, length + 1), "token": labels,
        "raw score q·k": step.raw_scores, f"scaled (÷{step.scale:g})": step.scaled_scores,
        "masked": step.masked_scores, "weight (by hand)": step.weights, "weight (model)": step.model_weights,
        "|difference|": np.abs(step.weights - step.model_weights)})
    visible_keys = [f"k{j + 1} {labels[j]}" for j in range(i + 1)]
    q_and_keys = np.vstack([step.q[None], step.keys[:i + 1]])
    step_row("**1. Query and keys.** One 64-number query for this token, one key per visible token.",
             [r"q_i = \mathrm{RoPE}_i\!\left(W_Q\,\mathrm{RMSNorm}(x_i)\right)",
              r"k_j = \mathrm{RoPE}_j\!\left(W_K\,\mathrm{RMSNorm}(x_j)\right)"],
             f"Red: positive, blue: negative. |q| = {np.linalg.norm(step.q):.2f}; the largest key norm is "
             f"{np.linalg.norm(step.keys[:i + 1], axis=1).max():.2f}.",
             figure(vector_rows, q_and_keys, [f"q{query} {labels[i]}", *visible_keys],
                         height=min(640, max(170, 16 * (i + 2) + 110))),
             vectors_table([f"q{query} {labels[i]}", *visible_keys], q_and_keys), "step-q-k")

    d = step.q * step.keys[top]
    step_row("**2. Raw scores.** The dot product of the query with every key.",
             [r"s_{ij} = q_i \cdot k_j = \sum_{d=1}^{64} q_{i,d}\,k_{j,d}",
              rf"s_{{{query},{top + 1}}} = {d[0]:.2f} {'+' if d[1] >= 0 else '-'} {abs(d[1]):.2f} + \dots "
              rf"= {step.raw_scores[top]:.2f}"],
             f"Filled in for key {top + 1} (“{escape_markdown(labels[top])}”), the one that ends up with the most weight. "
             "Grey bars: later tokens; the product is computed, but the mask removes it in step 3.",
             figure(score_bars, step.raw_scores, labels, i, "q · k"), row_table, "step-raw")

    step_row(f"**3. Scale by 1/√{step.head_dim} = 1/{step.scale:g}, then mask.** Later tokens get −∞.",
             [r"\tilde s_{ij} = \frac{s_{ij}}{\sqrt{d_k}} + M_{ij},\quad M_{ij} = "
              r"\begin{cases}0 & j \le i\\ -\infty & j > i\end{cases}",
              rf"\tilde s_{{{query},{top + 1}}} = {step.raw_scores[top]:.2f} / {step.scale:g} = "
              rf"{step.scaled_scores[top]:.3f}"],
             f"Spread of the raw scores: {np.std(step.raw_scores[:i + 1]):.2f}; after scaling: "
             f"{np.std(step.scaled_scores[:i + 1]):.2f}.",
             figure(score_bars, step.masked_scores, labels, i, "scaled score", masked=True), row_table, "step-masked")

    # e^s is shown as is while it fits a float comfortably; otherwise every exponent is shifted by the maximum
    shift = 0.0 if step.scaled_scores[:i + 1].max() < 80 else float(step.scaled_scores[:i + 1].max())
    exps = np.exp(step.masked_scores[:i + 1] - shift)
    minus = f" - {shift:.3f}" if shift else ""
    exponent = f"{step.scaled_scores[top]:.3f}{minus}"
    strong = int((step.weights > 0.05).sum())
    step_row("**4. Softmax.** Exponentiate and divide by the sum: weights that are positive and sum to 1.",
             [r"\alpha_{ij} = \frac{e^{\tilde s_{ij}}}{\sum_{j' \le i} e^{\tilde s_{ij'}}}",
              rf"\alpha_{{{query},{top + 1}}} = \frac{{e^{{{exponent}}}}}{{\sum_{{j'}} "
              rf"e^{{\tilde s_{{{query} j'}}{minus}}}}} = "
              rf"\frac{{{latex_number(exps[top])}}}{{{latex_number(exps.sum())}}}"
              rf" = {step.weights[top]:.4f}"],
             f"The weights sum to {step.weights.sum():.6f}; {strong} of the {i + 1} visible keys get more than 5%. "
             "Orange diamonds: the attention row the model itself returned.",
             figure(weight_bars, step.weights, step.model_weights, labels, i), row_table, "step-softmax")

    step_row("**5. Mix the values.** The output is the weighted average of the value vectors.",
             [r"o_i = \sum_{j \le i} \alpha_{ij}\, v_j",
              r"v_j = W_V\,\mathrm{RMSNorm}(x_j)"],
             f"|o| = {np.linalg.norm(step.output):.2f}. The 9 heads' outputs are concatenated (576 numbers), "
             "multiplied by W_O and added to the residual stream.",
             figure(weighted_sum, step.values[:i + 1], step.weights[:i + 1], step.output,
                          [labels[j] for j in range(i + 1)],
                          title="Value rows v_j (weight × token) and their weighted sum"),
             vectors_table([*(f"v{j + 1} {labels[j]}" for j in range(i + 1)), f"o{query} output"],
                           np.vstack([step.values[:i + 1], step.output[None]]), weight=[*step.weights[:i + 1], np.nan]),
             "step-values")

    diff = step.max_abs_difference
    if diff < 1e-4:
        st.success(f"Hand-computed row equals the model's own attention row: max |difference| = {diff:.0e} ✓",
                   icon=":material/check_circle:")
    else:
        st.warning(f"The hand-computed row differs from the model's own row by up to {diff:.2e}.",
                   icon=":material/warning:")
    scale = float(np.abs(cap.hidden_states[min(L + 1, cap.layers)][i]).max())
    st.caption(f"A second check: pushing all 9 hand-made head outputs at this position through $W_O$, the residual "
               f"connection and the MLP rebuilds the model's next hidden state to within {step.layer_output_check:.1e} "
               f"(its entries reach ±{scale:.1f}).")
    with st.expander("All the numbers of this row"):
        st.dataframe(row_table, hide_index=True, width="stretch")
    st.caption("Attention weights show where a head reads from, not why the model predicts what it does. "
               "A 135M model's heads are simpler than a large model's; try other layers and heads to see "
               "previous-token heads, heads that park weight on the first token, and the odd head that links "
               "a pronoun to its noun.")
