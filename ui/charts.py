"""Show a figure with its downloads (PNG from the chart's toolbar, its numbers as CSV), and build it only once.

Building a plotly figure is most of what a page rerun costs: plotly validates every property it is given
(a rerun of the multi-head page spent about 70% of its CPU there). `figure(builder, *args)` keeps built
figures by a fingerprint of their inputs, shared by every session, so a rerun that shows the same data
reuses the figure. The CSV is written only when the reader clicks its button.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from engine.runtime.bounded import BoundedLRU

MAX_FIGURES = 256
MAX_FIGURE_BYTES = 96 * 2**20   # measured by the inputs' size, which a figure's own data roughly matches


def _file_stem(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "chart"


def show_chart(fig, data: pd.DataFrame | Callable[[], pd.DataFrame] | None, name: str, key: str) -> None:
    """Render a plotly figure full width; its toolbar saves a PNG and a button saves `data` as CSV.

    `data` may be a table or a function that makes it (e.g. `functools.partial(pd.DataFrame, columns)`): it
    is then built only if the reader clicks, not on every rerun. `key` keeps Streamlit from confusing two
    charts on one page; `name` names the downloaded files.
    """
    stem = _file_stem(name)
    st.plotly_chart(fig, key=key, width="stretch", config={
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": stem, "scale": 2},
    })
    if data is not None:
        # A callable is run only on a click: no rerun writes a CSV nobody asked for.
        table = data if callable(data) else (lambda: data)
        st.download_button("Data (CSV)", lambda: table().to_csv(index=False).encode("utf-8"), file_name=f"{stem}.csv",
                           mime="text/csv", key=f"{key}-csv", icon=":material/download:",
                           help="The numbers behind this chart. The chart's toolbar (camera icon) saves it as PNG.")


class _Fingerprint:
    """A digest of arguments (arrays, frames, containers, plain values) and the bytes they hold."""

    def __init__(self):
        self.digest = hashlib.blake2b(digest_size=16)
        self.bytes = 0

    def add(self, value) -> None:
        update = self.digest.update
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            update(f"nd{array.dtype.str}{array.shape}".encode())
            update(array.data if array.dtype != object else repr(array.tolist()).encode())
            self.bytes += array.nbytes
        elif isinstance(value, pd.DataFrame):
            update(f"df{list(value.columns)}{value.shape}".encode())
            try:
                update(pd.util.hash_pandas_object(value, index=True).to_numpy().data)
            except TypeError:   # unhashable cells (lists): their text stands in
                update(value.to_csv().encode())
            self.bytes += int(value.memory_usage(deep=False).sum())
        elif isinstance(value, pd.Series):
            self.add(value.to_frame())
        elif isinstance(value, (list, tuple)):
            update(f"{type(value).__name__}{len(value)}[".encode())
            for item in value:
                self.add(item)
            update(b"]")
        elif isinstance(value, dict):
            update(b"{")
            for k in sorted(value, key=repr):
                self.add(k)
                self.add(value[k])
            update(b"}")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            update(f"dc{type(value).__qualname__}(".encode())
            for f in dataclasses.fields(value):
                self.add(getattr(value, f.name))
            update(b")")
        elif value is None or isinstance(value, (str, bytes, int, float, bool, np.generic)):
            text = repr(value).encode()
            update(f"{type(value).__name__}:".encode() + text + b";")
            self.bytes += len(text)
        else:
            raise TypeError(f"cannot fingerprint a {type(value).__name__} for the figure cache")


class FigureStore:
    """Built figures by fingerprint, least recently used out first, bounded in entries and input bytes."""

    def __init__(self, max_entries: int = MAX_FIGURES, max_bytes: int = MAX_FIGURE_BYTES):
        self._figures = BoundedLRU(max_entries, max_bytes)

    def get_or_build(self, builder: Callable, args: tuple, kwargs: dict):
        fp = _Fingerprint()
        fp.add(f"{builder.__module__}.{builder.__qualname__}")
        fp.add(args)
        fp.add(kwargs)
        key = fp.digest.hexdigest()
        built = self._figures.get(key)
        if built is None:
            built = builder(*args, **kwargs)   # two sessions may build the same figure at once; both are right
            self._figures.put(key, built, size=fp.bytes)
        return built


@st.cache_resource(show_spinner=False)
def _figure_store() -> FigureStore:
    return FigureStore()


def figure(builder: Callable, *args, **kwargs):
    """`builder(*args, **kwargs)`, built once per distinct input and shared (treat the figure as read-only)."""
    return _figure_store().get_or_build(builder, args, kwargs)
