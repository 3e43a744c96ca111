"""RLHF's middle stage at toy scale: the policy's own samples for one prompt, a Bradley-Terry reward model fitted
on the reader's preferences between pairs of them, best-of-n reranking by that (proxy) reward judged by a
different, fixed scorer, and the KL between a policy and its reference on real next-token distributions.

Samples. Every sample shares the prompt, so a batch of them advances in lockstep with one KV cache and needs no
padding: one forward pass per step serves all n sequences. Sampling uses the same filters as
`engine.decoding.generation` (`filter_logits`: temperature, then top-k, then top-p) and a private seeded
generator; a batch of one draws exactly the tokens `generate` draws with the same seed (a test holds it).

Reward model. Bradley-Terry: P(a preferred to b) = sigmoid(r(a) - r(b)). With r(x) = w . e(x), e the MiniLM
sentence embedding, this is logistic regression without intercept on the differences e(chosen) - e(rejected)
(and their negatives, so the fit is symmetric), with an L2 penalty: a few labels in 384 dimensions would
otherwise fit perfectly along any direction. scikit-learn's LogisticRegression does the fitting.

Best-of-n. Draw n samples, keep the one the proxy reward likes best. Over a pool of M samples the expected
reward of the winner of a random n-subset is exact, not simulated: the sample ranked r-th lowest (1-based) by
the proxy wins exactly when it and n - 1 lower-ranked samples are drawn, with probability C(r-1, n-1) / C(M, n).
The KL of the best-of-n policy from the sampling policy is at most ln n - (n - 1)/n nats (Stiennon et al. 2020;
Gao et al. 2022 use it as their x axis).

The judge. A proxy tuned on a few labels can be gamed; a second, fixed scorer measures what the proxy is
supposed to stand for. Here it is transparent and rule-based (see `judge_scores`), not a human and not a
second learned model.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from engine.decoding.divergence import kl_divergence_bits
from engine.decoding.generation import filter_logits
from engine.model.live_model import LiveModel
from engine.runtime.gate import model_work
from engine.tokens.offsets import decode, token_ids

MAX_SAMPLES = 64
MAX_NEW_TOKENS = 48


@dataclass(frozen=True)
class Samples:
    prompt_ids: tuple[int, ...]
    new_ids: tuple[tuple[int, ...], ...]   # per sample, without the end-of-text token when it stopped on it
    texts: tuple[str, ...]
    temperature: float
    seed: int


def sample_batch(lm: LiveModel, text: str, n: int, max_new_tokens: int = 32, *, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 0, on_step=lambda done, total: None,
                 should_stop=lambda: False) -> Samples:
    """n samples of the same prompt, drawn together (see the module docstring)."""
    from transformers import DynamicCache

    if not 1 <= n <= MAX_SAMPLES or not 1 <= max_new_tokens <= MAX_NEW_TOKENS or temperature <= 0:
        raise ValueError(f"1-{MAX_SAMPLES} samples of 1-{MAX_NEW_TOKENS} tokens at a positive temperature")
    ids = token_ids(lm, text)
    if not ids:
        raise ValueError("the prompt is empty")
    eos = lm.tokenizer.eos_token_id
    rng = torch.Generator().manual_seed(int(seed))
    cache = DynamicCache(config=lm.model.config)
    feed = torch.tensor([ids] * n)
    rows: list[list[int]] = [[] for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    for step in range(max_new_tokens):
        if should_stop() or done.all():
            break
        with model_work():
            logits = lm.model(feed, past_key_values=cache, use_cache=True).logits[:, -1].float()
            filtered = torch.stack([filter_logits(row, temperature, top_k, top_p) for row in logits])
            probs = torch.softmax(filtered.double(), -1)
            chosen = torch.multinomial(probs, 1, generator=rng)[:, 0] if n > 1 else \
                torch.multinomial(probs[0], 1, generator=rng)
        for i, token in enumerate(chosen.tolist()):
            if not done[i]:
                rows[i].append(int(token))
                done[i] = token == eos
        feed = chosen[:, None]
        on_step(step + 1, max_new_tokens)
    new_ids = tuple(tuple(r[:-1] if r and r[-1] == eos else r) for r in rows)
    return Samples(prompt_ids=tuple(ids), new_ids=new_ids, texts=tuple(decode(lm, list(r)) for r in new_ids),
                   temperature=float(temperature), seed=int(seed))


# --- the reward model ------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RewardModel:
    weights: np.ndarray        # [d]: r(x) = weights . e(x)
    l2: float
    pairs: int

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, dtype=np.float64) @ self.weights


def fit_bradley_terry(chosen: np.ndarray, rejected: np.ndarray, l2: float = 1.0) -> RewardModel:
    """Maximise sum ln sigmoid(r(chosen) - r(rejected)) - l2/2 |w|^2 with r linear in the embedding.

    scikit-learn minimises C * sum(log-loss) + |w|^2 / 2, so C = 1 / l2. Each pair enters twice (as chosen minus
    rejected with label 1 and the reverse with label 0), which doubles the data term: C = 1 / (2 l2) keeps the
    objective the one written above.
    """
    from sklearn.linear_model import LogisticRegression

    chosen, rejected = np.asarray(chosen, np.float64), np.asarray(rejected, np.float64)
    if chosen.shape != rejected.shape or chosen.ndim != 2 or len(chosen) == 0:
        raise ValueError("one embedding row per chosen and rejected answer, at least one pair")
    if not l2 > 0:
        raise ValueError("the L2 strength must be positive")
    diff = chosen - rejected
    x = np.vstack([diff, -diff])
    y = np.r_[np.ones(len(diff)), np.zeros(len(diff))]
    fit = LogisticRegression(C=1.0 / (2.0 * l2), fit_intercept=False, max_iter=1000, tol=1e-8).fit(x, y)
    return RewardModel(weights=fit.coef_[0].copy(), l2=float(l2), pairs=len(diff))


def bradley_terry_objective(model: RewardModel, chosen: np.ndarray, rejected: np.ndarray) -> float:
    """The penalised log-likelihood the fit maximises (tests check the fit is its maximum)."""
    margins = model.score(chosen) - model.score(rejected)
    return float(-np.logaddexp(0.0, -margins).sum() - model.l2 / 2 * model.weights @ model.weights)


def training_agreement(model: RewardModel, chosen: np.ndarray, rejected: np.ndarray) -> float:
    """The fraction of labelled pairs whose chosen answer the reward model scores higher."""
    return float(np.mean(model.score(chosen) > model.score(rejected)))


# --- the judge -------------------------------------------------------------------------------------------

JUDGE_TARGET_WORDS = 20
_WORD = re.compile(r"[A-Za-z']+")


def judge_scores(answer_embeddings: np.ndarray, prompt_embedding: np.ndarray, texts: list[str]) -> np.ndarray:
    """A fixed, transparent judge that never sees the reader's labels: relevance to the prompt (MiniLM cosine
    between the answer and the question) minus penalties for what small models do when they ramble: repeated
    words (1 - distinct/total) and answers much shorter or longer than about JUDGE_TARGET_WORDS words."""
    relevance = np.asarray(answer_embeddings, np.float64) @ np.asarray(prompt_embedding, np.float64)
    scores = []
    for rel, text in zip(relevance, texts):
        words = [w.lower() for w in _WORD.findall(text)]
        repetition = 1 - len(set(words)) / len(words) if words else 1.0
        length_off = abs(math.log((len(words) + 1) / (JUDGE_TARGET_WORDS + 1)))
        scores.append(rel - 0.5 * repetition - 0.1 * length_off)
    return np.array(scores)


# --- best-of-n -------------------------------------------------------------------------------------------

def best_of_n_weights(pool: int, n: int) -> np.ndarray:
    """P(the sample of proxy rank r, 1-based ascending, wins a random n-subset) = C(r-1, n-1) / C(pool, n)."""
    if not 1 <= n <= pool:
        raise ValueError("n must be between 1 and the pool size")
    total = math.comb(pool, n)
    return np.array([math.comb(r - 1, n - 1) / total for r in range(1, pool + 1)])


@dataclass(frozen=True)
class BestOfN:
    n: tuple[int, ...]
    proxy: np.ndarray          # expected proxy reward of the winner
    judge: np.ndarray          # expected judge score of the same winner
    kl_bound_nats: np.ndarray  # ln n - (n - 1)/n

    @property
    def judge_peak(self) -> int:
        return int(self.n[int(np.argmax(self.judge))])


def best_of_n(proxy: np.ndarray, judge: np.ndarray, ns: list[int]) -> BestOfN:
    """Expected proxy and judge scores of the proxy's favourite among n, exactly over the pool (ties broken by
    pool order, so the result is deterministic)."""
    proxy, judge = np.asarray(proxy, np.float64), np.asarray(judge, np.float64)
    order = np.argsort(proxy, kind="stable")
    ns = [int(n) for n in ns if 1 <= n <= len(proxy)]
    weights = [best_of_n_weights(len(proxy), n) for n in ns]
    return BestOfN(n=tuple(ns), proxy=np.array([w @ proxy[order] for w in weights]),
                   judge=np.array([w @ judge[order] for w in weights]),
                   kl_bound_nats=np.array([math.log(n) - (n - 1) / n for n in ns]))


# --- KL between a policy and its reference -----------------------------------------------------------------

def answer_logits(lm: LiveModel, prompt_ids: list[int], answer_ids: list[int]) -> np.ndarray:
    """The model's logits [len(answer), V] at each answer position (teacher-forced): the next-token
    distributions the reference policy assigns while writing this answer."""
    if not answer_ids:
        raise ValueError("an empty answer has no next-token distributions")
    ids = list(prompt_ids) + list(answer_ids)
    with model_work():
        logits = lm.model(torch.tensor([ids]), use_cache=False).logits[0, len(prompt_ids) - 1:-1].float()
    return logits.numpy().copy()


def softmax_rows(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / float(temperature)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def kl_per_position_bits(policy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """KL(policy || reference) at each position, in bits, on whole-vocabulary distributions."""
    return np.array([kl_divergence_bits(p, q) for p, q in zip(policy, reference)])
