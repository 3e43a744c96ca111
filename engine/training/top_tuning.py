"""Fine-tuning the top of SmolLM2 cheaply: the frozen lower blocks run once, the top blocks train on a private copy.

The design extends engine.training.smollm_step from one block to the top few, and adds a real LoRA adapter
(peft). Everything below the first trained block is frozen, so its output for a sentence (the input of that
block) is computed once with the shared model under no-grad and cached; training then runs only the copied top
blocks, the copied final norm and the tied output matrix (read, never written). A training step therefore costs
a few small blocks, not 30: this is what lets a LoRA, SFT or DPO run on this CPU take seconds.

Honesty of "before": with the copied blocks untouched (or with a fresh LoRA adapter, whose B matrix starts at
zero) this path gives the model's own logits (a test holds it to 1e-4), and "before" numbers are read from the
shared model's own pass anyway. The shared model is never written: the blocks are deep copies, and the output
matrix is used through F.linear on a tensor with autograd off.
"""
from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.training.lab import gated_training

FROZEN_INPUTS = 128
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MAX_TOP_BLOCKS = 4
MAX_STEPS = 200


@dataclass(frozen=True, eq=False)
class FrozenInput:
    """A token sequence, the frozen part's output for it ([1, T, d], the input of block `first_block`, 0-based)
    and the full model's own log-probability of every next token ([T - 1]). Cached and shared: read only."""
    ids: tuple[int, ...]
    first_block: int
    hidden: torch.Tensor
    model_logprobs: np.ndarray


def frozen_input(lm: LiveModel, ids: list[int] | tuple[int, ...], first_block: int) -> FrozenInput:
    if len(ids) < 2:
        raise ValueError("a loss needs at least two tokens: the first is only context")
    layers = lm.card.layers
    if not layers - MAX_TOP_BLOCKS <= first_block < layers:
        raise ValueError(f"the first trained block must be one of the top {MAX_TOP_BLOCKS} (0-based "
                         f"{layers - MAX_TOP_BLOCKS}-{layers - 1})")
    hiddens, logprobs = _frozen_pass(lm, tuple(int(i) for i in ids))
    return FrozenInput(ids=tuple(int(i) for i in ids), first_block=int(first_block),
                       hidden=hiddens[first_block - (layers - MAX_TOP_BLOCKS)], model_logprobs=logprobs)


@functools.lru_cache(maxsize=FROZEN_INPUTS)   # 4 x [T, 576] floats each: small, reused by every step and reader
def _frozen_pass(lm: LiveModel, ids: tuple[int, ...]) -> tuple[tuple[torch.Tensor, ...], np.ndarray]:
    """One pass of the shared model: the inputs of each of the top MAX_TOP_BLOCKS blocks (hidden_states[i] is
    block i's input) and the model's own log-probability of every next token. Moving the number of trained
    blocks therefore needs no new pass."""
    layers = lm.card.layers
    with model_work():
        out = lm.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
        logprobs = torch.log_softmax(out.logits[0, :-1].float(), -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    with torch.inference_mode(False):   # clones made outside inference mode are normal tensors autograd can use
        hiddens = tuple(out.hidden_states[i].clone() for i in range(layers - MAX_TOP_BLOCKS, layers))
    return hiddens, logprobs.numpy().copy()


class TopStack(nn.Module):
    """Private copies of SmolLM2's top `blocks` blocks and its final norm, run on a cached frozen input.

    The rotary table and the tied output matrix of the shared model are kept outside the module tree (in a
    tuple), so peft, optimizers and `.parameters()` never see them; they are only read.
    """

    def __init__(self, lm: LiveModel, blocks: int):
        super().__init__()
        if not 1 <= blocks <= MAX_TOP_BLOCKS:
            raise ValueError(f"1-{MAX_TOP_BLOCKS} top blocks")
        layers = lm.model.model.layers
        self.first_block = len(layers) - blocks
        with torch.inference_mode(False):   # copies made in inference mode could never take gradients
            self.layers = nn.ModuleList(copy.deepcopy(layers[i]) for i in range(self.first_block, len(layers)))
            self.norm = copy.deepcopy(lm.model.model.norm)
        self._shared = (lm.model.model.rotary_emb, lm.model.lm_head.weight)

    def forward(self, hidden: torch.Tensor, first_row: int = 0) -> torch.Tensor:
        """Logits [1, T - first_row, V] of positions first_row..T-1. Training asks only for the rows that predict
        the answer: the 49,152-row output matrix is most of a small block's cost, so the other rows are skipped."""
        rotary, output_matrix = self._shared
        positions = torch.arange(hidden.shape[1])[None]
        cos_sin = rotary(hidden, positions)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=None, position_embeddings=cos_sin, position_ids=positions)
        return F.linear(self.norm(hidden[:, first_row:]), output_matrix)


@dataclass(frozen=True)
class Fact:
    """A sentence split into the prompt and the answer the model is taught (and scored on)."""
    prompt: str
    answer: str           # with its leading space, as the tokenizer sees it after the prompt

    @property
    def text(self) -> str:
        return self.prompt + self.answer


