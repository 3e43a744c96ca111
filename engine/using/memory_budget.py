"""The context budget of a chat with summarised memory (MemGPT style), counted with SmolLM2's own chat template.

A chat model re-reads the whole conversation at every turn, so the history grows until it hits the context
window (SmolLM2's `max_position_embeddings`, read from its config). Systems such as MemGPT (Packer et al. 2023)
keep the recent turns verbatim and replace older ones with a summary held in the prompt, moving the full text
to storage outside the window that can be searched when needed.

The summary here is EXTRACTIVE: the first sentence of each older message, cut to a few words. No model writes
it, so it is instant and reproducible; a real system would let the model write (and rewrite) it. Every token
count is measured: the chat is rendered with the tokenizer's chat template and each token is assigned to its
turn, so the counts include the special tokens and role headers the model really reads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.model.live_model import LiveModel
from engine.using.chat_template import render_tokens

SUMMARY_WORDS = 14   # words kept from the first sentence of each summarised message
MIN_WORDS = 4        # shorter sentences ("Yes.") are skipped for the next one
SUMMARY_HEADER = "Summary of earlier turns (first sentence of each message):"

BUNDLED_CHAT: tuple[dict, ...] = (
    {"role": "system", "content": "You are a friendly gardening assistant. Keep answers practical and short."},
    {"role": "user", "content": "Hi! I have just moved into a flat with a small south-facing balcony, about two "
                                "metres by one. I would like to grow some food there. Where should I start?"},
    {"role": "assistant", "content": "A south-facing balcony is a great start, since most vegetables want six or "
                                     "more hours of sun. Begin with a few large containers, a good peat-free "
                                     "compost and easy crops such as lettuce, radishes, herbs and cherry tomatoes."},
    {"role": "user", "content": "My landlord says nothing may be fixed to the railings. Can I still grow climbing "
                                "plants like beans?"},
    {"role": "assistant", "content": "Yes. Use free-standing supports: a tall pot with a wigwam of three bamboo "
                                     "canes tied at the top works well for runner beans, and nothing touches the "
                                     "railings."},
    {"role": "user", "content": "How big should the pots be for tomatoes? I saw tiny ones in the shop."},
    {"role": "assistant", "content": "Bigger than the shop suggests: at least 20 litres per tomato plant. Small pots "
                                     "dry out in hours on a sunny balcony, and the plants then split their fruit or "
                                     "drop flowers."},
    {"role": "user", "content": "I work long days and can only water in the evening. Is that a problem?"},
    {"role": "assistant", "content": "Evening watering is fine for containers. Water deeply until it drains, add a "
                                     "mulch of bark on top, and consider self-watering pots with a reservoir for "
                                     "the hottest weeks."},
    {"role": "user", "content": "Which herbs survive wind? It gets quite gusty up here on the fifth floor."},
    {"role": "assistant", "content": "Mediterranean herbs cope best: rosemary, thyme, oregano and sage have tough, "
                                     "small leaves. Basil and coriander tear easily, so keep them in the most "
                                     "sheltered corner."},
    {"role": "user", "content": "My radish leaves have tiny holes in them. What is eating them?"},
    {"role": "assistant", "content": "Small round holes on radish leaves are usually flea beetles. They rarely harm "
                                     "the roots; a fine insect mesh over the pot keeps them off the next sowing."},
    {"role": "user", "content": "Can I use the coffee grounds from work as fertiliser?"},
    {"role": "assistant", "content": "In small amounts, mixed into the compost. Coffee grounds add some nitrogen but "
                                     "can form a crust if spread thickly on top, which stops water soaking in."},
    {"role": "user", "content": "Remind me, how big did you say my tomato pots should be, and what about the beans "
                                "again, given my landlord's rule?"},
)


@dataclass(frozen=True)
class Segment:
    label: str
    tokens: int


@dataclass(frozen=True)
class ChatBudget:
    """Token counts of one chat, by part, against the window."""
    segments: tuple[Segment, ...]
    total: int                 # every token of the rendered chat, with the assistant turn opened
    window: int


@dataclass(frozen=True)
class MemoryComparison:
    full: ChatBudget
    summarised: ChatBudget
    summary_text: str
    summarised_messages: int   # older messages replaced by the summary
    kept_messages: int         # recent messages kept verbatim
    per_message: float         # average tokens per older message in full (measured)
    per_summarised: float      # summary tokens per summarised message (measured)

    @property
    def saved(self) -> int:
        return self.full.total - self.summarised.total


def first_sentence(text: str, words: int = SUMMARY_WORDS) -> str:
    """The first sentence of at least MIN_WORDS words ("Hi!" or "Yes." say nothing on their own), cut to
    `words` words with an ellipsis when cut."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    sentence = next((s for s in sentences if len(s.split()) >= MIN_WORDS), sentences[0] if sentences else "")
    parts = sentence.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def extractive_summary(messages: list[dict]) -> str:
    lines = [SUMMARY_HEADER] + [f"- {m['role']}: {first_sentence(m['content'])}" for m in messages]
    return "\n".join(lines)


