from functools import partial

import pandas as pd
import streamlit as st

from charts.kv_allocator import batch_vs_budget, memory_over_time, page_pool, reservations_and_pages, sharing_over_time
from engine.serving.kv_allocator import (FULL_CONTEXT, MAX_TOKENS, batch_that_fits, memory_timeline, paged_pool_at,
                                 parallel_samples, peak_reserved)
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.serving import answer_set, answers_note, drawn_requests, kv_growth, reservations, samples_job
from ui.text import described_metric, escape_markdown, human_bytes

PAGE_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
BUDGETS_MB = [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
BUDGET_REQUESTS = 64            # requests drawn for the budget curve (the first ones are the batch above)
POOL_COLUMNS, POOL_MAX_PAGES = 32, 640
SAMPLE_TEMPERATURE = 0.8
SAMPLES_BUDGET_S = 60
DEFAULT_PROMPT = "Write a short poem about the sea."


def controls():
    cap, context = answer_set().max_new_tokens, lm().card.context_length
    modes = {f"its max_tokens (prompt + {cap})": MAX_TOKENS, f"the whole context ({context:,})": FULL_CONTEXT}
    a, b = st.columns(2)
    count = a.slider("Requests in the batch", 2, 32, 12, key="n", bind="query-params",
                     help="Drawn at random from SmolLM2's real answers to 24 bundled prompts; all start together.")
    page = b.select_slider("Page size (tokens)", PAGE_SIZES, value=16, key="page", bind="query-params",
                           help="Tokens per KV page (vLLM's block size, 16 by default).")
    chosen = a.segmented_control("A contiguous slab reserves", list(modes), default=list(modes)[0], key="reserve",
                                 bind="query-params", help="What a contiguous allocator sets aside when a request "
                                 "starts, since it cannot know how long the answer will be.")
    seed = whole_number_input("Draw (seed)", 0, 9999, 1, "seed", container=b,
                              help="Which answers are drawn. The same seed draws the same batch.")
    return count, (page if page in PAGE_SIZES else 16), modes.get(chosen, MAX_TOKENS), seed


def batch_section(count: int, page: int, mode: str, seed: int, per_token: float) -> None:
    requests = drawn_requests(count, seed)
    reserved = reservations(requests, mode)
    tl = memory_timeline(requests, page, reserved)
    mb = lambda tokens: [t * per_token / 1e6 for t in tokens]   # noqa: E731
    a, b, c, d = metric_row(4)
    described_metric(a, "Slabs: holding tokens", f"{tl.contiguous_utilisation:.1%}",
                     "of what it reserved, over the run", "Tokens stored ÷ tokens reserved, summed over every "
                     "iteration (memory × time): the measure behind vLLM's 20-38% for earlier systems.")
    described_metric(b, "Pages: holding tokens", f"{tl.paged_utilisation:.1%}",
                     f"waste {1 - tl.paged_utilisation:.1%}: last pages only", "The same ratio for pages taken as "
                     "needed; the only empty slots are in each request's last page.")
    described_metric(c, "Peak KV memory", f"{max(mb(tl.contiguous_reserved)):,.1f} MB",
                     f"paged: {max(mb(tl.paged_reserved)):,.1f} MB", "The most memory held at once by the batch.")
    described_metric(d, "Per cached token", f"{per_token:,.0f} B", "measured on the real cache",
                     "Bytes of SmolLM2's key and value tensors per token, read from a real cache as on the KV-cache "
                     "page (2 × layers × KV heads × head size × 4 bytes, float32).")
    show_chart(figure(memory_over_time, tl.iterations, mb(tl.used), mb(tl.future), mb(tl.never_used),
                      mb(tl.paged_reserved), title=f"{count} real answers decoded together: KV memory reserved "
                                                        f"vs holding tokens"),
               partial(pd.DataFrame, {"iteration": tl.iterations, "running_requests": tl.live,
                                      "tokens_stored": tl.used, "contiguous_reserved_tokens": tl.contiguous_reserved,
                                      "contiguous_future_tokens": tl.future, "contiguous_never_used_tokens":
                                      tl.never_used, "paged_reserved_tokens": tl.paged_reserved}),
               name="paged-attention-memory", key="memory_chart")
    st.caption(f"Waste, summed over the run: contiguous {tl.contiguous_waste:,} token-iterations reserved but empty "
               f"(= {tl.contiguous_total:,} reserved − {tl.used_total:,} used), paged {tl.paged_waste:,}. Kwon et "
               "al. split contiguous waste as here: slots reserved for tokens still to come, and slots never used "
               "(internal fragmentation); holes between slabs (external fragmentation) come on top in a real pool.")

    st.markdown("**Inside one iteration.** Pick a moment of the run: each running request's slab against its "
                "pages, then where those pages sit in the pool.")
    at = ranged_slider("Inspect iteration", 1, max(tl.iterations), max(tl.iterations) // 3, "at",
                       help="1 is the prefill; each later iteration adds one token to every running request.")
    live = [r for r in requests if r.cache_tokens(at)]
    names = [f"R{r.id + 1}" for r in live]
    show_chart(figure(reservations_and_pages, names, [r.cache_tokens(at) for r in live],
                      [r.final_cache_tokens for r in live], [res for r, res in zip(requests, reserved) if r in live],
                      page, title=f"Iteration {at}: each running request's slab and its pages (tokens)"),
               partial(pd.DataFrame, {"request": names, "tokens_held": [r.cache_tokens(at) for r in live],
                                      "final_tokens": [r.final_cache_tokens for r in live],
                                      "pages": [-(-r.cache_tokens(at) // page) for r in live]}),
               name="paged-attention-slabs-pages", key="slabs_chart")
    pool_section(requests, page, at)


def pool_section(requests, page: int, at: int) -> None:
    snap = paged_pool_at(requests, page, at)
    if snap.high_water > POOL_MAX_PAGES:
        st.caption(f"The pool needs {snap.high_water:,} pages of {page} tokens here, too many to draw; pick a larger "
                   "page size to see the block tables.")
        return
    pages = sorted(snap.owners)
    seqs = [snap.owners[p][0] for p in pages]
    show_chart(figure(page_pool, pages, POOL_COLUMNS, [s for s, _ in seqs], [str(s + 1) for s, _ in seqs],
                      [f"page {p}: R{s + 1}, logical block {b}, {snap.block_fill[s][b]}/{page} tokens"
                       for p, (s, b) in zip(pages, seqs)], [False] * len(pages), snap.high_water,
                      title=f"The physical pool at iteration {at}: {snap.pages_in_use} pages in use, numbered from 0"),
               partial(pd.DataFrame, {"physical_page": pages, "request": [s + 1 for s, _ in seqs],
                                      "logical_block": [b for _, b in seqs],
                                      "tokens": [snap.block_fill[s][b] for s, b in seqs]}),
               name="paged-attention-pool", key="pool_chart")
    ids = sorted(snap.tables)
    options = [f"R{i + 1}" for i in ids]
    if st.session_state.get("req") not in (None, *options):   # that request has ended by this iteration
        st.session_state["req"] = options[0]
    pick = st.selectbox("Block table of request", options, key="req", bind="query-params",
                        help="Its logical blocks in order, and the physical page each one lives in.")
    seq = ids[options.index(pick)] if pick in options else ids[0]
    table = pd.DataFrame([snap.tables[seq], snap.block_fill[seq]], index=["physical page", f"tokens (of {page})"],
                         columns=[f"block {b}" for b in range(len(snap.tables[seq]))])
    st.dataframe(table, width="stretch", key="block_table")
    st.caption("Each cell is one page, labelled with the request it belongs to; faint cells are free. A request's "
               "blocks are scattered through the pool as requests grow side by side and finished ones free their "
               "pages; the attention kernel follows the block table, so the order in memory never matters.")


def budget_section(count: int, page: int, mode: str, seed: int, per_token: float) -> None:
    st.subheader("2 · How many requests fit in a KV budget")
    budget = st.select_slider("KV-cache budget (MB)", BUDGETS_MB, value=64, key="budget", bind="query-params",
                              help="Memory set aside for the cache, after the weights. SmolLM2's float32 weights "
                                   "alone take about 538 MB.")
    budget = budget if budget in BUDGETS_MB else 64
    requests = drawn_requests(BUDGET_REQUESTS, seed)
    contiguous, paged = peak_reserved(requests, page, reservations(requests, mode))
    budget_tokens = budget * 1e6 / per_token
    fit_c, fit_p = batch_that_fits(contiguous, budget_tokens), batch_that_fits(paged, budget_tokens)
    a, b, c = metric_row(3)
    described_metric(a, "Contiguous fits", f"{fit_c} requests", "maximum reserved")
    described_metric(b, "Paged fits", f"{fit_p} requests", f"{page}-token pages")
    described_metric(c, "Batch gain", f"{fit_p / fit_c:.1f}×" if fit_c else "–",
                     "more requests at once" if fit_c else "contiguous fits none",
                     "The first n requests of the draw fit if their memory at its highest moment stays in budget.")
    show_chart(figure(batch_vs_budget, [t * per_token / 1e6 for t in contiguous],
                      [t * per_token / 1e6 for t in paged], budget,
                      title="How many requests fit, by the memory they need"),
               partial(pd.DataFrame, {"requests": list(range(1, len(paged) + 1)),
                                      "contiguous_peak_tokens": contiguous, "paged_peak_tokens": paged}),
               name="paged-attention-batch-vs-budget", key="budget_chart")
    st.caption(f"The first {BUDGET_REQUESTS} answers of the same draw, all started together. A bigger batch is the "
               "point: decode steps cost about the same for more rows (see continuous batching), so more requests "
               "in memory means more tokens per second.")


def sharing_section(page: int, seed: int, per_token: float) -> None:
    st.subheader("3 · Parallel samples share their prompt: copy-on-write, live")
    prompt = prompt_input("prompt", DEFAULT_PROMPT, "Prompt", max_tokens=120,
                          help="SmolLM2 samples several answers to it, in its chat template.")
    a, b = st.columns(2)
    n = a.slider("Samples (n)", 2, 8, 4, key="samples", bind="query-params",
                 help="Answers sampled at once from one prefill of the prompt.")
    new = b.slider("Max new tokens per sample", 16, 128, 64, 8, key="tokens", bind="query-params")
    if not prompt.strip():
        st.info("Type a prompt above to sample answers from it and share its pages.", icon=":material/edit:")
        return
    result = follow(samples_job(prompt, n, new, SAMPLE_TEMPERATURE, seed, SAMPLES_BUDGET_S), what="sampling")
    if result is None:
        return
    run = parallel_samples(result.prompt_tokens, list(result.output_tokens), page)
    page_mb = page * per_token / 1e6
    c1, c2, c3, c4 = metric_row(4)
    described_metric(c1, "Peak pages, prompt shared", f"{run.shared_peak}", f"{run.shared_peak * page_mb:,.2f} MB")
    described_metric(c2, "Peak pages, prompt copied", f"{run.private_peak}", f"{run.private_peak * page_mb:,.2f} MB")
    described_metric(c3, "Memory saved", f"{run.saved:.0%}", f"{run.copies} copy-on-write page copies",
                     "A shared page that is only partly full is copied when a sample first writes into it.")
    described_metric(c4, "Real batch cache", human_bytes(result.cache_bytes),
                     f"shape [{' × '.join(map(str, result.cache_shape))}]",
                     "transformers' cache for this batch, summed over its real tensors: rectangular, every row "
                     "padded to the longest sample and holding its own copy of the prompt.")
    show_chart(figure(sharing_over_time, [p * page_mb for p in run.shared_pages],
                      [p * page_mb for p in run.private_pages],
                      title=f"{n} samples of a {result.prompt_tokens}-token prompt: pages in use"),
               partial(pd.DataFrame, {"iteration": list(range(1, len(run.shared_pages) + 1)),
                                      "pages_shared_prompt": run.shared_pages,
                                      "pages_copied_prompt": run.private_pages}),
               name="paged-attention-sharing", key="sharing_chart")
    snap = run.snapshot
    if snap.high_water <= POOL_MAX_PAGES:
        pages = sorted(snap.owners)
        shared = [len(snap.owners[p]) > 1 for p in pages]
        seqs = [snap.owners[p][0] for p in pages]
        show_chart(figure(page_pool, pages, POOL_COLUMNS, [s for s, _ in seqs],
                          ["P" if sh else str(s + 1) for sh, (s, _) in zip(shared, seqs)],
                          [f"page {p}: " + (f"prompt, shared by {len(snap.owners[p])} samples" if sh else
                                            f"sample {s + 1}, block {b}") + f", {snap.block_fill[s][b]}/{page} tokens"
                           for p, sh, (s, b) in zip(pages, shared, seqs)], shared, snap.high_water,
                          title=f"The pool at iteration {snap.iteration}: P = prompt page shared by every sample"),
                   partial(pd.DataFrame, {"physical_page": pages, "shared_by": [len(snap.owners[p]) for p in pages]}),
                   name="paged-attention-shared-pool", key="shared_pool_chart")
    with st.expander(f"The {n} sampled answers (temperature {SAMPLE_TEMPERATURE}, seed {seed})"):
        for i, (text, tokens) in enumerate(zip(result.texts, result.output_tokens)):
            st.markdown(f"**Sample {i + 1}** ({tokens} tokens): {escape_markdown(text)}")
    if result.stopped_early:
        st.warning(f"Stopped before every sample ended: a run ends after {SAMPLES_BUDGET_S} s or when its reader "
                   "presses Stop.", icon=":material/speed:")


with concept_page("paged-attention"):
    st.subheader("1 · A batch of real answers in memory: contiguous slabs vs pages")
    st.caption(answers_note() + " Each request below is one of them, drawn by the seed.")
    count, page, mode, seed = controls()
    per_token = kv_growth().per_token_measured
    batch_section(count, page, mode, seed, per_token)
    st.divider()
    budget_section(count, page, mode, seed, per_token)
    st.divider()
    sharing_section(page, seed, per_token)
