"""The KV allocator simulation: memory adds up, pages never waste more than one page per sequence, block tables
and reference counts stay consistent, copy-on-write copies exactly the shared partial page."""
import random

import pytest

from engine.serving.kv_allocator import (FULL_CONTEXT, MAX_TOKENS, PagedAllocator, Request, batch_that_fits,
                                 memory_timeline, paged_pool_at, pages_for, parallel_samples, peak_reserved,
                                 reservation)


def random_requests(seed: int, n: int = 12) -> list[Request]:
    rng = random.Random(seed)
    return [Request(i, rng.randint(1, 60), rng.randint(1, 120)) for i in range(n)]


def test_cache_tokens_follow_the_model_convention():
    r = Request(0, prompt_tokens=5, output_tokens=3)
    assert [r.cache_tokens(i) for i in range(0, 5)] == [0, 5, 6, 7, 0]   # prefill stores 5; the last token unfed
    assert r.final_cache_tokens == 7


def test_reservations():
    r = Request(0, 30, 10)
    assert reservation(r, MAX_TOKENS, 256, 8192) == 286
    assert reservation(r, FULL_CONTEXT, 256, 8192) == 8192
    assert reservation(r, MAX_TOKENS, 256, 100) == 100        # never beyond the context


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("page", [1, 7, 16, 64])
def test_memory_totals_reconcile(seed, page):
    requests = random_requests(seed)
    reserved = [reservation(r, MAX_TOKENS, 128, 8192) for r in requests]
    tl = memory_timeline(requests, page, reserved)
    # Tokens stored, counted independently per request and iteration.
    assert tl.used_total == sum(r.cache_tokens(i) for r in requests for i in range(1, r.output_tokens + 1))
    # Contiguous: each request holds its reservation for each of its iterations; waste = reserved - used.
    assert tl.contiguous_total == sum(res * r.output_tokens for r, res in zip(requests, reserved))
    assert tl.contiguous_waste == tl.contiguous_total - tl.used_total
    assert tl.paged_waste == tl.paged_total - tl.used_total
    # Paged: waste below one page per live request at every iteration.
    for live, slack in zip(tl.live, tl.page_slack):
        assert 0 <= slack <= live * (page - 1)
    assert tl.paged_total <= tl.contiguous_total
    assert all(u + f + n == c for u, f, n, c in zip(tl.used, tl.future, tl.never_used, tl.contiguous_reserved))
    assert tl.iterations == list(range(1, max(r.output_tokens for r in requests) + 1))


def test_page_size_one_wastes_nothing():
    tl = memory_timeline(random_requests(3), 1, [500] * 12)
    assert tl.paged_waste == 0 and tl.paged_utilisation == 1.0


def test_peaks_and_the_batch_that_fits():
    requests = random_requests(7, 20)
    reserved = [reservation(r, MAX_TOKENS, 128, 8192) for r in requests]
    contiguous, paged = peak_reserved(requests, 16, reserved)
    assert contiguous == [sum(reserved[:n]) for n in range(1, 21)]
    for n in (1, 5, 20):   # against the full timeline of the first n requests
        assert paged[n - 1] == max(memory_timeline(requests[:n], 16, reserved[:n]).paged_reserved)
    budget = paged[9]
    assert batch_that_fits(paged, budget) >= 10
    assert batch_that_fits(contiguous, budget) == sum(1 for c in contiguous if c <= budget)
    assert batch_that_fits(paged, 0) == 0


def test_block_tables_map_every_token_once():
    requests = random_requests(11)
    snap = paged_pool_at(requests, 16, 40)
    live = [r for r in requests if r.output_tokens >= 40]
    assert sorted(snap.tables) == sorted(r.id for r in live)
    for r in live:
        assert sum(snap.block_fill[r.id]) == r.cache_tokens(40)
        assert len(snap.tables[r.id]) == pages_for(r.cache_tokens(40), 16)
    pages = [p for t in snap.tables.values() for p in t]
    assert len(pages) == len(set(pages)) == snap.pages_in_use   # no sharing without forks
    assert snap.high_water >= snap.pages_in_use


def test_freed_pages_are_reused():
    alloc = PagedAllocator(4)
    alloc.append(0, 8)
    alloc.append(1, 4)
    alloc.free(0)
    alloc.append(2, 5)          # takes the two freed pages, lowest first
    assert alloc.tables[2] == [0, 1] and alloc.pages_in_use == 3


def test_copy_on_write_copies_only_the_shared_partial_page():
    alloc = PagedAllocator(4)
    alloc.append(0, 6)                       # pages [0 full, 1 half]
    alloc.fork(0, 1)
    alloc.fork(0, 2)
    assert alloc.refcount == {0: 3, 1: 3} and alloc.copies == 0
    alloc.append(1)                          # shared partial page: copy first
    alloc.append(2)
    alloc.append(0)                          # the last holder writes in place
    assert alloc.copies == 2
    assert alloc.refcount[0] == 3 and alloc.refcount[1] == 1
    assert alloc.tables[0][0] == alloc.tables[1][0] == alloc.tables[2][0] == 0
    assert len({alloc.tables[s][1] for s in range(3)}) == 3
    assert [alloc.block_fill(s) for s in range(3)] == [[4, 3]] * 3
    for s in range(3):
        alloc.free(s)
    assert alloc.pages_in_use == 0


@pytest.mark.parametrize("prompt, page", [(30, 16), (32, 16), (5, 1), (40, 64)])
def test_parallel_samples_share_the_prompt(prompt, page):
    outputs = [20, 45, 3, 45]
    run = parallel_samples(prompt, outputs, page)
    n = len(outputs)
    assert run.copies == (n - 1 if prompt % page else 0)
    # Without sharing: each sample its own pages, all samples alive at iteration 3.
    assert run.private_pages[2] == sum(pages_for(prompt + 2, page) for _ in outputs)
    full_prompt_pages = prompt // page
    assert run.shared_pages[2] == full_prompt_pages + n * (pages_for(prompt + 2, page) - full_prompt_pages)
    assert run.shared_peak <= run.private_peak and 0 <= run.saved < 1
    snap = run.snapshot
    assert snap.iteration == 3 and sorted(snap.tables) == [0, 1, 2, 3]
    shared = [p for p, owners in snap.owners.items() if len(owners) == n]
    assert len(shared) == full_prompt_pages


def test_parallel_samples_end_with_only_the_longest():
    run = parallel_samples(10, [5, 9], 4, show_iteration=9)
    assert sorted(run.snapshot.tables) == [1] and sum(run.snapshot.block_fill[1]) == 10 + 9 - 1
    assert len(run.shared_pages) == 9
