"""The RAG page's job: answering and scoring with and without the retrieved chunks takes several forward passes
over prompts of hundreds of tokens (seconds to tens of seconds on this CPU), so it runs as a job keyed by the
question, the reference answer, the retrieved chunks (and the index they came from) and the answer length.
A share link to a finished run opens at once."""
from __future__ import annotations

from engine.runtime.jobs import Job, job_registry
from engine.retrieval.chunks import ChunkIndex
from engine.retrieval.rag import RagRun, run_rag
from ui.models import lm

RAG_BUDGET_S = 240.0


def rag_job(question: str, reference: str, index: ChunkIndex, retrieved: tuple[int, ...],
            ranking: tuple[int, ...], max_new_tokens: int, fresh: bool = False) -> Job:
    model = lm()   # loaded in the page's run: the job's thread has no page to show loading progress on

    def work(ctx) -> RagRun:
        return run_rag(model, question, reference, index.chunks, retrieved, ranking, max_new_tokens,
                       progress=ctx.report, should_stop=ctx.should_stop)

    key = ("rag", question, reference, index.key, tuple(retrieved), int(max_new_tokens))
    return job_registry().submit(key, work, title="RAG answers", budget_s=RAG_BUDGET_S, fresh=fresh)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def probability_text(p: float) -> str:
    """A probability that may be tiny, readable: "0.42", "0.0031", "1.7 × 10⁻⁵"."""
    if p >= 0.001:
        return f"{p:.3g}"
    if p <= 0:
        return "0"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def ratio_text(ratio: float) -> str:
    """How many times more likely: "×3.2", "×1,840", "×4.1 × 10⁶"."""
    if ratio >= 1e6:
        mantissa, exponent = f"{ratio:.1e}".split("e")
        return f"×{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    return f"×{ratio:,.0f}" if ratio >= 100 else f"×{ratio:.2g}" if ratio < 1 else f"×{ratio:.1f}"
