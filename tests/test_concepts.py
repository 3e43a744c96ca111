"""The catalogue is complete and every concept file is valid; the loader rejects broken files."""
import shutil
from pathlib import Path

import pytest

from concepts.catalogue import ConceptError, HERE, load_catalogue, page_file

GOOD = """+++
title = "What is an LLM: next-token prediction"
summary = "s"
related = ["tokenization"]

[[quiz]]
question = "q"
options = ["a", "b"]
answer = 1
why = "w"
+++

## Intuition
i

## How it works
h

## In the wild
w
"""


def test_catalogue_has_66_concepts_in_10_sections():
    catalogue = load_catalogue()
    assert len(catalogue.sections) == 10
    assert len(catalogue.concepts) == 66
    assert len({c.slug for c in catalogue.concepts}) == 66


def test_every_page_has_valid_prose_and_every_live_concept_has_a_page():
    catalogue = load_catalogue()
    for c in catalogue.live:
        assert c.summary and c.quiz and len(c.related) >= 1
        assert all(c.section_text(h) for h in ("Intuition", "How it works", "In the wild"))
    pages = {p.stem for p in page_file("x").parent.glob("*.py") if p.stem != "__init__"}
    assert pages == {c.page_name for c in catalogue.live}
    assert "next_token" in pages


@pytest.mark.parametrize("broken, message", [
    (GOOD.replace('summary = "s"\n', ""), "missing field 'summary'"),
    (GOOD.replace('related = ["tokenization"]', 'related = ["no-such-page"]'), "unknown related"),
    (GOOD.replace("answer = 1", "answer = 2"), "not an index"),
    (GOOD.replace("## In the wild\nw\n", ""), "In the wild"),
    (GOOD.replace("+++\ntitle", "title", 1), "front matter"),
])
def test_loader_rejects_broken_concept_files(tmp_path: Path, broken, message):
    shutil.copy(HERE / "catalogue.toml", tmp_path / "catalogue.toml")
    (tmp_path / "next-token.md").write_text(GOOD)
    load_catalogue.cache_clear()
    assert load_catalogue(tmp_path).get("next-token").quiz[0].answer == 1
    (tmp_path / "next-token.md").write_text(broken)
    load_catalogue.cache_clear()
    with pytest.raises(ConceptError, match=message):
        load_catalogue(tmp_path)
    load_catalogue.cache_clear()
