"""A small serving engine on the live model: its techniques switched on and off, its latency and throughput measured.

Several requests share a prefix (a system prompt, a document) and each adds its own question; all arrive at once.
Each request is a chat as the instruct model reads it (its chat template, `chat_parts`): the system turn and the
opening of the user turn are the shared prefix; the question, the end of its turn and the opening of the
assistant's turn are the request's own. The engine answers them greedily, ending each at end-of-text, at a line
break, or after `max_new_tokens`. Four
techniques can be switched on, each the handbook's own:

- KV cache: each prompt is prefilled once, then one token is fed per step; without it every step feeds the
  whole sequence again (engine.serving.kv_cache measures this for one request);
- batching: all requests advance together, one forward pass per step for the whole batch, padded to a common
  width with the padding masked out; without it they are served one after another, so a later request waits
  for the earlier ones. A finished request leaves the batch;
- prefix reuse: the shared prefix is prefilled once into a kept cache and every request starts from a copy of
  it (engine.serving.prompt_cache measures this); needs the KV cache;
- speculation: prompt-lookup drafts (engine.decoding.speculative.lookup_draft) checked k at a time in one pass and
  accepted greedily (engine.decoding.speculative.accepted_prefix); needs the KV cache. In a batch each row drafts on its
  own, and a row's rejected drafts stay in the cache as masked slots.

Every answer should be plain greedy decoding's whatever is switched on; `EngineRun.identical_to` checks it token
by token against another run (batched passes add the same numbers in another order, so a near-tie between two
tokens could in principle flip).

Time is engine time: the clock runs only while the engine works (inside the CPU gate, or drafting), so waiting
for other readers' passes on a shared server is not counted. All requests arrive at time 0: a request's latency
runs from 0 to its last token, its time to first token from 0 to its first.
"""
from __future__ import annotations

import statistics
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.serving.prompt_cache import copy_cache, new_cache
from engine.decoding.speculative import accepted_prefix, lookup_draft
from engine.tokens.offsets import decode

PAD = 0                # any id will do: padded slots are masked out of attention and their outputs ignored
DRAFT_TOKENS = 4       # k: tokens drafted per round
DRAFT_NGRAM = 2        # the draft looks up the last 2 tokens (then 1) earlier in the text
MAX_REQUESTS = 4
MAX_NEW_TOKENS = 32
ENGINES_FILE = Path(__file__).resolve().parents[2] / "assets" / "serving_engines.toml"
QUESTION_MARK = "\u27e6question\u27e7"   # stands in for the question while the template is rendered


def without_special_tokens(lm: LiveModel, text: str) -> str:
    """Reader text cannot spell a special token (it would close a turn and open a forged one): such spellings go."""
    for special in lm.tokenizer.all_special_tokens:
        text = text.replace(special, "")
    return text


def chat_parts(lm: LiveModel, system: str, question: str) -> tuple[str, str]:
    """(shared prefix, the request's own part) of a one-question chat rendered by the model's own template."""
    with lm.tokenizing() as tok:
        text = tok.apply_chat_template([{"role": "system", "content": without_special_tokens(lm, system)},
                                        {"role": "user", "content": QUESTION_MARK}],
                                       tokenize=False, add_generation_prompt=True)
    at = text.index(QUESTION_MARK)
    return text[:at], without_special_tokens(lm, question) + text[at + len(QUESTION_MARK):]


@dataclass(frozen=True)
class EngineOptions:
    kv_cache: bool = False
    batching: bool = False
    prefix_reuse: bool = False
    speculation: bool = False

    def effective(self) -> "EngineOptions":
        """Prefix reuse and speculation both work on a KV cache: without one they are off."""
        return self if self.kv_cache else replace(self, prefix_reuse=False, speculation=False)

    @property
    def is_plain(self) -> bool:
        return self.effective() == EngineOptions()

    def describe(self) -> str:
        on = self.effective()
        names = [name for name, flag in (("KV cache", on.kv_cache), ("batching", on.batching),
                                         ("prefix reuse", on.prefix_reuse), ("speculation", on.speculation)) if flag]
        return " + ".join(names) if names else "plain (nothing switched on)"


@dataclass(frozen=True)
class RequestResult:
    new_ids: tuple[int, ...]
    first_token_s: float      # engine time from 0 (when every request arrived) to this request's first token
    finished_s: float         # to its last token


