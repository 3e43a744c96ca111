"""Show a figure with its downloads: PNG from the chart's own toolbar, the numbers behind it as CSV."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st


def _file_stem(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "chart"


def show_chart(fig, data: pd.DataFrame | None, name: str, key: str) -> None:
    """Render a plotly figure full width; its toolbar saves a PNG and a button saves `data` as CSV.

    `key` keeps Streamlit from confusing two charts on one page; `name` names the downloaded files.
    """
    stem = _file_stem(name)
    st.plotly_chart(fig, key=key, width="stretch", config={
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": stem, "scale": 2},
    })
    if data is not None:
        st.download_button("Data (CSV)", data.to_csv(index=False).encode("utf-8"), file_name=f"{stem}.csv",
                           mime="text/csv", key=f"{key}-csv", icon=":material/download:",
                           help="The numbers behind this chart. The chart's toolbar (camera icon) saves it as PNG.")
