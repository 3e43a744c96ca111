"""Prompting measured: few-shot prompts assembled deterministically, every answer choice scored by log-likelihood.

Scoring by log-likelihood is how GPT-3's few-shot results were measured on multiple-choice tasks, and how
lm-evaluation-harness scores them today: the model never has to *generate* the answer. For a prompt that ends
"Sentiment:" and the candidate answers " positive" and " negative", the model reads prompt + candidate and we add
up ln p(token | everything before it) over the candidate's tokens. The candidate with the highest score is the
prediction, so accuracy needs no parsing of free text and is exactly reproducible.

Two scores per choice:
- summed: ln p(choice | prompt), the whole answer's log-probability. Longer answers pay for every extra token.
- length-normalised: summed / number of choice tokens, the mean log-probability per token, which removes that
  penalty. GPT-3 used this in most tasks; lm-evaluation-harness's `acc_norm` divides by the answer's length in
  characters instead, so that tokenizers compare fairly. Tokens are used here so the number is read straight off the
  per-token values shown.

Few-shot prompts: an instruction, k solved demonstrations from a separate pool (never from the test set), then
the query. The demonstrations are picked label by label in turn (balanced as far as k allows) and put in an
order set by a seed, so a seed names one exact prompt and changing only the seed changes only the order.

Contextual calibration (Zhao et al. 2021): the same prompt with a content-free query ("N/A") shows what the
prompt alone makes the model favour; subtracting that content-free score from each choice's score (dividing the
probabilities) removes the bias before taking the argmax.

Speed: the instruction and demonstrations are shared by every test item, so their tokens run once into a KV
cache; each item then feeds only its own tokens and its choices, and the cache is cropped back afterwards.
The unit tests hold these scores to a plain forward pass over prompt + choice.
"""
from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.serving.prompt_cache import new_cache, shared_prefix_length
from engine.tokens.offsets import token_ids

TASKS_FILE = Path(__file__).resolve().parents[2] / "assets" / "prompting.toml"
CONTENT_FREE = "N/A"     # Zhao et al.'s content-free input for calibration
MAX_SHOTS = 8


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True)
class Task:
    key: str
    title: str
    instruction: str                     # "{choices}" is filled with the answer words
    input_name: str                      # "Review"
    answer_name: str                     # "Sentiment"
    labels: tuple[str, ...]
    verbalizers: tuple[tuple[str, tuple[str, ...]], ...]   # (name, one answer word per label)
    test: tuple[Example, ...]
    pool: tuple[Example, ...]

    def words(self, verbalizer: str) -> tuple[str, ...]:
        """The answer words for each label under the named verbalizer (the first one if the name is unknown)."""
        return dict(self.verbalizers).get(verbalizer, self.verbalizers[0][1])

    @property
    def verbalizer_names(self) -> list[str]:
        return [name for name, _ in self.verbalizers]


