import time
from dataclasses import asdict
from functools import partial

import pandas as pd
import streamlit as st

from charts.batching import gantt, latency_bars, step_times as step_times_chart
from engine.serving.batching import CONTINUOUS, STATIC, percentile
from engine.serving.workload import STEP_REPEATS
from ui import concept_page
from ui.charts import figure, show_chart
from ui.inputs import whole_number_input
from ui.layout import metric_row
from ui.serving import answers_note, step_times, timeline
from ui.text import described_metric

RATES = ["0.1", "0.2", "0.5", "1", "2", "5", "10", "all at once"]
BURST = "all at once"


def rate_label(rate: str) -> str:
    return rate if rate == BURST else f"{rate} per s"


def measured_section():
    st.subheader("1 · Measured: what one decode step costs at each batch size")
    times = step_times()
    ms = [1000 * s for s in times.decode_s]
    b1, bmax = times.batch_sizes[0], times.batch_sizes[-1]
    a, b, c, d = metric_row(4)
    described_metric(a, f"Decode step, batch {b1}", f"{ms[0]:.0f} ms", "one token for one sequence",
                     f"The fastest of {STEP_REPEATS} real decode steps of SmolLM2 with {times.context_tokens} tokens cached per sequence.")
    described_metric(b, f"Decode step, batch {bmax}", f"{ms[-1]:.0f} ms", f"{bmax} tokens in one step")
    described_metric(c, "Tokens per second", f"{bmax / times.decode_s[-1]:,.0f}",
                     f"at batch {bmax}, against {b1 / times.decode_s[0]:,.0f} at batch {b1}",
                     "Batch ÷ step time: what a full batch delivers.")
    described_metric(d, "Prefill", f"{1000 * times.prefill_s:.0f} ms",
                     f"{times.prefill_tokens} prompt tokens in one pass",
                     "Taken as proportional to the prompt's tokens in the simulation below.")
    show_chart(figure(step_times_chart, times.batch_sizes, ms,
                      title="Decode step time by batch size, measured"),
               partial(pd.DataFrame, {"batch_size": times.batch_sizes, "ms_per_step": ms,
                                      "ms_per_token": [m / b for m, b in zip(ms, times.batch_sizes)]}),
               name="continuous-batching-step-times", key="steps_chart")
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(times.measured_at))
    st.caption(f":material/schedule: Timed at {measured} on this server's shared CPU (the fastest of "
               f"{STEP_REPEATS} steps at each size, after a warm-up step), once per server, and used for every "
               "timeline below; sizes in between are interpolated. The weights are read once per step whatever the "
               "batch, so more rows add only a little. The real cache held "
               f"{times.kv_bytes_per_token:,.0f} bytes per token, as on the KV-cache page.")
    if times.disturbed:
        st.warning("A bigger batch timed faster than a smaller one: other work on this server slowed some steps. "
                   "**Measure again** when it is quieter.", icon=":material/speed:")
    st.button("Measure again", key="again", icon=":material/refresh:", on_click=step_times.clear,
              help="Times the steps anew for everyone on this server; the timelines below follow.")
    return times


def controls():
    a, b = st.columns(2)
    count = a.slider("Requests", 4, 48, 20, key="n", bind="query-params",
                     help="Each one of SmolLM2's real answers to the bundled prompts, drawn by the seed.")
    rate = b.select_slider("Arrival rate", RATES, value="0.5", key="rate", bind="query-params", format_func=rate_label,
                           help="Requests per second on average, arriving at random (a Poisson process).")
    batch = a.slider("Batch slots", 1, 16, 8, key="batch", bind="query-params",
                     help="Most sequences the engine decodes at once (both policies).")
    seed = whole_number_input("Stream (seed)", 0, 9999, 1, "seed", container=b,
                              help="Which answers are drawn and when they arrive. The same seed, the same timeline.")
    rate = rate if rate in RATES else "0.5"
    return count, (float("inf") if rate == BURST else float(rate)), batch, seed


