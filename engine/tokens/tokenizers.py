"""Every tokenizer the handbook compares, behind one shape: text in, tokens with ids, bytes and spans out.

SmolLM2's own tokenizer (Hugging Face, byte-level BPE), four byte-level BPE vocabularies shipped by
`quicktok` (GPT-4 cl100k_base, GPT-4o o200k_base, Llama 3, Qwen2.5/3) and BERT WordPiece from the
MiniLM encoder. Vocabulary sizes are read from the tokenizers, never typed in.
"""
from __future__ import annotations

import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from engine.model.encoder import LiveEncoder
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode, tokenize

# ---------------------------------------------------------------------------------------------------------
# Byte-level BPE stores each of the 256 byte values as a printable character (GPT-2's convention), so a
# vocabulary file holds text: a space is 'Ġ', a newline 'Ċ'. Printable Latin-1 bytes stand for themselves,
# the others are moved, in order, to code points from 256 up.


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, moved = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + moved)
            moved += 1
    return table


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_char().items()}


def bytes_to_piece(raw: bytes) -> str:
    """The vocabulary spelling of some bytes in byte-level BPE ('Ġstrawberry' for b' strawberry')."""
    table = byte_to_char()
    return "".join(table[b] for b in raw)


def piece_to_bytes(piece: str) -> bytes | None:
    """The bytes a byte-level vocabulary entry stands for; None if it is not in byte-level spelling."""
    table = char_to_byte()
    try:
        return bytes(table[c] for c in piece)
    except KeyError:
        return None


# ---------------------------------------------------------------------------------------------------------
# How a token is shown: whitespace made visible, and bytes that are not a whole character shown in hex.

_WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
_INVISIBLE_NAMES = {"\u200d": "ZWJ", "\ufe0f": "VS16", "\ufe0e": "VS15", "\u200b": "ZWSP", "\u00a0": "NBSP"}


def visible_text(text: str) -> str:
    """Text with whitespace and invisible characters shown (␣ ↵ ⇥, ⟨ZWJ⟩)."""
    out = []
    for ch in text:
        if ch in _WHITESPACE:
            out.append(_WHITESPACE[ch])
        elif ch in _INVISIBLE_NAMES:
            out.append(f"⟨{_INVISIBLE_NAMES[ch]}⟩")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    return "".join(out) or "∅"


def visible_bytes(raw: bytes) -> str:
    """Like `visible_text`, but bytes that do not form a whole UTF-8 character are shown as ⟨F0 9F⟩."""
    text = raw.decode("utf-8", "surrogateescape")
    out, stray = [], []
    for ch in text:
        if 0xDC80 <= ord(ch) <= 0xDCFF:          # surrogateescape marks an undecodable byte this way
            stray.append(f"{ord(ch) - 0xDC00:02X}")
            continue
        if stray:
            out.append("⟨" + " ".join(stray) + "⟩")
            stray = []
        out.append(visible_text(ch))
    if stray:
        out.append("⟨" + " ".join(stray) + "⟩")
    return "".join(out) or "∅"


def hex_bytes(raw: bytes) -> str:
    return " ".join(f"{b:02X}" for b in raw)


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPiece:
    id: int
    piece: str     # the vocabulary entry as stored: byte-level 'Ġ' spelling, or WordPiece's '##ization'
    raw: bytes     # the UTF-8 bytes this token stands for (WordPiece: its text after lowercasing)
    start: int     # character span [start, end) in the source text
    end: int
    kind: str      # "text"; "partial": bytes of an incomplete character; "special"; "unknown" ([UNK])

    @property
    def text(self) -> str:
        """What the token decodes to on its own ('\\ufffd' where it holds only part of a character)."""
        return self.raw.decode("utf-8", "replace")

    @property
    def label(self) -> str:
        if self.kind in ("special", "unknown") or not self.raw:
            return self.piece
        if self.piece.startswith("##") and self.piece[2:].encode("utf-8") == self.raw:
            return self.piece                                   # WordPiece continuation: keep its '##'
        return visible_bytes(self.raw)


