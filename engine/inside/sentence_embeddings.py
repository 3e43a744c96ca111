"""Sentence vectors from two models: MiniLM, trained to embed sentences, and SmolLM2's raw hidden states.

MiniLM (all-MiniLM-L6-v2) was fine-tuned on paraphrase pairs so that the cosine of two mean-pooled outputs
measures how close two sentences are in meaning. SmolLM2 was trained only to predict the next token; its
hidden states can be pooled into one vector per sentence in the same way, but nothing ever asked those
vectors to be comparable by cosine. This module pools both on the same sentences so the page can measure
the difference: similarity matrices, where a paraphrase ranks, and a small fixed benchmark of
(query, paraphrase, distractor) triples whose distractor shares the query's wording but not its meaning.

SmolLM2's states come from one batched forward of the shared model (`output_hidden_states`, right padding
with an attention mask: a causal model's real positions never see the padding after them). Layer 0 is the
token embeddings, layer L the residual stream after block L; the model returns its last entry after the
final RMSNorm, so layer 30 is normalized and the others are not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.model.encoder import LiveEncoder, embed_sentences
from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel

MAX_SENTENCES = 8
MAX_SENTENCE_CHARS = 200
PARAPHRASE_MARK = "≈ "
POOLINGS = ("mean", "mean_skip_first", "last")
POOLING_NAMES = {"mean": "mean of all tokens", "mean_skip_first": "mean without the first token",
                 "last": "last token"}


# ---------------------------------------------------------------- the reader's sentences

@dataclass(frozen=True)
class Sentences:
    items: tuple[str, ...]
    notes: tuple[str, ...] = ()


def parse_sentences(text: str) -> Sentences:
    """One sentence per line: blank lines dropped, each cut to MAX_SENTENCE_CHARS, at most MAX_SENTENCES."""
    notes = []
    lines = [" ".join(line.split()) for line in (text or "").splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > MAX_SENTENCES:
        notes.append(f"Only the first {MAX_SENTENCES} lines are compared ({len(lines) - MAX_SENTENCES} more ignored).")
        lines = lines[:MAX_SENTENCES]
    long = sum(len(line) > MAX_SENTENCE_CHARS for line in lines)
    if long:
        notes.append(f"{long} line(s) cut to {MAX_SENTENCE_CHARS} characters.")
    return Sentences(tuple(line[:MAX_SENTENCE_CHARS] for line in lines), tuple(notes))


def split_preset(text: str) -> tuple[str, int | None]:
    """A preset's text without its paraphrase marker, and the 1-based line the marker was on (or None)."""
    lines, marked = [], None
    for line in text.strip().splitlines():
        if line.startswith(PARAPHRASE_MARK):
            marked = len(lines) + 1
            line = line[len(PARAPHRASE_MARK):]
        lines.append(line)
    return "\n".join(lines), marked


def parse_triples(text: str) -> tuple[tuple[str, str, str], ...]:
    """Benchmark lines "query | paraphrase | distractor"; other lines are ignored."""
    triples = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and all(parts):
            triples.append((parts[0], parts[1], parts[2]))
    return tuple(triples)


# ---------------------------------------------------------------- vectors

@dataclass(frozen=True, eq=False)
class DecoderStates:
    """SmolLM2's pooled hidden states: [layers + 1, sentences, d_model] for each pooling."""
    pooled: dict[str, np.ndarray]
    token_counts: tuple[int, ...]

    @property
    def layers(self) -> int:
        """The deepest layer index (the number of blocks); index 0 is the embeddings."""
        return next(iter(self.pooled.values())).shape[0] - 1

    def vectors(self, layer: int, pooling: str) -> np.ndarray:
        return self.pooled[pooling][layer]


def decoder_states(lm: LiveModel, sentences: list[str] | tuple[str, ...]) -> DecoderStates:
    """One batched forward of SmolLM2 over the sentences; every layer's states pooled three ways."""
    import torch

    with lm.tokenizing() as tok:
        batch = tok(list(sentences), padding=True, return_tensors="pt", add_special_tokens=False)
    with model_work():
        out = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True)
    hidden = torch.stack(out.hidden_states).double()            # [layers + 1, n, T, d]
    mask = batch["attention_mask"].double()                       # [n, T], ones then zeros (right padding)
    counts = batch["attention_mask"].sum(1)
    mean = (hidden * mask[None, :, :, None]).sum(2) / mask.sum(1)[None, :, None]
    rest = mask.clone()
    rest[:, 0] = 0.0
    skip_first = (hidden * rest[None, :, :, None]).sum(2) / rest.sum(1).clamp(min=1.0)[None, :, None]
    skip_first = torch.where((counts > 1)[None, :, None], skip_first, mean)   # a one-token line keeps its token
    last = hidden[:, torch.arange(len(sentences)), counts - 1]
    pooled = {"mean": mean.numpy(), "mean_skip_first": skip_first.numpy(), "last": last.numpy()}
    for array in pooled.values():
        array.flags.writeable = False
    return DecoderStates(pooled, tuple(int(c) for c in counts))


