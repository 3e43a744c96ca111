import time
from functools import partial

import pandas as pd
import streamlit as st

from charts.prompt_cache import first_token_times, prompt_token_split
from engine.serving.prompt_cache import MAX_NEW_TOKENS, MAX_READERS, prefill_share_saved, shared_prefix_length
from engine.tokens.offsets import decode, token_ids
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.layout import metric_row
from ui.prompt_cache import question_suffix, timing_job
from ui.text import described_metric, escape_markdown, human_bytes

DEFAULT_PREFIX = (
    "You are the help desk of the Harbour Street Library. Answer in one short sentence, using only the guide "
    "below.\n\nLibrary guide. The library opens at 9 am from Monday to Friday and at 10 am on Saturdays; it is "
    "closed on Sundays and public holidays. Members may borrow up to eight books and two films at a time. Books "
    "are lent for three weeks and films for one week. A loan can be renewed twice online, unless another member "
    "has reserved the item. Membership is free for anyone who lives, works or studies in the city; bring a "
    "document with your address. The reading room is on the second floor, next to the map collection, and it is "
    "quiet at all times. Printing costs ten cents a page in black and white and fifty cents in colour. Lost "
    "cards are replaced for two euros. Children under twelve need a parent's signature to join.")
DEFAULT_QUESTIONS = ("When does the library open on Saturdays?\nHow many books can a member borrow?\n"
                     "Where is the reading room?")
TIME_BUDGET_S = 40   # the runs stop after this, so one visitor cannot hold the shared CPU for long
AGAIN_FLAG = "_pc_measure_again"


def questions_from(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())[:MAX_READERS]


def token_counts_section(prefix_ids: list[int], questions: tuple[str, ...], suffixes: list[list[int]]) -> None:
    prefix_len = len(prefix_ids)
    total = sum(prefix_len + len(s) for s in suffixes)
    saved = prefix_len * len(suffixes)
    a, b, c = metric_row(3)
    described_metric(a, "Shared prefix", f"{prefix_len} tokens", "run once, kept in the cache",
                     "Tokens of the text box above, counted by SmolLM2's tokenizer.")
    described_metric(b, "Readers", f"{len(suffixes)}", f"{sum(len(s) for s in suffixes)} question tokens in all")
    described_metric(c, "Prefill saved", f"{saved / total:.0%}", f"{saved:,} of {total:,} prompt tokens",
                     "Prefix tokens ÷ (prefix + question) tokens, over all readers: the tokens a warm request does "
                     "not run again. Counted, not timed.")
    names = [f"Reader {i + 1}" for i in range(len(questions))]
    shares = [prefill_share_saved(prefix_len, len(s)) for s in suffixes]
    show_chart(figure(prompt_token_split, names, prefix_len, [len(s) for s in suffixes],
                      title="Each request's prompt: the cached prefix, then its own question"),
               partial(pd.DataFrame, {"reader": names, "question": list(questions), "prefix_tokens": prefix_len,
                                      "question_tokens": [len(s) for s in suffixes], "prefill_saved": shares}),
               name="prompt-cache-token-split", key="split_chart")


