"""The presets in assets/samples.toml: every table a page loads exists, parses and holds usable text."""
import pytest

from engine.inside.embeddings import parse_groups
from ui import samples


@pytest.mark.parametrize("table", ["tokenizer_texts", "word_groups"])
def test_each_table_has_named_non_empty_samples(table):
    loaded = samples.load(table)
    assert len(loaded) >= 3
    assert all(name.strip() and text.strip() for name, text in loaded.items())


def test_the_vocabulary_samples_keep_their_exact_characters():
    texts = samples.load("tokenizer_texts")
    assert next(iter(texts)) == "English prose"  # the page's default, which its tests compare against
    assert "\u200d" in texts["Emoji"]  # the family emoji is a zero-width-joiner sequence
    assert texts["Python code"].startswith("def mean(") and '"""' in texts["Python code"]


def test_every_word_group_preset_parses_into_named_groups():
    for name, text in samples.load("word_groups").items():
        parsed = parse_groups(text)
        assert len(parsed.groups) >= 2 and not parsed.notes, (name, parsed.notes)
        assert all(group.name and len(group.words) >= 4 for group in parsed.groups), name


def test_a_missing_table_is_a_clear_error():
    with pytest.raises(KeyError):
        samples.load("no_such_table")
