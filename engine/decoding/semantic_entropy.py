"""Two signals a model gives about its own answer: how sure it was of each token, and whether answers sampled
again agree in meaning.

Token confidence (the probability the model gave each token of one answer) measures fluency: an invented fact
can be written with the same assurance as a true one. Semantic entropy (Kuhn et al. 2023; Farquhar et al.,
Nature 2024) asks a different question: sample several answers, put the ones that mean the same thing in one
group, and take the entropy of the share of answers in each group. A model that knows the answer keeps
giving it in different words (one group, 0 bits); a model that confabulates gives a different answer on every
draw (many groups, up to log2 n bits).

The paper decides "same meaning" with bidirectional entailment (an NLI model or an LLM checks that each answer
implies the other). Here the test is the cosine similarity of all-MiniLM-L6-v2 sentence embeddings against a
threshold: a stand-in, symmetric like two-way entailment, but it measures how alike two texts are in wording
and topic, not whether they state the same fact. Whole answers that echo the question ("The capital of X is
...") look alike whatever the city, so by default the words already in the question are removed first and the
comparison sees what each answer adds.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from engine.model.encoder import LiveEncoder, embed_sentences
from engine.runtime.gate import model_work
from engine.decoding.generation import generate
from engine.model.live_model import LiveModel
from engine.tokens.tokenizers import chat_prompt

SHORT_ANSWER = "Answer in one short sentence."
NOTHING_NEW = "(nothing new)"   # what an answer that only repeats the question is compared as
NO_ANSWER = "(no answer)"

# Function words carry no answer: without them "is Paris" and "Paris" compare as equal.
FILLER_WORDS = frozenset("""a an the is are was were be been of in on at and or by for to it its this that as with
from which who whom what when where called named known""".split())


def question_prompt(lm: LiveModel, question: str, short: bool = True) -> str:
    """The question as one user turn in the model's chat template, optionally asking for one short sentence.

    The short-answer request follows the sentence-length setting of Farquhar et al., whose chat prompt asked for
    "a single brief but complete sentence": short answers are comparable; rambling ones drift off topic.
    """
    return chat_prompt(lm, f"{question.strip()} {SHORT_ANSWER}" if short else question.strip())


@dataclass(frozen=True, eq=False)
class TokenConfidence:
    """One answer and, for each of its tokens, the model's own probability and the entropy of its prediction."""
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]   # the reply's tokens, without the end-of-turn marker
    probabilities: np.ndarray     # p(token | everything before it) at T = 1
    entropies: np.ndarray         # bits: entropy of the full next-token distribution at that step
    runner_up_ids: tuple[int, ...]   # the most likely other token at each step
    runner_up_probabilities: np.ndarray
    finished: bool                # the model ended its turn within the token budget

    @property
    def mean_probability(self) -> float:
        return float(self.probabilities.mean()) if self.probabilities.size else float("nan")

    @property
    def mean_entropy(self) -> float:
        return float(self.entropies.mean()) if self.entropies.size else float("nan")


def score_answer(lm: LiveModel, prompt_ids: list[int], answer_ids: list[int], finished: bool = True) -> TokenConfidence:
    """Per-token probability and entropy of `answer_ids` after `prompt_ids`, read from one forward pass."""
    if not answer_ids:
        empty = np.zeros(0)
        return TokenConfidence(tuple(prompt_ids), (), empty, empty, (), empty, finished)
    with model_work():
        logits = lm.model(torch.tensor([list(prompt_ids) + list(answer_ids)]), use_cache=False).logits[0].double()
    steps = logits[len(prompt_ids) - 1:-1]          # the prediction made just before each answer token
    log_p = torch.log_softmax(steps, dim=-1)
    chosen = torch.tensor(answer_ids)
    probabilities = log_p.gather(1, chosen[:, None])[:, 0].exp()
    entropies = -(log_p.exp() * log_p).sum(-1) / math.log(2)
    others = log_p.scatter(1, chosen[:, None], float("-inf")).max(-1)
    return TokenConfidence(tuple(prompt_ids), tuple(answer_ids), probabilities.numpy(), entropies.numpy(),
                           tuple(int(i) for i in others.indices), others.values.exp().numpy(), finished)


def greedy_answer(lm: LiveModel, prompt: str, max_new_tokens: int) -> TokenConfidence:
    """The model's most likely reply (greedy decoding) and how sure it was of every token."""
    gen = generate(lm, prompt, max_new_tokens)
    eos = lm.tokenizer.eos_token_id
    answer = [i for i in gen.new_ids if i != eos]
    return score_answer(lm, gen.prompt_ids, answer, finished=gen.stopped_at_eos)


