"""`make bench`: print the performance figures the issues set targets for. Nothing here asserts.

Every module tests/bench/bench_*.py has `run(lm) -> list[tuple[str, str]]` (figure, value); this
runner loads the model once, calls them in name order and prints one table.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def quiet_streamlit() -> None:
    """AppTest runs pages outside a server, and Streamlit warns about that on every cached call."""
    import logging

    # A filter rather than a level: Streamlit resets its loggers' levels when AppTest loads its config.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: "missing ScriptRunContext" not in record.getMessage())


def main(selected: list[str]) -> None:
    from engine.model.live_model import load_live_model

    quiet_streamlit()

    started = time.perf_counter()
    lm = load_live_model()
    print(f"model loaded in {time.perf_counter() - started:.2f} s\n")
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    for name in names:
        if selected and not any(s in name for s in selected):
            continue
        module = importlib.import_module(f"tests.bench.{name}")
        print(f"== {name[len('bench_'):]}")
        for figure, value in module.run(lm):
            print(f"  {figure:<62} {value}")
        print(flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
