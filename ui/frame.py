"""The frame every concept page shares: prose above, the live demo in the middle, quiz and links below."""
from __future__ import annotations

import logging
from contextlib import contextmanager

import streamlit as st

from concepts import Concept, load_catalogue
from ui.gate import queue_notice
from ui.quiz import quiz
from ui.share import share_link

log = logging.getLogger("llm_handbook")


def concept(slug: str) -> Concept:
    return load_catalogue().get(slug)


@contextmanager
def concept_page(slug: str):
    """Render a concept page around the demo written inside the `with` block.

    An error inside the demo is shown as a short message (and logged in full), never as a traceback,
    so the rest of the page, its quiz and its links still work.
    """
    c = concept(slug)
    forget_other_pages_state(slug)
    st.caption(f"{c.section} · concept {c.order}")
    st.title(c.title)
    st.markdown(f"*{c.summary}*")
    intuition, mechanism = st.tabs(["Intuition", "How it works"])
    with intuition:
        st.markdown(c.section_text("Intuition"))
    with mechanism:
        st.markdown(c.section_text("How it works"))
    st.header("Try it", anchor="try-it", divider="gray")
    demo = st.container()
    with demo:
        try:
            with queue_notice():   # a reader kept waiting for the shared CPU is told their place
                yield c
        except Exception as err:  # Streamlit's own rerun/stop signals are BaseException and pass through
            log.exception("demo failed on %s", slug)
            st.error(f"This demo hit a problem and stopped: {type(err).__name__}: {str(err)[:300]}. "
                     "Try a shorter or different input; the rest of the page still works.",
                     icon=":material/error:")
    share_link()
    st.divider()
    wild, check = st.columns(2, gap="large")
    with wild:
        st.subheader("In the wild", anchor="in-the-wild")
        st.markdown(c.section_text("In the wild"))
    with check:
        st.subheader("Check yourself", anchor="check-yourself")
        quiz(c)
    related_links(c)


CURRENT_PAGE = "_handbook_page"


def forget_other_pages_state(slug: str) -> None:
    """On arriving from another page, drop the widget values that page left in this session.

    Pages reuse short keys ("n", "k", "prompt") with their own meanings and ranges: kv-cache's 48 new tokens
    must not become temperature's sample count (above its maximum, so the page fails), and a prompt typed on
    one page must not empty or replace the next page's default. A page opens from its own link state.
    """
    previous = st.session_state.get(CURRENT_PAGE)
    if previous is not None and previous != slug:
        for key in [k for k in st.session_state if not str(k).startswith("_")]:
            del st.session_state[key]
    st.session_state[CURRENT_PAGE] = slug


def related_links(c: Concept) -> None:
    st.subheader("Related", anchor="related")
    catalogue = load_catalogue()
    cols = st.columns(3)
    for i, slug in enumerate(c.related):
        other = catalogue.get(slug)
        with cols[i % 3]:
            if other.live:
                st.page_link(f"app_pages/{other.page_name}.py", label=other.title, icon=":material/arrow_forward:")
            else:
                st.markdown(f":gray[:material/schedule: {other.title} (not live yet)]")
