"""Train the baby GPT from scratch: one loop, every knob an argument, every step reported.

    run = train(RunConfig(seed=0, steps=300, optimizer="adamw", schedule=Schedule("cosine", 3e-3, 20)),
                on_step=lambda report: ..., should_stop=lambda: False)
    run.evals[0].val_loss   # ~ ln(vocabulary) at step 0
    run.steps[-1].loss      # the last minibatch's loss
    continue_text(run, "The fox ", 200, temperature=0.8, seed=1)   # sample the trained model again

What a seed fixes, and why it matters for comparisons: a run draws from three generators derived from its seed,
one for the initial weights, one for the batches and one for dropout. Two runs with the same seed and shape
start from the same weights and see the same batches in the same order whatever their optimizer, schedule,
clipping or weight decay, so their curves differ only by the knob that was changed (the optimizers and
hyperparameters pages rely on this). `RunResult.initial_weights_digest` and `.batches_digest` make it checkable.

The loop passes the CPU gate one step at a time, so a long run leaves room for readers' model calls between its
steps; it stops cooperatively (`should_stop`) and returns what it has, marked as stopped.
"""
from __future__ import annotations

import hashlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch

from engine.runtime.gate import cpu_gate
from engine.training.baby_gpt import BabyShape, build_model, loss_of, parameter_count, sample, set_training
from engine.training.corpus import CharCorpus, load_corpus
from engine.training.schedules import Schedule

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "SGD with momentum", "adam": "Adam", "adamw": "AdamW"}
# Peak learning rates for each optimizer in the middle of a range that trains the default baby GPT without diverging
# (tests/bench/bench_training prints the loss at 0.3x, 1x and 3x of each). Plain SGD needs rates ~100x Adam's:
# its step is the raw gradient, while Adam divides each weight's step by that weight's typical gradient size.
# Note: with weight decay on, "adam" adds it to the gradient (L2, coupled) and is held back by it; AdamW is not.
SUGGESTED_LR = {"sgd": 1.0, "momentum": 0.1, "adam": 3e-3, "adamw": 3e-3}
MAX_STEPS = 3000
MAX_BATCH = 128
SAMPLE_PROMPT = "The fox "


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (hashable: it keys the run's job and its stored result)."""
    seed: int = 0
    steps: int = 300
    batch_size: int = 16
    shape: BabyShape = BabyShape()
    optimizer: str = "adamw"
    schedule: Schedule = Schedule()
    weight_decay: float = 0.1       # decoupled for AdamW; an L2 term in the gradient for the others
    clip_norm: float = 1.0          # the gradient's global norm is cut to this; 0 = no clipping
    dropout: float = 0.0
    momentum: float = 0.9           # "momentum" only
    betas: tuple[float, float] = (0.9, 0.99)   # Adam and AdamW
    train_fraction: float = 0.9
    train_chars: int = 0            # use only the first N characters of the training split (0 = all): overfit on purpose
    eval_every: int = 25            # steps between evaluations of the fixed train and validation windows
    eval_windows: int = 32
    sample_prompt: str = SAMPLE_PROMPT
    sample_chars: int = 200
    sample_temperature: float = 0.8
    track_weights_every: int = 0    # keep a flat copy of all weights every N steps (0 = never), e.g. to draw paths

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if not (1 <= self.steps <= MAX_STEPS and 1 <= self.batch_size <= MAX_BATCH):
            raise ValueError(f"steps 1-{MAX_STEPS}, batch 1-{MAX_BATCH}")
        if not (0 <= self.dropout < 1 and self.weight_decay >= 0 and self.clip_norm >= 0 and self.eval_every >= 1):
            raise ValueError("dropout in [0, 1), weight decay >= 0, clip norm >= 0, eval_every >= 1")


@dataclass(frozen=True)
class StepReport:
    """One optimizer step: the minibatch's loss before the update, the learning rate used, the gradient."""
    step: int                 # 1-based: the number of updates made once this one is applied
    lr: float
    loss: float               # the minibatch's loss (with dropout, if any), before the update
    grad_norm: float          # the global gradient norm before clipping
    clipped: bool
    elapsed_s: float          # since the start of the run


@dataclass(frozen=True)
class EvalPoint:
    """Loss on fixed windows of each split (dropout off) after `step` updates: train and validation comparable."""
    step: int
    train_loss: float
    val_loss: float


@dataclass(frozen=True, eq=False)
class RunResult:
    config: RunConfig
    alphabet: str
    parameters: int
    uniform_loss: float                      # ln V: a model that knows nothing
    steps: tuple[StepReport, ...]
    evals: tuple[EvalPoint, ...]
    sample_before: str                       # text drawn from the untrained model
    sample_after: str                        # the same draw from the trained one
    seconds: float
    stopped: str | None                      # why the run ended early, or None
    initial_weights_digest: str
    batches_digest: str
    train_chars: int
    val_chars: int
    final_weights: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    weight_trace: tuple[tuple[int, np.ndarray], ...] = field(repr=False, default=())

    @property
    def steps_per_second(self) -> float:
        return len(self.steps) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def tokens_seen(self) -> int:
        return len(self.steps) * self.config.batch_size * self.config.shape.context

    @property
    def first_loss(self) -> float:
        return self.evals[0].val_loss

    @property
    def last(self) -> EvalPoint:
        return self.evals[-1]


def derived_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for the weights, the batches, dropout and sampling, all fixed by one run seed."""
    states = np.random.SeedSequence(int(seed)).spawn(4)
    return {name: int(s.generate_state(1, dtype=np.uint32)[0])
            for name, s in zip(("init", "batches", "dropout", "sample"), states)}


@contextmanager
def gated_training() -> Iterator[None]:
    """A slot of the CPU gate with autograd on (the gate's `model_work` is for inference and turns it off)."""
    with cpu_gate().slot(), torch.inference_mode(False), torch.enable_grad():
        yield


def make_optimizer(config: RunConfig, model) -> torch.optim.Optimizer:
    """The run's optimizer over the model's parameters; weight decay only on matrices (not on norm gains),
    as nanoGPT and most LLM recipes do."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}]
    lr = config.schedule.peak_lr   # replaced every step by the schedule
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if config.optimizer == "momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=config.betas)
    return torch.optim.AdamW(groups, lr=lr, betas=config.betas)


def fixed_windows(ids: np.ndarray, count: int, length: int) -> torch.Tensor:
    """`count` windows of `length` ids spread evenly over `ids` (overlapping if the text is short)."""
    starts = np.linspace(0, len(ids) - length, num=count).round().astype(np.int64)
    return torch.from_numpy(np.stack([ids[s:s + length] for s in starts]))


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _flat_weights(model) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


@torch.inference_mode(False)   # a caller inside inference mode would otherwise hand autograd inference tensors
def train(config: RunConfig = RunConfig(), on_step: Callable[[StepReport], None] = lambda report: None,
          should_stop: Callable[[], bool] = lambda: False,
          on_eval: Callable[[EvalPoint], None] = lambda point: None) -> RunResult:
    """Train a fresh baby GPT as `config` says, calling `on_step` after every update."""
    corpus = load_corpus()
    seeds = derived_seeds(config.seed)
    context = config.shape.context
    train_ids, val_ids = corpus.split(config.train_fraction)
    if config.train_chars:
        train_ids = train_ids[:max(context + 1, config.train_chars)]
    if len(train_ids) <= context or len(val_ids) <= context:
        raise ValueError("each split must be longer than the context")
    train_eval = fixed_windows(train_ids, config.eval_windows, context + 1)
    val_eval = fixed_windows(val_ids, config.eval_windows, context + 1)
    batch_gen = torch.Generator().manual_seed(seeds["batches"])
    train_tensor = torch.tensor(train_ids)
    offsets = torch.arange(context + 1)
    prompt = corpus.encode(config.sample_prompt) or corpus.encode(SAMPLE_PROMPT)

    with gated_training():
        model = build_model(config.shape, corpus.vocab_size, seeds["init"], config.dropout,
                            torch.Generator().manual_seed(seeds["dropout"]))
        optimizer = make_optimizer(config, model)
        initial_digest = _digest(_flat_weights(model))
        before = _sample_text(model, corpus, prompt, config, seeds["sample"])

    evals: list[EvalPoint] = []
    reports: list[StepReport] = []
    trace: list[tuple[int, np.ndarray]] = []
    batch_hash = hashlib.blake2b(digest_size=12)

    def evaluate(step: int) -> None:
        with gated_training(), torch.no_grad():
            set_training(model, False)
            point = EvalPoint(step, float(loss_of(model, train_eval)), float(loss_of(model, val_eval)))
        evals.append(point)
        on_eval(point)

    def keep_weights(step: int) -> None:
        if config.track_weights_every and step % config.track_weights_every == 0:
            trace.append((step, _flat_weights(model)))

    evaluate(0)
    keep_weights(0)
    started = time.perf_counter()
    stopped = None
    for step in range(config.steps):
        if should_stop():
            stopped = "stopped"
            break
        starts = torch.randint(0, len(train_ids) - context, (config.batch_size,), generator=batch_gen)
        batch_hash.update(starts.numpy().tobytes())
        windows = train_tensor[starts[:, None] + offsets]
        lr = config.schedule.lr_at(step, config.steps)
        with gated_training():
            set_training(model, True)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_of(model, windows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            if config.clip_norm > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(params, config.clip_norm))
            else:
                norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
            optimizer.step()
        report = StepReport(step=step + 1, lr=lr, loss=float(loss.detach()), grad_norm=norm,
                            clipped=config.clip_norm > 0 and norm > config.clip_norm,
                            elapsed_s=time.perf_counter() - started)
        reports.append(report)
        on_step(report)
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            evaluate(done)
        keep_weights(done)
        if not math.isfinite(report.loss):
            stopped = "diverged"
            break
    seconds = time.perf_counter() - started
    if reports and evals[-1].step != reports[-1].step:
        evaluate(reports[-1].step)

    with gated_training():
        after = _sample_text(model, corpus, prompt, config, seeds["sample"])
        weights = {name: p.detach().numpy().copy() for name, p in model.state_dict().items()}
    return RunResult(config=config, alphabet=corpus.alphabet, parameters=parameter_count(model),
                     uniform_loss=corpus.uniform_loss, steps=tuple(reports), evals=tuple(evals),
                     sample_before=before, sample_after=after, seconds=seconds, stopped=stopped,
                     initial_weights_digest=initial_digest, batches_digest=batch_hash.hexdigest(),
                     train_chars=len(train_ids), val_chars=len(val_ids), final_weights=weights,
                     weight_trace=tuple(trace))


def _sample_text(model, corpus: CharCorpus, prompt: list[int], config: RunConfig, seed: int) -> str:
    set_training(model, False)
    ids = sample(model, prompt, config.sample_chars, config.shape.context, config.sample_temperature,
                 torch.Generator().manual_seed(seed))
    return corpus.decode(ids)


def trained_model(run: RunResult):
    """The run's final model, rebuilt from its stored weights (in eval mode)."""
    corpus = load_corpus()
    model = build_model(run.config.shape, corpus.vocab_size, 0)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in run.final_weights.items()})
    set_training(model, False)
    return model


@torch.inference_mode(False)
def continue_text(run: RunResult, prompt: str, length: int, temperature: float, seed: int) -> str:
    """Text the trained baby GPT writes after `prompt` (characters it never saw are dropped from the prompt)."""
    corpus = load_corpus()
    ids = corpus.encode(prompt) or corpus.encode(SAMPLE_PROMPT)
    with gated_training(), torch.no_grad():
        model = trained_model(run)
        return corpus.decode(sample(model, ids, length, run.config.shape.context, temperature,
                                    torch.Generator().manual_seed(seed)))


def with_optimizer(config: RunConfig, optimizer: str, lr: float | None = None) -> RunConfig:
    """The same run with another optimizer (and its suggested peak rate unless `lr` is given)."""
    return replace(config, optimizer=optimizer,
                   schedule=replace(config.schedule, peak_lr=lr if lr is not None else SUGGESTED_LR[optimizer]))
