"""Tokenizer speed on the default text, and server-side latency of the token pages (AppTest reruns)."""
from __future__ import annotations

from engine.tokens.tokenizers import SPECS, ask, count_question, tokenize_with
from tests.bench.timing import p50_p95_ms, timed

DEFAULT_TEXT = "Tokenization isn't magic: ChatGPT reads 'strawberry' as pieces. 🍓 東京 1234567"


def _us(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {1e6 * ordered[len(ordered) // 2]:.0f} µs, p95 {1e6 * p95:.0f} µs (n={len(ordered)})"


def run(lm) -> list[tuple[str, str]]:
    from engine.model.encoder import load_encoder
    from tests.pages import open_page

    encoder = load_encoder()
    rows = []
    for spec in SPECS:
        times = timed(lambda: tokenize_with(spec.key, DEFAULT_TEXT, lm, encoder), repeat=200, warmup=3)
        n = len(tokenize_with(spec.key, DEFAULT_TEXT, lm, encoder))
        rows.append((f"tokenize default text, {spec.name} ({n} tokens)", _us(times)))

    question = count_question("strawberry", "r")
    rows.append(("ask SmolLM2 the strawberry question (<= 24 tokens, greedy)",
                 p50_p95_ms(timed(lambda: ask(lm, question, 24), repeat=3, warmup=1))))

    at = open_page("vocabulary")
    rows.append(("vocabulary page rerun, same text (cached)", p50_p95_ms(timed(lambda: at.run(), repeat=20))))
    counter = iter(range(10_000))

    def new_text():
        at.text_area(key="text").input(f"{DEFAULT_TEXT} {next(counter)}").run()

    rows.append(("vocabulary page rerun, new text each time", p50_p95_ms(timed(new_text, repeat=20))))

    at = open_page("tokenization")
    rows.append(("tokenization page rerun, same text (cached)", p50_p95_ms(timed(lambda: at.run(), repeat=20))))
    return rows
