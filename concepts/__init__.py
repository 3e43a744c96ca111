"""The concept catalogue: the map of all 66 concepts, and the prose of the ones that are live."""
from concepts.catalogue import (Catalogue, Concept, ConceptError, QuizQuestion, Section, load_catalogue,
                                load_concept, page_file)

__all__ = ["Catalogue", "Concept", "ConceptError", "QuizQuestion", "Section", "load_catalogue",
           "load_concept", "page_file"]
