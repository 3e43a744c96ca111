"""Regenerate assets/serving_answers.toml: SmolLM2's greedy answers to the bundled serving prompts.

The serving pages (paged-attention, continuous-batching) draw their request lengths from this file, so that their
simulations appear at once and are the same on every replica. Run after the model or the prompts change:
    .venv/bin/python -m scripts.measure_serving_answers
"""
from __future__ import annotations

import datetime
import sys

from engine.model.live_model import MODEL_NAME, load_live_model
from engine.serving.workload import ANSWER_CAP, ANSWERS_FILE, SERVING_PROMPTS, answers_toml, measure_answers


def main() -> None:
    lm = load_live_model()
    answers = measure_answers(lm, SERVING_PROMPTS, ANSWER_CAP,
                              on_progress=lambda done, total: print(f"{done}/{total}", file=sys.stderr, flush=True))
    ANSWERS_FILE.write_text(answers_toml(MODEL_NAME, ANSWER_CAP, datetime.date.today().isoformat(), answers),
                            encoding="utf-8")
    print(f"wrote {len(answers)} answers to {ANSWERS_FILE}")


if __name__ == "__main__":
    main()