def stats(tl) -> dict:
    return {"throughput": tl.throughput, "ttft_p50": percentile(tl.ttfts(), 50), "ttft_p95": percentile(tl.ttfts(), 95),
            "latency_p50": percentile(tl.latencies(), 50), "latency_p95": percentile(tl.latencies(), 95)}


def simulation_section(times) -> None:
    st.subheader("2 · One stream of requests, two schedulers")
    count, rate, batch, seed = controls()
    static, cont = (timeline(p, count, rate, seed, batch, times.measured_at) for p in (STATIC, CONTINUOUS))
    s, c = stats(static), stats(cont)
    a, b, d, e = metric_row(4)
    described_metric(a, "Throughput, continuous", f"{c['throughput']:,.1f} tok/s",
                     f"static: {s['throughput']:,.1f} tok/s ({c['throughput'] / s['throughput']:.2f}×)",
                     "Output tokens ÷ seconds from the first arrival to the last answer returned.")
    described_metric(b, "Time to first token, p50", f"{c['ttft_p50']:.2f} s", f"static: {s['ttft_p50']:.2f} s",
                     "Median over requests of arrival → first token (its prefill's end).")
    described_metric(d, "Latency, p95", f"{c['latency_p95']:.1f} s", f"static: {s['latency_p95']:.1f} s",
                     "95th percentile of arrival → whole answer returned. Static batching returns an answer only "
                     "when its batch ends.")
    described_metric(e, "Padding computed, static", f"{static.padding_share:.0%}",
                     f"{static.decode_padding + static.prefill_padding:,} of {static.computed_tokens:,} token slots",
                     "Token positions static batching computed and threw away: finished rows still decoded until "
                     "their batch ends, and prompts padded to the longest. Continuous batching: "
                     f"{cont.decode_padding + cont.prefill_padding}.")
    served_ok = static.tokens_served == cont.tokens_served == static.tokens_requested
    st.caption(f"Both served {cont.tokens_served:,} tokens for {count} requests "
               f"({'= the tokens requested ✓' if served_ok else '✗ not the tokens requested'}); static took "
               f"{static.makespan_s:.1f} s, continuous {cont.makespan_s:.1f} s.")
    panels = [(f"Static batching: {static.makespan_s:.1f} s", [asdict(x) for x in static.segments]),
              (f"Continuous batching: {cont.makespan_s:.1f} s", [asdict(x) for x in cont.segments])]
    arrivals = "all arriving at once" if rate == float("inf") else f"about {rate:g} arriving per second"
    show_chart(figure(gantt, panels, count, title=f"{count} requests, {arrivals}, {batch} batch slots"),
               partial(pd.DataFrame, [{"policy": p, **asdict(x)} for p, tl in ((STATIC, static), (CONTINUOUS, cont))
                                      for x in tl.segments]),
               name="continuous-batching-timeline", key="gantt_chart")
    st.caption("Each row is a request. Static batching (top) starts a batch only when the previous one has ended, "
               "so short answers sit finished (red) while the longest one runs, and new arrivals wait (grey). "
               "Continuous batching (bottom) refills a slot the step after it frees.")
    names = ["first token p50", "first token p95", "latency p50", "latency p95"]
    keys = ["ttft_p50", "ttft_p95", "latency_p50", "latency_p95"]
    show_chart(figure(latency_bars, names, [s[k] for k in keys], [c[k] for k in keys],
                      title="What a reader waits: percentiles over the requests"),
               partial(pd.DataFrame, [{"request": r.id + 1, "policy": p, "arrival_s": r.arrival_s,
                                       "first_token_s": r.first_token_s, "returned_s": r.returned_s,
                                       "ttft_s": r.ttft_s, "latency_s": r.latency_s, "output_tokens": r.output_tokens}
                                      for p, tl in ((STATIC, static), (CONTINUOUS, cont)) for r in tl.results]),
               name="continuous-batching-latency", key="latency_chart")
    st.caption("With a batch of 1 the two policies are the same; the gap opens with more slots, mixed answer "
               "lengths and a busy stream. At a trickle of requests both wait mostly for the model, not each other.")


with concept_page("continuous-batching"):
    st.caption(answers_note() + " Step times are measured live on the model; only the arrival times are drawn.")
    simulation_section(measured_section())
