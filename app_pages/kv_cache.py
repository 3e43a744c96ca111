import time
from functools import partial

import pandas as pd
import streamlit as st

from charts.kv_cache import attention_kinds, cache_growth, memory_vs_context, step_times
from engine.serving.kv_cache import (DEFAULT_DTYPE, DTYPE_BYTES, GB, MAX_BATCH, MAX_HEAD_DIM, MAX_HEADS, MAX_LAYERS, PUBLISHED,
                             ModelSpec, calculator_rows, dtype_bytes, kv_bytes_per_token, kv_cache_bytes, live_spec,
                             weight_bytes)
from engine.tokens.offsets import token_ids
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.kv_cache import cache_growth as measured_growth
from ui.kv_cache import timing_job
from ui.inputs import whole_number_input
from ui.text import described_metric, human_bytes, short_tokens

DEFAULT_PROMPT = (
    "The printing press changed Europe in a single lifetime. Around 1450 Johannes Gutenberg combined movable "
    "metal type, an oil-based ink and a wooden screw press into a system that could print hundreds of identical "
    "pages a day. Within fifty years presses were running in more than two hundred cities, the price of books "
    "fell sharply, and reading spread far beyond monasteries and universities.")
CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
TIME_BUDGET_S = 60   # a timing run stops after this, so one visitor cannot hold the shared CPU for minutes
AGAIN_FLAG = "_kv_measure_again"   # set by the "Measure again" button's callback, read once by the next run


