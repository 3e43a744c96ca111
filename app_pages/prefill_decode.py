import time
from functools import partial

import pandas as pd
import streamlit as st

from charts.roofline import roofline, token_speeds
from engine.serving.roofline import DECODE_BATCHES, prefill_lengths
from ui import concept_page
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.layout import metric_row
from ui.roofline import peaks, profile, timing_job
from ui.text import described_metric, human_bytes

LONGEST = [64, 128, 256, 512]
CONTEXTS = [16, 64, 256]
TIME_BUDGET_S = 90
AGAIN_FLAG = "_pd_measure_again"


def choice(value, options: list[int], default: int) -> int:
    return value if value in options else default


def machine_section(machine, work) -> None:
    st.subheader("1 · This machine's two ceilings, measured")
    size, plural = machine.matmul_size, "s" if machine.threads > 1 else ""
    st.markdown(
        f"Two micro-benchmarks ran on this server, on {machine.threads} torch thread{plural}, as every model pass "
        f"here does: a {size}×{size} float32 matrix product repeated (the fastest arithmetic this CPU does), and the "
        f"sum of a {human_bytes(machine.read_bytes)} tensor, far larger than any CPU cache (the fastest it can "
        f"stream memory). Together they took {machine.seconds:.1f} s and are kept for this server's lifetime.")
    a, b, c, d = metric_row(4)
    described_metric(a, "Peak compute", f"{machine.flops_per_s / 1e9:.1f} GFLOP/s", "float32 matrix product",
                     f"Best of {len(machine.matmul_rates)} products, each 2 × {machine.matmul_size}³ FLOPs.")
    described_metric(b, "Memory bandwidth", f"{machine.bytes_per_s / 1e9:.2f} GB/s", "reading a large tensor",
                     f"Best of {len(machine.read_rates)} sums of {human_bytes(machine.read_bytes)}.")
    described_metric(c, "Ridge point", f"{machine.ridge:.1f}", "FLOP per byte: the roofs meet",
                     "Peak compute ÷ bandwidth. A pass that does fewer FLOPs per byte it moves waits on memory.")
    described_metric(d, "Weights read per pass", human_bytes(work.weight_bytes),
                     f"{work.element_size} bytes × every parameter",
                     "Every weight is read once per forward pass, however many tokens the pass holds.")


def points(machine, work, lengths: list[int], context: int, timings) -> list[dict]:
    measured_prefill = {p.tokens: p for p in timings.prefill} if timings else {}
    measured_decode = {d.batch: d for d in timings.decode} if timings else {}
    out = []
    for n in lengths:
        intensity = work.intensity(n)
        p = measured_prefill.get(n)
        out.append(dict(label=f"prefill of {n} tokens", short=str(n), group="prefill", intensity=intensity,
                        bound=machine.attainable(intensity) / 1e9,
                        measured=work.flops(n) / p.seconds / 1e9 if p else None))
    for batch in DECODE_BATCHES:
        d = measured_decode.get(batch)
        mid = d.mid_context if d else context
        intensity = work.intensity(1, mid, batch)
        out.append(dict(label=f"decode, {batch} sequence{'s' if batch > 1 else ''}", short=f"×{batch}", group="decode",
                        intensity=intensity,
                        bound=machine.attainable(intensity) / 1e9,
                        measured=work.flops(1, mid, batch) / d.seconds / 1e9 if d else None))
    return out


def roofline_section(machine, work, lengths: list[int], context: int, timings) -> None:
    pts = points(machine, work, lengths, context, timings)
    show_chart(figure(roofline, machine.flops_per_s / 1e9, machine.bytes_per_s / 1e9, pts,
                      title="SmolLM2's passes under this machine's roofline"),
               partial(pd.DataFrame, {"pass": [p["label"] for p in pts], "flop_per_byte": [p["intensity"] for p in pts],
                                      "roofline_limit_gflops": [p["bound"] for p in pts],
                                      "measured_gflops": [p["measured"] for p in pts],
                                      "peak_gflops": machine.flops_per_s / 1e9,
                                      "bandwidth_gb_per_s": machine.bytes_per_s / 1e9}),
               name="prefill-decode-roofline", key="roofline_chart")
    state = ("Filled markers are the measured passes, each joined to its limit on the roof by a dotted drop. "
             if timings else "Hollow markers are the roofline's limits for each pass; the measured passes appear "
             "under them when the timing above finishes. ")
    st.caption(state + "FLOPs and bytes per pass are counted from the loaded model: 2 FLOPs per weight per token "
               f"for its {work.block_matmul_params / 1e6:.1f}M block weights, the {work.head_params / 1e6:.1f}M-weight "
               "output head once (only the last position needs logits), attention's 4 × heads × head size per "
               "(query, key) pair; bytes are the fewest a pass must move (every weight once, the KV cache read and "
               "written). "
               f"Decode ×B is B sequences decoded together, {context} tokens already in each cache.")