@dataclass(frozen=True)
class EngineRun:
    options: EngineOptions
    prompt_lengths: tuple[int, ...]
    prefix_tokens: int
    requests: tuple[RequestResult, ...]
    total_s: float            # engine time from 0 to the last token of the last request
    forward_passes: int
    positions_fed: int        # token positions through the model, padding included
    padding_fed: int
    drafted: int
    accepted: int
    stopped_early: bool
    measured_at: float

    @property
    def generated(self) -> int:
        return sum(len(r.new_ids) for r in self.requests)

    @property
    def throughput(self) -> float:
        """Generated tokens per second of engine time, over all requests."""
        return self.generated / self.total_s if self.total_s > 0 else 0.0

    @property
    def mean_latency(self) -> float:
        return statistics.fmean(r.finished_s for r in self.requests) if self.requests else 0.0

    @property
    def mean_first_token(self) -> float:
        return statistics.fmean(r.first_token_s for r in self.requests) if self.requests else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else float("nan")

    def identical_to(self, other: "EngineRun") -> list[bool]:
        """Request by request: the same token ids as `other` (as far as both got, if either was stopped early)."""
        out = []
        for mine, theirs in zip(self.requests, other.requests):
            n = min(len(mine.new_ids), len(theirs.new_ids))
            same = mine.new_ids[:n] == theirs.new_ids[:n]
            out.append(same and (len(mine.new_ids) == len(theirs.new_ids) or self.stopped_early
                                 or other.stopped_early))
        return out


# ----------------------------------------------------------------------------------------------------------
# Counted before running
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedWork:
    forward_passes: int
    positions: int            # token positions the model processes, padding included
    padding: int


def planned_work(prompt_lengths: list[int], prefix_tokens: int, new_tokens: int,
                 options: EngineOptions) -> PlannedWork:
    """The work a run will do if every answer runs the full `new_tokens` and no draft is accepted.

    Without a cache, step t feeds each whole sequence (prompt + t tokens); with one, the prompt once and then one
    token per step. Batching turns one pass per request per step into one pass per step, but pads every row to
    the longest. Prefix reuse feeds the shared prefix once (one more pass) and then only each request's own part.
    """
    o = options.effective()
    lengths = [max(1, int(n)) for n in prompt_lengths]
    steps, count = max(1, int(new_tokens)), len(lengths)
    if not o.kv_cache:
        if o.batching:
            widest = max(lengths)
            padding = steps * sum(widest - n for n in lengths)
            return PlannedWork(steps, sum(count * (widest + t) for t in range(steps)), padding)
        return PlannedWork(count * steps, sum(n + t for n in lengths for t in range(steps)), 0)
    prefix = min(int(prefix_tokens), min(lengths) - 1) if o.prefix_reuse else 0
    tails = [n - prefix for n in lengths]
    extra_pass, extra_positions = (1, prefix) if o.prefix_reuse else (0, 0)
    if o.batching:
        widest = max(tails)
        return PlannedWork(steps + extra_pass, count * widest + count * (steps - 1) + extra_positions,
                           sum(widest - n for n in tails))
    return PlannedWork(count * steps + extra_pass, sum(tails) + count * (steps - 1) + extra_positions, 0)


# ----------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------

