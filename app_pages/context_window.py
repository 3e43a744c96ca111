import time
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.labels import plain
from charts.long_context import (needle_attention, needle_heatmap, perplexity_vs_context, prefill_and_cache,
                                 window_sizes)
from engine.serving.kv_cache import (DTYPE_BYTES, GB, PUBLISHED, kv_bytes_per_token, kv_cache_bytes, live_element_size,
                             live_spec)
from engine.tokens.offsets import decode, decode_each, token_ids, visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.inputs import word_input
from ui.long_context import (COST_BUDGET_S, DEFAULT_LONGEST, DEFAULT_TEXT, LENGTH_CAP, NEEDLE_DEPTHS, NEEDLE_LENGTHS,
                             context_cost_job, context_experiment_job, needle_job)
from ui.text import human_bytes, short_tokens, wrapping_metric

MAX_TOKENS = 512
LENGTHS = [256, 512, 1024, 2048, 4096, 8192, 16384]
AGAIN_FLAG = "_context_measure_again"
FP16_BYTES = DTYPE_BYTES["fp16"]
DEFAULT_CODE = "4719"


def window_section() -> None:
    st.subheader("1 · SmolLM2's window, read from its config", anchor=False)
    model = lm()
    config, spec, element = model.model.config, live_spec(model), live_element_size(model)
    window = config.max_position_embeddings
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    wrapping_metric(row, "Context window", f"{window:,} tokens", "max_position_embeddings",
                     "Read from the live model's config: the longest sequence it was trained for.")
    wrapping_metric(row, "Positions", "RoPE", f"rotary, θ = {model.card.rope_theta:,.0f}",
                     "Rotary position embeddings: the attention score depends on the distance between two tokens.")
    wrapping_metric(row, "KV cache per token", f"{kv_bytes_per_token(spec, element):,.0f} B",
                     f"2 × {spec.layers} × {spec.kv_heads} × {spec.head_dim} × {element} bytes",
                     "Keys and values of every layer for one token, at this app's float32.")
    full = kv_cache_bytes(spec, element, window)
    wrapping_metric(row, f"Cache at {window:,} tokens", human_bytes(full),
                     f"{full / (model.card.parameters * element):.0%} of the weights",
                     "One sequence filling the whole window, by the formula; the measurement below checks it.")
    specs = [spec, *PUBLISHED]
    caches = [kv_cache_bytes(s, FP16_BYTES, s.context) / GB for s in specs]
    show_chart(figure(window_sizes, [s.name for s in specs], [s.context for s in specs], caches, spec.name,
                      title="Trained context windows, and the KV cache of one full window (fp16)"),
               partial(pd.DataFrame, {"model": [s.name for s in specs], "context_tokens": [s.context for s in specs],
                                      "kv_cache_gb_fp16": caches, "source": [s.source for s in specs]}),
               name="context-windows", key="windows")
    st.caption("SmolLM2's numbers are read from the live model's config; the others from each model's published "
               "config.json (" + "; ".join(f"{s.name}: {s.source}" for s in PUBLISHED) + "). GB = 10⁹ bytes. "
               "Mistral-7B's config allows 32,768 positions but its attention only looks 4,096 tokens back "
               "(a sliding window), so its cache can stop growing at 4,096.")


