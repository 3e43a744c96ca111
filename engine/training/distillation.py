"""Knowledge distillation: the teacher's soft targets, the loss a student minimizes, and a tiny student trained
in seconds on hard labels or on soft targets.

The loss (Hinton, Vinyals and Dean 2015). The teacher's logits z and the student's logits s are both softened by
the same temperature T; the student is pushed towards the teacher by the forward KL divergence, teacher first,

    L_soft = T^2 * KL(p_T || q_T) = T^2 * sum_i p_T,i * (ln p_T,i - ln q_T,i),   p_T = softmax(z/T), q_T = softmax(s/T)

which is what `torch.nn.functional.kl_div(log q_T, p_T)` computes (its input is the student's log-probabilities,
its target the teacher's probabilities). The T^2 keeps the soft term's gradients the same size whatever T is:
d KL / d s_i = (q_T,i - p_T,i) / T, and the differences themselves shrink like 1/T, so without the T^2 a higher T
would quietly turn the soft term down against the hard-label term, CE(y, softmax(s)), it is mixed with:

    L = alpha * L_soft + (1 - alpha) * CE(y, q_1)

The student. SmolLM2 has 135M parameters; the student here has a few hundred thousand and sees only the two
tokens before the one it predicts. It reads those tokens through the teacher's own (frozen) embedding table
and scores candidates against the same table, the way DistilBERT started from its teacher's weights; what it
learns is the small MLP in between. It predicts only the tokens that occur in the bundled transfer set (the
teacher's distribution is renormalized over them), so one teacher pass over the corpus, kept as a small
[positions, vocabulary] array, is all the targets it will ever need. Both students, hard and soft, start from
the same seed and see the same minibatches for the same number of steps: the targets are the only difference.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import tempfile
import threading
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from engine.runtime.gate import cpu_gate, model_work
from engine.model.live_model import LiveModel
from engine.tokens.offsets import token_ids

log = logging.getLogger("llm_handbook")

CORPUS = Path(__file__).resolve().parents[2] / "assets" / "distillation_corpus.txt"
HELD_OUT_EVERY = 5          # every 5th paragraph is held out: the students never train on it
CONTEXT = 2                 # the student sees this many previous tokens
HIDDEN = 128                # the student's hidden width
BATCH = 256                 # positions per training step
LEARNING_RATE = 3e-3
CURVE_POINTS = 30           # about this many points per learning curve (each costs a pass over the scored sets)
TRAIN_SCORED = 3            # the training loss on the curve is scored on every 3rd training position
STEPS_PER_GATE_PASS = 10    # a training run gives the CPU gate back this often, so readers' passes get in


# --- the loss ---------------------------------------------------------------------------------------------

def soft_targets(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) in float64 (the last axis): the teacher's targets at distillation temperature T."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_soft(logits: np.ndarray, temperature: float) -> np.ndarray:
    """log softmax(logits / T), float64: exact even where the probability underflows to 0."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass(frozen=True, eq=False)
class DistillationLoss:
    """The soft-target loss at one position, term by term.

    terms[i] = p_i (ln p_i - ln q_i) is token i's share of KL(p || q); they sum to `kl`. A term is negative
    where the student gives a token more probability than the teacher; the sum is never negative.
    """
    temperature: float
    teacher: np.ndarray       # p_T over the vocabulary
    student: np.ndarray       # q_T over the vocabulary
    terms: np.ndarray         # p_T,i (ln p_T,i - ln q_T,i), nats

    @property
    def kl(self) -> float:
        """KL(teacher || student) at T, nats: the direction distillation minimizes."""
        return float(self.terms.sum())

    @property
    def scaled(self) -> float:
        """T^2 * KL: the soft term as Hinton et al. put it in the loss."""
        return self.temperature ** 2 * self.kl