class _Clock:
    """Engine time: adds up only the stretches the engine spends working."""

    def __init__(self):
        self.elapsed = 0.0

    @contextmanager
    def running(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.elapsed += time.perf_counter() - started


@dataclass
class _Request:
    prompt: list[int]
    sequence: list[int]
    new: list[int] = field(default_factory=list)
    first_s: float | None = None
    finished_s: float | None = None
    done: bool = False
    position: int = 0         # tokens of this request held in its cache row (masked slots not counted)


Progress = Callable[[float, str], None]


class _Engine:
    def __init__(self, lm: LiveModel, options: EngineOptions, max_new: int, k: int, ngram: int,
                 on_progress: Progress | None, should_stop: Callable[[], bool] | None):
        self.lm, self.model, self.options = lm, lm.model, options
        self.max_new, self.k, self.ngram = max_new, k, ngram
        self.report = on_progress or (lambda fraction, message: None)
        self.should_stop = should_stop or (lambda: False)
        self.clock = _Clock()
        self.passes = self.positions = self.padding = self.drafted = self.accepted = 0
        self.stopped = False
        self.eos = lm.tokenizer.eos_token_id
        self.total_tokens = 1
        self.done_tokens = 0

    # --- one forward pass -------------------------------------------------------------------------------
    def forward(self, rows: list[list[int]], masks: list[list[int]], positions: list[list[int]], cache,
                keep: int) -> torch.Tensor:
        """Logits [rows, keep, vocab] of one pass over equal-width rows; masks cover the cache and the new slots."""
        with model_work(), self.clock.running():
            out = self.model(torch.tensor(rows), attention_mask=torch.tensor(masks),
                             position_ids=torch.tensor(positions), past_key_values=cache, use_cache=cache is not None,
                             logits_to_keep=keep)
            logits = out.logits
        width = len(rows[0])
        self.passes += 1
        self.positions += len(rows) * width
        self.padding += sum(1 for mask in masks for bit in mask[-width:] if not bit)
        return logits

    # --- bookkeeping ----------------------------------------------------------------------------------------
    def ends(self, token: int) -> bool:
        return token == self.eos or "\n" in decode(self.lm, [token])

    def accept(self, request: _Request, tokens: list[int]) -> None:
        """Append tokens to a request until it ends; the time of its first and last token is engine time now."""
        for token in tokens:
            request.new.append(token)
            request.sequence.append(token)
            self.done_tokens += 1
            if request.first_s is None:
                request.first_s = self.clock.elapsed
            if self.ends(token) or len(request.new) >= self.max_new:
                request.done, request.finished_s = True, self.clock.elapsed
                break

    def progress(self) -> None:
        self.report(min(self.done_tokens / self.total_tokens, 1.0),
                    f"{self.options.describe()}: {self.done_tokens} tokens generated, {self.passes} forward passes")

    def halt(self) -> bool:
        if self.should_stop():
            self.stopped = True
        return self.stopped

    # --- without a cache: every step feeds each whole sequence ----------------------------------------------
    def run_uncached(self, group: list[_Request]) -> None:
        while not self.halt():
            active = [r for r in group if not r.done]
            if not active:
                return
            width = max(len(r.sequence) for r in active)
            rows = [[PAD] * (width - len(r.sequence)) + r.sequence for r in active]
            masks = [[0] * (width - len(r.sequence)) + [1] * len(r.sequence) for r in active]
            positions = [[max(0, j - (width - len(r.sequence))) for j in range(width)] for r in active]
            logits = self.forward(rows, masks, positions, None, keep=1)
            for i, r in enumerate(active):
                self.accept(r, [int(logits[i, -1].argmax())])
            self.progress()

    # --- with a cache -----------------------------------------------------------------------------------------
    def run_cached(self, group: list[_Request], kept_prefix, prefix_tokens: int) -> None:
        if kept_prefix is not None:
            cache = copy_cache(kept_prefix)
            if len(group) > 1:
                cache.batch_repeat_interleave(len(group))
            tails = [r.prompt[prefix_tokens:] for r in group]
            masks = [[1] * prefix_tokens for _ in group]
            for r in group:
                r.position = prefix_tokens
        else:
            cache, tails, masks = new_cache(self.lm), [r.prompt for r in group], [[] for _ in group]
        # Prefill: pad each row's own part on the left (after the shared prefix, if any) to the longest.
        width = max(len(t) for t in tails)
        rows = [[PAD] * (width - len(t)) + t for t in tails]
        masks = [m + [0] * (width - len(t)) + [1] * len(t) for m, t in zip(masks, tails)]
        positions = [[r.position + max(0, j - (width - len(t))) for j in range(width)] for r, t in zip(group, tails)]
        logits = self.forward(rows, masks, positions, cache, keep=1)
        for i, (r, t) in enumerate(zip(group, tails)):
            r.position += len(t)
            self.accept(r, [int(logits[i, -1].argmax())])
        self.progress()
        # Decode: the cache holds every token but each row's last; a round feeds [last] + drafts.
        rows_of = list(group)
        while not self.halt():
            keep_rows = [i for i, r in enumerate(rows_of) if not r.done]
            if not keep_rows:
                return
            if len(keep_rows) < len(rows_of):   # finished requests leave the batch
                cache.batch_select_indices(torch.tensor(keep_rows))
                rows_of, masks = [rows_of[i] for i in keep_rows], [masks[i] for i in keep_rows]
            drafts = [self.draft(r) for r in rows_of]
            feeds = [[r.sequence[-1]] + d for r, d in zip(rows_of, drafts)]
            width = max(len(f) for f in feeds)
            rows = [f + [PAD] * (width - len(f)) for f in feeds]
            masks = [m + [1] * len(f) + [0] * (width - len(f)) for m, f in zip(masks, feeds)]
            positions = [[r.position + j for j in range(width)] for r in rows_of]
            logits = self.forward(rows, masks, positions, cache, keep=width)
            for i, (r, d) in enumerate(zip(rows_of, drafts)):
                targets = [int(t) for t in logits[i, :len(d) + 1].argmax(-1)]
                accepted = accepted_prefix(d, targets)
                self.drafted += len(d)
                self.accepted += accepted
                # Rejected drafts (and padding) stay in the cache, masked out from now on.
                masks[i] = masks[i][:-width] + [1] * (1 + accepted) + [0] * (width - 1 - accepted)
                r.position += 1 + accepted
                self.accept(r, d[:accepted] + [targets[accepted]])
            self.progress()

    def draft(self, request: _Request) -> list[int]:
        if not self.options.speculation:
            return []
        budget = min(self.k, self.max_new - len(request.new) - 1)   # a round adds up to k + 1 tokens
        if budget <= 0:
            return []
        with self.clock.running():
            return lookup_draft(request.sequence, self.ngram, budget)

    def keep_prefix(self, prefix_ids: list[int]):
        cache = new_cache(self.lm)
        self.forward([list(prefix_ids)], [[1] * len(prefix_ids)], [list(range(len(prefix_ids)))], cache, keep=1)
        return cache


def serve(lm: LiveModel, prefix_ids: list[int], suffixes: list[list[int]], max_new_tokens: int,
          options: EngineOptions, *, k: int = DRAFT_TOKENS, ngram: int = DRAFT_NGRAM,
          on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> EngineRun:
    """Answer every request (prefix + its suffix) with the chosen techniques; timed in engine time."""
    if not prefix_ids:
        raise ValueError("the shared prefix is empty")
    suffixes = [list(s) for s in suffixes if s][:MAX_REQUESTS]
    if not suffixes:
        raise ValueError("no request to answer")
    options = options.effective()
    max_new = max(1, min(int(max_new_tokens), MAX_NEW_TOKENS))
    requests = [_Request(prompt=list(prefix_ids) + s, sequence=list(prefix_ids) + s) for s in suffixes]
    engine = _Engine(lm, options, max_new, k, ngram, on_progress, should_stop)
    engine.total_tokens = max_new * len(requests)
    with model_work():   # untimed warm-up: the first passes in a process pay one-off costs
        lm.model(torch.tensor([requests[0].prompt]), use_cache=False, logits_to_keep=1)
    engine.report(0.0, f"{options.describe()}: starting")
    kept = engine.keep_prefix(prefix_ids) if options.prefix_reuse else None
    groups = [requests] if options.batching else [[r] for r in requests]
    for group in groups:
        if engine.halt():
            break
        if options.kv_cache:
            engine.run_cached(group, kept, len(prefix_ids))
        else:
            engine.run_uncached(group)
    end = engine.clock.elapsed
    results = tuple(RequestResult(tuple(r.new), r.first_s if r.first_s is not None else end,
                                  r.finished_s if r.finished_s is not None else end) for r in requests)
    return EngineRun(options=options, prompt_lengths=tuple(len(r.prompt) for r in requests),
                     prefix_tokens=len(prefix_ids), requests=results, total_s=end, forward_passes=engine.passes,
                     positions_fed=engine.positions, padding_fed=engine.padding, drafted=engine.drafted,
                     accepted=engine.accepted, stopped_early=engine.stopped, measured_at=time.time())


# ----------------------------------------------------------------------------------------------------------
# Which engine uses what (assets/serving_engines.toml)
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Technique:
    slug: str               # the handbook page that explains it
    name: str


@dataclass(frozen=True)
class EngineFeatures:
    name: str
    kind: str
    url: str
    uses: dict[str, str]    # technique slug -> where the engine's own documentation says it uses it

    def status(self, technique: Technique) -> str | None:
        """The documented source, or None: not found in its documentation (not verified), not "absent"."""
        return self.uses.get(technique.slug)


def load_engine_features(path: Path = ENGINES_FILE) -> tuple[tuple[Technique, ...], tuple[EngineFeatures, ...]]:
    with path.open("rb") as f:
        data = tomllib.load(f)
    techniques = tuple(Technique(t["slug"], t["name"]) for t in data["techniques"])
    known = {t.slug for t in techniques}
    engines = []
    for e in data["engines"]:
        unknown = set(e.get("uses", {})) - known
        if unknown:
            raise ValueError(f"{path.name}: {e['name']} uses unknown techniques {sorted(unknown)}")
        engines.append(EngineFeatures(e["name"], e["kind"], e["url"], dict(e.get("uses", {}))))
    return techniques, tuple(engines)
