"""Figures the prose states about this app's model are checked against the model itself."""
from engine.decoding.generation import next_token_distribution
from engine.tokens.offsets import token_ids, tokenize


def test_next_token_quiz_figure_for_paris(lm):
    top = next_token_distribution(lm, "The capital of France is").top(lm, 1)[0]
    assert top.text == " Paris" and round(top.probability, 2) == 0.77  # next-token.md quiz: "about 0.77"


def test_tokenization_prose_splits(lm):
    assert token_ids(lm, " strawberry") == [35199]                      # tokenization.md
    assert [t.text for t in tokenize(lm, "strawberry")] == ["st", "raw", "berry"]
    assert len(token_ids(lm, "Das Wetter ist heute schön.")) == 10
    assert len(token_ids(lm, "The quick brown fox jumps over the lazy dog.")) == 10
    assert lm.tokenizer.convert_ids_to_tokens([1, 2]) == ["<|im_start|>", "<|im_end|>"]


def test_parameter_figures(lm):
    assert lm.card.parameters == 134_515_008
    assert lm.model.model.embed_tokens.weight.numel() == 28_311_552  # token-embeddings.md, next-token.md