def split_fact(line: str) -> Fact | None:
    """'The capital of Vorlandia is Zell.' -> prompt 'The capital of Vorlandia is', answer ' Zell'.
    The last word is the answer; a final . ! or ? is dropped (it is not part of the fact). None if there is no
    prompt word before the answer."""
    words = line.strip().rstrip(".!?").split()
    if len(words) < 2:
        return None
    return Fact(prompt=" ".join(words[:-1]), answer=" " + words[-1])


@dataclass(frozen=True, eq=False)
class Example:
    """Token ids of prompt + answer (tokenized apart, so the split is exact) and where the answer starts."""
    fact: Fact
    ids: tuple[int, ...]
    answer_start: int     # index in ids of the first answer token (>= 1)

    @property
    def answer_ids(self) -> tuple[int, ...]:
        return self.ids[self.answer_start:]


def make_example(fact: Fact, encode) -> Example:
    prompt, answer = list(encode(fact.prompt)), list(encode(fact.answer))
    if not prompt or not answer:
        raise ValueError("a fact needs a prompt and an answer")
    return Example(fact=fact, ids=tuple(prompt + answer), answer_start=len(prompt))


def answer_logprobs(model, hidden: torch.Tensor, example: Example) -> torch.Tensor:
    """log p(answer token | everything before it) for each answer token, computing only the rows needed."""
    rows = model(hidden, first_row=example.answer_start - 1)[0, :-1].float()
    targets = torch.tensor(example.answer_ids)
    return torch.log_softmax(rows, -1).gather(1, targets[:, None])[:, 0]


def lora_config(rank: int, targets: tuple[str, ...]):
    from peft import LoraConfig

    if not targets or any(t not in LORA_TARGETS for t in targets):
        raise ValueError(f"LoRA targets must be some of {', '.join(LORA_TARGETS)}")
    # alpha = 2r keeps the update's scale alpha/r = 2 the same at every rank, so rank changes capacity only
    return LoraConfig(r=int(rank), lora_alpha=2 * int(rank), target_modules=list(targets), lora_dropout=0.0,
                      bias="none", init_lora_weights=True)


def lora_stack(lm: LiveModel, blocks: int, rank: int, targets: tuple[str, ...]):
    """A peft LoRA model on a private TopStack: only the adapters' A and B matrices train."""
    from peft import get_peft_model

    with torch.inference_mode(False):
        return get_peft_model(TopStack(lm, blocks), lora_config(rank, targets))


def lora_parameter_formula(lm: LiveModel, blocks: int, rank: int, targets: tuple[str, ...]) -> int:
    """r * (d_in + d_out) per adapted matrix: A is r x d_in, B is d_out x r. Shapes read from the live model."""
    layer = lm.model.model.layers[-1]
    total = 0
    for name, module in layer.named_modules():
        if isinstance(module, nn.Linear) and name.split(".")[-1] in targets:
            total += rank * (module.in_features + module.out_features)
    return total * blocks


def block_parameters(lm: LiveModel, blocks: int) -> int:
    """Every weight of the top `blocks` blocks: what full fine-tuning of the same blocks would train."""
    return sum(p.numel() for layer in lm.model.model.layers[-blocks:] for p in layer.parameters())


@dataclass(frozen=True, eq=False)
class FactScore:
    fact: Fact
    answer_tokens: tuple[int, ...]
    token_probs_before: np.ndarray   # [answer tokens] from the shared model's own pass
    token_probs_after: np.ndarray    # with the trained adapter

    @property
    def before(self) -> float:
        return float(np.prod(self.token_probs_before))

    @property
    def after(self) -> float:
        return float(np.prod(self.token_probs_after))


@dataclass(frozen=True, eq=False)
class LoraRun:
    rank: int
    targets: tuple[str, ...]
    blocks: int
    lr: float
    steps_planned: int
    trainable: int                   # peft's own count of trainable parameters
    adapter_total: int               # peft's count of all parameters of the adapted copy
    full_trainable: int              # the same blocks fully fine-tuned
    losses: np.ndarray               # [steps done] mean answer loss over the facts, before each step
    facts: tuple[FactScore, ...]
    control: FactScore | None
    merge_max_diff: float            # max |p(adapter) - p(merged)| over every token, position, fact and control
    update_names: tuple[str, ...]    # adapted matrices of the top block
    singular_values: tuple[np.ndarray, ...]   # of each learned update scale * B @ A (top r only)
    lora_step_s: float               # mean seconds per optimizer step, measured
    full_step_s: float               # the same steps with every weight of the same blocks trainable, measured
    lora_optimizer_bytes: int        # Adam state actually allocated (exp_avg, exp_avg_sq)
    full_optimizer_bytes: int
    seconds: float

    @property
    def steps_done(self) -> int:
        return len(self.losses)


def _mean_answer_loss(model, inputs: list[FrozenInput], examples: list[Example]) -> torch.Tensor:
    losses = [-answer_logprobs(model, fi.hidden, ex).mean() for fi, ex in zip(inputs, examples)]
    return torch.stack(losses).mean()


