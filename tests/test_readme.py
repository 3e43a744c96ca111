"""The README lists every concept page as the catalogue has it (live pages linked, the others marked)."""
from concepts import load_catalogue
from concepts.page_list import README, page_list, readme_block


def test_readme_page_list_matches_the_catalogue():
    assert readme_block(README.read_text()) == page_list(load_catalogue()), \
        "README's page list is out of date: run `python -m concepts.page_list`"


def test_page_list_links_live_pages_and_marks_the_rest():
    catalogue = load_catalogue()
    text = page_list(catalogue)
    for concept in catalogue.concepts:
        if concept.live:
            assert f"[{concept.title}](concepts/{concept.slug}.md)" in text
        else:
            assert f"{concept.title} *(planned)*" in text
