"""KV-cache allocation simulated token by token: contiguous reservations against fixed-size pages.

A serving system must put every sequence's keys and values somewhere before it knows how long the answer will
be. Two ways are simulated here, on real answer lengths (engine.serving.workload):
- contiguous: each request reserves one slab for the longest it may get (its prompt plus `max_tokens`, or the
  model's whole context) when it starts, and frees it when it ends;
- paged (PagedAttention, Kwon et al. 2023): the cache is cut into pages of `page_size` tokens; a sequence takes a
  new page only when its last one is full, and a block table maps its logical blocks to physical pages anywhere
  in the pool. Waste is at most one partly filled page per sequence.
`PagedAllocator` also forks sequences that share a prompt (parallel samples): they point at the same physical
pages, counted by reference, and the first write into a shared, partly filled page copies it (copy-on-write).

Timing convention (the same as the model's): iteration 1 is the prefill, which stores the prompt's keys and
values and produces the first token; each later iteration feeds the previous token (one more cached token) and
produces the next. A request producing L tokens lives L iterations and ends holding prompt + L - 1 tokens.
Pure Python and deterministic: no model, no randomness.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

FULL_CONTEXT = "context"
MAX_TOKENS = "max_tokens"


@dataclass(frozen=True)
class Request:
    id: int
    prompt_tokens: int
    output_tokens: int       # tokens the model produces, its end-of-turn token included (>= 1)

    def cache_tokens(self, iteration: int) -> int:
        """Tokens in the cache at the end of `iteration` (1-based), 0 once the request has ended."""
        if iteration < 1 or iteration > self.output_tokens:
            return 0
        return self.prompt_tokens + iteration - 1

    @property
    def final_cache_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens - 1


def pages_for(tokens: int, page_size: int) -> int:
    return math.ceil(max(0, tokens) / max(1, page_size))


def reservation(request: Request, mode: str, max_new_tokens: int, context: int) -> int:
    """Tokens a contiguous allocator sets aside for `request` when it starts: everything it might reach."""
    if mode == FULL_CONTEXT:
        return context
    return min(context, request.prompt_tokens + max_new_tokens)


# ----------------------------------------------------------------------------------------------------------
# A batch decoded together: memory per iteration
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryTimeline:
    """Tokens of KV memory at the end of every iteration for a batch started together.

    Contiguous reserved memory splits into: `used` (tokens stored), `future` (reserved for tokens the request
    will still produce) and `never_used` (reserved beyond the request's final length: internal fragmentation).
    Paged memory splits into `used` and `page_slack` (the unfilled slots of each sequence's last page).
    """
    iterations: list[int]
    used: list[int]
    future: list[int]
    never_used: list[int]
    paged_reserved: list[int]
    live: list[int]                      # requests still running
    page_size: int

    @property
    def contiguous_reserved(self) -> list[int]:
        return [u + f + n for u, f, n in zip(self.used, self.future, self.never_used)]

    @property
    def page_slack(self) -> list[int]:
        return [p - u for p, u in zip(self.paged_reserved, self.used)]

    # Totals over the whole run, in token-iterations (memory held x how long): the measure Kwon et al. average.
    @property
    def used_total(self) -> int:
        return sum(self.used)

    @property
    def contiguous_total(self) -> int:
        return sum(self.contiguous_reserved)

    @property
    def paged_total(self) -> int:
        return sum(self.paged_reserved)

    @property
    def contiguous_utilisation(self) -> float:
        """Share of reserved contiguous memory that holds a token, averaged over the run."""
        return self.used_total / self.contiguous_total if self.contiguous_total else 0.0

    @property
    def paged_utilisation(self) -> float:
        return self.used_total / self.paged_total if self.paged_total else 0.0

    @property
    def contiguous_waste(self) -> int:
        return self.contiguous_total - self.used_total

    @property
    def paged_waste(self) -> int:
        return self.paged_total - self.used_total


def memory_timeline(requests: list[Request], page_size: int, reservations: list[int]) -> MemoryTimeline:
    """Every request starts at iteration 1 and decodes in lockstep until its own last token."""
    if len(reservations) != len(requests):
        raise ValueError("one reservation per request")
    last = max((r.output_tokens for r in requests), default=0)
    timeline = MemoryTimeline([], [], [], [], [], [], page_size)
    for it in range(1, last + 1):
        used = future = never = paged = live = 0
        for r, reserved in zip(requests, reservations):
            held = r.cache_tokens(it)
            if not held:
                continue
            live += 1
            used += held
            future += r.final_cache_tokens - held
            never += max(0, reserved - r.final_cache_tokens)
            paged += pages_for(held, page_size) * page_size
        timeline.iterations.append(it)
        timeline.used.append(used)
        timeline.future.append(future)
        timeline.never_used.append(never)
        timeline.paged_reserved.append(paged)
        timeline.live.append(live)
    return timeline


def peak_reserved(requests: list[Request], page_size: int, reservations: list[int]) -> tuple[list[int], list[int]]:
    """For n = 1..len(requests): the most memory (tokens) the first n requests, started together, hold at any
    iteration, contiguous and paged. Contiguous memory is reserved whole at the start, so its peak is the sum of
    the reservations; paged memory grows and shrinks, so its peak comes from the iteration-by-iteration sum."""
    last = max((r.output_tokens for r in requests), default=0)
    paged_by_iteration = [0] * (last + 1)
    contiguous, paged, reserved_sum, peak = [], [], 0, 0
    for r, reserved in zip(requests, reservations):
        reserved_sum += reserved
        for it in range(1, r.output_tokens + 1):
            paged_by_iteration[it] += pages_for(r.cache_tokens(it), page_size) * page_size
            peak = max(peak, paged_by_iteration[it])
        contiguous.append(reserved_sum)
        paged.append(peak)
    return contiguous, paged


def batch_that_fits(peaks: list[int], budget_tokens: float) -> int:
    """The most requests (taken in order) whose peak memory stays within the budget: they run without waiting."""
    fits = 0
    for n, peak in enumerate(peaks, start=1):
        if peak > budget_tokens:
            break
        fits = n
    return fits


# ----------------------------------------------------------------------------------------------------------
# Physical pages, block tables and copy-on-write
# ----------------------------------------------------------------------------------------------------------

@dataclass
class PagedAllocator:
    """A pool of fixed-size pages with a block table per sequence, reference counts and copy-on-write.

    Free pages are handed out lowest number first, so a pool that has served finished sequences gives new ones
    pages scattered between other sequences' pages: logical order and physical order part ways, which the block
    table makes harmless.
    """
    page_size: int
    tables: dict[int, list[int]] = field(default_factory=dict)     # sequence -> physical page per logical block
    tokens: dict[int, int] = field(default_factory=dict)           # sequence -> tokens stored
    refcount: dict[int, int] = field(default_factory=dict)         # physical page -> sequences pointing at it
    copies: int = 0                                                # copy-on-write page copies made
    allocated: int = 0                                             # pages ever taken from the pool
    _free: list[int] = field(default_factory=list)
    _next: int = 0

    def _take(self) -> int:
        self.allocated += 1
        if self._free:
            return heapq.heappop(self._free)
        self._next += 1
        return self._next - 1

    def _release(self, page: int) -> None:
        self.refcount[page] -= 1
        if self.refcount[page] == 0:
            del self.refcount[page]
            heapq.heappush(self._free, page)

    def append(self, seq: int, count: int = 1) -> None:
        """Store `count` more tokens of `seq`: a new page when the last is full; a private copy of the last page
        first if it is shared and still has room (copy-on-write)."""
        table = self.tables.setdefault(seq, [])
        held = self.tokens.get(seq, 0)
        for _ in range(count):
            if held % self.page_size == 0:
                page = self._take()
                self.refcount[page] = 1
                table.append(page)
            elif self.refcount[table[-1]] > 1:
                page = self._take()
                self.refcount[page] = 1
                self._release(table[-1])
                table[-1] = page
                self.copies += 1
            held += 1
        self.tokens[seq] = held

    def fork(self, parent: int, child: int) -> None:
        """`child` starts as a copy of `parent` that shares all its pages (nothing is copied yet)."""
        self.tables[child] = list(self.tables[parent])
        self.tokens[child] = self.tokens[parent]
        for page in self.tables[child]:
            self.refcount[page] += 1

    def free(self, seq: int) -> None:
        for page in self.tables.pop(seq, []):
            self._release(page)
        self.tokens.pop(seq, None)

    @property
    def pages_in_use(self) -> int:
        return len(self.refcount)

    def block_fill(self, seq: int) -> list[int]:
        """Tokens held in each of `seq`'s logical blocks."""
        held, p = self.tokens.get(seq, 0), self.page_size
        return [min(p, held - i * p) for i in range(len(self.tables.get(seq, [])))]

    def page_owners(self) -> dict[int, list[tuple[int, int]]]:
        """Physical page -> [(sequence, logical block)] of every sequence pointing at it."""
        owners: dict[int, list[tuple[int, int]]] = {}
        for seq, table in sorted(self.tables.items()):
            for block, page in enumerate(table):
                owners.setdefault(page, []).append((seq, block))
        return owners


@dataclass(frozen=True)
class PoolSnapshot:
    """The paged pool at the end of one iteration."""
    iteration: int
    tables: dict[int, list[int]]
    block_fill: dict[int, list[int]]
    owners: dict[int, list[tuple[int, int]]]
    pages_in_use: int
    high_water: int              # pool pages ever numbered (the pool size this run needed)
    copies: int


def _snapshot(alloc: PagedAllocator, iteration: int) -> PoolSnapshot:
    return PoolSnapshot(iteration=iteration, tables={s: list(t) for s, t in alloc.tables.items()},
                        block_fill={s: alloc.block_fill(s) for s in alloc.tables}, owners=alloc.page_owners(),
                        pages_in_use=alloc.pages_in_use, high_water=alloc._next, copies=alloc.copies)


def paged_pool_at(requests: list[Request], page_size: int, iteration: int) -> PoolSnapshot:
    """Run the batch through a PagedAllocator (prefill, then one token per live request per iteration, pages
    freed when a request ends) and return the pool as it stands at the end of `iteration`."""
    alloc = PagedAllocator(page_size)
    last = max((r.output_tokens for r in requests), default=1)
    iteration = min(max(1, int(iteration)), last)
    for it in range(1, iteration + 1):
        for r in requests:
            if it == 1:
                alloc.append(r.id, r.prompt_tokens)
            elif it <= r.output_tokens:
                alloc.append(r.id, 1)
        if it < iteration:   # requests that ended at `iteration` are shown with their pages still held
            for r in requests:
                if r.output_tokens == it:
                    alloc.free(r.id)
    return _snapshot(alloc, iteration)


@dataclass(frozen=True)
class SharingRun:
    """n samples of one prompt through the paged pool, with and without sharing the prompt's pages."""
    prompt_tokens: int
    outputs: tuple[int, ...]
    page_size: int
    shared_pages: list[int]          # pages in use at the end of each iteration, prompt shared (copy-on-write)
    private_pages: list[int]         # the same samples each holding its own copy of the prompt
    copies: int                      # copy-on-write copies made
    snapshot: PoolSnapshot           # the shared pool at the iteration asked for

    @property
    def shared_peak(self) -> int:
        return max(self.shared_pages, default=0)

    @property
    def private_peak(self) -> int:
        return max(self.private_pages, default=0)

    @property
    def saved(self) -> float:
        return 1 - self.shared_peak / self.private_peak if self.private_peak else 0.0


def parallel_samples(prompt_tokens: int, outputs: list[int], page_size: int,
                     show_iteration: int | None = None) -> SharingRun:
    """Sample 0 prefills the prompt; samples 1..n-1 fork from it and share its pages; each then appends its own
    tokens. Compared with n independent sequences that each store the prompt. Samples free their pages after
    their last iteration. The pool is kept as it stands at `show_iteration` (default: the last iteration every
    sample is still running)."""
    n = len(outputs)
    if n == 0 or prompt_tokens < 1 or min(outputs) < 1:
        raise ValueError("need at least one sample of at least one token, and a prompt")
    shared, private = PagedAllocator(page_size), PagedAllocator(page_size)
    shared.append(0, prompt_tokens)
    for s in range(1, n):
        shared.fork(0, s)
    for s in range(n):
        private.append(s, prompt_tokens)
    shared_use, private_use = [shared.pages_in_use], [private.pages_in_use]
    last = max(outputs)
    show = min(max(1, int(show_iteration if show_iteration is not None else min(outputs))), last)
    snap = _snapshot(shared, 1)
    for it in range(2, last + 1):
        for s, out in enumerate(outputs):
            if it - 1 == out:     # ended at the previous iteration
                shared.free(s)
                private.free(s)
        for s, out in enumerate(outputs):
            if it <= out:
                shared.append(s, 1)
                private.append(s, 1)
        shared_use.append(shared.pages_in_use)
        private_use.append(private.pages_in_use)
        if it == show:
            snap = _snapshot(shared, it)
    return SharingRun(prompt_tokens=prompt_tokens, outputs=tuple(outputs), page_size=page_size,
                      shared_pages=shared_use, private_pages=private_use, copies=shared.copies, snapshot=snap)