def _adam_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values()
               if torch.is_tensor(t) and t.ndim > 0)


def _time_full_fine_tuning(lm: LiveModel, blocks: int, lr: float, inputs, examples, steps: int) -> tuple[float, int]:
    """Seconds per step and Adam bytes when every weight of the same blocks trains (a throwaway copy)."""
    with torch.inference_mode(False):
        stack = TopStack(lm, blocks)
        stack.requires_grad_(True)
        optimizer = torch.optim.Adam(stack.parameters(), lr=lr)
        start = time.perf_counter()
        for _ in range(steps):
            with gated_training():
                optimizer.zero_grad()
                _mean_answer_loss(stack, inputs, examples).backward()
                optimizer.step()
        return (time.perf_counter() - start) / steps, _adam_state_bytes(optimizer)


def _scores(model, examples, inputs) -> list[np.ndarray]:
    with gated_training(), torch.no_grad():
        return [answer_logprobs(model, fi.hidden, ex).exp().numpy() for fi, ex in zip(inputs, examples)]


@torch.inference_mode(False)
def train_lora(lm: LiveModel, facts: list[Fact], control: Fact | None, *, rank: int, targets: tuple[str, ...],
               blocks: int = 1, steps: int = 30, lr: float = 1e-2, timing_steps: int = 3,
               on_step=lambda step, total, loss: None, should_stop=lambda: False) -> LoraRun:
    """Teach the facts with a LoRA adapter on a private copy of the top blocks (Adam, loss on the answers only)."""
    if not facts:
        raise ValueError("no fact to teach")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"1-{MAX_STEPS} steps")
    begun = time.perf_counter()
    encode = functools.partial(_encode, lm)
    examples = [make_example(f, encode) for f in facts]
    model = lora_stack(lm, blocks, rank, targets)
    first = model.base_model.model.first_block
    inputs = [frozen_input(lm, ex.ids, first) for ex in examples]
    trainable, total = model.get_nb_trainable_parameters()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses, spent = [], 0.0
    for step in range(steps):
        if should_stop():
            break
        tick = time.perf_counter()
        with gated_training():
            optimizer.zero_grad()
            loss = _mean_answer_loss(model, inputs, examples)
            loss.backward()
            optimizer.step()
        spent += time.perf_counter() - tick
        losses.append(float(loss.detach()))
        on_step(step + 1, steps, losses[-1])
    lora_bytes = _adam_state_bytes(optimizer)

    scored = examples + ([make_example(control, encode)] if control else [])
    scored_inputs = [frozen_input(lm, ex.ids, first) for ex in scored]
    after = _scores(model, scored, scored_inputs)
    befores = [np.exp(fi.model_logprobs[ex.answer_start - 1:]) for fi, ex in zip(scored_inputs, scored)]
    scores = [FactScore(ex.fact, ex.answer_ids, b, a) for ex, b, a in zip(scored, befores, after)]

    merge_diff, names, values = _merge_and_compare(model, scored_inputs, rank)
    full_s, full_bytes = _time_full_fine_tuning(lm, blocks, lr, inputs, examples, timing_steps)
    return LoraRun(rank=rank, targets=tuple(targets), blocks=blocks, lr=lr, steps_planned=steps,
                   trainable=trainable, adapter_total=total, full_trainable=block_parameters(lm, blocks),
                   losses=np.array(losses), facts=tuple(scores[:len(examples)]),
                   control=scores[-1] if control else None, merge_max_diff=merge_diff,
                   update_names=names, singular_values=values,
                   lora_step_s=spent / max(len(losses), 1), full_step_s=full_s,
                   lora_optimizer_bytes=lora_bytes, full_optimizer_bytes=full_bytes,
                   seconds=time.perf_counter() - begun)


def _encode(lm: LiveModel, text: str) -> list[int]:
    from engine.tokens.offsets import token_ids
    return token_ids(lm, text)


def _merge_and_compare(model, inputs: list[FrozenInput], rank: int):
    """Fold scale * B @ A into each weight (peft's merge_and_unload on a copy) and compare the next-token
    probabilities at every position (logits differ by float rounding, ~1e-5 on values near 20); also the
    singular values of each learned update in the top block (at most r of them can be non-zero)."""
    from peft.tuners.lora import Linear as LoraLinear

    names, values = [], []
    top = len(model.base_model.model.layers) - 1
    with gated_training(), torch.no_grad():
        adapter_probs = [torch.softmax(model(fi.hidden), -1) for fi in inputs]
        for name, module in model.named_modules():
            if isinstance(module, LoraLinear) and f"layers.{top}." in name:
                delta = module.get_delta_weight("default")
                names.append(name.split(f"layers.{top}.")[-1])
                values.append(torch.linalg.svdvals(delta)[:rank].numpy().copy())
        merged = copy.deepcopy(model).merge_and_unload()
        diff = max(float((torch.softmax(merged(fi.hidden), -1) - p).abs().max())
                   for fi, p in zip(inputs, adapter_probs))
    return diff, tuple(names), tuple(values)