def cost_section() -> None:
    st.subheader("2 · What a longer prompt costs, measured", anchor=False)
    model = lm()
    window = model.model.config.max_position_embeddings
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    longest = c1.select_slider("Longest prompt to time (tokens)", LENGTHS, value=DEFAULT_LONGEST, key="longest",
                               bind="query-params", format_func=short_tokens,
                               help=f"The page times 128, 256, ... tokens up to this length; at most "
                                    f"{LENGTH_CAP:,} on this shared server.")
    c2.button("Measure again", key="again", icon=":material/refresh:", width="stretch",
              on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
    longest = longest if longest in LENGTHS else DEFAULT_LONGEST
    if longest > LENGTH_CAP:
        beyond = f", beyond the model's trained {window:,}" if longest > window else ""
        st.info(f"Measured up to {LENGTH_CAP:,} tokens only. A {longest:,}-token prefill{beyond} would hold one of "
                "this server's two cores for minutes while other readers wait. The cache line continues by its "
                "formula, which the measured points match exactly.", icon=":material/straighten:")
    again = bool(st.session_state.pop(AGAIN_FLAG, False))
    costs = follow(context_cost_job(longest, again=again), what="timing")
    if costs is None or not costs.points:
        return
    points, first = costs.points, costs.points[0]
    last = points[-1]
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    wrapping_metric(row, f"Prefill of {last.length:,} tokens", f"{last.prefill_seconds:.2f} s",
                     f"{last.prefill_seconds / first.prefill_seconds:.1f}× the {first.length}-token time",
                     f"The length grew {last.length // first.length}×. One forward pass over the whole prompt.")
    wrapping_metric(row, "Per prompt token", f"{last.prefill_ms_per_token:.2f} ms",
                     f"{first.prefill_ms_per_token:.2f} ms at {first.length}",
                     "Prefill time divided by the length. Flat would mean linear cost; rising means attention's "
                     "quadratic part is showing.")
    wrapping_metric(row, f"Decode at {last.length:,}", f"{last.decode_ms:.0f} ms per token",
                     f"{first.decode_ms:.0f} ms at {first.length}", "Median of 4 decode steps after the prefill: "
                     "one new token attending over the whole cache.")
    exact = all(p.kv_bytes == p.kv_formula_bytes for p in points)
    wrapping_metric(row, f"Cache at {last.length:,}", human_bytes(last.kv_bytes),
                     "= formula ✓" if exact else "≠ formula ✗", "Summed over the real key and value tensors "
                     "after the prefill, compared with 2 × layers × KV heads × head size × bytes × tokens.")
    spec, element = live_spec(model), live_element_size(model)
    formula_lengths = [0, *[p.length for p in points], max(window, longest) * 2]
    show_chart(figure(prefill_and_cache, [p.length for p in points], [p.prefill_seconds for p in points],
                      [p.prefill_ms_per_token for p in points], [p.kv_bytes / 1e6 for p in points], formula_lengths,
                      [kv_cache_bytes(spec, element, n) / 1e6 for n in formula_lengths], window,
                      title="SmolLM2 on this CPU: prefill time and KV cache vs prompt length"),
               partial(pd.DataFrame, {"tokens": [p.length for p in points],
                                      "prefill_seconds": [p.prefill_seconds for p in points],
                                      "prefill_ms_per_token": [p.prefill_ms_per_token for p in points],
                                      "decode_ms_median": [p.decode_ms for p in points],
                                      "kv_bytes_measured": [p.kv_bytes for p in points],
                                      "kv_bytes_formula": [p.kv_formula_bytes for p in points]}),
               name="context-window-costs", key="costs")
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(costs.measured_at))
    stopped = (f" Stopped after {len(points)} of {len(costs.requested)} lengths (a Stop, or the {COST_BUDGET_S} s "
               "budget)." if costs.stopped_early else "")
    if costs.noisy:
        st.warning("The server was busy during this run: decode steps that do the same work took very different "
                   "times. **Measure again** later for cleaner curves.", icon=":material/speed:")
    st.caption(f"Measured at {measured} with filler text (which tokens they are does not change the cost), one "
               f"core, shared with other readers.{stopped} On a 135M model most of a short prefill is the "
               "feed-forward and projection work, which is linear; the rise of the time per token is attention's "
               "share, which grows with the length.")