def distillation_loss(teacher_logits: np.ndarray, student_logits: np.ndarray, temperature: float) -> DistillationLoss:
    """KL(softmax(z/T) || softmax(s/T)) for one position's logits, with every token's term."""
    log_p, log_q = log_soft(teacher_logits, temperature), log_soft(student_logits, temperature)
    p = np.exp(log_p)
    return DistillationLoss(float(temperature), p, np.exp(log_q), p * (log_p - log_q))


def reverse_kl(loss: DistillationLoss) -> float:
    """KL(student || teacher): the other direction, shown to make the point that KL is not symmetric."""
    q, p = loss.student, loss.teacher
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * (np.log(q) - np.log(p)), 0.0)
    return float(terms.sum())


def soft_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean over positions of KL(p_T || q_T): torch's kl_div with the student's log-probabilities as input."""
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    return temperature ** 2 * F.kl_div(log_q, teacher_probs, reduction="batchmean")


def gradient_size(teacher_logits: np.ndarray, student_logits: np.ndarray, temperature: float,
                  scale_by_t2: bool) -> float:
    """The length of d(loss)/d(student logits) at one position, by autograd (the check of `gradient_sizes`)."""
    s = torch.tensor(np.asarray(student_logits, dtype=np.float64), requires_grad=True)
    p = torch.tensor(soft_targets(teacher_logits, temperature))
    loss = F.kl_div(F.log_softmax(s / temperature, dim=-1), p, reduction="sum")
    if scale_by_t2:
        loss = loss * temperature ** 2
    (grad,) = torch.autograd.grad(loss, s)
    return float(grad.norm())


def gradient_sizes(teacher_logits: np.ndarray, student_logits: np.ndarray,
                   temperatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|d KL / d s| and |d (T^2 KL) / d s| at each T, from the closed form d KL(p_T || q_T) / d s = (q_T - p_T) / T.

    Without the T^2 the gradient fades roughly like 1/T^2 as T grows; with it, it levels off (towards the
    gradient of matching logits, Hinton et al.'s high-temperature limit)."""
    t = np.asarray(temperatures, dtype=np.float64)[:, None]
    z = np.asarray(teacher_logits, dtype=np.float64)[None, :] / t     # [temperatures, vocab]
    s = np.asarray(student_logits, dtype=np.float64)[None, :] / t
    gap = soft_targets(s, 1.0) - soft_targets(z, 1.0)
    without = np.linalg.norm(gap, axis=-1) / t[:, 0]
    return without, without * t[:, 0] ** 2


# --- an untrained student for the formula: the teacher with a block of layers removed ----------------------

@dataclass(frozen=True)
class RemoveLayers:
    """A weight transform for the traced forward that removes whole layers (0-based), as depth pruning does.

    A block adds its attention output (o_proj) and its FFN output (down_proj) to the residual stream; with both
    projections zero it adds nothing, so the stream passes the layer unchanged: exactly the model without it.
    """
    layers: frozenset[int]

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        parts = name.split(".")
        if parts[0] == "layers" and int(parts[1]) in self.layers and parts[-1] in ("o_proj", "down_proj"):
            return torch.zeros_like(weight)
        return weight


def middle_block(total_layers: int, removed: int) -> frozenset[int]:
    """The `removed` layers at the middle of the stack (0-based). The first and the last layers stay: on SmolLM2,
    taking a block out of the middle changes its predictions far less than cutting off the top layers."""
    removed = min(max(0, int(removed)), total_layers - 2)
    start = (total_layers - removed) // 2
    return frozenset(range(start, start + removed))


# --- the transfer set: the corpus and the teacher's predictions on it --------------------------------------

def corpus_paragraphs(path: Path = CORPUS) -> list[str]:
    """The bundled paragraphs (blank-line separated; lines starting with # are notes)."""
    text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#"))
    return [p.strip() for p in text.split("\n\n") if p.strip()]


