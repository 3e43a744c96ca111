"""The training lab: a baby GPT trained from scratch on the page, and real gradient steps on a private part of
SmolLM2.

- `corpus`: the bundled public-domain text (Aesop's fables retold, assets/fables.txt), its character
  vocabulary, the train/validation split and the batches.
- `schedules`: learning-rate schedules (constant, warmup + cosine, warmup-stable-decay, exponential ramp), each
  a plain formula.
- `baby_gpt`: a two-block LLaMA decoder (the block design of SmolLM2: RMSNorm, RoPE, grouped-query attention,
  SwiGLU, tied embeddings) built with transformers' own LlamaForCausalLM, initialised and dropped out from
  per-run generators so that a seed fixes everything.
- `lab`: `train(RunConfig(...))` runs the optimizer loop and reports every step; optimizers, schedule, batch
  size, clipping, weight decay and dropout are arguments, so every training page reuses it.
- `smollm_step`: one gradient step on a private copy of SmolLM2's last block, per-layer gradient norms through
  a gradient-enabled view of the shared weights, and a loss-surface slice around the real weights.

Nothing here touches the shared model's weights, and nothing imports Streamlit.
"""
