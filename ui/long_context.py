"""Jobs of the context-window and state-space pages: the measured cost sweep and the context experiment.

Both take seconds, so both run as jobs keyed by their inputs (engine.runtime.jobs): a rerun or a second reader with
the same link attaches to the running job or reads its stored result. The cost sweep's key holds only its
lengths (its tokens are a fixed filler), so the two pages share one measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.inside.long_context import (ContextCosts, ContextCurve, NeedleGrid, ShiftCheck, context_curve, cost_lengths,
                                 measure_context_costs, needle_grid, position_shift_check)
from engine.tokens.offsets import token_ids
from ui.models import lm

# The context experiment's default text: its end refers back to its beginning.
DEFAULT_TEXT = (
    "Marta Okonkwo ran the lighthouse on Gull Island for thirty-one years. She kept a logbook in green ink, she "
    "fed a one-eyed cat called Pilot, and every winter she repainted the red stripe on the tower by hand. The "
    "supply boat came from the harbour town of Kessing on the first Monday of each month, skippered by a quiet "
    "man named Idris Vale, who brought flour, lamp oil, newspapers and, once a year, a crate of oranges.\n\n"
    "In the autumn of 1987 a storm tore the radio mast off the gallery. For nine days the island could not call "
    "the mainland. Marta rationed the lamp oil, burned driftwood in the stove, and wrote every hour in the green "
    "logbook so that someone would know what had happened if she did not come back. On the tenth day the wind "
    "dropped, and a small blue boat appeared on the horizon.\n\n"
    "Years later, when the lighthouse was automated and Marta moved to the mainland, a reporter from Kessing "
    "asked her what she remembered most about the storm. She did not talk about the waves or the cold. She said "
    "that on the tenth morning she climbed the tower, saw the blue boat, and knew at once who was steering it, "
    "because only one skipper ever came in that close to the rocks. It was Idris Vale, and he had brought a crate"
    " of oranges two months early. Pilot the cat, she added, ate half of one.")

COST_BUDGET_S = 90
CURVE_BUDGET_S = 90
LENGTH_CAP = 2048       # a 2,048-token prefill holds a core for several seconds on this CPU; 8,192 would take minutes
DEFAULT_LONGEST = 1024


def context_cost_job(longest: int, again: bool = False) -> Job:
    """Prefill time, cache bytes and decode time at 128, 256, ... tokens up to min(longest, LENGTH_CAP)."""
    model = lm()   # loaded in the page's run: the job's thread has no page to show loading progress on
    lengths = cost_lengths(longest, LENGTH_CAP)

    def work(ctx: JobContext) -> ContextCosts:
        ctx.report(0.0, f"Warming up, then a {lengths[0]}-token prefill...")

        def on_point(done: int, total: int, point) -> None:
            following = f"; next: a {lengths[done]:,}-token prefill" if done < total else ""
            ctx.report(done / total, f"{point.length:,} tokens: prefill {point.prefill_seconds:.2f} s, decode "
                                     f"{point.decode_ms:.0f} ms per token ({done} of {total}){following}")

        return measure_context_costs(model, lengths, on_point=on_point, should_stop=ctx.should_stop)

    return job_registry().submit(("context costs", tuple(lengths)), work, title="Context cost sweep",
                                 budget_s=COST_BUDGET_S, fresh=again)


@dataclass(frozen=True)
class ContextExperiment:
    curve: ContextCurve
    shifts: ShiftCheck


SHIFTS = (0, 8192, 65536)


def context_experiment_job(text: str, scored: int) -> Job:
    """Perplexity of the text's last `scored` tokens against the earlier context given, then the position shift."""
    model = lm()
    ids = token_ids(model, text)

    def work(ctx: JobContext) -> ContextExperiment:
        ctx.report(0.0, "Reading the scored tokens with one earlier token...")

        def on_point(done: int, total: int) -> None:
            ctx.report(done / (total + len(SHIFTS) - 1), f"Context size {done} of {total} measured")

        curve = context_curve(model, ids, scored, on_point=on_point, should_stop=ctx.should_stop)
        ctx.report(0.9, "Reading the text again at positions past the trained window...")
        return ContextExperiment(curve=curve, shifts=position_shift_check(model, ids, SHIFTS))

    return job_registry().submit(("context curve", tuple(ids), int(scored)), work, title="Context experiment",
                                 budget_s=CURVE_BUDGET_S)


NEEDLE_LENGTHS = (128, 256, 512)     # 512 filler tokens plus the question: about 570 tokens per pass
NEEDLE_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
NEEDLE_BUDGET_S = 120


def needle_job(longest: int, code: str) -> Job:
    """The haystack grid up to `longest` filler tokens, with `code` as the fact to find."""
    model = lm()
    lengths = [n for n in NEEDLE_LENGTHS if n <= longest] or [NEEDLE_LENGTHS[0]]

    def work(ctx: JobContext) -> NeedleGrid:
        ctx.report(0.0, f"Hiding the code in {lengths[0]} tokens of filler...")

        def on_point(done: int, total: int, cell) -> None:
            ctx.report(done / total, f"{cell.haystack_tokens} tokens, needle at {100 * cell.depth:.0f}%: "
                                     f"P(answer) = {cell.answer_probability:.2f} ({done} of {total})")

        return needle_grid(model, lengths, list(NEEDLE_DEPTHS), code, on_point=on_point, should_stop=ctx.should_stop)

    return job_registry().submit(("needle grid", tuple(lengths), code), work, title="Needle in a haystack",
                                 budget_s=NEEDLE_BUDGET_S)
