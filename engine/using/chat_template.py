"""A chat as the model really reads it: the chat template rendered to tokens, each token marked with its turn.

An instruct model never sees "roles". It sees one stream of tokens in which its chat template (a Jinja
template shipped with the tokenizer) has written the turns out between special tokens. SmolLM2 uses the
ChatML layout:

    <|im_start|>system\\n{system prompt}<|im_end|>\\n<|im_start|>user\\n{message}<|im_end|>\\n<|im_start|>assistant\\n

and the model's answer is whatever it writes after the last line, until it emits <|im_end|>. SmolLM2's template
also writes a default system prompt when a chat does not start with one, so "no system prompt" still means one.

The rendered text is split into its turns by those markers (this module reads ChatML; other templates would need
their own reader), the text is tokenized with character offsets, and each token gets the role of the turn it
falls in and its part: a special token, the role header, the message content, or the newline between turns.
The tests hold the token ids to `apply_chat_template(..., tokenize=True)`.

Reader text may not contain the special tokens' own spelling: a tokenizer turns the text "<|im_end|>" into the
real special token, so a user could close their turn and forge a system turn. It is removed, as a chat server
must do (or escape) too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from engine.decoding.divergence import js_divergence_bits, kl_divergence_bits
from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel

ROLES = ("system", "user", "assistant")
_TURN = re.compile(r"<\|im_start\|>(?P<role>[^\n<]*)\n(?P<content>.*?)(?:<\|im_end\|>\n?|$)", re.S)


def remove_special_tokens(lm: LiveModel, text: str) -> tuple[str, bool]:
    """The text without any special token's spelling in it; True if something was removed."""
    cleaned = text
    for special in lm.tokenizer.all_special_tokens:
        cleaned = cleaned.replace(special, "")
    return cleaned, cleaned != text


def chat_messages(system: str, user: str) -> list[dict]:
    """A one-question chat; an empty system prompt is left out (so the template's default applies)."""
    messages = [{"role": "system", "content": system}] if system.strip() else []
    return messages + [{"role": "user", "content": user}]


def render(lm: LiveModel, messages: list[dict]) -> str:
    """The chat as one text, with the assistant's turn opened for the model to write in."""
    with lm.tokenizing() as tok:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def template_ids(lm: LiveModel, messages: list[dict]) -> list[int]:
    """The token ids the tokenizer's own apply_chat_template gives (transformers 5 returns a BatchEncoding)."""
    with lm.tokenizing() as tok:
        out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return [int(i) for i in ids]


@dataclass(frozen=True)
class Turn:
    role: str
    start: int            # character span of the whole turn, markers included
    end: int
    content_start: int
    content_end: int


@dataclass(frozen=True)
class RoleToken:
    id: int
    raw: bytes           # the UTF-8 bytes it stands for (a special token: its spelling)
    label: str           # how it is shown: whitespace visible, a part of a character as hex bytes
    role: str            # the turn it belongs to: system, user or assistant
    part: str            # "special", "header" (role name and its newline), "content" or "separator"
    start: int           # character span in the rendered text (a part of a character spans all of it)
    end: int
    partial: bool        # holds only some bytes of a character (byte-level BPE splits emoji and CJK)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class RenderedChat:
    text: str
    turns: tuple[Turn, ...]
    tokens: tuple[RoleToken, ...]
    default_system: bool         # the template wrote its own system prompt (the chat had none)

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    def count(self, role: str | None = None, part: str | None = None) -> int:
        return sum((role is None or t.role == role) and (part is None or t.part == part) for t in self.tokens)


def split_turns(text: str) -> list[Turn]:
    """The ChatML turns of a rendered chat, in order; text outside any turn (none in ChatML) is not a turn."""
    turns = []
    for m in _TURN.finditer(text):
        turns.append(Turn(m.group("role"), m.start(), m.end(), m.start("content"), m.end("content")))
    return turns