@dataclass(frozen=True, eq=False)
class TransferSet:
    """Every position of the corpus that has a next token: the student's inputs, the true next token, and the
    teacher's logits over the student's vocabulary (the corpus's distinct tokens). Arrays are read-only.

    inputs hold vocabulary indices of the CONTEXT previous tokens; index K (= vocabulary size) stands for
    "before the paragraph's start". teacher_coverage is the share of the teacher's full-vocabulary probability
    that fell on the student's vocabulary, per position: what renormalizing over it leaves out.
    """
    vocab: np.ndarray             # [K] token ids of the student's vocabulary
    inputs: np.ndarray            # [N, CONTEXT] int64
    targets: np.ndarray           # [N] int64, vocabulary index of the true next token
    teacher_logits: np.ndarray    # [N, K] float32
    teacher_coverage: np.ndarray  # [N] float32
    held_out: np.ndarray          # [N] bool
    paragraphs: int
    tokens: int

    @property
    def size(self) -> int:
        return int(self.vocab.size)


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


def build_transfer_set(lm: LiveModel, paragraphs: list[str], on_paragraph: Callable[[int, int], None] | None = None,
                       ) -> TransferSet:
    """One teacher pass per paragraph (each from its own start), reduced at once to the student's vocabulary."""
    encoded = [token_ids(lm, p) for p in paragraphs]
    vocab = np.array(sorted({t for ids in encoded for t in ids}), dtype=np.int64)
    index = {int(t): i for i, t in enumerate(vocab)}
    columns = torch.from_numpy(vocab)
    inputs, targets, logits, coverage, held = [], [], [], [], []
    for n, ids in enumerate(encoded):
        if len(ids) < 2:
            continue
        with model_work():
            full = lm.model(torch.tensor([ids])).logits[0, :-1].float()
            coverage.append(full.softmax(-1)[:, columns].sum(-1).numpy())
            logits.append(full[:, columns].numpy())
        local = [index[t] for t in ids]
        padded = [len(vocab)] * CONTEXT + local
        inputs += [padded[t + 1:t + 1 + CONTEXT] for t in range(len(ids) - 1)]
        targets += local[1:]
        held += [n % HELD_OUT_EVERY == HELD_OUT_EVERY - 1] * (len(ids) - 1)
        if on_paragraph:
            on_paragraph(n + 1, len(encoded))
    ts = TransferSet(vocab=vocab, inputs=np.array(inputs, dtype=np.int64), targets=np.array(targets, dtype=np.int64),
                     teacher_logits=np.concatenate(logits).astype(np.float32),
                     teacher_coverage=np.concatenate(coverage).astype(np.float32), held_out=np.array(held),
                     paragraphs=len(encoded), tokens=sum(len(ids) for ids in encoded))
    _readonly(ts.vocab, ts.inputs, ts.targets, ts.teacher_logits, ts.teacher_coverage, ts.held_out)
    return ts


# --- the transfer set, built once per corpus and model, kept in memory and on disk --------------------------

_transfer_sets: dict[str, TransferSet] = {}
_transfer_lock = threading.Lock()


def transfer_key(lm: LiveModel, paragraphs: list[str]) -> str:
    """A digest of what the transfer set depends on: the corpus, the model, and a sample of its weights."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update("\n\n".join(paragraphs).encode("utf-8"))
    card = lm.card
    digest.update(f"{card.name}|{card.parameters}|{card.vocab_size}|{CONTEXT}|{HELD_OUT_EVERY}".encode())
    weight = lm.model.get_input_embeddings().weight
    digest.update(weight[:: max(1, weight.shape[0] // 64)].detach().float().numpy().tobytes())
    return digest.hexdigest()


def _cache_file(key: str, folder: Path | None) -> Path | None:
    if folder is None:
        from engine.model.model_cache import cache_root
        folder = cache_root() / "distillation"
    return folder / f"transfer-{key}.npz"


def _load(path: Path) -> TransferSet | None:
    try:
        with np.load(path) as data:
            ts = TransferSet(vocab=data["vocab"], inputs=data["inputs"], targets=data["targets"],
                             teacher_logits=data["teacher_logits"], teacher_coverage=data["teacher_coverage"],
                             held_out=data["held_out"], paragraphs=int(data["paragraphs"]), tokens=int(data["tokens"]))
        n, k = ts.teacher_logits.shape
        if k != ts.size or ts.inputs.shape != (n, CONTEXT) or ts.targets.shape != (n,) or ts.held_out.shape != (n,):
            return None
        _readonly(ts.vocab, ts.inputs, ts.targets, ts.teacher_logits, ts.teacher_coverage, ts.held_out)
        return ts
    except Exception:   # a missing, partial or foreign file only means the teacher runs again
        return None


def _save(ts: TransferSet, path: Path) -> None:
    """Written to a temporary file and renamed, so an interrupted write never leaves a broken cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, vocab=ts.vocab, inputs=ts.inputs, targets=ts.targets, teacher_logits=ts.teacher_logits,
                 teacher_coverage=ts.teacher_coverage, held_out=ts.held_out, paragraphs=ts.paragraphs,
                 tokens=ts.tokens)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            f.write(buffer.getvalue())
        os.replace(f.name, path)
    except OSError:
        log.warning("could not keep the distillation transfer set on disk at %s", path)