def experiment_section(text: str) -> None:
    st.subheader("3 · What earlier context is worth, measured on your text", anchor=False)
    model = lm()
    ids = token_ids(model, text)
    scored = st.slider("Tokens scored at the end", 16, 128, 48, 8, key="scored", bind="query-params",
                       help="The last tokens of your text, predicted each time; only the amount of earlier text "
                            "the model sees changes.")
    if len(ids) < scored + 8:
        st.info(f"Your text has {len(ids)} tokens: give it at least {scored + 8} (the scored {scored} and some "
                "before them), or score fewer tokens.", icon=":material/edit:")
        return
    experiment = follow(context_experiment_job(text, scored), what="context experiment")
    if experiment is None:
        return
    curve, shifts = experiment.curve, experiment.shifts
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    wrapping_metric(row, "Perplexity, 1 earlier token", f"{curve.least:.1f}",
                     f"the last {scored} tokens", "exp(mean negative log-likelihood) of the scored tokens when "
                     "the model is given a single token before them.")
    wrapping_metric(row, f"Perplexity, all {curve.contexts[-1]:,} earlier", f"{curve.full:.1f}",
                     f"{curve.least / curve.full:.1f}× lower", "The same tokens with the whole text before them.")
    best = int(np.argmin(curve.perplexities))
    wrapping_metric(row, "Lowest at", f"{curve.contexts[best]:,} tokens", f"perplexity {curve.perplexities[best]:.1f}",
                     "More context usually helps, but not always: a distant passage can also mislead.")
    show_chart(figure(perplexity_vs_context, list(curve.contexts), list(curve.perplexities), scored,
                      title=f"Perplexity of your text's last {scored} tokens vs earlier text given"),
               partial(pd.DataFrame, {"earlier_tokens": curve.contexts, "perplexity": curve.perplexities,
                                      "mean_nll_nats": curve.mean_nll}),
               name="context-window-perplexity", key="curve")
    with st.expander(f"The {scored} scored tokens"):
        st.text(decode(model, ids[-scored:]))
    st.caption("Each point is one live forward pass over the scored tokens and the c tokens before them: the "
               "oldest text is dropped, as a chat window drops old turns when it is full.")

    st.subheader("4 · Past the window: positions are not the limit, distances are", anchor=False)
    st.markdown(f"The perplexity of your whole text ({len(ids)} tokens), read three times: at its usual positions, "
                "and with every position moved far past the trained window.")
    row = st.container(horizontal=True, gap="large")
    for shift, ppl in zip(shifts.shifts, shifts.perplexities):
        wrapping_metric(row, f"Positions from {shift:,}", f"perplexity {ppl:.3f}",
                         "as trained" if shift == 0 else f"{ppl - shifts.perplexities[0]:+.4f} vs from 0",
                         f"Your {len(ids)} tokens read at positions {shift:,} to {shift + len(ids) - 1:,} (RoPE "
                         "rotations only; everything else unchanged).")
    st.markdown(f"Moving your whole text past position {shifts.shifts[1]:,} changes nothing that matters: rotary "
                "embeddings encode the distance between two tokens, and shifting every position keeps every "
                "distance (the small differences are float rounding of large angles). So the "
                f"{lm().model.config.max_position_embeddings:,}-token limit is not a wall in the position "
                "numbers. It is the largest distance the model saw in training. A prompt longer than the window "
                "creates distances it never learned; the arithmetic still runs, but quality is not guaranteed, "
                "which is why serving systems refuse or truncate such prompts, and why longer windows need "
                "fine-tuning with rescaled positions.")


