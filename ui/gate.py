"""Tell a reader who waits for the shared CPU how many readers are ahead of them."""
from __future__ import annotations

import contextvars
from contextlib import contextmanager

import streamlit as st

from engine.runtime.gate import cpu_gate


@contextmanager
def queue_notice():
    """While the `with` body (one script run of a page) runs, its model calls keep one place in the CPU gate's
    line, and a wait of over a second shows "N readers ahead of you".

    The gate calls the notice from deep inside cached computations. Streamlit records any element drawn
    inside an `st.cache_data` function to replay it on a cache hit, and refuses to replay one drawn into a
    container made outside; so the notice draws in the context captured here, outside every cached call.
    """
    slot = st.empty()
    outside = contextvars.copy_context()

    def notice(ahead: int) -> None:
        if ahead:
            readers = "reader" if ahead == 1 else "readers"
            outside.run(slot.info, f"The server is busy: {ahead} {readers} ahead of you. Your page continues "
                                   "as soon as it is your turn.", icon=":material/hourglass_top:")
        else:
            outside.run(slot.empty)

    gate = cpu_gate()
    with gate.run_order(), gate.waiting_notice(notice):   # this run's calls keep the place it takes now
        yield