def timing_section(prompt: str) -> None:
    st.subheader("1 · Generation with and without the cache, timed live")
    c1, c2 = st.columns([3, 1])
    with c2:
        n = st.slider("New tokens", 16, 128, 48, 8, key="n", bind="query-params",
                      help="How many tokens to generate greedily in each run.")
        run = st.toggle("Time it live", value=False, key="run", bind="query-params",
                        help="Generates the same tokens twice on this server: once with a KV cache, once "
                             "re-running the whole sequence at every step.")
    with c1:
        st.markdown("The same greedy generation runs twice: **with a KV cache** (each step feeds only the newest "
                    "token and reads the stored keys and values) and **without** (each step feeds the whole "
                    "sequence again). The two runs alternate step by step, so both see the same server load.")
    if not run:
        st.info("Switch on **Time it live** to generate the tokens with and without the cache. It takes a few "
                "seconds to a minute on this server's CPU, depending on the number of tokens and on load.",
                icon=":material/timer:")
        return

    again = bool(st.session_state.pop(AGAIN_FLAG, False))
    result = follow(timing_job(prompt, n, TIME_BUDGET_S, again=again), what="timing")
    if result is None:
        return

    cached, uncached = result.cached, result.uncached
    a, b, c, d = st.columns(4)
    if result.identical:
        described_metric(a, "Greedy tokens", "identical ✓", f"all {len(cached.new_ids)} match",
                         "Token ids compared one by one: the cache changes the cost, not the result.")
    else:
        described_metric(a, "Greedy tokens", "differ ✗", f"first at token {result.first_difference + 1}",
                         "The cached path adds up the same numbers in a different order; a near-tie between two "
                         "tokens can flip. The computation is the same.")
    described_metric(b, "With cache", f"{cached.total_seconds:.2f} s",
                     f"{cached.decode_tokens_per_second:.1f} tokens/s",
                     "Total wall time; tokens/s counts the steps after the first (which also reads the prompt).")
    described_metric(c, "Without cache", f"{uncached.total_seconds:.2f} s",
                     f"{uncached.decode_tokens_per_second:.1f} tokens/s")
    described_metric(d, "Speed-up", f"{result.speedup:.1f}×", "total time without ÷ with")

    note, button = st.columns([4, 1], vertical_alignment="center")
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.measured_at))
    note.caption(f":material/schedule: Measured at {measured} on this server's shared CPU, and stored for this prompt "
                 "and length so that a shared link shows the same run. Timings depend on what else the server is "
                 "doing at the time.")
    button.button("Measure again", key="again", icon=":material/refresh:", width="stretch",
                  on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
    busy = []
    if result.stopped_early:
        busy.append(f"Stopped after {len(cached.new_ids)} of {result.requested} tokens: a measurement ends when "
                    f"its reader presses Stop, or after {TIME_BUDGET_S} s so that the shared server stays "
                    "responsive.")
    if result.noisy:
        busy.append("Some steps took several times longer than their neighbours (the spikes below): other work was "
                    "running. The totals still compare like with like, since the two runs alternate step by step.")
    if busy:
        st.warning("The server was busy during this run. " + " ".join(busy) + " **Measure again** later for a "
                   "cleaner curve.", icon=":material/speed:")
    with_ms = [1000 * s for s in cached.step_seconds]
    without_ms = [1000 * s for s in uncached.step_seconds]
    lengths = uncached.tokens_fed
    speedups = result.cumulative_speedup()
    prompt_len = len(result.prompt_ids)
    show_chart(figure(step_times, with_ms, without_ms, lengths, speedups,
                          title=f"Time per generated token after a {prompt_len}-token prompt"),
               partial(pd.DataFrame, {"token": range(1, len(with_ms) + 1), "token_id": cached.new_ids,
                             "tokens_fed_without_cache": lengths, "tokens_fed_with_cache": cached.tokens_fed,
                             "ms_with_cache": with_ms, "ms_without_cache": without_ms,
                             "cache_bytes": cached.cache_bytes, "cumulative_speedup": speedups}),
               name="kv-cache-step-times", key="timing_chart")
    st.caption(f"Token 1 costs about the same in both runs: each reads the whole {prompt_len}-token prompt (the "
               "prefill). From then on the uncached run feeds the prompt plus everything generated so far, so its "
               "steps grow with length; the cached run feeds one token, so its line stays nearly flat (its "
               "attention still reads every cached key, which grows slowly with length). On a model this small a "
               "good part of each step is fixed overhead (30 layers of small matrix products, and Python), so the "
               "cached line is well above zero, and the gap widens with longer prompts and more tokens.")
    with st.expander("The generated text (both runs)"):
        st.text(prompt + result.new_text)
        st.caption("Greedy, without the chat template, and not stopped at end-of-text, so both runs cover every "
                   f"step. The cache held {human_bytes(cached.cache_bytes[-1])} at the end "
                   f"({prompt_len + len(cached.new_ids) - 1} tokens: the last token is produced but not yet fed).")


def memory_section(prompt: str) -> None:
    st.subheader("2 · The cache in memory, read from the real tensors")
    model = lm()
    growth = measured_growth(prompt)
    spec = growth.spec
    per_token = growth.per_token_formula
    length = len(token_ids(model, prompt))
    repeated = f", repeated up to {growth.tokens[-1]} tokens" if growth.tokens[-1] > length else ""
    st.markdown(f"A prompt of {length} tokens, the length of yours{repeated}, is fed into one `DynamicCache` in "
                "chunks, as generation would append them. After each chunk the page adds up the bytes of every "
                f"layer's key and value tensors. SmolLM2's config gives {spec.layers} layers, {spec.kv_heads} KV "
                f"heads of size {spec.head_dim}, and its tensors are {growth.dtype} ({growth.element_size} bytes):")
    st.latex(rf"2 \times {spec.layers} \times {spec.kv_heads} \times {spec.head_dim} \times {growth.element_size}"
             rf"\ \text{{bytes}} = {per_token:,.0f}\ \text{{bytes per token}}".replace(",", "{,}"))
    a, b, c, d = st.columns(4)
    described_metric(a, "Per token, formula", f"{per_token:,.0f} B", f"= {per_token / 1024:,.1f} KiB")
    b.metric("Per token, measured", f"{growth.per_token_measured:,.0f} B",
             help=f"Bytes of all cache tensors at {growth.tokens[-1]} tokens, divided by {growth.tokens[-1]}.")
    matched = sum(m == f for m, f in zip(growth.measured_bytes, growth.formula_bytes))
    described_metric(c, "Formula = tensors", "✓ equal" if growth.matches else "✗ differ",
                     f"at {matched} of {len(growth.tokens)} lengths")
    full = kv_cache_bytes(spec, growth.element_size, model.card.context_length)
    weights = model.card.parameters * growth.element_size
    described_metric(d, f"At its full context ({model.card.context_length:,} tokens)", human_bytes(full),
                     f"= {full / 2 ** 20:,.0f} MiB, {full / weights:.0%} of the weights",
                     f"Formula, one sequence, float32. The weights are {human_bytes(weights)} at float32.")
    show_chart(figure(cache_growth, growth.tokens, [m / 1e6 for m in growth.measured_bytes],
                            [f / 1e6 for f in growth.formula_bytes],
                            title="SmolLM2's cache grows by the same number of bytes with every token"),
               partial(pd.DataFrame, {"tokens": growth.tokens, "measured_bytes": growth.measured_bytes,
                             "formula_bytes": growth.formula_bytes}),
               name="kv-cache-bytes-vs-tokens", key="growth_chart")
    shape = " × ".join(str(s) for s in growth.key_shape)
    st.caption(f"At {growth.tokens[-1]} tokens each of the {growth.layers} layers holds a key tensor and a value "
               f"tensor of shape [{shape}] (batch × KV heads × tokens × head size). Which tokens they are makes no "
               "difference: the size depends only on how many, so this server measures each length once and "
               "shows that measurement to every prompt of the same length.")



def custom_spec() -> ModelSpec:
    with st.expander("Your own configuration", icon=":material/tune:"):
        cols = st.columns(4)
        layers = whole_number_input("Layers", 1, MAX_LAYERS, 40, "layers", container=cols[0])
        heads = whole_number_input("Query heads", 1, MAX_HEADS, 40, "heads", container=cols[1])
        kv_heads = whole_number_input("KV heads", 1, MAX_HEADS, 8, "kv_heads", container=cols[2],
                                      help="Equal to the query heads for MHA, fewer for GQA, 1 for MQA.")
        head_dim = whole_number_input("Head size", 1, MAX_HEAD_DIM, 128, "head_dim", container=cols[3])
        spec = ModelSpec("Your config", layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                         source="your numbers").bounded()
        if spec.kv_heads < kv_heads:
            st.caption(f"KV heads cannot exceed query heads: using {spec.kv_heads}.")
    return spec


def calculator_section() -> None:
    st.subheader("3 · How big the cache gets on bigger models")
    st.markdown("The same formula, for published configurations. The cache is per sequence, so it scales with "
                "batch size as well as with context length.")
    c1, c2 = st.columns([3, 1], vertical_alignment="top")
    c3, c4 = st.columns([3, 1], vertical_alignment="bottom")
    with c1:
        dtype = st.segmented_control("Cache precision", list(DTYPE_BYTES), default=DEFAULT_DTYPE, key="dtype",
                                     bind="query-params", help="The number format the keys and values are stored in.")
        dtype = dtype if dtype in DTYPE_BYTES else DEFAULT_DTYPE
        per_value = dtype_bytes(dtype)
        unit = "byte" if per_value == 1 else "bytes"
        st.caption(f"{dtype}: **{per_value:g} {unit}** per number (fp32 4, fp16 and bf16 2, fp8 and int8 1, int4 ½).")
    batch = whole_number_input("Batch", 1, MAX_BATCH, 1, "batch", container=c2,
                               help="Sequences served at once; each has its own cache.")
    context = c3.select_slider("Context length (tokens)", CONTEXTS, value=4096, key="ctx", bind="query-params",
                               format_func=short_tokens)
    context = context if context in CONTEXTS else 4096
    log_memory = c4.toggle("Log scale for memory", value=False, key="logy", bind="query-params")

    specs = [live_spec(lm()), *PUBLISHED, custom_spec()]
    table = pd.DataFrame(calculator_rows(specs, per_value, context, batch))
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "model": st.column_config.TextColumn("Model"),
        "attention": st.column_config.TextColumn("Attention"),
        "shape": st.column_config.TextColumn("Layers × KV heads × head size"),
        "bytes_per_token": st.column_config.NumberColumn("Bytes / token", format="localized",
                                                         help="2 × layers × KV heads × head size × bytes"),
        "kv_cache_gb": st.column_config.NumberColumn(f"Cache GB ({short_tokens(context)} × {batch})", format="%.3f",
                                                     help=f"{context:,} tokens × batch {batch}"),
        "weights_gb": st.column_config.TextColumn("Weights GB",
                                                    help=f"Parameters × bytes at {dtype}, the same precision as the "
                                                         "cache. SmolLM2: counted from the loaded weights; the "
                                                         "others: counted from their configs (embeddings, attention, "
                                                         "SwiGLU, norms). Unknown for your own configuration."),
        "cache_vs_weights": st.column_config.TextColumn("Cache ÷ weights"),
    })
    llama2 = next(s for s in PUBLISHED if s.name == "LLaMA-2-7B")
    l2_cache = kv_cache_bytes(llama2, per_value, context, batch)
    l2_weights = weight_bytes(llama2, per_value)
    st.markdown(f"For example, **LLaMA-2-7B** stores {kv_bytes_per_token(llama2, per_value):,.0f} bytes per token at "
                f"{dtype}: {context:,} tokens × batch {batch} hold **{l2_cache / GB:,.2f} GB** of cache, "
                f"{l2_cache / l2_weights:.2f}× its {l2_weights / GB:.1f} GB of weights.")

    series = [{"name": s.name, "contexts": CONTEXTS, "trained_context": s.context,
               "gb": [kv_cache_bytes(s, per_value, t, batch) / GB for t in CONTEXTS]} for s in specs]
    show_chart(figure(memory_vs_context, series, context, log_memory,
                                 title=f"KV cache vs context length ({dtype}, batch {batch})"),
               partial(pd.DataFrame, [{"model": s["name"], "context_tokens": t, "kv_cache_gb": g}
                             for s in series for t, g in zip(s["contexts"], s["gb"])]),
               name="kv-cache-vs-context", key="context_chart")
    same = {}
    for s in specs:
        same.setdefault(kv_bytes_per_token(s, per_value), []).append(s.name)
    overlaps = [" and ".join(names) for names in same.values() if len(names) > 1]
    st.caption("Solid up to each model's own context length (max_position_embeddings in its config), dotted beyond "
               "it. " + "".join(f"{o} store the same bytes per token, so their lines coincide. " for o in overlaps)
               + "Mistral-7B v0.1 attends over a 4,096-token sliding window, so a rolling cache can stop at 4,096 "
                 "tokens.")

    st.markdown("**What grouped-query attention saves.** The same models if every query head kept its own keys "
                "and values (MHA), as configured, and with a single shared K/V head (MQA):")
    mha = [kv_cache_bytes(s.with_kv_heads(s.heads), per_value, context, batch) / GB for s in specs]
    actual = [kv_cache_bytes(s, per_value, context, batch) / GB for s in specs]
    mqa = [kv_cache_bytes(s.with_kv_heads(1), per_value, context, batch) / GB for s in specs]
    labels = [f"{s.attention}, {s.kv_heads} KV heads" for s in specs]
    show_chart(figure(attention_kinds, [s.name for s in specs], mha, actual, mqa, labels,
                               title=f"Cache as a share of full multi-head attention (labels: GB at "
                                     f"{short_tokens(context)} × batch {batch}, {dtype})"),
               partial(pd.DataFrame, {"model": [s.name for s in specs], "mha_gb": mha, "configured_gb": actual,
                             "mqa_gb": mqa, "query_heads": [s.heads for s in specs],
                             "kv_heads": [s.kv_heads for s in specs]}),
               name="kv-cache-mha-gqa-mqa", key="gqa_chart")
    savings = [f"{s.name} {s.heads // s.kv_heads}× ({s.heads} → {s.kv_heads})" for s in specs
               if s.kv_heads < s.heads and s.heads % s.kv_heads == 0]
    if savings:
        st.caption("GQA divides the cache by query heads ÷ KV heads: " + "; ".join(savings) + ".")
    st.caption("Sources: " + "; ".join(f"**{s.name}**: {s.source}" for s in specs if s.name != "Your config")
               + ". Parameter counts of the published models are computed from the same configs; GB = 10⁹ bytes.")


with concept_page("kv-cache"):
    prompt = prompt_input("prompt", DEFAULT_PROMPT, "Prompt", max_tokens=160, height=110,
                          help="Used for the timing and the memory measurement. Up to 160 tokens; longer text is "
                               "cut with a note.")
    if prompt.strip():
        timing_section(prompt)
        st.divider()
        memory_section(prompt)
    else:
        st.info("Type a prompt above (a paragraph of 60 to 100 tokens shows the effect well) to time generation "
                "and weigh the cache. The calculator below works without one.", icon=":material/edit:")
    st.divider()
    calculator_section()