def transfer_set(lm: LiveModel, on_paragraph: Callable[[int, int], None] | None = None,
                 folder: Path | None = None, paragraphs: list[str] | None = None) -> TransferSet:
    """The transfer set for the bundled corpus: from memory, else from the disk cache, else one teacher pass
    (about ten seconds of CPU, once per machine). One build at a time: two jobs asking at once share it."""
    paragraphs = corpus_paragraphs() if paragraphs is None else paragraphs
    key = transfer_key(lm, paragraphs)
    with _transfer_lock:
        if key in _transfer_sets:
            return _transfer_sets[key]
        path = _cache_file(key, folder)
        ts = _load(path) if path.exists() else None
        if ts is None:
            ts = build_transfer_set(lm, paragraphs, on_paragraph)
            _save(ts, path)
        _transfer_sets[key] = ts
        return ts


# --- the tiny student and its trainer ----------------------------------------------------------------------

class TinyStudent(torch.nn.Module):
    """Embeddings of the previous CONTEXT tokens, concatenated, one tanh hidden layer, logits over the
    student's vocabulary. Index `vocab` (one past the last token) is the "before the paragraph" slot."""

    def __init__(self, vocab: int, generator: torch.Generator, dim: int = 32, hidden: int = HIDDEN):
        super().__init__()
        def init(*shape, scale):
            return torch.nn.Parameter(torch.randn(*shape, generator=generator) * scale)
        self.embedding = init(vocab + 1, dim, scale=0.1)
        self.w1 = init(CONTEXT * dim, hidden, scale=1 / math.sqrt(CONTEXT * dim))
        self.b1 = torch.nn.Parameter(torch.zeros(hidden))
        self.w2 = init(hidden, vocab, scale=0.1 / math.sqrt(hidden))
        self.b2 = torch.nn.Parameter(torch.zeros(vocab))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.embedding[inputs].reshape(len(inputs), -1)
        return torch.tanh(x @ self.w1 + self.b1) @ self.w2 + self.b2

    @property
    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass(frozen=True)
class Scores:
    """How a student does on a set of positions, all against the teacher restricted to the student's vocabulary."""
    kl_to_teacher: float    # mean KL(teacher || student) at T = 1, nats
    agreement: float        # share of positions where the student's top token is the teacher's
    loss: float             # mean -ln q(true next token), nats
    accuracy: float         # share of positions where the student's top token is the true next token


def score(logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor) -> Scores:
    log_q, log_p = F.log_softmax(logits, -1), F.log_softmax(teacher_logits, -1)
    top = logits.argmax(-1)
    return Scores(kl_to_teacher=float(F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)),
                  agreement=float((top == teacher_logits.argmax(-1)).float().mean()),
                  loss=float(F.cross_entropy(logits, targets)), accuracy=float((top == targets).float().mean()))


