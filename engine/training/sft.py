"""Supervised fine-tuning as the model sees it: a chat rendered by its own template, a label row that hides the
prompt (-100) so the loss falls on the answer only, and a few real SFT steps on a private copy of the top block.

Labels follow the Hugging Face convention: `labels` has the input's length, label t is the token the model must
predict at position t (the shift by one happens inside the loss), and -100 means "no loss here". Which positions
are the answer is read from the template itself: the prompt is the chat rendered up to the assistant header
(`add_generation_prompt=True`), and it must be an exact prefix of the full rendering, which is checked.
Three labellings are offered: train on every token, mask the prompt (the usual SFT), or mask the prompt and the
end-of-turn token too (a model trained that way never learns where to stop).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.training.lab import gated_training
from engine.training.top_tuning import TopStack, frozen_input

IGNORE = -100
MODES = ("mask-prompt", "everything", "drop-end")
MAX_STEPS = 40


@dataclass(frozen=True)
class SftExample:
    ids: tuple[int, ...]
    labels: tuple[int, ...]       # same length as ids; IGNORE where no loss is taken
    prompt_len: int               # tokens of the template up to and including the assistant header
    end_index: int                # position of the end-of-turn token that closes the answer

    @property
    def trained_positions(self) -> list[int]:
        return [t for t in range(1, len(self.ids)) if self.labels[t] != IGNORE]


def sft_example(lm: LiveModel, user: str, answer: str, mode: str = "mask-prompt") -> SftExample:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if not user.strip() or not answer.strip():
        raise ValueError("an example needs a question and an answer")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    with lm.tokenizing() as tok:
        full = list(tok.apply_chat_template(messages, tokenize=True)["input_ids"])
        prompt = list(tok.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True)["input_ids"])
        end_id = tok.convert_tokens_to_ids("<|im_end|>")
    if full[:len(prompt)] != prompt:
        raise ValueError("the template's prompt is not a prefix of the full chat")
    end_index = max(i for i, t in enumerate(full) if t == end_id)
    if mode == "everything":
        labels = list(full)
    else:   # the answer and its end-of-turn token; the newline the template writes after it is not the answer's
        last = end_index if mode == "mask-prompt" else end_index - 1
        labels = [t if len(prompt) <= i <= last else IGNORE for i, t in enumerate(full)]
    labels[0] = IGNORE   # nothing predicts the first token
    return SftExample(ids=tuple(full), labels=tuple(labels), prompt_len=len(prompt), end_index=end_index)


def token_losses(lm: LiveModel, example: SftExample) -> np.ndarray:
    """-ln p(token t | tokens before t) at every position t >= 1 (whether labelled or not), from the shared model."""
    with model_work():
        logits = lm.model(torch.tensor([example.ids]), use_cache=False).logits[0, :-1].float()
        return F.cross_entropy(logits, torch.tensor(example.ids[1:]), reduction="none").numpy().copy()


def token_losses_and_model_loss(lm: LiveModel, example: SftExample) -> tuple[np.ndarray, float]:
    """Both from one pass: the per-token losses at every position, and the loss transformers itself computes
    from the labels (the page shows the two agree)."""
    with model_work():
        out = lm.model(torch.tensor([example.ids]), labels=torch.tensor([example.labels]), use_cache=False)
        logits = out.logits[0, :-1].float()
        losses = F.cross_entropy(logits, torch.tensor(example.ids[1:]), reduction="none")
        return losses.numpy().copy(), float(out.loss)


def masked_mean(losses: np.ndarray, example: SftExample) -> float:
    """The SFT loss: the mean of the per-token losses over the labelled positions only."""
    keep = np.array([label != IGNORE for label in example.labels[1:]])
    return float(losses[keep].mean())


def model_loss(lm: LiveModel, example: SftExample) -> float:
    """The loss transformers computes itself from input_ids and labels (with -100 ignored)."""
    with model_work():
        tensor = torch.tensor([example.ids])
        return float(lm.model(tensor, labels=torch.tensor([example.labels]), use_cache=False).loss)


@dataclass(frozen=True, eq=False)
class SftRun:
    mode: str
    lr: float
    trained_parameters: int
    losses: np.ndarray              # [steps done] mean labelled loss over the examples, before each step
    token_losses_before: np.ndarray  # [T - 1] of the first example, every position
    token_losses_after: np.ndarray
    end_prob_before: float          # p(<|im_end|> right after the first answer)
    end_prob_after: float
    seconds: float

    @property
    def steps_done(self) -> int:
        return len(self.losses)


def _position_losses(stack: TopStack, hidden: torch.Tensor, example: SftExample) -> torch.Tensor:
    logits = stack(hidden)[0, :-1].float()
    return F.cross_entropy(logits, torch.tensor(example.ids[1:]), reduction="none")


def _labelled_loss(stack, hidden, example) -> torch.Tensor:
    keep = torch.tensor([label != IGNORE for label in example.labels[1:]])
    return _position_losses(stack, hidden, example)[keep].mean()


@torch.inference_mode(False)
def sft_steps(lm: LiveModel, examples: list[SftExample], *, steps: int = 10, lr: float = 1e-4,
              on_step=lambda step, total, loss: None, should_stop=lambda: False) -> SftRun:
    """Adam on every weight of a private copy of the last block (the rest frozen and cached), on the labelled
    positions of the examples; per-token losses of the first example before and after."""
    if not examples or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"at least one example and 1-{MAX_STEPS} steps")
    begun = time.perf_counter()
    stack = TopStack(lm, 1)
    stack.requires_grad_(True)
    hiddens = [frozen_input(lm, ex.ids, stack.first_block).hidden for ex in examples]
    first, first_hidden = examples[0], hiddens[0]
    with gated_training(), torch.no_grad():
        before = _position_losses(stack, first_hidden, first).numpy().copy()
    optimizer = torch.optim.Adam(stack.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        if should_stop():
            break
        with gated_training():
            optimizer.zero_grad()
            loss = torch.stack([_labelled_loss(stack, h, ex) for h, ex in zip(hiddens, examples)]).mean()
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
        on_step(step + 1, steps, losses[-1])
    with gated_training(), torch.no_grad():
        after = _position_losses(stack, first_hidden, first).numpy().copy()
    end = first.end_index - 1   # the position whose next token is <|im_end|>
    return SftRun(mode="", lr=lr, trained_parameters=sum(p.numel() for p in stack.parameters()),
                  losses=np.array(losses), token_losses_before=before, token_losses_after=after,
                  end_prob_before=float(np.exp(-before[end])), end_prob_after=float(np.exp(-after[end])),
                  seconds=time.perf_counter() - begun)