def turn_token_counts(lm: LiveModel, messages: list[dict]) -> list[int]:
    """Tokens of each rendered turn (markers and role header included), then of the opened assistant turn."""
    chat = render_tokens(lm, messages)
    counts = [0] * len(chat.turns)
    for token in chat.tokens:
        index = next((i for i, t in enumerate(chat.turns) if t.start <= token.start < t.end), len(chat.turns) - 1)
        counts[index] += 1
    return counts


def window_tokens(lm: LiveModel) -> int:
    """The context window the model was built for, from its config."""
    return int(lm.model.config.max_position_embeddings)


def compare_memory(lm: LiveModel, messages: list[dict], keep_last: int) -> MemoryComparison:
    """The chat in full against the chat with all but the last `keep_last` non-system messages summarised.

    `messages` starts with a system prompt. The summary goes into a second system turn right after it.
    """
    system, rest = list(messages[:1]), list(messages[1:])
    keep_last = max(1, min(int(keep_last), len(rest)))
    older, recent = rest[:len(rest) - keep_last], rest[len(rest) - keep_last:]
    window = window_tokens(lm)

    full_counts = turn_token_counts(lm, system + rest)
    n_older = len(older)
    full = ChatBudget(segments=(
        Segment("System prompt", full_counts[0]),
        Segment("Older turns, verbatim", sum(full_counts[1:1 + n_older])),
        Segment("Recent turns, verbatim", sum(full_counts[1 + n_older:-1])),
        Segment("Assistant turn opened", full_counts[-1]),
    ), total=sum(full_counts), window=window)

    summary = extractive_summary(older) if older else ""
    summary_turn = [{"role": "system", "content": summary}] if older else []
    short_counts = turn_token_counts(lm, system + summary_turn + recent)
    n_summary = len(summary_turn)
    summarised = ChatBudget(segments=(
        Segment("System prompt", short_counts[0]),
        Segment("Summary of older turns", sum(short_counts[1:1 + n_summary])),
        Segment("Recent turns, verbatim", sum(short_counts[1 + n_summary:-1])),
        Segment("Assistant turn opened", short_counts[-1]),
    ), total=sum(short_counts), window=window)

    per_message = sum(full_counts[1:-1]) / max(1, len(rest))
    per_summarised = (short_counts[1] / n_older) if n_older else 0.0
    return MemoryComparison(full=full, summarised=summarised, summary_text=summary, summarised_messages=n_older,
                            kept_messages=len(recent), per_message=per_message, per_summarised=per_summarised)


def messages_that_fit(budget_left: float, per_message: float) -> int:
    """How many more messages of the measured average size fit in what is left of the window."""
    return int(budget_left // per_message) if per_message > 0 else 0


def projected_capacity(c: MemoryComparison) -> tuple[int, int]:
    """Roughly how many messages of this chat's measured average size the window holds: kept verbatim, against
    summarised beyond the last `kept_messages` (each older message then costs its measured share of the summary).
    An extrapolation from this chat's averages, not a measurement of a longer chat."""
    fixed = c.full.segments[0].tokens + c.full.segments[-1].tokens
    verbatim = messages_that_fit(c.full.window - fixed, c.per_message)
    if c.per_summarised <= 0:
        return verbatim, verbatim
    left = c.full.window - fixed - c.kept_messages * c.per_message
    return verbatim, c.kept_messages + messages_that_fit(left, c.per_summarised)
