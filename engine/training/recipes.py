"""Published training hyperparameters of well-known models, typed in with their sources (they cannot be measured
here). Only values read in the papers themselves are listed:

- GPT-3 (Brown et al. 2020, "Language Models are Few-Shot Learners"): Table 2.1 gives each size's peak learning
  rate and batch size in tokens (GPT-3 Small, 125M: 6.0e-4 and 0.5M; GPT-3 175B: 0.6e-4 and 3.2M); appendix B
  gives the rest for every size: Adam with beta1 0.9, beta2 0.95, eps 1e-8; the gradient's global norm clipped
  at 1.0; a linear warmup over the first 375 million tokens; cosine decay to 10% of the peak over 260 billion
  tokens; weight decay 0.1.
- LLaMA (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"), section 2.3 and Table 2:
  AdamW with beta1 0.9, beta2 0.95; cosine schedule ending at 10% of the peak; weight decay 0.1; clipping 1.0;
  2,000 warmup steps; batch 4M tokens for every size; peak rate 3.0e-4 for 7B and 1.5e-4 for 65B.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    model: str
    parameters: str
    peak_lr: float
    batch_tokens: str
    warmup: str
    schedule: str
    betas: tuple[float, float]
    weight_decay: float
    clip_norm: float
    source: str


_GPT3 = dict(warmup="375M tokens (linear)", schedule="cosine to 10% of peak over 260B tokens", betas=(0.9, 0.95),
             weight_decay=0.1, clip_norm=1.0)
_LLAMA = dict(batch_tokens="4M", warmup="2,000 steps", schedule="cosine to 10% of peak", betas=(0.9, 0.95),
              weight_decay=0.1, clip_norm=1.0)

PUBLISHED_RECIPES = (
    Recipe("GPT-3 Small", "125M", 6.0e-4, "0.5M", **_GPT3,
           source="Brown et al. 2020, Table 2.1 and appendix B"),
    Recipe("GPT-3", "175B", 0.6e-4, "3.2M", **_GPT3, source="Brown et al. 2020, Table 2.1 and appendix B"),
    Recipe("LLaMA-7B", "6.7B", 3.0e-4, **_LLAMA, source="Touvron et al. 2023, section 2.3 and Table 2"),
    Recipe("LLaMA-65B", "65.2B", 1.5e-4, **_LLAMA, source="Touvron et al. 2023, section 2.3 and Table 2"),
)
