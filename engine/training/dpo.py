"""Direct preference optimization on SmolLM2 itself: the DPO loss of (prompt, chosen, rejected) pairs with the live
model as the policy and a frozen copy as the reference, per-token implicit rewards, and a few real DPO steps on a
private copy of the top blocks.

DPO (Rafailov et al. 2023) minimises, over preference pairs,

    L = -ln sigmoid( beta * [ (ln pi(y_w|x) - ln pi_ref(y_w|x)) - (ln pi(y_l|x) - ln pi_ref(y_l|x)) ] )

where ln pi(y|x) is the summed log-probability of the answer's tokens. The implicit reward of an answer is
beta * (ln pi - ln pi_ref); since ln pi is a sum over tokens, so is the reward, which is what the per-token heat
map shows. When the policy equals the reference both margins are 0 and the loss is ln 2 exactly.

What is trained: a private TopStack (engine.training.top_tuning) of the top blocks and the final norm; the blocks
below are frozen and their output for each chat is computed once and cached. The reference is the same stack
before any step, evaluated on the same cached inputs, so at step 0 policy and reference are the same numbers bit
for bit. The shared model is never written. The chats are rendered with SmolLM2's own template, the answer being
every token after the assistant header up to and including <|im_end|> (engine.training.sft.sft_example).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.model.live_model import LiveModel
from engine.training.lab import gated_training
from engine.training.sft import IGNORE, SftExample, sft_example
from engine.training.top_tuning import MAX_TOP_BLOCKS, TopStack, frozen_input

MAX_STEPS = 30
MAX_PAIRS = 3


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: SftExample
    rejected: SftExample


def preference_pair(lm: LiveModel, prompt: str, chosen: str, rejected: str) -> PreferencePair:
    return PreferencePair(prompt=prompt, chosen=sft_example(lm, prompt, chosen),
                          rejected=sft_example(lm, prompt, rejected))


def answer_positions(example: SftExample) -> np.ndarray:
    """Indices t (into ids) of the answer's tokens: those with a label."""
    return np.array([t for t in range(1, len(example.ids)) if example.labels[t] != IGNORE])


def reference_token_logprobs(lm: LiveModel, example: SftExample) -> np.ndarray:
    """ln p_ref(answer token | everything before it), per answer token, from the shared model's own pass."""
    fi = frozen_input(lm, example.ids, lm.card.layers - 1)
    return fi.model_logprobs[answer_positions(example) - 1].astype(np.float64)


def dpo_loss(policy_chosen: float, reference_chosen: float, policy_rejected: float, reference_rejected: float,
             beta: float) -> float:
    """-ln sigmoid(beta * (chosen margin - rejected margin)), computed stably (softplus of the negative)."""
    z = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return float(np.logaddexp(0.0, -z))


def _token_logprobs(stack: TopStack, hidden: torch.Tensor, example: SftExample) -> torch.Tensor:
    """ln pi(answer token | before) per answer token, computing only the rows from the prompt's end onward."""
    positions = answer_positions(example)
    first_row = int(positions[0]) - 1
    rows = stack(hidden, first_row=first_row)[0].float()
    targets = torch.tensor([example.ids[t] for t in positions])
    return torch.log_softmax(rows[positions - 1 - first_row], -1).gather(1, targets[:, None])[:, 0]


@dataclass(frozen=True, eq=False)
class DpoRun:
    beta: float
    lr: float
    blocks: int
    trained_parameters: int
    chosen_logprobs: np.ndarray      # [steps done + 1, pairs] ln pi(chosen) at step 0 (= reference) .. the end
    rejected_logprobs: np.ndarray    # [steps done + 1, pairs]
    losses: np.ndarray               # [steps done + 1] mean DPO loss over the pairs at each point
    chosen_tokens_ref: tuple[np.ndarray, ...]     # per pair, per answer token, the reference's log-probs
    chosen_tokens_after: tuple[np.ndarray, ...]   # the trained policy's
    rejected_tokens_ref: tuple[np.ndarray, ...]
    rejected_tokens_after: tuple[np.ndarray, ...]
    seconds: float

    @property
    def steps_done(self) -> int:
        return len(self.losses) - 1

    def pair_losses(self, step: int = -1) -> np.ndarray:
        c, r = self.chosen_logprobs, self.rejected_logprobs
        return np.array([dpo_loss(c[step, i], c[0, i], r[step, i], r[0, i], self.beta) for i in range(c.shape[1])])


