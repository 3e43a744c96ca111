import math
from functools import partial

import pandas as pd
import streamlit as st

from charts.decoding import beam_tree
from engine.decoding.strategies import distinct_ngrams, length_normalised
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.decoding import beam, greedy, pieces, text_of
from ui.inputs import stop_if_empty
from ui.layout import metric_row
from ui.text import described_metric, escape_markdown

PROMPT_KEY = "prompt"
DEFAULT_PROMPT = "The best way to learn a language is"
PRESETS = ["The best way to learn a language is", "Here is a short poem about the sea:", "Q: What is the capital "
           "of Italy?\nA:"]


def use_prompt(text: str) -> None:
    st.session_state[PROMPT_KEY] = text


with concept_page("beam-search"):
    prompt = prompt_input(PROMPT_KEY, DEFAULT_PROMPT, "Prompt", height=80)
    with st.container(horizontal=True, gap="small"):
        for i, text in enumerate(PRESETS):
            st.button(text.replace("\n", " "), key=f"preset-{i}", on_click=use_prompt, args=(text,), width="content")
    stop_if_empty(prompt, "Type a prompt above (or pick one) to grow a beam-search tree from it.")
    c1, c2, c3 = st.columns(3)
    width = c1.slider("Beam width", 1, 8, 3, key="width", bind="query-params",
                      help="How many partial continuations are kept after each step. 1 is greedy decoding.")
    steps = c2.slider("New tokens", 2, 14, 8, key="steps", bind="query-params",
                      help="The most tokens a beam may add (a beam that writes end-of-text ends earlier).")
    penalty = c3.slider("Length penalty", 0.0, 2.0, 1.0, 0.1, key="lp", bind="query-params",
                        help="Finished beams are ranked by log-probability / length^penalty, as in transformers. "
                             "0 ranks by log-probability alone, which favours short endings; larger values favour "
                             "longer beams.")

    result = beam(prompt, width, steps, penalty)
    if not result.nodes:
        st.info("Nothing to search: ask for at least one new token.", icon=":material/edit:")
        st.stop()
    nodes = result.nodes
    labels = [visible(t) for t in pieces(tuple(n.token for n in nodes))]
    best_path = result.hypotheses[result.best]
    show_chart(figure(beam_tree, [n.step + 1 for n in nodes], [n.parent for n in nodes], labels,
                      [n.cumulative for n in nodes], [n.kept for n in nodes], [n.finished for n in nodes],
                      list(best_path), title=f"Every candidate considered: {width} beam(s), best on top at each step"),
               partial(pd.DataFrame, {"step": [n.step + 1 for n in nodes], "token": labels,
                                      "token_id": [n.token for n in nodes],
                                      "parent_row": [n.parent for n in nodes],
                                      "token_logprob": [n.logprob for n in nodes],
                                      "beam_logprob": [n.cumulative for n in nodes], "kept": [n.kept for n in nodes],
                                      "ended": [n.finished for n in nodes]}),
               name=f"beam-tree-w{width}", key="tree")
    pruned = sum(not n.kept for n in nodes)
    proposals = "its most likely next token" if width == 1 else f"its {width} most likely next tokens"
    survivors = "the best beam" if width == 1 else f"the {width} best beams overall"
    st.caption(f"{len(nodes)} candidates considered, {pruned} pruned (grey). At each step every kept beam proposes "
               f"{proposals} and only {survivors}, by total log-probability, survive. A ringed dot is an "
               "end-of-text: that beam is finished.")

    rows = []
    for h, path in enumerate(result.hypotheses):
        ids = tuple(nodes[i].token for i in path)
        rows.append({"result": "best" if h == result.best else "", "text": text_of(ids), "tokens": len(ids),
                     "log-probability": result.logprob(h), "score": result.score(h),
                     "ended": nodes[path[-1]].finished})
    table = pd.DataFrame(rows).sort_values("score", ascending=False)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "log-probability": st.column_config.NumberColumn(format="%.2f", help="Sum of ln p over the beam's tokens."),
        "score": st.column_config.NumberColumn(format="%.3f", help="log-probability / tokens^length penalty."),
        "text": st.column_config.TextColumn("continuation")})

    st.subheader("Beam search against greedy", anchor=False)
    best_ids = result.best_tokens
    trace = greedy(prompt, steps)
    g_ids = trace.new_ids
    m1, m2, m3 = metric_row(3, width=300)
    described_metric(m1, "Log-probability", f"{result.logprob(result.best):.2f} vs {trace.logprob:.2f}",
                     "beam vs greedy", help="Higher (closer to 0) means the model finds the text likelier.")
    described_metric(m2, "Score with the length penalty",
                     f"{result.score(result.best):.3f} vs {length_normalised(trace.logprob, len(g_ids), penalty):.3f}",
                     f"log-probability / length^{penalty:.1f}")
    described_metric(m3, "Distinct 2-grams",
                     " vs ".join(f"{100 * distinct_ngrams(list(i), 2):.0f}%" if len(i) > 1 else "–"
                                 for i in (best_ids, g_ids)),
                     "beam vs greedy: lower means more repetition")
    shown_prompt = f"*{escape_markdown(prompt.rstrip())}*"
    st.markdown(f"**Beam:** {shown_prompt}{escape_markdown(text_of(tuple(best_ids)))}  \n"
                f"**Greedy:** {shown_prompt}{escape_markdown(text_of(tuple(g_ids)))}")
    if width == 1:
        st.caption("With one beam, beam search keeps only the single best token at each step: it is greedy "
                   "decoding, token for token.")
    elif result.logprob(result.best) > trace.logprob + 1e-3:
        st.caption(f"The beam's text is {math.exp(result.logprob(result.best) - trace.logprob):,.1f} times as "
                   "likely as greedy's (if both have the same length): keeping alternatives paid off.")
