"""How different several sampled continuations are from each other: shared n-grams and meaning.

Two measures, because they catch different things: distinct-n (Li et al. 2016) counts the share of n-grams
across all samples that are unique, so it falls when samples repeat each other's wording; the mean pairwise
cosine similarity of MiniLM sentence embeddings falls only when samples differ in what they say.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from engine.model.encoder import LiveEncoder, embed_sentences
from engine.decoding.generation import generate
from engine.model.live_model import LiveModel


def distinct_n(samples: list[list[int]], n: int) -> float:
    """Unique n-grams / all n-grams, pooled over the samples (each sample's n-grams taken within it)."""
    grams = [tuple(s[i:i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def mean_pairwise_similarity(embeddings: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of (unit-length) embeddings; nan with fewer than two."""
    pairs = list(combinations(range(len(embeddings)), 2))
    if not pairs:
        return float("nan")
    return float(np.mean([float(embeddings[i] @ embeddings[j]) for i, j in pairs]))


@dataclass(frozen=True)
class DiversityPoint:
    temperature: float
    texts: tuple[str, ...]
    distinct_2: float
    similarity: float          # mean pairwise MiniLM cosine similarity
    mean_token_prob: float     # the model's own probability of the sampled tokens, averaged


def diversity_at(lm: LiveModel, encoder: LiveEncoder, prompt: str, temperature: float, samples: int, length: int,
                 seed: int, top_p: float = 1.0) -> DiversityPoint:
    """`samples` continuations (sample i with seed + i) and how different they are."""
    runs = [generate(lm, prompt, length, temperature=temperature, top_p=top_p, seed=seed + i) for i in range(samples)]
    texts = tuple(r.new_text for r in runs)
    embeddings = embed_sentences(encoder, [t if t.strip() else "(empty)" for t in texts])
    probs = [p for r in runs for p in r.chosen_probabilities]
    return DiversityPoint(temperature=temperature, texts=texts, distinct_2=distinct_n([r.new_ids for r in runs], 2),
                          similarity=mean_pairwise_similarity(embeddings),
                          mean_token_prob=float(np.mean(probs)) if probs else float("nan"))


def temperature_sweep(lm: LiveModel, encoder: LiveEncoder, prompt: str, temperatures: list[float], samples: int,
                      length: int, seed: int, top_p: float = 1.0, on_step=lambda done, total: None,
                      should_stop=lambda: False) -> list[DiversityPoint]:
    points = []
    for i, t in enumerate(temperatures):
        if should_stop():
            break
        points.append(diversity_at(lm, encoder, prompt, t, samples, length, seed, top_p))
        on_step(i + 1, len(temperatures))
    return points
