"""The share link: the page URL with the view's widget values, which the bound widgets keep in sync."""
from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st


def current_link() -> str:
    base = st.context.url or ""
    params = st.query_params.to_dict()
    query = urlencode(params, doseq=True)
    return f"{base}?{query}" if query else base


def share_link() -> None:
    with st.popover("Share this view", icon=":material/link:"):
        st.caption("This link opens the page exactly as you see it now (your text and every setting).")
        st.code(current_link() or "(open the app in a browser to get its link)", language=None, wrap_lines=True)
