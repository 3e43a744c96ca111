"""The README's list of pages, written from the catalogue so it cannot fall out of date.

`python -m concepts.page_list` rewrites the block between the README's page-list markers;
tests/test_readme.py fails when the README's block differs from what the catalogue gives.
"""
from __future__ import annotations

from pathlib import Path

from concepts.catalogue import Catalogue, load_catalogue

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- page list: written by `python -m concepts.page_list` -->", "<!-- end of page list -->"


def page_list(catalogue: Catalogue) -> str:
    """One line per section: its concepts in reading order, each live one linked to its prose (the page itself
    is served at /<slug>); a concept not yet live is named without a link and marked."""
    live, total = len(catalogue.live), len(catalogue.concepts)
    lines = [f"{live} of {total} concepts are live" + (" (all of them)." if live == total else
                                                       "; the others are marked *(planned)*.")]
    for section in catalogue.sections:
        names = [f"[{c.title}](concepts/{c.slug}.md)" if c.live else f"{c.title} *(planned)*" for c in section.concepts]
        lines.append(f"- **{section.number}. {section.title}**: " + " · ".join(names))
    return "\n".join(lines)


def readme_block(readme_text: str) -> str:
    """The text between the markers (empty if they are missing)."""
    if START not in readme_text or END not in readme_text:
        return ""
    return readme_text.split(START, 1)[1].split(END, 1)[0].strip()


def write_readme(path: Path = README) -> None:
    text = path.read_text()
    if START not in text:
        raise SystemExit(f"{path} has no page-list marker")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    path.write_text(f"{before}{START}\n{page_list(load_catalogue())}\n{END}{after}")


if __name__ == "__main__":
    write_readme()
