from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.scaling import compute_frontier, iso_compute_loss
from engine.training.data_budget import PUBLISHED, smollm2
from engine.training.scaling import LAWS, closed_form_optimum, compute_of, frontier, iso_compute_line, \
    numerical_optimum
from ui import concept_page, lm
from ui.charts import figure, show_chart
from ui.inputs import whole_number_input
from ui.layout import described_metrics, metric_row
from ui.text import large_number

# Training budgets in FLOPs, about 1-2-3-6 per decade; 6e23 is close to Chinchilla's own 6 x 70e9 x 1.4e12.
BUDGETS = [f"{m}e{e}" for e in range(18, 26) for m in (1, 2, 3, 6)] + ["1e26"]
DEFAULT_BUDGET = "6e23"
SIZES = np.logspace(6, 13, 281)            # model sizes drawn along the budget line: 1 M to 10 T parameters
FRONTIER_BUDGETS = np.logspace(17, 27, 81)
SHORT = {law.name: law.name.split(" 20")[0] for law in LAWS}   # "Hoffmann et al.", "Epoch AI refit"


def flops(x: float) -> str:
    return f"{large_number(x)} FLOPs"


def count(x: float) -> str:
    """Parameters and tokens as people write them: 135 M, 70.0 B, 1.40 T."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if x >= size:
            v = x / size
            return f"{v:,.{2 if v < 10 else 1 if v < 100 else 0}f} {unit}"
    return f"{x:,.0f}"


with concept_page("scaling-laws"):
    st.subheader("1 · Split a compute budget between size and data", anchor=False)
    st.markdown("Training compute is about **C = 6ND** FLOPs. Fix C, and every model size N has its token count "
                "D = C / 6N: a bigger model reads fewer tokens. Both published fits of "
                "L(N, D) = E + A/N^α + B/D^β predict the loss along that line; its lowest point is the "
                "*compute-optimal* model for the budget.")
    choice = st.select_slider("Training compute budget C (FLOPs)", BUDGETS, value=DEFAULT_BUDGET, key="budget",
                              bind="query-params", help="1e21 means 10²¹ floating-point operations. 6e23 is about what Chinchilla "
                                                        "(70 B parameters, 1.4 T tokens) used.")
    budget = float(choice if choice in BUDGETS else DEFAULT_BUDGET)
    optima = [closed_form_optimum(law, budget) for law in LAWS]
    searched = [numerical_optimum(law, budget) for law in LAWS]
    for law, best, found in zip(LAWS, optima, searched):
        st.markdown(f"**{law.name}** (α = {law.alpha:g}, β = {law.beta:g})")
        a, b, c, d = metric_row(4)
        a.metric("Best size N", count(best.parameters), f"search: {count(found.parameters)}", delta_color="off",
                 delta_arrow="off", help="The value is the closed form (Hoffmann et al. eq. 4); the note is a "
                                         "numerical search along D = C/6N that uses no formula. They agree.")
        b.metric("Its tokens D", count(best.tokens),
                 f"6ND = {large_number(compute_of(best.parameters, best.tokens))}", delta_color="off",
                 delta_arrow="off", help="D = C / 6N, so 6 N D gives back the budget exactly.")
        c.metric("Tokens per parameter", f"{best.tokens_per_parameter:,.1f}", "rule of thumb: about 20",
                 delta_color="off", delta_arrow="off")
        d.metric("Predicted loss", f"{best.loss:.3f} nats", f"floor E = {law.E:g}", delta_color="off",
                 delta_arrow="off", help="Nats per token on the corpus the law was fitted to (DeepMind's "
                                         "MassiveText), not on any other text.")
    lines = [iso_compute_line(law, budget, SIZES) for law in LAWS]
    names = [law.name for law in LAWS]
    show_chart(figure(iso_compute_loss, SIZES, [loss for _, loss in lines], names,
                      [o.parameters for o in optima], [o.loss for o in optima],
                      title=f"Predicted loss of every split of {budget:.0e} FLOPs".replace("e+", "e")),
               partial(pd.DataFrame, {"parameters": SIZES, "tokens": lines[0][0],
                                      **{f"loss_{SHORT[n].replace(' ', '_').replace('.', '')}": loss
                                         for n, (_, loss) in zip(names, lines)}}),
               name="scaling-iso-compute", key="iso")
    hoff, epoch = optima
    st.caption(f"The same data, two fits. With the constants as printed in Hoffmann et al. (rounded), the best "
               f"split of this budget reads {hoff.tokens_per_parameter:,.0f} tokens per parameter; the Epoch AI "
               f"refit of the same form reads {epoch.tokens_per_parameter:,.0f}, close to the paper's own rule of "
               "about 20 from its other two methods. A small change in α and β moves the optimum a lot, because "
               "the valley is flat: a model 2x off the best size loses little.")

    st.subheader("2 · The frontier, and where real models sit", anchor=False)
    live = lm().card.parameters
    models = [*PUBLISHED, smollm2(live)]
    compute = [compute_of(m.parameters, m.tokens) for m in models]
    fronts = [frontier(law, FRONTIER_BUDGETS)[0] for law in LAWS]
    show_chart(figure(compute_frontier, FRONTIER_BUDGETS, fronts, names, [m.name for m in models], compute,
                      [m.parameters for m in models], [m.name.startswith("SmolLM2") for m in models], budget,
                      title="Compute-optimal model size for each budget, and real models at their own compute"),
               partial(pd.DataFrame, {"model": [m.name for m in models], "parameters": [m.parameters for m in models],
                                      "training_tokens": [m.tokens for m in models], "compute_6ND_flops": compute,
                                      **{f"optimal_N_{SHORT[n].replace(' ', '_').replace('.', '')}":
                                         [closed_form_optimum(law, c).parameters for c in compute]
                                         for n, law in zip(names, LAWS)},
                                      "source": [m.source for m in models]}),
               name="scaling-frontier", key="frontier")
    smol = models[-1]
    smol_best = closed_form_optimum(LAWS[1], compute[-1])
    described_metrics(
        ("SmolLM2 parameters", f"{live:,}", "counted from the loaded weights"),
        ("Its training compute", flops(compute[-1]), f"6 × N × {count(smol.tokens)} tokens (model card)"),
        ("Compute-optimal size for that", f"{count(smol_best.parameters)}",
         f"{smol_best.parameters / live:,.1f}× bigger (Epoch refit)",
         "The size the Epoch AI refit predicts would reach the lowest loss for the same training compute."),
        ("Tokens per parameter", f"{smol.tokens_per_parameter:,.0f}", "about 20 is compute-optimal"))
    st.caption("A point below the lines is a model smaller than compute-optimal for its budget, trained on more "
               "tokens (SmolLM2, LLaMA-style models); above them, a large model on few tokens (GPT-3). Small "
               "over-trained models cost more to train for their loss but are cheap to serve, which is why most "
               "open models sit far below the frontier.")

    st.subheader("3 · Your model under both laws", anchor=False)
    c1, c2 = st.columns(2)
    millions = whole_number_input("Parameters (millions)", 1, 10_000_000, 7_000, "params", container=c1,
                                  help="7,000 million = a 7 B model.")
    billions = whole_number_input("Training tokens (billions)", 1, 1_000_000, 2_000, "tokens", container=c2,
                                  help="2,000 billion = 2 trillion tokens.")
    n, d = millions * 1e6, billions * 1e9
    c = compute_of(n, d)
    rows = []
    for slot, law in zip(metric_row(2), LAWS):
        best = closed_form_optimum(law, c)
        loss = float(law.loss(n, d))
        rows.append({"law": law.name, "predicted loss": loss, "E (floor)": law.E, "A/N^α (finite model)":
                     law.A / n ** law.alpha, "B/D^β (finite data)": law.B / d ** law.beta,
                     "best loss for the same compute": best.loss, "best N for it": best.parameters})
        slot.metric(f"Your model, {SHORT[law.name]}", f"{loss:.3f} nats", f"{loss - best.loss:+.3f} vs best split",
                    delta_color="inverse", help=f"Predicted loss, and its gap to the compute-optimal model for the "
                                                f"same training compute ({c:.2e} FLOPs).".replace("e+", "e"))
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="terms", column_config={
        k: st.column_config.NumberColumn(format="%.3f") for k in list(rows[0])[1:-1]} | {
        "best N for it": st.column_config.NumberColumn(format="%.3e")})
    st.caption("The three terms add up to the loss. A model's term shrinks only as N grows, a data term only as D "
               "grows; E never moves. These fits were made on models of 70 M to 16 B parameters trained on up to "
               "500 B tokens: far outside that range they are extrapolations.")
