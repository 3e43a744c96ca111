from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st

from charts.loss import loss_bars
from charts.training import tokens_per_parameter
from engine.tokens.offsets import visible
from engine.training.corpus import CORPUS_TITLE, load_corpus
from engine.training.data_budget import PUBLISHED, chinchilla_tokens, compute_flops, smollm2
from engine.training.lab import RunConfig
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty, whole_number_input
from ui.layout import described_metrics, metric_row
from ui.loss import ids_of, losses, pieces
from ui.text import large_number
from ui.training import baby_parameters, follow_training, show_run, training_job

TEXT_KEY = "text"
DEFAULT_TEXT = "Pretraining needs no labels: every word of a text is the answer to the words that came before it."
PRESETS = {"Proverb": "Slow and steady wins the race, and a bird in the hand is worth two in the bush.",
           "Code": "for i in range(10):\n    print(i * i)",
           "Facts": "Paris is the capital of France. Berlin is the capital of Germany. Rome is the capital of Italy."}
STEPS = list(range(50, 1001, 50))
LEARNING_RATES = ["0.0003", "0.001", "0.003", "0.01", "0.03"]
BATCHES = [4, 8, 16, 32, 64]
DEFAULT = RunConfig()


def use_text(text: str) -> None:
    st.session_state[TEXT_KEY] = text


