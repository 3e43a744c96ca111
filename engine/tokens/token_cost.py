"""What a text costs in tokens and money, per tokenizer, and how it cuts into fixed-size token chunks.

Providers bill per token, and each model counts tokens with its own tokenizer, so one price per million tokens
means different money for the same text under different tokenizers. Counts come from the tokenizers
themselves (engine.tokens.tokenizers); prices are whatever the reader enters: they change too often to be typed in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.tokens.tokenizers import TokenPiece

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens, as providers publish them."""
    input: float
    output: float


@dataclass(frozen=True)
class Cost:
    input_tokens: int        # per request
    output_tokens: int       # per request
    requests: int
    input_usd: float         # for all requests
    output_usd: float

    @property
    def total_usd(self) -> float:
        return self.input_usd + self.output_usd

    @property
    def per_request_usd(self) -> float:
        return self.total_usd / self.requests if self.requests else 0.0


def reply_tokens(input_tokens: int, reply_share: float) -> int:
    """Output tokens for a reply `reply_share` times as long as the input, in the same tokenizer."""
    return int(round(max(0.0, reply_share) * input_tokens))


def cost(input_tokens: int, output_tokens: int, price: Price, requests: int = 1) -> Cost:
    """tokens x price per token, for input and output separately, times the number of requests."""
    requests = max(0, int(requests))
    return Cost(input_tokens=int(input_tokens), output_tokens=int(output_tokens), requests=requests,
                input_usd=requests * input_tokens * price.input / PER_MILLION,
                output_usd=requests * output_tokens * price.output / PER_MILLION)


def usd(amount: float) -> str:
    """Dollars with enough digits to tell small amounts apart: $12.34, $0.0123, $0.0000451."""
    if amount == 0:
        return "$0"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    decimals = min(10, max(2, 2 - math.floor(math.log10(abs(amount)))))   # three significant digits
    return f"${amount:.{decimals}f}"


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Density:
    """How many tokens a text takes, per character and per word."""
    characters: int
    words: int
    tokens: int

    @property
    def per_100_characters(self) -> float:
        return 100 * self.tokens / self.characters if self.characters else 0.0

    @property
    def per_word(self) -> float:
        return self.tokens / self.words if self.words else 0.0


def density(text: str, tokens: int) -> Density:
    return Density(characters=len(text), words=len(text.split()), tokens=int(tokens))


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    index: int           # 1-based
    first: int           # index of the first token (0-based)
    last: int            # index after the last token
    start: int           # character span in the text
    end: int

    @property
    def tokens(self) -> int:
        return self.last - self.first


def chunk_tokens(tokens: list[TokenPiece], size: int, overlap: int = 0) -> list[Chunk]:
    """Cut a token sequence into chunks of `size` tokens, each starting `size - overlap` after the last.

    Retrieval pipelines cut documents this way so each chunk fits an embedding model's window; the
    overlap repeats a few tokens so a sentence cut at a border is whole in at least one chunk.
    """
    size = max(1, int(size))
    overlap = min(max(0, int(overlap)), size - 1)
    stride = size - overlap
    chunks, first = [], 0
    while first < len(tokens):
        last = min(first + size, len(tokens))
        chunks.append(Chunk(len(chunks) + 1, first, last, tokens[first].start, tokens[last - 1].end))
        if last == len(tokens):
            break
        first += stride
    return chunks
