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
- `optimizer_race`: SGD, momentum, Adam and AdamW walked on 2-D surfaces with the lab's own optimizers, and the
  baby GPT raced with each from the same weights on the same batches.
- `scaling`: the Hoffmann and Epoch scaling laws, and the compute-optimal split of a FLOP budget (C = 6ND).
- `dropout`: seeded dropout masks on SmolLM2's FFN through the traced forward, pass by pass.
- `top_tuning`: the top blocks of SmolLM2 trained cheaply on cached inputs, as a peft LoRA adapter or in full.
- `sft`: chat-template labels with the prompt masked (-100), and a few SFT steps on a private last block.

Nothing here touches the shared model's weights, and nothing imports Streamlit.
"""