@dataclass(frozen=True, eq=False)
class TrainingRun:
    """One student's training: its learning curves and its final scores."""
    soft: bool
    steps_done: int
    curve_steps: np.ndarray     # [P] step numbers (0 = before training), every `eval_every(steps)` steps
    train_loss: np.ndarray      # [P] mean -ln q(true token) on the training positions
    held_loss: np.ndarray       # [P] the same on the held-out positions
    held_kl: np.ndarray         # [P] KL(teacher || student) on the held-out positions
    held_agreement: np.ndarray  # [P] top-1 agreement with the teacher on the held-out positions
    final: Scores               # held out, after the last step
    train_final: Scores         # on the training positions, after the last step


@dataclass(frozen=True)
class Setup:
    """Everything a training run depends on besides the transfer set; the job is keyed by it."""
    temperature: float = 2.0
    alpha: float = 1.0          # weight of the soft term; 1 - alpha goes to the hard label
    steps: int = 300
    seed: int = 0


def _tensors(ts: TransferSet):
    train, held = ~ts.held_out, ts.held_out
    as_t = lambda a: torch.tensor(np.array(a))   # noqa: E731  a copy: the cached arrays are read-only
    x, y, z = as_t(ts.inputs), as_t(ts.targets), as_t(ts.teacher_logits)
    return (x[as_t(train)], y[as_t(train)], z[as_t(train)]), (x[as_t(held)], y[as_t(held)], z[as_t(held)])


def eval_every(steps: int) -> int:
    """Steps between two points of a learning curve: a multiple of 10 giving about CURVE_POINTS points."""
    return max(10, 10 * round(steps / CURVE_POINTS / 10))