def _kind(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "partial"


def spans_from_bytes(text: str, raws: list[bytes]) -> list[tuple[int, int]]:
    """Character spans of consecutive byte strings that together spell `text` in UTF-8.

    A token holding part of a character covers that whole character, as Hugging Face's offsets do.
    """
    char_of_byte = []
    for i, ch in enumerate(text):
        char_of_byte.extend([i] * len(ch.encode("utf-8")))
    spans, position = [], 0
    for raw in raws:
        if not raw or position >= len(char_of_byte):
            spans.append((len(text), len(text)))
            continue
        first = char_of_byte[position]
        last = char_of_byte[min(position + len(raw), len(char_of_byte)) - 1]
        spans.append((first, last + 1))
        position += len(raw)
    return spans


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerSpec:
    key: str
    name: str          # short label for charts
    used_by: str       # the models that use it
    algorithm: str


SMOLLM2 = TokenizerSpec("smollm2", "SmolLM2", "SmolLM2 (this app's model)", "byte-level BPE")
QUICKTOK = {
    "cl100k": (TokenizerSpec("cl100k", "GPT-4 cl100k", "GPT-4, GPT-3.5-turbo", "byte-level BPE"), "cl100k_base"),
    "o200k": (TokenizerSpec("o200k", "GPT-4o o200k", "GPT-4o, o1, o3", "byte-level BPE"), "o200k_base"),
    "llama3": (TokenizerSpec("llama3", "Llama 3", "Llama 3, 3.1, 3.2, 3.3", "byte-level BPE"), "llama3"),
    "qwen": (TokenizerSpec("qwen", "Qwen2.5/3", "Qwen2.5, Qwen3", "byte-level BPE"), "qwen3"),
}
BERT = TokenizerSpec("bert", "BERT WordPiece", "BERT, MiniLM (this app's encoder)", "WordPiece")
SPECS = (SMOLLM2, *(spec for spec, _ in QUICKTOK.values()), BERT)

_quicktok_lock = threading.Lock()


def quicktok_encoding(key: str):
    """The bundled quicktok encoding for a key of QUICKTOK ('cl100k', ...). Loaded once, then thread-safe."""
    import quicktok

    with _quicktok_lock:  # get_encoding fills a module-level dict: load under a lock, encode freely
        return quicktok.get_encoding(QUICKTOK[key][1])


@dataclass(frozen=True)
class VocabularySize:
    total: int         # rows an embedding matrix needs: the largest id + 1
    regular: int       # entries learned by the tokenizer algorithm
    special: int       # control tokens (<|endoftext|>, [CLS], ...)
    source: str        # how the number was read


@lru_cache(maxsize=8)
def _quicktok_size(key: str) -> VocabularySize:
    enc = quicktok_encoding(key)
    regular = len(enc.token_byte_values())
    return VocabularySize(total=enc.n_vocab, regular=regular, special=len(enc.special_tokens_set),
                          source=f"quicktok {QUICKTOK[key][1]}: n_vocab (largest id + 1); "
                                 f"{regular:,} regular entries and {len(enc.special_tokens_set)} special tokens")


def vocabulary_size(key: str, lm: LiveModel | None = None, encoder: LiveEncoder | None = None) -> VocabularySize:
    if key in QUICKTOK:
        return _quicktok_size(key)
    owner = lm if key == SMOLLM2.key else encoder
    if owner is None:
        raise ValueError(f"the {key} tokenizer needs its model handle")
    with owner.tokenizing() as tok:
        total = len(tok)
        special = len(_special_ids(tok))
    return VocabularySize(total=total, regular=total - special, special=special,
                          source="len(tokenizer) of the loaded Hugging Face tokenizer")


# ---------------------------------------------------------------------------------------------------------


def _special_ids(tok) -> set[int]:
    """Ids of a Hugging Face tokenizer's special and added tokens (chat markers and the like)."""
    return set(tok.all_special_ids) | set(tok.get_added_vocab().values())


def smollm2_tokens(lm: LiveModel, text: str) -> list[TokenPiece]:
    if not text:
        return []
    with lm.tokenizing() as tok:
        special_ids = _special_ids(tok)
    tokens = []
    for t in tokenize(lm, text):
        raw = piece_to_bytes(t.piece)
        if t.id in special_ids or raw is None:
            tokens.append(TokenPiece(t.id, t.piece, t.piece.encode("utf-8"), t.start, t.end, "special"))
        else:
            tokens.append(TokenPiece(t.id, t.piece, raw, t.start, t.end, _kind(raw)))
    return tokens


def quicktok_tokens(key: str, text: str) -> list[TokenPiece]:
    """Tokens of an OpenAI/Llama/Qwen vocabulary. Special-token strings in the text count as plain text."""
    if not text:
        return []
    enc = quicktok_encoding(key)
    ids = enc.encode_ordinary(text)
    raws = [enc.decode_single_token_bytes(i) for i in ids]
    reference = text
    if b"".join(raws) != text.encode("utf-8"):
        # Qwen normalizes to Unicode NFC first; its spans refer to the normalized text.
        reference = b"".join(raws).decode("utf-8", "replace")
    spans = spans_from_bytes(reference, raws)
    return [TokenPiece(i, bytes_to_piece(raw), raw, s, e, _kind(raw)) for i, raw, (s, e) in zip(ids, raws, spans)]


def wordpiece_tokens(encoder: LiveEncoder, text: str) -> list[TokenPiece]:
    if not text:
        return []
    with encoder.tokenizing() as tok:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        pieces = tok.convert_ids_to_tokens(ids)
        unk = tok.unk_token_id
    tokens = []
    for i, piece, (start, end) in zip(ids, pieces, enc["offset_mapping"]):
        if i == unk:
            tokens.append(TokenPiece(i, piece, b"", start, end, "unknown"))
        else:
            surface = piece[2:] if piece.startswith("##") else piece
            tokens.append(TokenPiece(i, piece, surface.encode("utf-8"), start, end, "text"))
    return tokens


def tokenize_with(key: str, text: str, lm: LiveModel | None = None,
                  encoder: LiveEncoder | None = None) -> list[TokenPiece]:
    if key == SMOLLM2.key:
        return smollm2_tokens(lm, text)
    if key == BERT.key:
        return wordpiece_tokens(encoder, text)
    return quicktok_tokens(key, text)


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextStats:
    characters: int
    words: int          # whitespace-separated words
    utf8_bytes: int
    tokens: int

    @property
    def chars_per_token(self) -> float:
        return self.characters / self.tokens if self.tokens else 0.0

    @property
    def words_per_token(self) -> float:
        return self.words / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else 0.0


def text_stats(text: str, tokens: int) -> TextStats:
    return TextStats(characters=len(text), words=len(text.split()), utf8_bytes=len(text.encode("utf-8")),
                     tokens=tokens)


@dataclass(frozen=True)
class Tokenization:
    spec: TokenizerSpec
    vocab: VocabularySize
    tokens: list[TokenPiece]
    stats: TextStats
    seconds: float       # wall time of the tokenizer call


def compare_tokenizers(text: str, lm: LiveModel, encoder: LiveEncoder) -> list[Tokenization]:
    """The same text through every tokenizer of SPECS, in that order."""
    results = []
    for spec in SPECS:
        started = time.perf_counter()
        tokens = tokenize_with(spec.key, text, lm, encoder)
        seconds = time.perf_counter() - started
        results.append(Tokenization(spec, vocabulary_size(spec.key, lm, encoder), tokens,
                                    text_stats(text, len(tokens)), seconds))
    return results


# ---------------------------------------------------------------------------------------------------------

DTYPE_BYTES = {"fp32": 4, "bf16": 2}


@dataclass(frozen=True)
class EmbeddingSize:
    vocab: int
    d_model: int
    matrices: int        # 1 when the output layer is tied to the input embedding, 2 when it is not
    bytes_per_param: int

    @property
    def parameters(self) -> int:
        return self.vocab * self.d_model * self.matrices

    @property
    def bytes(self) -> int:
        return self.parameters * self.bytes_per_param

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6


def embedding_size(vocab: int, d_model: int, dtype: str = "fp32", tied: bool = True) -> EmbeddingSize:
    return EmbeddingSize(vocab=int(vocab), d_model=int(d_model), matrices=1 if tied else 2,
                         bytes_per_param=DTYPE_BYTES[dtype])


# ---------------------------------------------------------------------------------------------------------
# Letters inside tokens: the "how many r's in strawberry" case.


def letter_count(word: str, letter: str) -> int:
    """How often `letter` occurs in `word`, ignoring case: the true answer, counted in Python."""
    return word.casefold().count(letter.casefold()) if letter else 0


def letters_per_token(tokens: list[TokenPiece], letter: str) -> list[int]:
    return [letter_count(t.text, letter) for t in tokens]


def count_question(word: str, letter: str) -> str:
    return f"How many {letter}'s are in {word}?"


@dataclass(frozen=True)
class ChatAnswer:
    prompt: str            # the chat-templated text the model reads
    prompt_tokens: int
    answer: str            # the reply, without the end-of-turn token
    new_ids: list[int]
    stopped: bool          # ended its turn within the token budget


def chat_prompt(lm: LiveModel, question: str) -> str:
    with lm.tokenizing() as tok:
        return tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                       add_generation_prompt=True)


def ask(lm: LiveModel, question: str, max_new_tokens: int = 24) -> ChatAnswer:
    """The instruct model's greedy reply to one user turn in its own chat template."""
    from engine.decoding.generation import generate

    prompt = chat_prompt(lm, question)
    gen = generate(lm, prompt, max_new_tokens)
    eos = lm.tokenizer.eos_token_id
    reply_ids = [i for i in gen.new_ids if i != eos]
    return ChatAnswer(prompt=prompt, prompt_tokens=len(gen.prompt_ids), answer=decode(lm, reply_ids).strip(),
                      new_ids=gen.new_ids, stopped=gen.stopped_at_eos)


_NUMBER_WORDS = {w: n for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def number_in_answer(answer: str) -> int | None:
    """The first count a reply states, in digits or as an English word ('three'); None if it states none."""
    match = re.search(r"\d+|\b(" + "|".join(_NUMBER_WORDS) + r")\b", answer, flags=re.IGNORECASE)
    if match is None:
        return None
    found = match.group(0)
    return int(found) if found.isdigit() else _NUMBER_WORDS[found.lower()]