@functools.cache
def _read(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


@functools.cache
def load_tasks(path: Path = TASKS_FILE) -> dict[str, Task]:
    """The bundled labelled sets (assets/prompting.toml), checked: every label known, every verbalizer complete."""
    tasks = {}
    for key, t in _read(path)["tasks"].items():
        labels = tuple(t["labels"])
        verbalizers = tuple((name, tuple(words)) for name, words in t["verbalizers"].items())
        test = tuple(Example(e["text"], e["label"]) for e in t["test"])
        pool = tuple(Example(e["text"], e["label"]) for e in t["pool"])
        for e in test + pool:
            if e.label not in labels:
                raise ValueError(f"{path.name}: [{key}] has an item labelled {e.label!r}, not one of {labels}")
        for name, words in verbalizers:
            if len(words) != len(labels) or len(set(words)) != len(words):
                raise ValueError(f"{path.name}: [{key}] verbalizer {name!r} needs one distinct word per label")
        tasks[key] = Task(key, t["title"], t["instruction"], t["input_name"], t["answer_name"], labels,
                          verbalizers, test, pool)
    return tasks


def choices_text(words: Sequence[str]) -> str:
    """'positive or negative'; 'a, b, c or d'."""
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def query_block(task: Task, text: str, answer: str | None = None) -> str:
    """One example as the prompt shows it; without an answer it ends at the colon the model continues from."""
    block = f"{task.input_name}: {text}\n{task.answer_name}:"
    return block + f" {answer}" if answer is not None else block


def choose_demonstrations(task: Task, k: int, seed: int) -> tuple[Example, ...]:
    """k demonstrations from the pool, labels taken in turn (balanced as far as k allows), in a seeded order.

    The SET depends only on k; the seed only permutes it. So two seeds give the same examples in two orders.
    """
    k = max(0, min(int(k), len(task.pool)))
    queues = {label: [e for e in task.pool if e.label == label] for label in task.labels}
    picked: list[Example] = []
    while len(picked) < k:
        for label in task.labels:
            if queues[label] and len(picked) < k:
                picked.append(queues[label].pop(0))
    order = np.random.default_rng(int(seed)).permutation(k)
    return tuple(picked[i] for i in order)


def build_prompt(task: Task, words: Sequence[str], demonstrations: Sequence[Example], query: str) -> str:
    """Instruction, solved demonstrations, then the query, separated by blank lines. Deterministic."""
    head = task.instruction.format(choices=choices_text(words))
    solved = [query_block(task, d.text, words[task.labels.index(d.label)]) for d in demonstrations]
    return "\n\n".join([head, *solved, query_block(task, query)])


def choice_ids(lm: LiveModel, words: Sequence[str]) -> list[list[int]]:
    """Each answer word's tokens, with the space that follows the prompt's colon: ' positive'."""
    return [token_ids(lm, " " + w) for w in words]


@dataclass(frozen=True)
class ChoiceScore:
    word: str
    token_ids: tuple[int, ...]
    token_logprobs: tuple[float, ...]   # ln p of each choice token given the prompt and the tokens before it

    @property
    def summed(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def normalised(self) -> float:
        return self.summed / len(self.token_logprobs)

    def score(self, normalise: bool) -> float:
        return self.normalised if normalise else self.summed


@dataclass(frozen=True)
class ItemScores:
    text: str
    label: str | None                  # the gold label (None for the content-free probe or a reader's text)
    choices: tuple[ChoiceScore, ...]   # in the task's label order
    prompt_tokens: int

    def scores(self, normalise: bool) -> np.ndarray:
        return np.array([c.score(normalise) for c in self.choices])

    def predicted(self, normalise: bool, baseline: "ItemScores | None" = None) -> int:
        """Index of the best choice; with a content-free `baseline`, after contextual calibration."""
        s = self.scores(normalise)
        if baseline is not None:
            s = s - baseline.scores(normalise)
        return int(np.argmax(s))


def choice_probabilities(scores: np.ndarray) -> np.ndarray:
    """Summed log-likelihoods turned into probabilities over the choices alone (softmax over the choices)."""
    z = np.exp(scores - scores.max())
    return z / z.sum()


@dataclass(frozen=True)
class Condition:
    """One prompt setting scored over a set: k demonstrations in one seeded order."""
    k: int
    seed: int
    demonstrations: tuple[Example, ...]
    items: tuple[ItemScores, ...]
    content_free: ItemScores          # the same prompt with "N/A" as the query
    labels: tuple[str, ...]

    def predictions(self, normalise: bool, calibrated: bool = False) -> list[int]:
        baseline = self.content_free if calibrated else None
        return [it.predicted(normalise, baseline) for it in self.items]

    def correct(self, normalise: bool, calibrated: bool = False) -> int:
        return sum(self.labels[p] == it.label for p, it in zip(self.predictions(normalise, calibrated), self.items))

    def accuracy(self, normalise: bool, calibrated: bool = False) -> float:
        return self.correct(normalise, calibrated) / len(self.items) if self.items else float("nan")

    def predicted_share(self, normalise: bool, calibrated: bool = False) -> np.ndarray:
        """Share of the items predicted as each label: a prompt biased toward one label shows here."""
        counts = np.bincount(self.predictions(normalise, calibrated), minlength=len(self.labels))
        return counts / max(1, len(self.items))


def _logprobs_of(logits: torch.Tensor, targets: Sequence[int]) -> list[float]:
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return [float(logprobs[i, t]) for i, t in enumerate(targets)]


def _crop_to(cache, length: int) -> None:
    """Forget every cached token after the first `length` (transformers 5 crops by a negative count)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def score_prompts(lm: LiveModel, prompts: Sequence[list[int]], choices: Sequence[list[int]],
                  on_item: Callable[[int, int], None] = lambda done, total: None,
                  should_stop: Callable[[], bool] = lambda: False) -> list[list[tuple[float, ...]]]:
    """Per-token log-probabilities of every choice after every prompt: [prompt][choice] -> tuple of ln p.

    The tokens all prompts share run once into a KV cache. Each prompt then feeds its own remaining tokens
    (at least one, so its last position's distribution is fresh), which gives every choice's first token; a
    choice of several tokens feeds all but its last token to score the rest. The cache is cropped back after
    each choice and each prompt, so no prompt ever sees another's tokens. Stops early (fewer results) if asked.
    """
    if not prompts or any(not p for p in prompts) or any(not c for c in choices):
        raise ValueError("every prompt and every choice needs at least one token")
    shared = min(shared_prefix_length(prompts[0], p) for p in prompts)
    shared = min(shared, min(len(p) for p in prompts) - 1)
    cache = new_cache(lm)
    results: list[list[tuple[float, ...]]] = []
    with model_work():
        if shared:
            lm.model(torch.tensor([prompts[0][:shared]]), past_key_values=cache, use_cache=True)
    for n, prompt in enumerate(prompts):
        if should_stop():
            break
        with model_work():
            last = lm.model(torch.tensor([prompt[shared:]]), past_key_values=cache,
                            use_cache=True).logits[0, -1:]
            per_choice = []
            for choice in choices:
                first = _logprobs_of(last, choice[:1])
                rest = []
                if len(choice) > 1:
                    logits = lm.model(torch.tensor([choice[:-1]]), past_key_values=cache, use_cache=True).logits[0]
                    rest = _logprobs_of(logits, choice[1:])
                    _crop_to(cache, len(prompt))
                per_choice.append(tuple(first + rest))
            _crop_to(cache, shared)
        results.append(per_choice)
        on_item(n + 1, len(prompts))
    return results


def score_condition(lm: LiveModel, task: Task, verbalizer: str, k: int, seed: int,
                    on_item: Callable[[int, int], None] = lambda done, total: None,
                    should_stop: Callable[[], bool] = lambda: False) -> Condition | None:
    """Every test item (and the content-free probe) scored under k demonstrations in the seed's order.

    None if stopped before the end: a partial accuracy would not compare with the others.
    """
    words = task.words(verbalizer)
    demos = choose_demonstrations(task, k, seed)
    queries = [e.text for e in task.test] + [CONTENT_FREE]
    prompts = [token_ids(lm, build_prompt(task, words, demos, q)) for q in queries]
    choices = choice_ids(lm, words)
    scored = score_prompts(lm, prompts, choices, on_item, should_stop)
    if len(scored) < len(prompts):
        return None
    items = [ItemScores(q, gold, tuple(ChoiceScore(w, tuple(c), lp) for w, c, lp in zip(words, choices, per)),
                        len(p))
             for q, gold, per, p in zip(queries, [e.label for e in task.test] + [None], scored, prompts)]
    return Condition(k=len(demos), seed=int(seed), demonstrations=demos, items=tuple(items[:-1]),
                     content_free=items[-1], labels=task.labels)


def score_text(lm: LiveModel, task: Task, verbalizer: str, k: int, seed: int, text: str) -> ItemScores:
    """One text (the reader's own) scored under k demonstrations in the seed's order."""
    words = task.words(verbalizer)
    prompt = token_ids(lm, build_prompt(task, words, choose_demonstrations(task, k, seed), text))
    choices = choice_ids(lm, words)
    per = score_prompts(lm, [prompt], choices)[0]
    return ItemScores(text, None, tuple(ChoiceScore(w, tuple(c), lp) for w, c, lp in zip(words, choices, per)),
                      len(prompt))


def chance_accuracy(task: Task) -> float:
    """The accuracy of always answering the test set's most common label: the floor a prompt must beat."""
    counts = [sum(e.label == label for e in task.test) for label in task.labels]
    return max(counts) / len(task.test)


# Chain of thought and self-consistency: generated answers, read for their final number.

DIRECT_SUFFIX = " Answer with a number only."
STEP_BY_STEP_SUFFIX = " Let's think step by step, then give the final answer."


@dataclass(frozen=True)
class Question:
    text: str
    answer: int


def load_questions(path: Path = TASKS_FILE) -> tuple[Question, ...]:
    return tuple(Question(q["text"], int(q["answer"])) for q in _read(path)["questions"])


def final_number(reply: str) -> int | None:
    """The last whole number a reply states (a worked answer ends on its result); None if it states none."""
    found = re.findall(r"-?\d[\d,]*", reply)
    if not found:
        return None
    try:
        return int(found[-1].replace(",", "").rstrip(","))
    except ValueError:
        return None


def majority_vote(answers: Sequence[int | None]) -> tuple[int | None, int]:
    """The most common stated answer and how many replies gave it; replies with no number do not vote.

    Ties go to the answer reached first, so the vote is deterministic for a given list.
    """
    counts: dict[int, int] = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return None, 0
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return winner, best


@dataclass(frozen=True)
class Reply:
    style: str              # "direct", "step by step (greedy)" or "step by step, sample i"
    text: str
    number: int | None
    seed: int | None
    tokens: int
    finished: bool          # ended its turn within the token budget


@dataclass(frozen=True)
class ReasoningRun:
    question: Question
    direct: Reply | None
    step_by_step: Reply | None
    samples: tuple[Reply, ...]
    temperature: float

    @property
    def vote(self) -> tuple[int | None, int]:
        return majority_vote([r.number for r in self.samples])


def reason(lm: LiveModel, question: Question, samples: int, temperature: float, max_tokens: int, seed: int,
           on_step: Callable[[int, int, str], None] = lambda done, total, what: None,
           should_stop: Callable[[], bool] = lambda: False) -> ReasoningRun:
    """A direct answer, a greedy step-by-step answer, and `samples` sampled step-by-step answers to vote on.

    Every reply is generated in the model's own chat template and read for the last number it states.
    Stops early (with the replies made so far) when asked.
    """
    from engine.using.chat_template import chat_messages, render
    from engine.decoding.generation import generate

    def ask(suffix: str, tokens: int, temp: float, s: int | None, style: str) -> Reply:
        gen = generate(lm, render(lm, chat_messages("", question.text + suffix)), tokens,
                       temperature=temp, seed=s or 0)
        return Reply(style, gen.new_text.strip(), final_number(gen.new_text), s, len(gen.new_ids),
                     gen.stopped_at_eos)

    total = 2 + samples
    on_step(0, total, "the direct answer")
    direct = ask(DIRECT_SUFFIX, 16, 0.0, None, "direct")
    chained, drawn = None, []
    if not should_stop():
        on_step(1, total, "the greedy step-by-step answer")
        chained = ask(STEP_BY_STEP_SUFFIX, max_tokens, 0.0, None, "step by step (greedy)")
    for i in range(samples):
        if should_stop():
            break
        on_step(2 + i, total, f"sample {i + 1} of {samples}")
        drawn.append(ask(STEP_BY_STEP_SUFFIX, max_tokens, temperature, seed + i, f"step by step, sample {i + 1}"))
    return ReasoningRun(question, direct, chained, tuple(drawn), float(temperature))
