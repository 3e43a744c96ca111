"""The tokenizer comparison reports each tokenizer's own ids, counts, bytes and vocabulary size."""
import pytest

from engine.decoding.generation import generate
from engine.tokens.tokenizers import (BERT, QUICKTOK, SPECS, ask, byte_to_char, bytes_to_piece, chat_prompt,
                               compare_tokenizers, count_question, embedding_size, letter_count,
                               letters_per_token, number_in_answer, piece_to_bytes, quicktok_encoding,
                               quicktok_tokens, smollm2_tokens, spans_from_bytes, text_stats, visible_bytes,
                               visible_text, vocabulary_size, wordpiece_tokens)
from engine.tokens.offsets import decode, token_ids

SAMPLE = "Tokenization isn't magic: ChatGPT reads 'strawberry' as pieces. 🍓 東京 1234567"
MIXED = ["Hello, world!", "def f(x):\n\treturn x  # two spaces\n", "Grüße aus Köln", "老灯塔看守人", "👨‍👩‍👧 🇩🇪 ❤️",
         "3.14159 1,234,567", "  leading and trailing  ", "<|endoftext|> is plain text here"]


@pytest.fixture(scope="module")
def enc():
    from engine.model.encoder import load_encoder
    return load_encoder()


def test_byte_map_covers_all_bytes_and_round_trips():
    table = byte_to_char()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
    everything = bytes(range(256))
    assert piece_to_bytes(bytes_to_piece(everything)) == everything
    assert piece_to_bytes("Ġstrawberry") == b" strawberry"
    assert piece_to_bytes("東京") is None                     # not byte-level spelling


@pytest.mark.parametrize("text", [SAMPLE, *MIXED])
def test_smollm2_tokens_are_the_tokenizers_own_and_round_trip(lm, text):
    tokens = smollm2_tokens(lm, text)
    ids = [t.id for t in tokens]
    assert ids == token_ids(lm, text)
    with lm.tokenizing() as tok:
        assert [t.piece for t in tokens] == tok.convert_ids_to_tokens(ids)
    assert decode(lm, ids) == text
    if not any(t.kind == "special" for t in tokens):
        assert b"".join(t.raw for t in tokens) == text.encode("utf-8")
        assert spans_from_bytes(text, [t.raw for t in tokens]) == [(t.start, t.end) for t in tokens]


def test_emoji_falls_back_to_bytes_and_is_flagged(lm):
    tokens = smollm2_tokens(lm, "🍓")
    assert len(tokens) > 1                       # no single entry for the strawberry emoji
    assert all(t.kind == "partial" for t in tokens)
    assert all("\ufffd" in t.text for t in tokens)
    assert b"".join(t.raw for t in tokens) == "🍓".encode("utf-8") == bytes.fromhex("F09F8D93")
    assert all(t.label.startswith("⟨") for t in tokens)
    assert all((t.start, t.end) == (0, 1) for t in tokens)


@pytest.mark.parametrize("key", list(QUICKTOK))
@pytest.mark.parametrize("text", [SAMPLE, *MIXED])
def test_quicktok_tokens_match_quicktok(key, text):
    encoding = quicktok_encoding(key)
    tokens = quicktok_tokens(key, text)
    assert [t.id for t in tokens] == encoding.encode_ordinary(text)
    assert len(tokens) == encoding.count(text)
    assert encoding.decode([t.id for t in tokens]) == text
    assert b"".join(t.raw for t in tokens) == text.encode("utf-8")
    for t in tokens:
        assert 0 <= t.start < t.end <= len(text)
        if t.kind == "text":
            assert text[t.start:t.end].encode("utf-8") == t.raw


def test_qwen_normalizes_to_nfc_like_hugging_face():
    import unicodedata

    decomposed = "Cafe\u0301 and nai\u0308ve"
    tokens = quicktok_tokens("qwen", decomposed)
    assert [t.id for t in tokens] == quicktok_encoding("qwen").encode_ordinary(decomposed)
    assert b"".join(t.raw for t in tokens).decode() == unicodedata.normalize("NFC", decomposed)


def test_vocabulary_sizes_are_read_from_the_tokenizers(lm, enc):
    assert vocabulary_size("smollm2", lm).total == lm.card.vocab_size == 49152
    assert lm.model.get_input_embeddings().weight.shape[0] == 49152
    assert vocabulary_size("bert", encoder=enc).total == 30522
    assert vocabulary_size("llama3").total == 128256
    for key in QUICKTOK:
        size = vocabulary_size(key)
        encoding = quicktok_encoding(key)
        assert size.total == encoding.n_vocab == encoding.max_token_value + 1
        assert size.regular == len(encoding.token_byte_values())
        assert size.regular + size.special <= size.total
    assert vocabulary_size("cl100k").total < vocabulary_size("qwen").total < vocabulary_size("o200k").total


