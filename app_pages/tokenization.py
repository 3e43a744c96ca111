from functools import partial

import pandas as pd
import streamlit as st

from charts.tokens import token_chips
from engine.tokens.text_limits import clean_text
from engine.tokens.tokenizers import count_question, letter_count, number_in_answer, text_stats, visible_text
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.tokens import chips_for, model_answer, smollm2, token_table

DEFAULT_TEXT = "Tokenization isn't magic: ChatGPT reads 'strawberry' as pieces. 🍓 東京 1234567"
DEFAULT_WORD = "strawberry"
DEFAULT_LETTER = "r"
ANSWER_TOKENS = 24


def first_letter(raw: object) -> str:
    text, _ = clean_text(raw)
    return next((ch for ch in text if not ch.isspace()), "")


def show_text_tokens(text: str, show_ids: bool) -> None:
    tokens = smollm2(text)
    stats = text_stats(text, len(tokens))
    cols = st.columns(5)
    cols[0].metric("Tokens", f"{stats.tokens:,}", help="Counted by SmolLM2's own tokenizer (49,152 entries).")
    cols[1].metric("Characters", f"{stats.characters:,}", help=f"Unicode characters; {stats.utf8_bytes:,} bytes "
                   "in UTF-8, the form byte-level BPE works on.")
    cols[2].metric("Words", f"{stats.words:,}", help="Separated by whitespace. Chinese and Japanese write no "
                   "spaces, so a whole sentence counts as one word there.")
    cols[3].metric("Characters per token", f"{stats.chars_per_token:.2f}",
                   help="Characters ÷ tokens. About 4 for English prose; lower for code, numbers and most "
                        "other languages.")
    cols[4].metric("Words per token", f"{stats.words_per_token:.2f}", help="Words ÷ tokens. About 0.75 for "
                   "English prose: 100 tokens are roughly 75 words.")
    fig = figure(token_chips, [("", chips_for(text, tokens, show_ids))], columns=96,
                      title=f"Your text as SmolLM2 reads it: {stats.tokens:,} tokens")
    show_chart(fig, partial(token_table, text, tokens), name="smollm2-tokens", key="chips")
    st.caption("Alternating colours mark where one token ends and the next begins. Hover a chip for its id, its "
               "vocabulary entry (byte-level BPE writes a leading space as Ġ and a newline as Ċ), its UTF-8 "
               "bytes and the characters it covers. ␣ is a space, ↵ a newline, ⇥ a tab.")
    split_characters = [t for t in tokens if t.kind == "partial"]
    if split_characters:
        st.caption(f":material/memory: {len(split_characters)} of the tokens hold only part of a character "
                   "(outlined, shown as hex bytes such as ⟨F0 9F⟩): SmolLM2's vocabulary has no entry for that whole "
                   "character, so it falls back to its UTF-8 bytes. Each such token decodes to \ufffd on its own; "
                   "together they give the character back.")
    st.caption("What the model receives, one id per token:")
    st.code(str([t.id for t in tokens]), language=None, wrap_lines=True)
    with st.expander("Every token as a table"):
        st.dataframe(token_table(text, tokens), hide_index=True, width="stretch")


def show_word_split(word: str, letter: str) -> None:
    variants = [word, " " + word]
    split = {v: smollm2(v) for v in variants}
    fig = figure(token_chips, [(visible_text(v), chips_for(v, split[v])) for v in variants], columns=60,
                      title="How SmolLM2 splits the word, without and with a leading space", font_size=16)
    rows = [{"written": visible_text(v), "token": t.label, "token_id": t.id,
             "letters inside": " ".join(t.text) if t.kind == "text" else "(part of a character)",
             f"'{letter}' inside": letter_count(t.text, letter) if t.kind == "text" else 0}
            for v in variants for t in split[v]]
    show_chart(fig, partial(pd.DataFrame, rows), name="word-split", key="word_chips")
    plain, spaced = (len(split[v]) for v in variants)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown(f"Written alone the word is **{plain} token{'s' if plain != 1 else ''}**; after a space "
                    f"(as in the middle of a sentence) it is **{spaced} token{'s' if spaced != 1 else ''}**. "
                    "Byte-level BPE keeps the space as part of the next piece, so these are different ids.")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        st.caption("The model never receives this letters column: it gets only the ids, each mapped to a "
                   "vector of 576 numbers. Whatever it knows about the spelling of an id, it had to learn from "
                   "text that happened to spell it out.")
    with right:
        truth = letter_count(word, letter)
        ask_model = st.toggle("Ask SmolLM2 how many there are", key="ask", bind="query-params",
                              help=f"Sends the question in the model's chat template and decodes greedily "
                                   f"(at most {ANSWER_TOKENS} new tokens).")
        answer = None
        if ask_model:
            with st.spinner("SmolLM2 is answering..."):
                answer = model_answer(count_question(word, letter), ANSWER_TOKENS)
        said = number_in_answer(answer.answer) if answer else None
        true_col, model_col = st.columns(2)
        true_col.metric("True count", truth,
                        help="Counted in Python: word.casefold().count(letter.casefold()) on the word above.")
        model_col.metric("SmolLM2's count", "—" if answer is None else ("no number" if said is None else said),
                         help="The first number in the model's reply.")
        if answer is None:
            st.caption("Switch on to put the question to the live model and compare its answer with the count.")
            return
        st.caption("The question, as the user turn of a chat:")
        st.code(count_question(word, letter), language=None, wrap_lines=True)
        st.caption("SmolLM2's reply (greedy decoding, so it is the same every time):")
        st.code(answer.answer or "(an empty reply)", language=None, wrap_lines=True)
        if said == truth:
            st.success("Right this time. A small model can also be right by luck or from memory of this very "
                       "question; try another word or letter.", icon=":material/check_circle:")
        else:
            st.warning("Not the true count. The letters are inside the ids, out of the model's direct view.",
                       icon=":material/visibility_off:")
        with st.expander(f"The full prompt the model read ({answer.prompt_tokens} tokens)"):
            st.code(answer.prompt, language=None, wrap_lines=True)


with concept_page("tokenization"):
    text = prompt_input("text", DEFAULT_TEXT, "Your text", max_tokens=512, height=100)
    show_ids = st.toggle("Show token ids instead of text", key="ids", bind="query-params",
                         help="What the model actually receives: one integer per token.")
    if text:
        show_text_tokens(text, show_ids)
    else:
        st.info("Type or paste any text above (a sentence, some code, an emoji or another language) to see it "
                "cut into tokens.", icon=":material/edit:")

    st.subheader("Why counting letters is hard: the strawberry case", anchor="strawberry")
    word_col, letter_col = st.columns([3, 1])
    with word_col:
        word = prompt_input("word", DEFAULT_WORD, "Word", max_chars=40, max_tokens=16,
                            help="A word of up to 40 characters.").strip()
    with letter_col:
        letter = first_letter(st.text_input("Letter to count", DEFAULT_LETTER, key="letter", max_chars=1,
                                            bind="query-params"))
    if not word or not letter:
        st.info("Type a word and one letter to count in it, for example *strawberry* and *r*.",
                icon=":material/edit:")
    else:
        show_word_split(word, letter)
