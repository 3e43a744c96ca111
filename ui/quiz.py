"""Check yourself: multiple-choice questions with feedback and the reason behind the answer."""
from __future__ import annotations

import streamlit as st

from concepts import Concept


def quiz(c: Concept) -> None:
    for n, q in enumerate(c.quiz, 1):
        choice = st.radio(f"**{n}.** {q.question}", list(q.options), index=None, key=f"quiz-{c.slug}-{n}")
        if choice is None:
            continue
        if q.options.index(choice) == q.answer:
            st.success(f"Right. {q.why}", icon=":material/check_circle:")
        else:
            st.error(f"Not quite: the answer is “{q.options[q.answer]}”. {q.why}", icon=":material/cancel:")