def speed_section(machine, work, lengths: list[int], context: int, timings) -> None:
    st.subheader("2 · Prefill vs decode, in tokens per second")
    bound = [n * machine.attainable(work.intensity(n)) / work.flops(n) for n in lengths]
    decode_bound = machine.attainable(work.intensity(1, context)) / work.flops(1, context)
    measured = [p.tokens_per_s for p in timings.prefill] if timings else None
    padded = (measured or []) + [None] * (len(lengths) - len(measured or []))
    single = timings.single_decode if timings else None
    show_chart(figure(token_speeds, lengths, bound, measured, decode_bound, single.tokens_per_s if single else None,
                      title="Tokens per second: prefill vs decode"),
               partial(pd.DataFrame, {"prompt_tokens": lengths, "prefill_limit_tokens_per_s": bound,
                                      "prefill_measured_tokens_per_s": padded,
                                      "decode_limit_tokens_per_s": decode_bound,
                                      "decode_measured_tokens_per_s": single.tokens_per_s if single else None}),
               name="prefill-decode-tokens-per-second", key="speed_chart")
    st.caption("Dashed: the roofline's limit, the pass's FLOPs at the attainable rate. Prefill gets faster per token "
               "as the prompt grows, because more tokens share each read of the weights, until the arithmetic itself "
               "is the limit. Decode makes one token per pass of the whole model, so its rate is a level line near "
               "the memory roof, whatever came before.")
    if not timings or not timings.prefill or not single:
        return
    longest = timings.prefill[-1]
    batched = max(timings.decode, key=lambda d: d.batch)
    a, b, c, d = metric_row(4)
    described_metric(a, f"Prefill, {longest.tokens} tokens", f"{longest.tokens_per_s:,.0f} tokens/s",
                     f"one pass of {1000 * longest.seconds:,.0f} ms", "Median of the timed passes.")
    described_metric(b, "Decode, one sequence", f"{single.tokens_per_s:,.1f} tokens/s",
                     f"one pass of {1000 * single.seconds:,.0f} ms per token", "Median of the timed steps.")
    described_metric(c, "Prefill ÷ decode", f"{longest.tokens_per_s / single.tokens_per_s:,.0f}×",
                     "tokens per second")
    described_metric(d, f"Decode, {batched.batch} sequences", f"{batched.tokens_per_s:,.1f} tokens/s",
                     f"{batched.seconds / single.seconds:.1f}× the time of one step",
                     f"{batched.batch} sequences advanced by one token in one pass.")
    why_section(longest, single, batched)


def why_section(longest, single, batched) -> None:
    st.subheader("3 · Why serving splits them")
    steps = longest.seconds / single.seconds
    st.markdown(
        f"On this machine a {longest.tokens}-token prefill takes {1000 * longest.seconds:,.0f} ms, as long as "
        f"**{steps:,.1f} decode steps**. A server that runs a newcomer's whole prompt between two tokens of your "
        f"answer makes you wait that long for your next token. Decode, meanwhile, barely uses the arithmetic: "
        f"{batched.batch} sequences advance in {batched.seconds / single.seconds:.1f}× the time of one, because a "
        "step mostly reads the weights and a batch shares that read. So the two phases want different treatment:\n"
        "- **Decode wants big batches** (more sequences per weight read), which is what continuous batching builds.\n"
        "- **Prefill wants to be cut up or moved away**: chunked prefill splits a long prompt into pieces that ride "
        "along with decode steps, so no step stalls for long; disaggregated serving runs prefill on one pool of "
        "machines and decode on another, handing the KV cache across, so each pool is sized for its own bottleneck.")


with concept_page("prefill-decode"):
    again = bool(st.session_state.pop(AGAIN_FLAG, False))
    machine, work = peaks(refresh=again), profile()
    machine_section(machine, work)
    left, right = st.columns(2)
    longest = choice(left.select_slider("Longest prompt to prefill (tokens)", LONGEST, value=256, key="longest",
                                        bind="query-params", help="Prefill is timed at 1, 4, 16, 64, … tokens up to "
                                        "this length, in one pass each."), LONGEST, 256)
    context = choice(right.select_slider("Tokens in the cache while decoding", CONTEXTS, value=64, key="context",
                                         bind="query-params", help="Decode steps are timed after a prompt of this "
                                         "many tokens, at 1, 4 and 16 sequences."), CONTEXTS, 64)
    lengths = prefill_lengths(longest)
    timings = follow(timing_job(longest, context, TIME_BUDGET_S, again=again), what="prefill and decode timing")
    roofline_section(machine, work, lengths, context, timings)
    speed_section(machine, work, lengths, context, timings)
    if timings:
        note, button = st.columns([4, 1], vertical_alignment="center")
        measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timings.measured_at))
        note.caption(f":material/schedule: Passes timed at {measured} on this server's shared CPU (medians of "
                     "repeated passes, the wait for other readers' work not counted) and stored for these settings, "
                     "so a shared link shows the same run.")
        button.button("Measure again", key="again", icon=":material/refresh:", width="stretch",
                      help="Measures the machine's ceilings and times the passes again.",
                      on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
        if timings.stopped_early:
            st.warning("The timing stopped before every point was measured (a Stop press, or the "
                       f"{TIME_BUDGET_S} s budget on a busy server).", icon=":material/speed:")
    st.info("What a 135M model on a CPU can show: the shape is the real one (decode far left on the memory roof, "
            "prefill climbing to the compute roof within a few dozen tokens), but the measured points sit well "
            "under the roof: a pass is also Python, small non-matrix operations and per-layer overheads that a "
            "model of 30 thin layers cannot hide. On a datacenter GPU the ridge sits near 300 FLOP/byte, so "
            "prefill needs hundreds of tokens to become compute-bound and decode is further from the roof still.",
            icon=":material/info:")