def render_tokens(lm: LiveModel, messages: list[dict]) -> RenderedChat:
    """The rendered chat tokenized, every token labelled with its turn's role and its part of the turn."""
    from engine.tokens.tokenizers import smollm2_tokens

    text = render(lm, messages)
    turns = split_turns(text)
    tokens = []
    for piece in smollm2_tokens(lm, text):
        s = piece.start
        turn = next((t for t in turns if t.start <= s < t.end), turns[-1] if turns else None)
        role = turn.role if turn else "user"
        if piece.kind == "special":
            part = "special"
        elif turn and s < turn.content_start:
            part = "header"
        elif turn and s >= turn.content_end:
            part = "separator"
        else:
            part = "content"
        tokens.append(RoleToken(piece.id, piece.raw, piece.label, role, part, piece.start, piece.end,
                                piece.kind == "partial"))
    default_system = not messages or messages[0]["role"] != "system"
    return RenderedChat(text, tuple(turns), tuple(tokens), default_system and any(t.role == "system" for t in turns))


@dataclass(frozen=True)
class DivergenceTrace:
    """Two prompts compared position by position along one fixed continuation (teacher forcing)."""
    continuation: tuple[int, ...]
    js_bits: np.ndarray          # [n] Jensen-Shannon divergence of the two next-token distributions
    kl_bits: np.ndarray          # [n] KL(first || second)
    p_first: np.ndarray          # [n] probability of the continuation's token under the first prompt
    p_second: np.ndarray         # [n] ... under the second
    top_first: tuple[int, ...]   # the most likely token under each prompt at each position
    top_second: tuple[int, ...]


def _distributions_along(lm: LiveModel, prompt: list[int], continuation: list[int]) -> np.ndarray:
    """[n, vocab] next-token probabilities after prompt + continuation[:t], for t = 0 .. n-1 (one pass)."""
    with model_work():
        logits = lm.model(torch.tensor([prompt + continuation[:-1]]), use_cache=False).logits[0].float()
    return torch.softmax(logits[len(prompt) - 1:].double(), dim=-1).numpy()


def divergence_along(lm: LiveModel, first: list[int], second: list[int], continuation: list[int]) -> DivergenceTrace:
    """At each token of `continuation`, how differently the model predicts it after `first` and after `second`."""
    if not continuation or not first or not second:
        raise ValueError("two prompts and a continuation of at least one token are needed")
    a = _distributions_along(lm, first, continuation)
    b = _distributions_along(lm, second, continuation)
    idx = np.arange(len(continuation))
    return DivergenceTrace(
        continuation=tuple(continuation),
        js_bits=np.array([js_divergence_bits(pa, pb) for pa, pb in zip(a, b)]),
        kl_bits=np.array([kl_divergence_bits(pa, pb) for pa, pb in zip(a, b)]),
        p_first=a[idx, continuation], p_second=b[idx, continuation],
        top_first=tuple(int(i) for i in a.argmax(1)), top_second=tuple(int(i) for i in b.argmax(1)))


@dataclass(frozen=True)
class AnswerComparison:
    """Greedy answers to the same chat under two system prompts, each followed under both prompts."""
    first_answer: tuple[int, ...]        # greedy ids under the first prompt (ending with <|im_end|> if it stopped)
    second_answer: tuple[int, ...]
    first_stopped: bool
    second_stopped: bool
    along_first: DivergenceTrace         # the first answer's tokens, predicted after each prompt
    along_second: DivergenceTrace


def compare_answers(lm: LiveModel, first_text: str, second_text: str, max_new_tokens: int,
                    on_step: Callable[[float, str], None] = lambda fraction, what: None) -> AnswerComparison:
    """Both greedy answers, then the divergence of the two prompts' predictions along each answer."""
    from engine.decoding.generation import generate
    from engine.tokens.offsets import token_ids

    on_step(0.0, "the greedy answer under system prompt A")
    a = generate(lm, first_text, max_new_tokens)
    on_step(0.4, "the greedy answer under system prompt B")
    b = generate(lm, second_text, max_new_tokens)
    on_step(0.8, "both prompts' predictions along each answer")
    pa, pb = token_ids(lm, first_text), token_ids(lm, second_text)
    return AnswerComparison(tuple(a.new_ids), tuple(b.new_ids), a.stopped_at_eos, b.stopped_at_eos,
                            divergence_along(lm, pa, pb, a.new_ids), divergence_along(lm, pa, pb, b.new_ids))
