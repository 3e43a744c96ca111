"""Streamlit pieces every page shares."""
from ui.frame import concept_page
from ui.inputs import prompt_input
from ui.models import encoder, lm

__all__ = ["concept_page", "encoder", "lm", "prompt_input"]
