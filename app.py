"""LLM Handbook Live: the entry point. Builds the navigation from the concept catalogue."""
import logging

import streamlit as st

from concepts import load_catalogue
from engine.runtime.memory import limit_malloc_arenas, start_heap_trimmer
from ui.embeddings import umap_warmup
from ui.home import render_home

# Bounded memory under many readers: every script run is a new thread (engine/runtime/memory.py says why).
limit_malloc_arenas()
start_heap_trimmer()

st.set_page_config(page_title="LLM Handbook Live", page_icon=":material/menu_book:", layout="wide")
logging.getLogger("llm_handbook").setLevel(logging.INFO)

catalogue = load_catalogue()
home = st.Page(render_home, title="Home", icon=":material/home:", default=True)
navigation = {"": [home]}
for section in catalogue.sections:
    pages = [st.Page(f"app_pages/{c.page_name}.py", title=c.title, url_path=c.slug)
             for c in section.concepts if c.live]
    if pages:
        navigation[f"{section.number}. {section.title}"] = pages

umap_warmup()   # once per server, at its first page run: UMAP's numba code compiles before a reader asks

with st.sidebar:
    st.caption("Every demo runs SmolLM2-135M-Instruct live on this server's CPU.")

st.navigation(navigation).run()