@torch.inference_mode(False)
def dpo_steps(lm: LiveModel, pairs: list[PreferencePair], *, beta: float = 0.1, steps: int = 10, lr: float = 1e-4,
              blocks: int = 2, on_step=lambda step, total, loss: None, should_stop=lambda: False) -> DpoRun:
    """Adam on a private copy of the top `blocks` blocks, minimising the mean DPO loss over the pairs."""
    if not 1 <= len(pairs) <= MAX_PAIRS or not 1 <= steps <= MAX_STEPS or not beta > 0 or not lr > 0:
        raise ValueError(f"1-{MAX_PAIRS} pairs, 1-{MAX_STEPS} steps, positive beta and learning rate")
    if not 1 <= blocks <= MAX_TOP_BLOCKS:
        raise ValueError(f"1-{MAX_TOP_BLOCKS} top blocks")
    begun = time.perf_counter()
    stack = TopStack(lm, blocks)
    answers = [ex for p in pairs for ex in (p.chosen, p.rejected)]   # chosen, rejected, chosen, rejected, ...
    hiddens = [frozen_input(lm, ex.ids, stack.first_block).hidden for ex in answers]

    def token_logprobs() -> list[torch.Tensor]:
        return [_token_logprobs(stack, h, ex) for h, ex in zip(hiddens, answers)]

    with gated_training(), torch.no_grad():
        reference_tokens = [t.numpy().astype(np.float64) for t in token_logprobs()]
    reference = torch.tensor([t.sum() for t in reference_tokens], dtype=torch.float64)
    stack.requires_grad_(True)
    optimizer = torch.optim.Adam(stack.parameters(), lr=lr)
    sums_history = [reference.numpy().copy()]

    def mean_loss(sums: torch.Tensor) -> torch.Tensor:
        margins = sums - reference
        z = beta * (margins[0::2] - margins[1::2])
        return -F.logsigmoid(z).mean()

    losses = [float(mean_loss(reference))]   # ln 2: policy = reference
    after_tokens, done = reference_tokens, 0
    for step in range(steps):
        if should_stop():
            break
        with gated_training():
            optimizer.zero_grad()
            sums = torch.stack([t.sum() for t in token_logprobs()]).double()
            loss = mean_loss(sums)
            if step:   # this pass already holds the policy after the previous step: record it, no extra pass
                sums_history.append(sums.detach().numpy().copy())
                losses.append(float(loss.detach()))
            loss.backward()
            optimizer.step()
        done = step + 1
        on_step(done, steps, float(loss.detach()))
    if done:
        with gated_training(), torch.no_grad():   # the policy after the last step
            after_tokens = [t.numpy().astype(np.float64) for t in token_logprobs()]
        sums = torch.tensor([t.sum() for t in after_tokens], dtype=torch.float64)
        sums_history.append(sums.numpy().copy())
        losses.append(float(mean_loss(sums)))
    history = np.array(sums_history)
    return DpoRun(beta=float(beta), lr=float(lr), blocks=int(blocks),
                  trained_parameters=sum(p.numel() for p in stack.parameters()),
                  chosen_logprobs=history[:, 0::2], rejected_logprobs=history[:, 1::2], losses=np.array(losses),
                  chosen_tokens_ref=tuple(reference_tokens[0::2]), chosen_tokens_after=tuple(after_tokens[0::2]),
                  rejected_tokens_ref=tuple(reference_tokens[1::2]), rejected_tokens_after=tuple(after_tokens[1::2]),
                  seconds=time.perf_counter() - begun)


LN2 = math.log(2.0)
