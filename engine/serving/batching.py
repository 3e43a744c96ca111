"""A serving scheduler simulated on a stream of requests: static (request-level) against continuous
(iteration-level) batching.

The requests' lengths are real answers of the model (engine.serving.workload) and every step costs what it was measured
to cost on this machine (engine.serving.workload.StepTimes): only the arrival times are drawn, from a seeded Poisson
process, so the same seed gives the same timeline.

- Static batching: when the engine is free it takes up to `max_batch` waiting requests and runs them to the end
  as one rectangular batch. The prompts are padded to the longest (padding computed, then thrown away); every
  decode step runs all rows until the longest answer ends, so rows whose answer has ended are still computed
  (decode padding); and no request returns, and no new one joins, before the batch ends (Orca's "early-finished
  and late-joining requests").
- Continuous batching (Orca's iteration-level scheduling, Yu et al. 2022): the batch is rebuilt at every step.
  Finished requests leave at once and waiting ones take their slots; an iteration that admits requests also runs
  their prompts' prefill (without padding), so its cost is a decode step for the running rows plus that prefill.

Conventions: a request producing L tokens gets its first from its prefill and the other L - 1 from decode steps;
its time to first token runs from its arrival to the end of its prefill; its latency from arrival to the moment
its whole answer is returned.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

STATIC = "static"
CONTINUOUS = "continuous"


@dataclass(frozen=True)
class StreamRequest:
    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int      # >= 1


def request_stream(shapes: list[tuple[int, int]], count: int, rate_per_s: float, seed: int) -> list[StreamRequest]:
    """`count` requests, each a (prompt tokens, output tokens) pair drawn from `shapes`, arriving as a Poisson
    process of `rate_per_s` requests per second (all at time 0 if the rate is infinite). Deterministic for a seed."""
    if not shapes:
        raise ValueError("no request shapes to draw from")
    rng = random.Random(int(seed))
    t, out = 0.0, []
    for i in range(max(0, int(count))):
        if i and math.isfinite(rate_per_s):
            t += rng.expovariate(rate_per_s)
        prompt, output = shapes[rng.randrange(len(shapes))]
        out.append(StreamRequest(id=i, arrival_s=t, prompt_tokens=int(prompt), output_tokens=max(1, int(output))))
    return out


@dataclass(frozen=True)
class Segment:
    request: int
    kind: str               # "waiting", "prefill", "decoding", "padding" (static: answer done, held in its batch)
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Step:
    start_s: float
    end_s: float
    rows: int               # rows computed (static: the whole batch; continuous: the running requests)
    useful_rows: int        # rows whose token is kept
    prefill_tokens: int     # prompt tokens run in this step, padding included
    prefill_padding: int


@dataclass(frozen=True)
class RequestResult:
    id: int
    arrival_s: float
    start_s: float          # admitted into a batch
    first_token_s: float
    done_s: float           # its last token computed
    returned_s: float       # the answer handed back (static: when its batch ends)
    output_tokens: int

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def latency_s(self) -> float:
        return self.returned_s - self.arrival_s


@dataclass(frozen=True)
class Timeline:
    policy: str
    max_batch: int
    results: list[RequestResult]
    segments: list[Segment]
    steps: list[Step]
    tokens_served: int      # counted step by step as tokens are produced

    @property
    def tokens_requested(self) -> int:
        return sum(r.output_tokens for r in self.results)

    @property
    def makespan_s(self) -> float:
        if not self.results:
            return 0.0
        return max(r.returned_s for r in self.results) - min(r.arrival_s for r in self.results)

    @property
    def throughput(self) -> float:
        """Output tokens per second, from the first arrival to the last answer returned."""
        return self.tokens_served / self.makespan_s if self.makespan_s > 0 else 0.0

    @property
    def decode_padding(self) -> int:
        """Rows computed in decode steps whose token is thrown away (their answer had ended)."""
        return sum(s.rows - s.useful_rows for s in self.steps)

    @property
    def prefill_padding(self) -> int:
        return sum(s.prefill_padding for s in self.steps)

    @property
    def computed_tokens(self) -> int:
        """Every token position the model computed: decode rows plus prefill tokens, padding included."""
        return sum(s.rows + s.prefill_tokens for s in self.steps)

    @property
    def padding_share(self) -> float:
        total = self.computed_tokens
        return (self.decode_padding + self.prefill_padding) / total if total else 0.0

    @property
    def busy_s(self) -> float:
        return sum(s.end_s - s.start_s for s in self.steps)

    def ttfts(self) -> list[float]:
        return [r.ttft_s for r in self.results]

    def latencies(self) -> list[float]:
        return [r.latency_s for r in self.results]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated linearly between order statistics (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


StepCost = Callable[[int], float]      # rows -> seconds of one decode step
PrefillCost = Callable[[int], float]   # prompt tokens -> seconds


@dataclass
class _Live:
    request: StreamRequest
    start_s: float
    produced: int = 0
    first_token_s: float = 0.0
    done_s: float = 0.0
    marks: list[tuple[str, float, float]] = field(default_factory=list)


def simulate(policy: str, stream: list[StreamRequest], max_batch: int, decode_cost: StepCost,
             prefill_cost: PrefillCost) -> Timeline:
    if policy == STATIC:
        return simulate_static(stream, max_batch, decode_cost, prefill_cost)
    return simulate_continuous(stream, max_batch, decode_cost, prefill_cost)


def simulate_static(stream: list[StreamRequest], max_batch: int, decode_cost: StepCost,
                    prefill_cost: PrefillCost) -> Timeline:
    max_batch = max(1, int(max_batch))
    queue = sorted(stream, key=lambda r: (r.arrival_s, r.id))
    t, served, i = 0.0, 0, 0
    steps, segments, results = [], [], []
    while i < len(queue):
        t = max(t, queue[i].arrival_s)
        batch = [r for r in queue[i:i + max_batch] if r.arrival_s <= t]
        i += len(batch)
        rows = len(batch)
        longest_prompt = max(r.prompt_tokens for r in batch)
        padded = rows * longest_prompt
        prefill_end = t + prefill_cost(padded)
        steps.append(Step(t, prefill_end, 0, 0, padded, padded - sum(r.prompt_tokens for r in batch)))
        served += rows
        produced = {r.id: 1 for r in batch}
        done = {r.id: prefill_end for r in batch if r.output_tokens == 1}
        now = prefill_end
        for _ in range(max(r.output_tokens for r in batch) - 1):
            end = now + decode_cost(rows)
            useful = 0
            for r in batch:
                if produced[r.id] < r.output_tokens:
                    produced[r.id] += 1
                    useful += 1
                    if produced[r.id] == r.output_tokens:
                        done[r.id] = end
            steps.append(Step(now, end, rows, useful, 0, 0))
            served += useful
            now = end
        for r in batch:
            segments += [Segment(r.id, "waiting", r.arrival_s, t), Segment(r.id, "prefill", t, prefill_end),
                         Segment(r.id, "decoding", prefill_end, done[r.id]), Segment(r.id, "padding", done[r.id], now)]
            results.append(RequestResult(r.id, r.arrival_s, t, prefill_end, done[r.id], now, r.output_tokens))
        t = now
    return _timeline(STATIC, max_batch, results, segments, steps, served)


def simulate_continuous(stream: list[StreamRequest], max_batch: int, decode_cost: StepCost,
                        prefill_cost: PrefillCost) -> Timeline:
    max_batch = max(1, int(max_batch))
    queue = sorted(stream, key=lambda r: (r.arrival_s, r.id))
    t, served, i = 0.0, 0, 0
    running: list[_Live] = []
    steps, segments, results = [], [], []
    while i < len(queue) or running:
        if not running and queue[i].arrival_s > t:
            t = queue[i].arrival_s            # idle until the next request arrives
        joining = []
        while i < len(queue) and queue[i].arrival_s <= t and len(running) + len(joining) < max_batch:
            joining.append(_Live(queue[i], start_s=t))
            i += 1
        decoding = len(running)
        prompt = sum(j.request.prompt_tokens for j in joining)
        end = t + (decode_cost(decoding) if decoding else 0.0) + (prefill_cost(prompt) if joining else 0.0)
        steps.append(Step(t, end, decoding, decoding, prompt, 0))
        for live in running:
            live.produced += 1
        for live in joining:
            live.produced, live.first_token_s = 1, end
        served += decoding + len(joining)
        running += joining
        still = []
        for live in running:
            if live.produced == live.request.output_tokens:
                r = live.request
                segments += [Segment(r.id, "waiting", r.arrival_s, live.start_s),
                             Segment(r.id, "prefill", live.start_s, live.first_token_s),
                             Segment(r.id, "decoding", live.first_token_s, end)]
                results.append(RequestResult(r.id, r.arrival_s, live.start_s, live.first_token_s, end, end,
                                             r.output_tokens))
            else:
                still.append(live)
        running = still
        t = end
    return _timeline(CONTINUOUS, max_batch, results, segments, steps, served)


def _timeline(policy, max_batch, results, segments, steps, served) -> Timeline:
    results = sorted(results, key=lambda r: r.id)
    segments = sorted((s for s in segments if s.end_s > s.start_s), key=lambda s: (s.request, s.start_s))
    return Timeline(policy, max_batch, results, segments, steps, served)
