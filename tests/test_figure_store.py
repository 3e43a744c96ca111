"""The shared figure store: the same inputs give the same built figure; any change of data builds anew."""
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from ui.charts import FigureStore

calls = []


def builder(*args, **kwargs):
    calls.append((args, kwargs))
    return object()


@dataclass(frozen=True)
class Chip:
    text: str
    id: int


def test_same_inputs_reuse_the_figure_and_any_changed_value_builds_a_new_one():
    store = FigureStore()
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    first = store.get_or_build(builder, (weights, ["a", "b"]), {"title": "t", "chips": [Chip("x", 1)]})
    again = store.get_or_build(builder, (weights.copy(), ["a", "b"]), {"title": "t", "chips": [Chip("x", 1)]})
    assert again is first
    changed = weights.copy()
    changed[2, 3] += 1e-6
    variants = [((changed, ["a", "b"]), {"title": "t", "chips": [Chip("x", 1)]}),
                ((weights.astype(np.float64), ["a", "b"]), {"title": "t", "chips": [Chip("x", 1)]}),
                ((weights.reshape(4, 3), ["a", "b"]), {"title": "t", "chips": [Chip("x", 1)]}),
                ((weights, ["a", "c"]), {"title": "t", "chips": [Chip("x", 1)]}),
                ((weights, ["a", "b"]), {"title": "t2", "chips": [Chip("x", 1)]}),
                ((weights, ["a", "b"]), {"title": "t", "chips": [Chip("x", 2)]}),
                ((weights, ("a", "b")), {"title": "t", "chips": [Chip("x", 1)]})]
    built = [store.get_or_build(builder, args, kwargs) for args, kwargs in variants]
    assert all(b is not first for b in built) and len({id(b) for b in built}) == len(built)


def test_frames_are_told_apart_by_their_values():
    store = FigureStore()
    a = store.get_or_build(builder, (pd.DataFrame({"x": [1, 2]}),), {})
    assert store.get_or_build(builder, (pd.DataFrame({"x": [1, 2]}),), {}) is a
    assert store.get_or_build(builder, (pd.DataFrame({"x": [1, 3]}),), {}) is not a


def test_the_store_is_bounded_in_entries_and_in_bytes():
    store = FigureStore(max_entries=3, max_bytes=10_000)
    for n in range(5):
        store.get_or_build(builder, (n,), {})
    assert len(store._figures) == 3
    big = [np.zeros(1000, dtype=np.float32) + k for k in range(4)]   # 4,000 bytes each
    for array in big:
        store.get_or_build(builder, (array,), {})
    assert store._figures.total_bytes <= 10_000


def test_an_argument_it_cannot_fingerprint_is_refused_rather_than_guessed():
    with pytest.raises(TypeError):
        FigureStore().get_or_build(builder, (object(),), {})