def test_wordpiece_lowercases_marks_continuations_and_unknowns(enc):
    text = "Tokenization 🍓 ChatGPT"
    tokens = wordpiece_tokens(enc, text)
    with enc.tokenizing() as tok:
        assert [t.id for t in tokens] == tok(text, add_special_tokens=False)["input_ids"]
    pieces = [t.piece for t in tokens]
    assert pieces[:2] == ["token", "##ization"]
    assert "[UNK]" in pieces and tokens[pieces.index("[UNK]")].kind == "unknown"
    assert all(p == p.lower() for p in pieces if p != "[UNK]")


def test_comparison_has_every_tokenizer_with_consistent_stats(lm, enc):
    results = compare_tokenizers(SAMPLE, lm, enc)
    assert [r.spec for r in results] == list(SPECS)
    assert results[-1].spec == BERT
    for r in results:
        assert r.stats.tokens == len(r.tokens)
        assert r.stats.characters == len(SAMPLE)
        assert r.stats.chars_per_token == pytest.approx(len(SAMPLE) / len(r.tokens))
    cl100k = next(r for r in results if r.spec.key == "cl100k")
    assert cl100k.stats.tokens == quicktok_encoding("cl100k").count(SAMPLE)
    assert all(r.tokens == [] for r in compare_tokenizers("", lm, enc))


def test_strawberry_with_a_leading_space_is_one_token(lm):
    spaced = smollm2_tokens(lm, " strawberry")
    plain = smollm2_tokens(lm, "strawberry")
    assert len(spaced) == 1 and spaced[0].piece == "Ġstrawberry"
    assert len(plain) > 1 and "".join(t.text for t in plain) == "strawberry"
    assert sum(letters_per_token(plain, "r")) == letter_count("strawberry", "r") == 3
    assert letter_count("Strawberry", "S") == 1 and letter_count("abc", "") == 0


def test_asking_the_model_is_greedy_generation_on_the_chat_template(lm):
    question = count_question("strawberry", "r")
    assert question == "How many r's are in strawberry?"
    prompt = chat_prompt(lm, question)
    assert prompt.startswith("<|im_start|>") and question in prompt and prompt.endswith("assistant\n")
    answer = ask(lm, question, max_new_tokens=8)
    expected = generate(lm, prompt, 8)
    assert answer.new_ids == expected.new_ids
    assert answer.answer == decode(lm, [i for i in expected.new_ids if i != lm.tokenizer.eos_token_id]).strip()


def test_embedding_size_is_vocab_times_width_times_bytes():
    size = embedding_size(49152, 576, "fp32")
    assert size.parameters == 49152 * 576 == 28_311_552
    assert size.bytes == 28_311_552 * 4
    untied = embedding_size(128256, 4096, "bf16", tied=False)
    assert untied.parameters == 2 * 128256 * 4096 and untied.bytes == untied.parameters * 2
    assert untied.megabytes == pytest.approx(untied.bytes / 1e6)


def test_small_helpers():
    assert visible_text(" a\n\tb") == "␣a↵⇥b"
    assert visible_text("") == "∅"
    assert visible_bytes(b" \xf0\x9f") == "␣⟨F0 9F⟩"
    assert visible_bytes("é".encode()) == "é"
    stats = text_stats("one two  three", 5)
    assert (stats.words, stats.characters, stats.tokens) == (3, 14, 5)
    assert stats.words_per_token == pytest.approx(0.6)
    assert number_in_answer("The answer is 1.") == 1
    assert number_in_answer("There are three r's") == 3
    assert number_in_answer("I cannot count") is None


def test_token_chips_wrap_like_text_and_escape_markup():
    from charts.tokens import Chip, display_width, layout_chips, token_chips

    assert display_width("東京") == 4 and display_width("ab") == 2
    chips = [Chip("a" * 8, "h"), Chip("b" * 8, "h", break_after=True), Chip("<b>x</b>", "<i>hover</i>", ident=7)]
    places, heads = layout_chips([("", chips)], columns=20)
    assert [row for row, _, _ in places] == [0, 0, 1]          # the newline token ends the row
    places, _ = layout_chips([("", chips[:1] * 3)], columns=20)
    assert [row for row, _, _ in places] == [0, 0, 1]          # the third chip no longer fits
    bars = token_chips([("w", chips)]).data[0]
    assert list(bars.text)[2] == "&lt;b&gt;x&lt;/b&gt;"
    assert "<i>" not in bars.hovertext[2] and [c[0] for c in bars.customdata] == [-1, -1, 7]
