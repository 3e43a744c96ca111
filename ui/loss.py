"""Cached per-token losses for the cross-entropy and perplexity pages, and the token chips that show them."""
from __future__ import annotations

import streamlit as st

from charts.loss import FIRST_TOKEN_FILL, bucket_fill, loss_fill
from charts.tokens import Chip
from engine.decoding.loss import (TokenLosses, WindowedPerplexity, model_own_loss, rank_bucket, sliding_window_perplexity,
                         token_losses)
from engine.tokens.offsets import decode_each, token_ids, visible
from ui.models import lm


@st.cache_data(max_entries=64, show_spinner=False)
def ids_of(text: str) -> tuple[int, ...]:
    return tuple(token_ids(lm(), text))


@st.cache_data(max_entries=64, show_spinner=False)
def losses(text: str) -> TokenLosses:
    return token_losses(lm(), list(ids_of(text)))


@st.cache_data(max_entries=64, show_spinner=False)
def own_loss(text: str) -> float:
    return model_own_loss(lm(), list(ids_of(text)))


@st.cache_data(max_entries=64, show_spinner=False)
def windowed(text: str, window: int, stride: int) -> WindowedPerplexity:
    return sliding_window_perplexity(lm(), list(ids_of(text)), window, stride)


@st.cache_data(max_entries=256, show_spinner=False)
def pieces(ids: tuple[int, ...]) -> list[str]:
    return decode_each(lm(), list(ids))


def loss_chips(result: TokenLosses, colour_by: str = "loss") -> list[Chip]:
    """The text as chips: the first token grey (nothing predicts it), the rest coloured by loss or rank bucket,
    each hover giving the probability, the loss, the rank and the model's own favourites there."""
    texts = pieces(result.ids)
    alternatives = pieces(tuple(int(i) for i in result.top_ids.ravel()))
    k = result.top_ids.shape[1]
    chips = [Chip(label=visible(texts[0]), hover="The first token: nothing before it to predict it from.",
                  fill=FIRST_TOKEN_FILL, ident=result.ids[0], break_after="\n" in texts[0])]
    for t in range(len(result.ids) - 1):
        favourites = ", ".join(f"{visible(alternatives[t * k + j])} {100 * p:.1f}%"
                               for j, p in enumerate(result.top_probs[t]))
        rank = int(result.ranks[t])
        hover = (f"p = {100 * result.probs[t]:.3g}% · loss {result.nll[t]:.2f} nats = {result.bits[t]:.2f} bits\n"
                 f"rank {rank:,} of {result.vocab_size:,} ({rank_bucket(rank)})\n"
                 f"the model's favourites: {favourites}")
        fill = bucket_fill(rank_bucket(rank)) if colour_by == "rank" else loss_fill(float(result.bits[t]))
        chips.append(Chip(label=visible(texts[t + 1]), hover=hover, ident=result.ids[t + 1], fill=fill,
                          break_after="\n" in texts[t + 1]))
    return chips


WINDOWED_MAX_TOKENS = 128   # the stride sweep's text cap: ~250 short passes at most, a few seconds


def stride_sweep_job(text: str, window: int):
    """The sweep of strides for this text and window, as a job: running, stored, or started now."""
    from engine.runtime.jobs import job_registry
    from engine.decoding.loss import stride_sweep

    model = lm()
    ids = list(ids_of(text))[:WINDOWED_MAX_TOKENS]

    def work(ctx):
        return stride_sweep(model, ids, window, should_stop=ctx.should_stop,
                            on_step=lambda done, total: ctx.report(done / total, f"{done} of {total} passes"))

    return job_registry().submit(("stride sweep", tuple(ids), window), work, title="stride sweep", budget_s=60)
