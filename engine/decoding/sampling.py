"""Temperature and truncation filters on one next-token logits vector, in plain numpy.

The order is Hugging Face transformers' sampling order: temperature, then top-k, then top-p on what
top-k left (renormalised), then min-p. Temperature 0 means greedy: all the mass on the argmax, never a
division by zero. The filters here give the same survivors as `engine.decoding.generation.filter_logits`,
the function the app's generator samples with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.decoding.generation import softmax

__all__ = ["FilterResult", "apply_temperature", "entropy_bits", "entropy_curve", "min_p_mask", "nucleus_size",
           "sampling_filter", "softmax", "top_k_mask", "top_p_mask"]


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) as float64. T <= 0 (or not a number) is greedy: probability 1 on the argmax."""
    logits = np.asarray(logits)
    t = float(temperature)
    if not t > 0.0:  # also catches NaN
        greedy = np.zeros(logits.size, dtype=np.float64)
        greedy[int(np.argmax(logits))] = 1.0
        return greedy
    return softmax(logits.astype(np.float64) / t)


def entropy_bits(probabilities: np.ndarray) -> float:
    """Shannon entropy in bits; zero-probability tokens contribute nothing."""
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[p > 0]
    return float(max(0.0, -(p * np.log2(p)).sum()))


def entropy_curve(logits: np.ndarray, temperatures) -> np.ndarray:
    """Entropy (bits) of softmax(logits / T) for each T."""
    return np.array([entropy_bits(apply_temperature(logits, t)) for t in temperatures])


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """True for the k highest scores (logits or probabilities rank alike). k <= 0 or k >= vocab: all kept.

    Like torch.topk-based filters, a token tied with the k-th score is kept too.
    """
    scores = np.asarray(scores)
    k = int(k)
    if k <= 0 or k >= scores.size:
        return np.ones(scores.size, dtype=bool)
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    return scores >= kth


def top_p_mask(probabilities: np.ndarray, p: float) -> np.ndarray:
    """True for the smallest most-probable set whose mass reaches p (renormalised over the nonzero tokens).

    A token is dropped only when the tokens ranked above it already hold at least p, so the top token
    always survives: the nucleus is never empty. p >= 1 switches the filter off (every token kept).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    total = probs.sum()
    if total <= 0:
        raise ValueError("top-p needs a distribution with some probability mass")
    probs = probs / total
    p = float(p)
    if not p < 1.0:  # p >= 1 or NaN: no truncation
        return np.ones(probs.size, dtype=bool)
    order = np.argsort(-probs, kind="stable")
    before = np.cumsum(probs[order]) - probs[order]  # mass of the tokens ranked above each one
    keep_sorted = before < p
    keep_sorted[0] = True
    mask = np.zeros(probs.size, dtype=bool)
    mask[order] = keep_sorted
    return mask & (probs > 0)


def nucleus_size(probabilities: np.ndarray, p: float) -> int:
    return int(top_p_mask(probabilities, p).sum())


def min_p_mask(probabilities: np.ndarray, min_p: float) -> np.ndarray:
    """True where p_i >= min_p * max(p). min_p <= 0 switches the filter off (every token kept)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if not float(min_p) > 0.0:
        return np.ones(probs.size, dtype=bool)
    return probs >= float(min_p) * probs.max()


def _renormalise(probabilities: np.ndarray, mask: np.ndarray) -> np.ndarray:
    kept = np.where(mask, probabilities, 0.0)
    return kept / kept.sum()


@dataclass(frozen=True)
class FilterResult:
    """Every stage of temperature -> top-k -> top-p -> min-p on one logits vector."""
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    scaled: np.ndarray        # softmax(logits / T): the distribution the filters start from
    after_top_k: np.ndarray   # bool masks, each a subset of the one before
    after_top_p: np.ndarray
    keep: np.ndarray          # the survivors (after min-p)
    final: np.ndarray         # the survivors' renormalised probabilities; 0 elsewhere; sums to 1

    @property
    def survivors(self) -> int:
        return int(self.keep.sum())

    @property
    def kept_mass(self) -> float:
        """Share of the temperature-scaled distribution held by the survivors, before renormalising."""
        return float(self.scaled[self.keep].sum())


def sampling_filter(logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    min_p: float = 0.0) -> FilterResult:
    """Temperature, then top-k, then top-p on the renormalised top-k survivors, then min-p.

    top_k <= 0, top_p >= 1 and min_p <= 0 switch a filter off. Temperature 0 keeps only the argmax.
    """
    scaled = apply_temperature(logits, temperature)
    if not float(temperature) > 0.0:  # greedy: only the argmax is ever chosen, whatever the filters say
        k_mask = p_mask = keep = scaled > 0
    else:
        k_mask = top_k_mask(np.asarray(logits, dtype=np.float64), top_k)
        p_mask = k_mask & top_p_mask(np.where(k_mask, scaled, 0.0), top_p)
        keep = p_mask & min_p_mask(np.where(p_mask, scaled, 0.0), min_p)
    return FilterResult(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), min_p=float(min_p),
                        scaled=scaled, after_top_k=k_mask, after_top_p=p_mask, keep=keep,
                        final=_renormalise(scaled, keep))
