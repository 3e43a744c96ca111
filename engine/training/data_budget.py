"""How much text a model was trained on for its size: tokens per parameter.

Published figures (typed in, with their sources; they cannot be measured here):
- GPT-3: 175 B parameters, 300 B training tokens (Brown et al. 2020, "Language Models are Few-Shot Learners").
- Chinchilla: 70 B parameters, 1.4 T tokens (Hoffmann et al. 2022, "Training Compute-Optimal Large Language
  Models"), about 20 tokens per parameter, the ratio that paper's fits make compute-optimal.
- SmolLM2-135M: about 2 T tokens (its model card). Its parameter count is not typed in: the page reads it from
  the live model.
"""
from __future__ import annotations

from dataclasses import dataclass

CHINCHILLA_TOKENS_PER_PARAMETER = 20
SMOLLM2_TRAINING_TOKENS = 2e12   # "trained on 2 trillion tokens" (SmolLM2-135M model card)


@dataclass(frozen=True)
class TrainedModel:
    name: str
    parameters: float
    tokens: float
    source: str

    @property
    def tokens_per_parameter(self) -> float:
        return self.tokens / self.parameters


PUBLISHED = (
    TrainedModel("GPT-3", 175e9, 300e9, "Brown et al. 2020"),
    TrainedModel("Chinchilla", 70e9, 1.4e12, "Hoffmann et al. 2022"),
)


def smollm2(parameters: int) -> TrainedModel:
    return TrainedModel("SmolLM2-135M", float(parameters), SMOLLM2_TRAINING_TOKENS, "SmolLM2 model card")


def chinchilla_tokens(parameters: float) -> float:
    """The rule of thumb from Hoffmann et al.: about 20 training tokens per parameter."""
    return CHINCHILLA_TOKENS_PER_PARAMETER * parameters


def compute_flops(parameters: float, tokens: float) -> float:
    """Training compute, C ~ 6 N D floating-point operations (forward 2 N D, backward 4 N D per token)."""
    return 6.0 * parameters * tokens
