"""How surprised the model is by each token of a text: the numbers behind cross-entropy and perplexity.

One forward pass gives, for every position t, the distribution over the next token; the text's actual next
token then has a probability p, a loss -ln p (nats; / ln 2 for bits), and a rank among the 49,152 candidates.
The mean loss is exactly the cross-entropy the model was trained to lower, and exp(mean loss) is perplexity.

`sliding_window_perplexity` scores a text longer than the context a model may see at once the way the Hugging
Face perplexity guide describes: windows of `window` tokens moved by `stride`, each token scored once, with the
tokens before it in its window as context. A smaller stride gives each token more context (lower perplexity)
at the cost of more passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel

TOP_ALTERNATIVES = 5
RANK_BUCKETS = ((10, "top 10"), (100, "top 100"), (1000, "top 1,000"), (None, "beyond 1,000"))


@dataclass(frozen=True, eq=False)
class TokenLosses:
    """Per-position results for ids[1:] (the first token has nothing before it to be predicted from)."""
    ids: tuple[int, ...]
    vocab_size: int
    nll: np.ndarray          # [T-1] nats, -ln p(actual next token)
    ranks: np.ndarray        # [T-1] 1 = the model's top choice
    top_ids: np.ndarray      # [T-1, TOP_ALTERNATIVES] the model's favourites at each position
    top_probs: np.ndarray    # [T-1, TOP_ALTERNATIVES]
    logit: np.ndarray        # [T-1] the actual next token's logit z_y
    log_partition: np.ndarray  # [T-1] ln sum_j exp(z_j) over the vocabulary: nll = log_partition - logit

    @property
    def probs(self) -> np.ndarray:
        return np.exp(-self.nll)

    @property
    def bits(self) -> np.ndarray:
        return self.nll / math.log(2)

    @property
    def mean_nll(self) -> float:
        return float(self.nll.mean()) if self.nll.size else float("nan")

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.mean_nll))

    @property
    def uniform_nll(self) -> float:
        """The loss of a guess that gives every token of the vocabulary the same probability: ln V."""
        return math.log(self.vocab_size)


def rank_bucket(rank: int) -> str:
    for limit, name in RANK_BUCKETS:
        if limit is None or rank <= limit:
            return name
    raise AssertionError("unreachable")


def _forward_logits(lm: LiveModel, ids: list[int]) -> torch.Tensor:
    with model_work():
        return lm.model(torch.tensor([ids])).logits[0].float()


def token_losses(lm: LiveModel, ids: list[int]) -> TokenLosses:
    """Loss, rank and top alternatives at every position of `ids` (at least two tokens), one forward pass."""
    if len(ids) < 2:
        raise ValueError("scoring needs at least two tokens: the first is only context")
    logits = _forward_logits(lm, ids)[:-1]
    target = torch.tensor(ids[1:])
    log_probs = torch.log_softmax(logits, dim=-1)
    actual = log_probs.gather(1, target[:, None])[:, 0]
    ranks = (log_probs > actual[:, None]).sum(-1) + 1     # ties rank in the actual token's favour
    top = log_probs.topk(TOP_ALTERNATIVES, dim=-1)
    return TokenLosses(ids=tuple(ids), vocab_size=int(logits.shape[-1]), nll=(-actual).numpy(),
                       ranks=ranks.numpy(), top_ids=top.indices.numpy(), top_probs=top.values.exp().numpy(),
                       logit=logits.gather(1, target[:, None])[:, 0].numpy(),
                       log_partition=torch.logsumexp(logits, dim=-1).numpy())


def bits_per_byte(total_nll_nats: float, n_bytes: int) -> float:
    """Total loss in bits over the text's UTF-8 bytes: comparable across tokenizers, unlike loss per token."""
    return total_nll_nats / math.log(2) / n_bytes if n_bytes else float("nan")


@dataclass(frozen=True, eq=False)
class WindowedPerplexity:
    window: int
    stride: int
    passes: int
    nll: np.ndarray          # [T-1] nats for ids[1:], each scored once
    context: np.ndarray      # [T-1] tokens of context each was predicted from

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.nll.mean())) if self.nll.size else float("nan")


def window_plan(length: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each pass over `length` tokens; every position 1.. scored once.

    Each pass feeds ids[begin:end] and scores only the tokens not scored by an earlier pass, as in the Hugging
    Face guide (its labels of -100 for the overlap). The stride stays below the window: with stride = window
    the first token of each window would have no context inside it and go unscored."""
    if window < 2 or not 1 <= stride < window:
        raise ValueError("need window >= 2 and 1 <= stride < window")
    plan, scored_to = [], 1
    begin = 0
    while scored_to < length:
        end = min(begin + window, length)
        plan.append((begin, end, max(scored_to, begin + 1)))
        scored_to = end
        begin += stride
    return plan


def sliding_window_perplexity(lm: LiveModel, ids: list[int], window: int, stride: int) -> WindowedPerplexity:
    nll = np.zeros(len(ids) - 1, np.float32)
    context = np.zeros(len(ids) - 1, np.int64)
    plan = window_plan(len(ids), window, stride)
    for begin, end, first in plan:
        logits = _forward_logits(lm, ids[begin:end])
        targets = torch.tensor(ids[first:end])
        rows = logits[first - 1 - begin:end - 1 - begin]
        nll[first - 1:end - 1] = torch.nn.functional.cross_entropy(rows, targets, reduction="none").numpy()
        context[first - 1:end - 1] = np.arange(first, end) - begin
    return WindowedPerplexity(window=window, stride=stride, passes=len(plan), nll=nll, context=context)


def model_own_loss(lm: LiveModel, ids: list[int]) -> float:
    """The loss transformers itself computes when given the text as its labels: the training objective."""
    with model_work():
        tensor = torch.tensor([ids])
        return float(lm.model(tensor, labels=tensor).loss)


def sweep_strides(window: int) -> list[int]:
    """The strides a sweep tries for a window: powers of two below it, and window - 1 (the fewest passes)."""
    strides, s = [], 1
    while s < window:
        strides.append(s)
        s *= 2
    return sorted(set(strides) | {window - 1})


def stride_sweep(lm: LiveModel, ids: list[int], window: int, on_step=lambda done, total: None,
                 should_stop=lambda: False) -> list[WindowedPerplexity]:
    """Sliding-window perplexity for each of `sweep_strides(window)`, smallest stride (most passes) last so
    that a stopped sweep still has the cheap points."""
    strides = sorted(sweep_strides(window), reverse=True)
    total = sum(len(window_plan(len(ids), window, s)) for s in strides)
    results, done = [], 0
    for stride in strides:
        if should_stop():
            break
        results.append(sliding_window_perplexity(lm, ids, window, stride))
        done += results[-1].passes
        on_step(done, total)
    return sorted(results, key=lambda r: r.stride)


def shuffle_words(text: str, seed: int) -> str:
    """The same words in a random order (seeded): the same tokens, roughly, without the grammar."""
    words = text.split()
    order = np.random.default_rng(seed).permutation(len(words))
    return " ".join(words[i] for i in order)