def encoder_vectors(encoder: LiveEncoder, sentences: list[str] | tuple[str, ...]) -> np.ndarray:
    """MiniLM's sentence embeddings (mean-pooled, unit length), as sentence-transformers computes them."""
    return np.asarray(embed_sentences(encoder, list(sentences)), dtype=np.float64)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows: symmetric, with 1 on the diagonal (rows of length 0 give 0)."""
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms > 0, norms, 1.0)
    sims = unit @ unit.T
    sims = (sims + sims.T) / 2          # exact symmetry, whatever order the product summed in
    return np.clip(sims, -1.0, 1.0)


def mean_off_diagonal(sims: np.ndarray) -> float:
    """The average cosine between different sentences: near 1 means every sentence looks alike."""
    n = sims.shape[0]
    return float((sims.sum() - np.trace(sims)) / (n * n - n)) if n > 1 else float("nan")


def rank_by_similarity(sims: np.ndarray, query: int = 0) -> list[int]:
    """The other sentences' indices, most similar to the query first (ties keep line order)."""
    others = [i for i in range(sims.shape[0]) if i != query]
    return sorted(others, key=lambda i: (-sims[query, i], i))


def rank_of(sims: np.ndarray, target: int, query: int = 0) -> int:
    """Where `target` ranks among the other sentences by similarity to the query (1 = most similar)."""
    return rank_by_similarity(sims, query).index(target) + 1


# ---------------------------------------------------------------- the benchmark

@dataclass(frozen=True, eq=False)
class Benchmark:
    triples: tuple[tuple[str, str, str], ...]
    encoder_wins: np.ndarray       # [triples] bool: MiniLM puts the paraphrase above the distractor
    encoder_margin: np.ndarray     # [triples] cos(q, paraphrase) - cos(q, distractor)
    decoder_wins: dict[str, np.ndarray]      # pooling -> [layers + 1, triples] bool
    decoder_margin: dict[str, np.ndarray]    # pooling -> [layers + 1, triples]
    encoder_spread: float          # mean cosine between different sentences, MiniLM
    decoder_spread: dict[str, np.ndarray]    # pooling -> [layers + 1]

    @property
    def size(self) -> int:
        return len(self.triples)


def _triple_margins(vectors: np.ndarray) -> np.ndarray:
    """cos(query, paraphrase) - cos(query, distractor) for rows laid out as (q, p, d), (q, p, d), ..."""
    x = np.asarray(vectors, dtype=np.float64)
    unit = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-300)
    q, p, d = unit[0::3], unit[1::3], unit[2::3]
    return (q * p).sum(-1) - (q * d).sum(-1)


def run_benchmark(lm: LiveModel, encoder: LiveEncoder, triples: tuple[tuple[str, str, str], ...],
                  progress: Callable[[float, str], None] = lambda fraction, message: None,
                  should_stop: Callable[[], bool] = lambda: False, triples_per_pass: int = 3) -> Benchmark:
    """Both models on every triple: does the paraphrase beat the distractor, and by how much.

    SmolLM2 runs a few triples per pass so progress can be reported and a stop request honoured between
    passes; a stopped run measures the triples done so far. Pooling is per sentence, so how the sentences
    are batched does not change the result.
    """
    done: list[tuple[str, str, str]] = []
    pooled: dict[str, list[np.ndarray]] = {p: [] for p in POOLINGS}
    for start in range(0, len(triples), max(1, triples_per_pass)):
        if should_stop() and done:
            break
        progress(start / max(len(triples), 1), f"SmolLM2: triples {start + 1}-"
                                               f"{min(start + triples_per_pass, len(triples))} of {len(triples)}")
        batch = triples[start:start + triples_per_pass]
        states = decoder_states(lm, [s for triple in batch for s in triple])
        for p in POOLINGS:
            pooled[p].append(states.pooled[p])
        done.extend(batch)
    progress(1.0, "MiniLM: all triples")
    sentences = [s for triple in done for s in triple]
    enc = encoder_vectors(encoder, sentences)
    stacked = {p: np.concatenate(pooled[p], axis=1) for p in POOLINGS}     # [layers + 1, sentences, d]
    layers = next(iter(stacked.values())).shape[0]
    enc_margin = _triple_margins(enc)
    margins = {p: np.stack([_triple_margins(stacked[p][layer]) for layer in range(layers)]) for p in POOLINGS}
    spread = {p: np.array([mean_off_diagonal(cosine_matrix(stacked[p][layer])) for layer in range(layers)])
              for p in POOLINGS}
    return Benchmark(triples=tuple(done), encoder_wins=enc_margin > 0, encoder_margin=enc_margin,
                     decoder_wins={p: m > 0 for p, m in margins.items()}, decoder_margin=margins,
                     encoder_spread=mean_off_diagonal(cosine_matrix(enc)), decoder_spread=spread)