def needle_section() -> None:
    st.subheader("5 · A needle in a haystack", anchor=False)
    st.markdown("One sentence, *The secret code for the blue door is …*, is hidden at five depths in filler text of "
                "up to three lengths; at the end the model is asked for the code. Each cell is one live pass: the "
                "probability it gives the right answer, and where its attention goes at the moment it answers.")
    c1, c2, c3 = st.columns([1, 2, 1], vertical_alignment="bottom")
    with c1:
        code = word_input("Secret code", "code", DEFAULT_CODE, max_chars=12, help="Digits or a word: the fact to find.")
    code = code if code and code.isprintable() else DEFAULT_CODE
    with c2:
        longest = st.select_slider("Longest haystack (tokens)", NEEDLE_LENGTHS, value=NEEDLE_LENGTHS[-1], key="hay",
                                   bind="query-params", help="The grid covers 128 tokens and up to this length.")
    longest = longest if longest in NEEDLE_LENGTHS else NEEDLE_LENGTHS[-1]
    run = c3.toggle("Run the haystack test", value=False, key="needle", bind="query-params",
                    help=f"Up to {len(NEEDLE_LENGTHS) * len(NEEDLE_DEPTHS)} passes of up to ~570 tokens each: from "
                         "several seconds to a minute on this CPU.")
    if not run:
        st.info("Switch on **Run the haystack test** to hide the code and ask for it back.", icon=":material/search:")
        return
    grid = follow(needle_job(longest, code), what="haystack test")
    if grid is None or not grid.cells:
        return
    probs = [[(c.answer_probability if (c := grid.cell(n, d)) else None) for d in grid.depths] for n in grid.lengths]
    found = [[bool(c and c.found) for c in (grid.cell(n, d) for d in grid.depths)] for n in grid.lengths]
    depth_label = st.select_slider("Attention at the answer step, needle at depth", [f"{100 * d:.0f}%" for d in
                                   grid.depths], value="50%", key="depth", bind="query-params")
    depth = float(str(depth_label).rstrip("%")) / 100 if str(depth_label).rstrip("%").isdigit() else 0.5
    cell = grid.cell(max(c.haystack_tokens for c in grid.cells), depth) or grid.cells[-1]
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    wrapping_metric(row, "Found", f"{sum(x.found for x in grid.cells)} of {len(grid.cells)} cells",
                     "every answer token the top choice", "Teacher forcing: the answer is appended and each of its "
                     "tokens must be the model's most likely next token.")
    worst = min(grid.cells, key=lambda x: x.answer_probability)
    wrapping_metric(row, "Lowest P(answer)", f"{worst.answer_probability:.2f}", f"{worst.haystack_tokens} tokens, "
                     f"depth {100 * worst.depth:.0f}%", "The probability of the whole answer, token by token.")
    span = cell.needle[1] - cell.needle[0]
    wrapping_metric(row, "Attention on the needle", f"{100 * cell.needle_share:.1f}%",
                     f"its {span} tokens are {100 * span / cell.answer_start:.1f}% of the prompt",
                     "Mean over 30 layers and 9 heads of the answer step's attention on the needle sentence.")
    show_chart(figure(needle_heatmap, list(grid.lengths), list(grid.depths), probs, found,
                      title=f"P(“{plain(code)}”) by haystack length and needle depth"),
               partial(pd.DataFrame, {"haystack_tokens": [x.haystack_tokens for x in grid.cells],
                                      "depth": [x.depth for x in grid.cells],
                                      "answer_probability": [x.answer_probability for x in grid.cells],
                                      "found": [x.found for x in grid.cells],
                                      "needle_attention_share": [x.needle_share for x in grid.cells]}),
               name="needle-grid", key="needle_grid")
    tokens = [visible(t) for t in decode_each(lm(), list(cell.ids[:cell.answer_start]))]
    show_chart(figure(needle_attention, cell.attention, tokens, cell.needle,
                      title=f"Where the answer step looks: {cell.haystack_tokens} tokens, needle at "
                            f"{100 * cell.depth:.0f}%"),
               partial(pd.DataFrame, {"position": range(1, len(tokens) + 1), "token": tokens,
                                      "attention": cell.attention}),
               name="needle-attention", key="needle_attention")
    st.caption("A 135M model copies a literal fact from a few hundred tokens back with ease (it has heads that look "
               "up an earlier occurrence of the current words and copy what followed), so this mini test does not "
               "reproduce the lost-in-the-middle dip that large models show over thousands of tokens and many "
               "similar documents. The first positions draw much attention whatever they say (an attention sink), "
               "which inflates the needle's share when it opens the text.")


with concept_page("context-window"):
    window_section()
    st.divider()
    cost_section()
    st.divider()
    text = prompt_input("text", DEFAULT_TEXT, "Text for the context experiment", max_tokens=MAX_TOKENS, height=200,
                        help=f"Up to {MAX_TOKENS} tokens. A story or article whose end refers back to its "
                             "beginning shows the effect best.")
    if text.strip():
        experiment_section(text)
    else:
        st.info("Paste a story or an article above (a few paragraphs whose end refers back to the beginning) to "
                "measure how much its earlier text helps the model.", icon=":material/edit:")
    st.divider()
    needle_section()
