import time
from functools import partial

import pandas as pd
import streamlit as st

from charts.serving_engine import planned_work as planned_chart
from charts.serving_engine import request_times
from concepts import load_catalogue
from engine.serving.serving_engine import MAX_NEW_TOKENS, MAX_REQUESTS, EngineOptions, load_engine_features, planned_work
from engine.tokens.offsets import decode
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.serving_engine import engine_job, questions_from, request_ids
from ui.text import described_metric

DEFAULT_SYSTEM = (
    "Answer in one short sentence, using only the guide below.\n\nLibrary guide. The library opens at 9 am from "
    "Monday to Friday and at 10 am on Saturdays; it is closed on Sundays. The reading room is on the second floor. "
    "Printing costs ten cents a page in black and white and fifty cents in colour.")
DEFAULT_QUESTIONS = ("How much does printing cost?\nWhat does printing cost in colour?\n"
                     "When does the library open on Saturdays?")
PLAIN = EngineOptions()
BUDGET_PLAIN_S, BUDGET_YOURS_S = 150, 90
AGAIN = "_se_measure_again"   # the runs still to measure afresh after a "Measure again" press


def features_section() -> None:
    st.subheader("1 · Six engines, and which of the handbook's techniques they use")
    techniques, engines = load_engine_features()
    table = pd.DataFrame({"Technique": [t.name for t in techniques]}
                         | {e.name: ["✓" if e.status(t) else "·" for t in techniques] for e in engines})
    st.dataframe(table, hide_index=True, width="stretch", key="engines_table", column_config={
        "Technique": st.column_config.TextColumn("Technique", pinned=True, width="medium"),
        **{e.name: st.column_config.TextColumn(e.name, help=e.kind) for e in engines}})
    st.caption("✓: the engine's own documentation says it uses the technique (sources below, checked November 2026). "
               "·: not found in its documentation, so not claimed here; it does not mean the engine lacks it.")
    catalogue = load_catalogue()
    with st.container(horizontal=True, gap="small"):
        for t in techniques:
            concept = catalogue.get(t.slug)
            if concept.live:
                st.page_link(f"app_pages/{concept.page_name}.py", label=t.name, icon=":material/arrow_forward:")
    with st.expander("Where each ✓ comes from"):
        for e in engines:
            st.markdown(f"**[{e.name}]({e.url})**, {e.kind}. " + "; ".join(f"*{t.name}*: {e.status(t)}" for t in techniques
                                                                 if e.status(t)) + ".")


def switches() -> EngineOptions:
    cols = st.columns(4)
    kv = cols[0].toggle("KV cache", value=True, key="kv", bind="query-params",
                        help="Prefill each prompt once, then feed one token per step. Off: every step feeds the whole "
                             "sequence again.")
    batch = cols[1].toggle("Batching", value=True, key="batch", bind="query-params",
                           help="All requests advance together, one forward pass per step (rows padded, padding "
                                "masked). Off: one request after another.")
    prefix = cols[2].toggle("Prefix reuse", value=True, key="prefix", bind="query-params", disabled=not kv,
                            help="Prefill the shared system prompt once; every request starts from a copy of its "
                                 "cache. Needs the KV cache.")
    spec = cols[3].toggle("Speculation", value=False, key="spec", bind="query-params", disabled=not kv,
                          help="Prompt-lookup drafts of up to 4 tokens, checked in one pass and kept while they match "
                               "greedy. Needs the KV cache.")
    if not kv:
        st.caption("Prefix reuse and speculation work on a KV cache: with the cache off they are off too.")
    return EngineOptions(bool(kv), bool(batch), bool(prefix), bool(spec)).effective()


def plan_section(prefix, suffixes, new_tokens: int, options: EngineOptions) -> None:
    lengths = [len(prefix) + len(s) for s in suffixes]
    plans = [planned_work(lengths, len(prefix), new_tokens, o) for o in (PLAIN, options)]
    labels = ["plain baseline", "your engine"]
    show_chart(figure(planned_chart, labels, [p.forward_passes for p in plans],
                      [p.positions - p.padding for p in plans], [p.padding for p in plans],
                      title=f"The work planned for {len(suffixes)} requests × {new_tokens} answer tokens"),
               partial(pd.DataFrame, {"engine": labels, "options": [PLAIN.describe(), options.describe()],
                                      "forward_passes": [p.forward_passes for p in plans],
                                      "token_positions": [p.positions for p in plans],
                                      "padding_positions": [p.padding for p in plans]}),
               name="serving-engine-planned-work", key="plan_chart")
    st.caption(f"Counted before running, from the token counts ({len(prefix)} shared prefix tokens; "
               f"{', '.join(str(len(s)) for s in suffixes)} of each request's own), as if every answer ran the full "
               f"{new_tokens} tokens and no draft were accepted. Answers that end early do less; speculation does "
               "fewer passes when its drafts are accepted. Both are measured below.")