def train_student(ts: TransferSet, setup: Setup, soft: bool, on_step: Callable[[int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> TrainingRun:
    """Train one tiny student with the same seed, minibatches and steps whichever the targets: on hard labels
    (cross-entropy with the true next token) or on soft targets (alpha * T^2 * KL + (1 - alpha) * CE).

    Deterministic for a seed: the initial weights and the minibatch order come from their own generators.
    The CPU gate is taken STEPS_PER_GATE_PASS steps at a time, so readers' passes are not held up for long.
    """
    (x, y, z), (hx, hy, hz) = _tensors(ts)
    student = TinyStudent(ts.size, torch.Generator().manual_seed(setup.seed))
    batches = torch.Generator().manual_seed(setup.seed + 1)
    optimizer = torch.optim.Adam(student.parameters(), lr=LEARNING_RATE)
    t, alpha = float(setup.temperature), float(setup.alpha)
    soft_z = F.softmax(z / t, dim=-1)
    curve: list[tuple[int, float, float, float, float]] = []
    every, scored = eval_every(setup.steps), slice(None, None, TRAIN_SCORED)

    def evaluate(step: int) -> None:
        with torch.no_grad():
            held = score(student(hx), hz, hy)
            curve.append((step, float(F.cross_entropy(student(x[scored]), y[scored])), held.loss, held.kl_to_teacher,
                          held.agreement))

    done = 0
    with cpu_gate().slot():
        evaluate(0)
    while done < setup.steps and not (should_stop and should_stop()):
        with cpu_gate().slot(), torch.enable_grad():
            for _ in range(min(STEPS_PER_GATE_PASS, setup.steps - done)):
                batch = torch.randint(len(x), (BATCH,), generator=batches)
                logits = student(x[batch])
                hard = F.cross_entropy(logits, y[batch])
                loss = alpha * soft_loss(logits, soft_z[batch], t) + (1 - alpha) * hard if soft else hard
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                if done % every == 0 or done == setup.steps:
                    evaluate(done)
        if on_step:
            on_step(done)
    if curve[-1][0] != done:
        with cpu_gate().slot():
            evaluate(done)
    with torch.no_grad(), cpu_gate().slot():
        final, train_final = score(student(hx), hz, hy), score(student(x), z, y)
    columns = np.array(curve, dtype=np.float64).T
    return TrainingRun(soft=soft, steps_done=done, curve_steps=columns[0].astype(int), train_loss=columns[1],
                       held_loss=columns[2], held_kl=columns[3], held_agreement=columns[4], final=final,
                       train_final=train_final)


@dataclass(frozen=True, eq=False)
class Comparison:
    """The hard-label and the soft-target student, trained alike, with the facts needed to read them."""
    setup: Setup
    hard: TrainingRun
    soft: TrainingRun
    teacher_held: Scores          # the teacher itself on the held-out positions (its KL and agreement are 0 and 1)
    student_parameters: int
    vocabulary: int
    train_positions: int
    held_positions: int
    corpus_tokens: int
    paragraphs: int
    teacher_coverage: float       # mean share of the teacher's probability on the student's vocabulary
    unseen_held_targets: float    # share of held-out true tokens that never occur as a training target


HARD_RUNS_KEPT = 16
_hard_runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # transfer set -> {(steps, seed): run}
_hard_lock = threading.Lock()


def compare_students(ts: TransferSet, setup: Setup, on_progress: Callable[[float, str], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> Comparison:
    """Train the hard-label student, then the soft-target one, with the same seed, batches and steps."""
    report = on_progress or (lambda fraction, message: None)
    runs = {}
    hard_key = (setup.steps, setup.seed)   # the hard-label student does not depend on T or alpha
    with _hard_lock:
        runs[False] = _hard_runs.get(ts, {}).get(hard_key)
    for n, soft in enumerate((False, True)):
        if runs.get(soft) is not None:
            continue
        name = "soft-target" if soft else "hard-label"
        # A hard run cut short (a stop request, a spent budget) sets the soft run's length, and the soft run then
        # goes that far regardless (it costs no more than the hard one did): both students get the same steps.
        cut = soft and runs[False].steps_done < setup.steps
        this = replace(setup, steps=runs[False].steps_done) if cut else setup
        runs[soft] = train_student(
            ts, this, soft, should_stop=None if cut else should_stop, on_step=lambda done: report(
                (n + done / max(1, this.steps)) / 2, f"Training the {name} student: step {done} of {this.steps}"))
        if not soft and runs[soft].steps_done == setup.steps:
            with _hard_lock:
                kept = _hard_runs.setdefault(ts, {})
                kept[hard_key] = runs[soft]
                while len(kept) > HARD_RUNS_KEPT:
                    kept.pop(next(iter(kept)))
    (_, y, _), (_, hy, hz) = _tensors(ts)
    teacher = score(hz, hz, hy)
    student = TinyStudent(ts.size, torch.Generator().manual_seed(0))
    return Comparison(setup=setup, hard=runs[False], soft=runs[True], teacher_held=teacher,
                      student_parameters=student.parameters_count, vocabulary=ts.size,
                      train_positions=int((~ts.held_out).sum()), held_positions=int(ts.held_out.sum()),
                      corpus_tokens=ts.tokens, paragraphs=ts.paragraphs,
                      teacher_coverage=float(ts.teacher_coverage.mean()),
                      unseen_held_targets=float((~torch.isin(hy, y)).float().mean()))


def default_position(teacher_logits: np.ndarray, ids: list[int] | tuple[int, ...], top: int = 10) -> int:
    """A telling token to start on (1-based: token `ids[p]`, predicted from the tokens before it): where the
    teacher is most unsure while still ranking the true token in its top `top`; the most unsure one if none."""
    logits = np.asarray(teacher_logits[: len(ids) - 1], dtype=np.float64)
    log_p = log_soft(logits, 1.0)
    entropy = -(np.exp(log_p) * log_p).sum(-1)
    truth = log_p[np.arange(len(ids) - 1), np.asarray(ids[1:])]
    rank = (log_p > truth[:, None]).sum(-1) + 1
    candidates = np.where(rank <= top, entropy, -np.inf)
    best = int(np.argmax(candidates)) if np.isfinite(candidates).any() else int(np.argmax(entropy))
    return best + 1
