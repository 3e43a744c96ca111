"""Read and validate the concept files.

`catalogue.toml` lists every concept of the handbook in reading order. `<slug>.md` holds a concept's
prose: TOML front matter between `+++` lines, then the sections `## Intuition`, `## How it works`
and `## In the wild`. A concept is live when its prose and its page (`app_pages/<slug>.py` with
underscores) both exist.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGES = HERE.parent / "app_pages"
PROSE_SECTIONS = ("Intuition", "How it works", "In the wild")


class ConceptError(ValueError):
    """A concept file is missing something or names something that does not exist."""


@dataclass(frozen=True)
class QuizQuestion:
    question: str
    options: tuple[str, ...]
    answer: int
    why: str


@dataclass(frozen=True)
class Concept:
    slug: str
    title: str
    section: str
    order: int
    summary: str = ""
    related: tuple[str, ...] = ()
    quiz: tuple[QuizQuestion, ...] = ()
    prose: tuple[tuple[str, str], ...] = ()   # (heading, markdown) in PROSE_SECTIONS order
    live: bool = False

    def section_text(self, heading: str) -> str:
        return dict(self.prose).get(heading, "")

    @property
    def page_name(self) -> str:
        return self.slug.replace("-", "_")


@dataclass(frozen=True)
class Section:
    number: int
    title: str
    concepts: tuple[Concept, ...]


@dataclass(frozen=True)
class Catalogue:
    sections: tuple[Section, ...]

    @property
    def concepts(self) -> tuple[Concept, ...]:
        return tuple(c for s in self.sections for c in s.concepts)

    def get(self, slug: str) -> Concept:
        for concept in self.concepts:
            if concept.slug == slug:
                return concept
        raise ConceptError(f"no concept with slug {slug!r}")

    @property
    def live(self) -> tuple[Concept, ...]:
        return tuple(c for c in self.concepts if c.live)


def page_file(slug: str) -> Path:
    return PAGES / f"{slug.replace('-', '_')}.py"


def _split_front_matter(text: str, where: str) -> tuple[dict, str]:
    match = re.match(r"\A\+\+\+\s*\n(.*?)\n\+\+\+\s*\n(.*)\Z", text, re.S)
    if not match:
        raise ConceptError(f"{where}: the file must start with TOML front matter between '+++' lines")
    try:
        return tomllib.loads(match.group(1)), match.group(2)
    except tomllib.TOMLDecodeError as err:
        raise ConceptError(f"{where}: front matter is not valid TOML ({err})") from err


def _split_prose(body: str, where: str) -> tuple[tuple[str, str], ...]:
    parts = re.split(r"^## +(.+?)\s*$", body, flags=re.M)
    found = {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    missing = [h for h in PROSE_SECTIONS if not found.get(h)]
    if missing:
        raise ConceptError(f"{where}: missing or empty section(s): {', '.join(missing)}")
    return tuple((h, found[h]) for h in PROSE_SECTIONS)


def _quiz(raw: object, where: str) -> tuple[QuizQuestion, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConceptError(f"{where}: 'quiz' must be a list of at least one question")
    questions = []
    for n, q in enumerate(raw, 1):
        try:
            question, options, answer, why = q["question"], q["options"], q["answer"], q["why"]
        except (KeyError, TypeError) as err:
            raise ConceptError(f"{where}: quiz question {n} lacks {err}") from err
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
            raise ConceptError(f"{where}: quiz question {n} needs at least two text options")
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
            raise ConceptError(f"{where}: quiz question {n} has answer {answer!r}, not an index into its options")
        questions.append(QuizQuestion(str(question), tuple(options), answer, str(why)))
    return tuple(questions)


def load_concept(path: Path, known_slugs: set[str], entry: dict) -> Concept:
    where = path.name
    meta, body = _split_front_matter(path.read_text(encoding="utf-8"), where)
    for name in ("title", "summary", "related", "quiz"):
        if name not in meta or meta[name] in ("", [], None):
            raise ConceptError(f"{where}: missing field '{name}'")
    related = meta["related"]
    if not isinstance(related, list):
        raise ConceptError(f"{where}: 'related' must be a list of slugs")
    unknown = [s for s in related if s not in known_slugs or s == entry["slug"]]
    if unknown:
        raise ConceptError(f"{where}: unknown related slug(s): {', '.join(map(str, unknown))}")
    if meta["title"] != entry["title"]:
        raise ConceptError(f"{where}: title {meta['title']!r} differs from catalogue.toml {entry['title']!r}")
    return Concept(slug=entry["slug"], title=entry["title"], section=entry["section"], order=entry["order"],
                   summary=str(meta["summary"]), related=tuple(related), quiz=_quiz(meta["quiz"], where),
                   prose=_split_prose(body, where), live=page_file(entry["slug"]).is_file())


@lru_cache(maxsize=4)
def load_catalogue(folder: Path = HERE) -> Catalogue:
    data = tomllib.loads((folder / "catalogue.toml").read_text(encoding="utf-8"))
    entries = data["concepts"]
    known = {e["slug"] for e in entries}
    if len(known) != len(entries):
        raise ConceptError("catalogue.toml lists a slug twice")
    sections = []
    for sec in data["sections"]:
        members = []
        for entry in (e for e in entries if e["section"] == sec["title"]):
            prose_file = folder / f"{entry['slug']}.md"
            if prose_file.is_file():
                members.append(load_concept(prose_file, known, entry))
            else:
                members.append(Concept(slug=entry["slug"], title=entry["title"], section=entry["section"],
                                       order=entry["order"]))
        sections.append(Section(sec["number"], sec["title"], tuple(sorted(members, key=lambda c: c.order))))
    return Catalogue(tuple(sections))