def results_section(plain, yours, questions: tuple[str, ...], options: EngineOptions) -> None:
    same = yours.identical_to(plain)
    a, b, c, d = metric_row(4)
    if all(same):
        described_metric(a, "Answers vs plain greedy", "identical ✓", f"all {len(same)} answers, {yours.generated} "
                         "tokens", "Token ids compared one by one with the plain baseline's greedy answers.")
    else:
        described_metric(a, "Answers vs plain greedy", "differ ✗", f"{sum(same)} of {len(same)} identical",
                         "Batched or multi-token passes add the same numbers in another order; a near-tie between "
                         "two tokens can flip. The decoding rule is the same.")
    described_metric(b, "Throughput", f"{yours.throughput:.1f} tokens/s", f"plain: {plain.throughput:.1f} tokens/s",
                     "Answer tokens of all requests ÷ engine time until the last one finished.")
    described_metric(c, "Mean latency", f"{yours.mean_latency:.2f} s", f"plain: {plain.mean_latency:.2f} s",
                     "From the moment every request arrived (all at once) to its last token, averaged.")
    described_metric(d, "Speed-up", f"{plain.total_s / yours.total_s:.1f}×" if yours.total_s else "–",
                     f"{plain.total_s:.2f} s ÷ {yours.total_s:.2f} s", "Engine time to answer every request.")
    names = [f"Request {i + 1}" for i in range(len(yours.requests))]
    show_chart(figure(request_times, names, [r.first_token_s for r in plain.requests],
                      [r.finished_s for r in plain.requests], [r.first_token_s for r in yours.requests],
                      [r.finished_s for r in yours.requests], f"your engine: {options.describe()}",
                      title="When each request got its first and last token"),
               partial(pd.DataFrame, {"request": names, "question": list(questions[:len(names)]),
                                      "plain_first_token_s": [r.first_token_s for r in plain.requests],
                                      "plain_done_s": [r.finished_s for r in plain.requests],
                                      "yours_first_token_s": [r.first_token_s for r in yours.requests],
                                      "yours_done_s": [r.finished_s for r in yours.requests],
                                      "identical": same}),
               name="serving-engine-request-times", key="times_chart")
    drafts = (f" Speculation drafted {yours.drafted} tokens and the model kept {yours.accepted} "
              f"({yours.accepted / yours.drafted:.0%})." if yours.drafted else "")
    st.caption(f"Measured work: your engine ran {yours.forward_passes} forward passes over {yours.positions_fed:,} "
               f"token positions ({yours.padding_fed:,} of them padding); the plain baseline ran "
               f"{plain.forward_passes} over {plain.positions_fed:,}.{drafts} Served one by one, the bars form a "
               "staircase: each request waits for the ones before it.")
    model = lm()
    st.dataframe(pd.DataFrame({"question": list(questions[:len(names)]),
                               "answer": [decode(model, list(r.new_ids)).replace("<|im_end|>", "").strip()
                                          for r in yours.requests],
                               "tokens": [len(r.new_ids) for r in yours.requests],
                               "identical": ["✓" if s else "✗" for s in same]}),
                 hide_index=True, width="stretch", key="answers_table",
                 column_config={"question": "Question", "answer": st.column_config.TextColumn(
                     "Answer (greedy)", help="Your engine's answer; ✓ when the plain baseline wrote the same ids."),
                     "tokens": "Tokens", "identical": "Same as plain"})
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(yours.measured_at))
    note, button = st.columns([4, 1], vertical_alignment="center")
    note.caption(f":material/schedule: Your engine ran at {measured} on this server's shared CPU; the baseline is "
                 "measured once for these requests and shared by every combination of switches. Both are stored, so "
                 "a shared link shows the same runs. Engine time leaves out waiting for other readers' work.")
    button.button("Measure again", key="again", icon=":material/refresh:", width="stretch",
                  on_click=st.session_state.__setitem__, args=(AGAIN, {"plain", "yours"}))
    if yours.stopped_early or plain.stopped_early:
        st.warning("A run was stopped before every answer was complete (a Stop press, or its time budget on a busy "
                   "server); its answers are compared as far as they got.", icon=":material/speed:")


def measure_again(which: str) -> bool:
    pending = st.session_state.get(AGAIN) or set()
    if which in pending:
        st.session_state[AGAIN] = pending - {which}
        return True
    return False


with concept_page("serving-engines"):
    features_section()
    st.divider()
    st.subheader("2 · Build your own engine on SmolLM2")
    st.markdown("Several readers send a question at once, each after the same system prompt, as a chat in the "
                "model's own template. Switch the techniques on and off: your engine answers them greedily on this "
                "server, and so does a plain baseline with everything off. Both are timed and their answers compared "
                "token by token.")
    system = prompt_input("system", DEFAULT_SYSTEM, "Shared system prompt", max_tokens=200, height=150,
                          help="Every request starts with it. Up to 200 tokens; longer text is cut with a note.")
    left, right = st.columns([3, 1])
    with left:
        questions_text = prompt_input("questions", DEFAULT_QUESTIONS, f"Requests: one question per line, up to "
                                      f"{MAX_REQUESTS}", max_tokens=120, height=110)
    new_tokens = right.slider("Answer tokens, at most", 4, MAX_NEW_TOKENS, 24, key="n", bind="query-params",
                              help="Each answer also ends at the model's end-of-turn token or at a line break.")
    options = switches()
    questions = questions_from(questions_text)
    stop_if_empty(" ".join(questions), "Type at least one question, one per line, to serve it with your engine.")
    prefix, suffixes = request_ids(system, questions)
    plan_section(prefix, suffixes, new_tokens, options)
    plain = follow(engine_job(system, questions, new_tokens, PLAIN, BUDGET_PLAIN_S, again=measure_again("plain")),
                   what="plain baseline (nothing switched on: the slowest run)")
    if plain is not None:
        yours = plain if options.is_plain else follow(
            engine_job(system, questions, new_tokens, options, BUDGET_YOURS_S, again=measure_again("yours")),
            what="run of your engine")
        if yours is not None:
            results_section(plain, yours, questions, options)
    st.info("What a 135M model on a CPU can show: every answer is really generated and compared, and the times are "
            "measured, but with a handful of short requests and one CPU thread per pass the gains differ from a GPU "
            "server's: batching pays off less (a CPU runs out of arithmetic sooner), and speculation helps one "
            "request at a time more than a batch. The answers are a 135M model's: often wrong, always the same.",
            icon=":material/info:")