def timing_section(prefix: str, questions: tuple[str, ...], suffixes: list[list[int]], new_tokens: int) -> None:
    again = bool(st.session_state.pop(AGAIN_FLAG, False))
    result = follow(timing_job(prefix, questions, new_tokens, TIME_BUDGET_S, again=again), what="timing")
    if result is None:
        return
    readers = result.readers
    n = len(readers)
    warm_ms = [1000 * r.warm.first_token_s for r in readers]
    cold_ms = [1000 * r.cold.first_token_s for r in readers]
    a, b, c, d = metric_row(4)
    if result.all_identical:
        described_metric(a, "Greedy tokens", "identical ✓", f"all {sum(len(r.warm.new_ids) for r in readers)} "
                         f"tokens of {n} answers", "Token ids compared one by one: reusing the prefix changes the "
                         "cost, not the result.")
    else:
        same = sum(r.identical for r in readers)
        described_metric(a, "Greedy tokens", "differ ✗", f"{same} of {n} answers identical",
                         "The cached path adds the same numbers in a different order (prefix and question in two "
                         "passes); a near-tie between two tokens can flip.")
    described_metric(b, "First token, cached", f"{sum(warm_ms) / n:.0f} ms", "mean: copy + question",
                     "From the start of the request to its first token: copy the kept cache, run the question.")
    described_metric(c, "First token, from scratch", f"{sum(cold_ms) / n:.0f} ms", "mean: prefix + question",
                     "The same request with no cache: the whole prompt is prefilled again.")
    described_metric(d, "Cache size", human_bytes(result.cache_bytes),
                     f"K and V of {result.cache_tokens} tokens",
                     f"Summed over the real key and value tensors of the kept cache (numel × bytes): "
                     f"{result.cache_tokens} tokens × {result.layers} layers.")
    speedup = sum(cold_ms) / sum(warm_ms) if sum(warm_ms) > 0 else 0.0
    st.markdown(f"Reusing the prefix made the first token **{speedup:.1f}× faster** on this server. Filling the "
                f"shared cache once took {1000 * result.prefix_prefill_s:.0f} ms; each of its tensors has shape "
                f"[{' × '.join(map(str, result.key_shape))}] (batch × KV heads × tokens × head size, "
                f"{result.dtype}). " + ("After all readers ran, the kept cache still held only the prefix: each "
                                        "reader wrote into its own copy." if result.prefix_cache_unchanged else
                                        "**The kept cache changed: a reader wrote into it.**"))
    prefix_len = len(result.prefix_ids)
    show_chart(figure(first_token_times, [f"Reader {i + 1}" for i in range(n)], warm_ms, cold_ms,
                      [len(r.suffix_ids) for r in readers], [prefix_len + len(r.suffix_ids) for r in readers],
                      title=f"Time to first token after a {prefix_len}-token shared prefix"),
               partial(pd.DataFrame, {"reader": range(1, n + 1),
                                      "question_tokens": [len(r.suffix_ids) for r in readers],
                                      "prefix_tokens": prefix_len, "ms_first_token_cached": warm_ms,
                                      "ms_first_token_from_scratch": cold_ms,
                                      "ms_total_cached": [1000 * r.warm.total_s for r in readers],
                                      "ms_total_from_scratch": [1000 * r.cold.total_s for r in readers],
                                      "identical": [r.identical for r in readers]}),
               name="prompt-cache-first-token", key="ttft_chart")
    token_share = sum(result.saved_shares()) / n
    st.caption(f"The cached path skips {token_share:.0%} of the prompt tokens on average, yet the time to first token "
               "falls by less: on a 135M model on a CPU each forward pass has a fixed cost (30 layers of small "
               "matrix products, and Python) whatever its length, and the cached time includes copying the kept "
               "cache. With prompts of thousands of tokens, whose attention grows faster than their length, the "
               "time saved gets closer to the token share. Timings on this shared server vary with its load; "
               "**Measure again** to see the spread.")
    model = lm()
    st.dataframe(pd.DataFrame({"question": list(questions[:n]),
                               "answer": [decode(model, r.warm.new_ids) for r in readers],
                               "identical": ["✓" if r.identical else "✗" for r in readers]}),
                 hide_index=True, width="stretch", key="answers_table",
                 column_config={"question": st.column_config.TextColumn("Question"),
                                "identical": st.column_config.TextColumn(
                                    "Identical", help="✓ when the run from scratch produced the same token ids"),
                                "answer": st.column_config.TextColumn(
                     f"Answer (greedy, {new_tokens} tokens)", help="From the cached prefix; ✓ when the run from "
                     "scratch produced the same token ids")})
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.measured_at))
    st.caption(f":material/schedule: Measured at {measured} on this server's shared CPU and stored for these "
                 "inputs, so a shared link shows the same run. Each reader runs warm then cold back to back, so "
                 "both see the same load; the decode steps after the first token cost the same in both.")
    st.button("Measure again", key="again", icon=":material/refresh:",
                  on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
    if result.stopped_early:
        st.warning(f"Stopped after {n} of {result.requested_readers} readers: a measurement ends when its reader "
                   f"presses Stop, or after {TIME_BUDGET_S} s so that the shared server stays responsive.",
                   icon=":material/speed:")


def miss_section(prefix: str, prefix_ids: list[int]) -> None:
    st.subheader("2 · One character changed: where the cache stops matching")
    if len(prefix) < 2:
        st.info("A longer prefix is needed to change one of its characters.", icon=":material/edit:")
        return
    last = len(prefix) - 1
    stored = st.session_state.get("edit_at")
    if isinstance(stored, (int, float)) and not 0 <= stored <= last:   # the prefix got shorter since
        st.session_state["edit_at"] = min(max(0, int(stored)), last)
    default = {} if "edit_at" in st.session_state else {"value": min(40, last)}
    position = st.slider("Change the character at position", 0, last, **default,
                         key="edit_at", bind="query-params",
                         help="Characters from the start of the prefix. The character there is replaced by '#'.")
    position = min(max(0, int(position)), len(prefix) - 1)
    edited = prefix[:position] + ("#" if prefix[position] != "#" else "*") + prefix[position + 1:]
    edited_ids = token_ids(lm(), edited)
    reused = shared_prefix_length(prefix_ids, edited_ids)
    a, b = metric_row(2)
    described_metric(a, "Tokens reused", f"{reused} of {len(edited_ids)}", f"{reused / len(edited_ids):.0%} of the "
                     "edited prompt", "Leading tokens identical to the cached prefix. A cache is matched token "
                     "by token from the start; the first difference ends the match.")
    described_metric(b, "Tokens to recompute", f"{len(edited_ids) - reused}", "everything after the edit")
    context = escape_markdown(edited[max(0, position - 30):position + 30].replace("\n", " "))
    st.caption(f"Edited around position {position}: “…{context}…”. Every token after the change must be "
               "recomputed, even the ones whose text is unchanged: their keys and values depend on all earlier "
               "tokens. Put what changes (the question, the date, the user's name) at the end of a prompt.")


with concept_page("prompt-caching"):
    st.subheader("1 · One shared prefix, several readers: cached vs from scratch, timed live")
    prefix = prompt_input("prefix", DEFAULT_PREFIX, "Shared prefix (system prompt or document)", max_tokens=300,
                          height=180, help="Run once into a KV cache that every reader's request starts from. "
                                           "Up to 300 tokens; longer text is cut with a note.")
    left, right = st.columns([3, 1])
    with left:
        questions_text = prompt_input("questions", DEFAULT_QUESTIONS, f"Readers' questions (one per line, up to "
                                      f"{MAX_READERS})", max_tokens=120, height=110,
                                      help="Each line is one reader's request, appended after the prefix as "
                                           "'Question: … Answer:'.")
    new_tokens = right.slider("Answer tokens", 1, MAX_NEW_TOKENS, 8, 1, key="n", bind="query-params",
                              help="Greedy tokens generated per answer, on both paths.")
    questions = questions_from(questions_text)
    if not prefix.strip() or not questions:
        st.info("Type a shared prefix (a paragraph of 100 to 300 tokens shows the effect well) and at least one "
                "question to time prompt caching.", icon=":material/edit:")
    else:
        model = lm()
        prefix_ids = token_ids(model, prefix)
        suffixes = [token_ids(model, question_suffix(q)) for q in questions]
        token_counts_section(prefix_ids, questions, suffixes)
        timing_section(prefix, questions, suffixes, new_tokens)
        st.divider()
        miss_section(prefix, prefix_ids)
