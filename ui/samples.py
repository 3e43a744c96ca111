"""Preset texts and word groups, kept in assets/samples.toml so that editing a sample never touches code."""
from __future__ import annotations

import functools
import tomllib
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples.toml"


@functools.cache
def _tables() -> dict[str, dict[str, str]]:
    with SAMPLES.open("rb") as f:
        return tomllib.load(f)


def load(table: str) -> dict[str, str]:
    """One table of samples, name -> text, in file order (the first is the page's default)."""
    samples = _tables()[table]
    if not samples or not all(isinstance(v, str) and v.strip() for v in samples.values()):
        raise ValueError(f"{SAMPLES.name}: [{table}] needs at least one non-empty text")
    return dict(samples)