with concept_page("pretraining"):
    st.subheader("1 · Any text is its own answer key", anchor=False)
    text = prompt_input(TEXT_KEY, DEFAULT_TEXT, "Your text", height=90, max_tokens=128)
    with st.container(horizontal=True, gap="small"):
        for name, preset in PRESETS.items():
            st.button(name, key=f"preset-{name.lower()}", on_click=use_text, args=(preset,), width="content")
    stop_if_empty(text, "Type a sentence above (or pick a preset) to turn it into next-token training examples.")
    ids = ids_of(text)
    if len(ids) < 2:
        st.info("This text is a single token: it has no next token to learn. Add a few words.", icon=":material/edit:")
        st.stop()
    result = losses(text)
    texts = pieces(ids)
    a, b, c, d = metric_row(4)
    a.metric("Training examples in your text", f"{len(ids) - 1:,}", f"from {len(ids):,} tokens", delta_color="off",
             delta_arrow="off", help="Every position is one example: the tokens so far are the input, the next token "
                                     "is the label. The first token has nothing before it.")
    b.metric("SmolLM2's loss on it", f"{result.mean_nll:.3f} nats", f"perplexity {result.perplexity:,.1f}",
             delta_color="off", delta_arrow="off", help="The mean of -ln p(target) over the examples: the number "
                                                        "pretraining pushed down, measured live.")
    c.metric("A model that knows nothing", f"{result.uniform_nll:.2f} nats",
             f"ln {result.vocab_size:,}: a uniform guess", delta_color="off", delta_arrow="off",
             help="Before pretraining, a model's guesses are close to uniform over its vocabulary.")
    d.metric("Labels written by hand", "0", "the text labels itself", delta_color="off", delta_arrow="off")
    show_chart(figure(loss_bars, [visible(t) for t in texts[1:]], result.nll.tolist(), "nats", result.uniform_nll,
                      result.mean_nll, None, title="SmolLM2's loss on each target token of your text"),
               partial(pd.DataFrame, {"position": range(1, len(ids)), "target": texts[1:], "loss_nats": result.nll}),
               name="pretraining-target-losses", key="target_losses")
    pairs = pd.DataFrame({"position": range(1, len(ids)), "input (last token seen)": [visible(t) for t in texts[:-1]],
                          "target (next token)": [visible(t) for t in texts[1:]], "target id": list(ids[1:]),
                          "p(target)": result.probs, "loss (nats)": result.nll})
    st.dataframe(pairs, hide_index=True, width="stretch", height=min(320, 38 + 35 * len(pairs)), column_config={
        "p(target)": st.column_config.NumberColumn(format="%.4f"),
        "loss (nats)": st.column_config.NumberColumn(format="%.3f")}, key="pairs")
    st.caption("The target column is the input column moved up by one row: the same token ids, shifted. In row t "
               "the model sees every input up to t (the causal mask hides the rest) and is scored on the target. "
               "One forward pass scores all rows at once, which is why pretraining on trillions of tokens is "
               "possible.")

    st.subheader("2 · Pretrain a baby GPT from scratch, here", anchor=False)
    corpus = load_corpus()
    params = baby_parameters(DEFAULT.shape)
    st.markdown(f"A decoder with SmolLM2's block design (RMSNorm, rotary positions, grouped-query attention, SwiGLU, "
                f"tied embeddings) but only {DEFAULT.shape.layers} blocks of {DEFAULT.shape.d_model} dimensions: "
                f"**{params:,} parameters**, against SmolLM2's {lm().card.parameters:,}. Its tokens are the "
                f"**{corpus.vocab_size} characters** of its corpus, {len(corpus.text):,} characters of "
                f"{CORPUS_TITLE}; the last tenth is held out for validation. It starts from random weights, "
                "so its first loss is that of a uniform guess.")
    (c1, c2), (c3, c4) = st.columns([1, 2], vertical_alignment="bottom"), st.columns(2, vertical_alignment="bottom")
    seed = whole_number_input("Seed", 0, 1_000_000, 0, "seed", container=c1,
                              help="Fixes the initial weights, the batches and the samples: the same seed gives "
                                   "the same run.")
    steps = c2.select_slider("Optimizer steps", STEPS, value=DEFAULT.steps, key="steps", bind="query-params",
                             help="Each step reads a batch of random windows of the training text and moves every "
                                  "weight once.")
    lr = c3.select_slider("Peak learning rate", LEARNING_RATES, value="0.003", key="lr", bind="query-params",
                          help="AdamW, with 20 warmup steps and a cosine decay to a tenth of the peak.")
    batch = c4.select_slider("Batch (windows)", BATCHES, value=DEFAULT.batch_size, key="batch", bind="query-params",
                             help=f"Windows of {DEFAULT.shape.context} characters per step.")
    run_it = st.toggle("Train it live", value=True, key="train", bind="query-params",
                       help="The run takes a few seconds to a minute on this shared CPU; its result is kept, so a "
                            "shared link shows it at once.")
    config = replace(DEFAULT, seed=seed, steps=int(steps if steps in STEPS else DEFAULT.steps),
                     batch_size=int(batch if batch in BATCHES else DEFAULT.batch_size),
                     schedule=replace(DEFAULT.schedule, peak_lr=float(lr if lr in LEARNING_RATES else "0.003")))
    run = None
    if not run_it:
        st.info("Switch on **Train it live** to train the baby GPT from random weights with these settings.",
                icon=":material/model_training:")
    else:
        run = follow_training(training_job(config), corpus.uniform_loss, chart_key="pretrain_curve")
    if run is not None:
        show_run(run, chart_key="pretrain_curve", title=f"Baby GPT pretraining on the fables, seed {config.seed}")
        epochs = run.tokens_seen / run.train_chars
        st.caption(f"It read {run.tokens_seen:,} characters in {len(run.steps):,} steps: about {epochs:,.0f} passes "
                   f"over its {run.train_chars:,} training characters. Real pretraining sees most of its text about "
                   "once, so its train and validation losses stay together; a small corpus read many times opens a "
                   "gap between them (the model starts to memorise).")

    st.subheader("3 · How much text for how many parameters", anchor=False)
    live = lm().card.parameters
    baby_tokens = config.steps * config.batch_size * config.shape.context
    c1, c2 = st.columns(2)
    mine_params = whole_number_input("Your model: parameters (millions)", 1, 10_000_000, 7_000, "params", container=c1,
                                     help="7,000 million = a 7B model.")
    mine_tokens = whole_number_input("Training tokens (billions)", 1, 1_000_000, 2_000, "tokens", container=c2,
                                     help="2,000 billion = 2 trillion tokens.")
    n, tokens = mine_params * 1e6, mine_tokens * 1e9
    described_metrics(
        ("Tokens per parameter", large_number(tokens / n), f"Chinchilla's rule: about {chinchilla_tokens(1):.0f}"),
        ("Compute-optimal tokens", f"{chinchilla_tokens(n) / 1e9:,.0f} B", "20 per parameter (Hoffmann et al. 2022)",
         "The training length that gives the lowest loss for this model's training compute, by Chinchilla's fits."),
        ("Training compute (FLOPs)", large_number(compute_flops(n, tokens)), "C ≈ 6 × N × D",
         "About 2 N D operations for the forward passes and 4 N D for the backward passes."))
    models = [*PUBLISHED, smollm2(live)]
    names = [m.name for m in models] + ["baby GPT (this page)", "your model"]
    sizes = [m.parameters for m in models] + [params, n]
    data = [m.tokens for m in models] + [baby_tokens, tokens]
    show_chart(figure(tokens_per_parameter, names, sizes, data, [False] * len(models) + [True, True],
                      title="Parameters against training tokens; diagonals are tokens per parameter"),
               partial(pd.DataFrame, {"model": names, "parameters": sizes, "training_tokens": data,
                                      "tokens_per_parameter": [t / p for t, p in zip(data, sizes)],
                                      "source": [m.source for m in models] + ["this page's run settings",
                                                                              "your numbers"]}),
               name="tokens-per-parameter", key="budget")
    st.caption(f"SmolLM2-135M's {live:,} parameters are counted from the loaded weights; its ~2 trillion training "
               f"tokens come from its model card: about {2e12 / live:,.0f} tokens per parameter, far past "
               "Chinchilla's 20, because a model that will answer millions of queries is cheaper to run small and "
               "over-trained. GPT-3 (175B, 300B tokens) had under 2 per parameter. The baby GPT's point counts the "
               f"characters it reads in {config.steps:,} steps of {config.batch_size} windows.")