def answer_core(question: str, answer: str) -> str:
    """The words of `answer` that are neither in the question nor filler: what the answer adds.

    "The capital of France is Paris." to "What is the capital of France?" becomes "Paris".
    """
    asked = {w.lower() for w in re.findall(r"\w+", question)} | FILLER_WORDS
    kept = [w for w in re.findall(r"\w+", answer) if w.lower() not in asked]
    return " ".join(kept) if kept else NOTHING_NEW


@dataclass(frozen=True)
class SampledAnswer:
    seed: int
    text: str                         # the reply as shown, without the end-of-turn marker
    token_ids: tuple[int, ...]
    probabilities: tuple[float, ...]  # the model's T = 1 probability of each sampled token
    finished: bool

    @property
    def mean_probability(self) -> float:
        return float(np.mean(self.probabilities)) if self.probabilities else float("nan")


@dataclass(frozen=True, eq=False)
class AnswerSamples:
    """Several sampled replies to one question, with MiniLM vectors of the whole answers and of their cores."""
    answers: tuple[SampledAnswer, ...]
    cores: tuple[str, ...]            # answer_core of each answer
    whole_vectors: np.ndarray         # [n, 384] unit length
    core_vectors: np.ndarray          # [n, 384] unit length
    complete: bool                    # False when the run was stopped before every sample was drawn

    def similarity(self, cores: bool = True) -> np.ndarray:
        vectors = self.core_vectors if cores else self.whole_vectors
        return np.clip(vectors @ vectors.T, -1.0, 1.0)

    @property
    def mean_token_probability(self) -> float:
        """Each answer's mean token probability, averaged over the answers (each answer weighs the same)."""
        means = [a.mean_probability for a in self.answers if a.probabilities]
        return float(np.mean(means)) if means else float("nan")


def sample_answers(lm: LiveModel, encoder: LiveEncoder, question: str, prompt: str, n: int, max_new_tokens: int,
                   temperature: float, seed: int, on_step: Callable[[int, int], None] = lambda done, total: None,
                   should_stop: Callable[[], bool] = lambda: False) -> AnswerSamples:
    """`n` replies to `prompt`, reply i drawn by `generate` with seed + i, then embedded by MiniLM."""
    eos = lm.tokenizer.eos_token_id
    answers = []
    for i in range(n):
        if should_stop():
            break
        gen = generate(lm, prompt, max_new_tokens, temperature=temperature, seed=seed + i)
        keep = [k for k, t in enumerate(gen.new_ids) if t != eos]
        answers.append(SampledAnswer(seed=seed + i, text=gen.new_text.strip(),
                                     token_ids=tuple(gen.new_ids[k] for k in keep),
                                     probabilities=tuple(gen.chosen_probabilities[k] for k in keep),
                                     finished=gen.stopped_at_eos))
        on_step(i + 1, n)
    cores = tuple(answer_core(question, a.text) for a in answers)
    if answers:
        whole = embed_sentences(encoder, [a.text or NO_ANSWER for a in answers])
        core = embed_sentences(encoder, list(cores))
    else:
        whole = core = np.zeros((0, encoder.model.config.hidden_size), dtype=np.float32)
    return AnswerSamples(tuple(answers), cores, whole, core, complete=len(answers) == n)


def meaning_clusters(similarity: np.ndarray, threshold: float) -> tuple[int, ...]:
    """A group number for each answer (0, 1, ... in order of first appearance).

    Answers are taken in the order they were sampled and each is compared with the first answer of every group
    so far, as in Farquhar et al.'s code (which compares with two-way entailment instead): it joins the first
    group whose first answer it matches (cosine similarity >= threshold), or starts a new group. Deterministic
    for a given matrix and threshold.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    firsts: list[int] = []
    labels: list[int] = []
    for i in range(similarity.shape[0]):
        group = next((g for g, first in enumerate(firsts) if similarity[i, first] >= threshold), None)
        if group is None:
            group = len(firsts)
            firsts.append(i)
        labels.append(group)
    return tuple(labels)


def cluster_sizes(labels: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """How many answers are in each group, in group order."""
    return tuple(int(c) for c in np.bincount(np.asarray(labels, dtype=int))) if len(labels) else ()


def semantic_entropy_bits(sizes) -> float:
    """Entropy of the share of answers in each meaning group: -sum p log2 p with p = size / total.

    The count-based ("discrete") semantic entropy: it needs no token probabilities. One group gives 0 bits;
    n equal groups give log2 n bits.
    """
    counts = np.asarray([s for s in sizes if s > 0], dtype=np.float64)
    if counts.size == 0:
        return float("nan")
    p = counts / counts.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))
