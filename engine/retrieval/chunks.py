"""The handbook's concept files as retrieval chunks, and their MiniLM vectors kept on disk.

Why chunks: a sentence encoder gives one vector per text, and a whole page averages many topics into one
blurred direction; a question is about one passage. Each file is cut by section (a chunk never spans two
sections, so it can say where it came from), then sentences, list items and display formulas are packed into
chunks of at most `size` words; a single unit longer than that is cut by words.

Why on disk: embedding every chunk takes the encoder tens of seconds on this CPU, so the vectors are computed
once and written next to the model cache, in a file named by the chunk size and a hash of every concept file's
text (and of this chunker's version). When a concept file changes, the hash changes and the index is rebuilt;
chunks whose text is unchanged reuse their vectors from the previous file, so only new text is encoded.
Files are written to a temporary name and renamed, so an interrupted build never leaves a broken index.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.model.model_cache import cache_root

CHUNK_SIZES = (40, 80, 160)   # words; 160 words stay within MiniLM's 256-word-piece window for most prose
DEFAULT_CHUNK_SIZE = 80
CHUNKER_VERSION = "1"         # bump when the chunking rules change: old indexes then no longer match
ENCODER_TAG = "all-MiniLM-L6-v2"
INDEX_FOLDER = "retrieval"
EMBED_BATCH = 16
CONCEPTS_FOLDER = Path(__file__).resolve().parents[2] / "concepts"

_FRONT_MATTER = re.compile(r"\A\+\+\+\s*\n(.*?)\n\+\+\+\s*\n(.*)\Z", re.S)
_HEADING = re.compile(r"^## +(.+?)\s*$", re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[$*\"'])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*]|\d+\.)\s+")

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Chunk:
    slug: str        # the concept file it came from (its page's URL)
    title: str       # the concept's title, from the file's front matter
    section: str     # "Summary", "Intuition", "How it works", "In the wild"
    text: str        # the chunk as shown and as put into a prompt
    words: int

    @property
    def embed_text(self) -> str:
        """What the encoder reads: the title first, so a chunk that never names its topic still carries it."""
        return f"{self.title}: {self.text}"

    @property
    def label(self) -> str:
        return f"{self.title} · {self.section}"


def read_concept_files(folder: Path = CONCEPTS_FOLDER) -> dict[str, str]:
    """Every concept file's text by slug, sorted by slug (the corpus grows as pages land)."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md"))}


def corpus_fingerprint(files: dict[str, str]) -> str:
    """A short hash of every file's name and text, and of the chunker's version: the index's identity."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"chunker {CHUNKER_VERSION}; encoder {ENCODER_TAG}\n".encode())
    for slug in sorted(files):
        digest.update(slug.encode() + b"\0" + files[slug].encode("utf-8") + b"\0")
    return digest.hexdigest()


def _units(section_text: str) -> list[str]:
    """A section's text as the pieces a chunk is packed from: sentences, list items, whole display formulas."""
    units: list[str] = []
    for block in re.split(r"\n\s*\n", section_text.strip()):
        block = block.strip()
        if not block:
            continue
        if block.startswith("$$"):               # a display formula is one unit: cutting it breaks it
            units.append(" ".join(block.split()))
            continue
        lines = block.splitlines()
        if all(_LIST_ITEM.match(line) or not line.strip() or line.startswith("  ") for line in lines) \
                and _LIST_ITEM.match(lines[0]):
            item: list[str] = []
            for line in lines:
                if _LIST_ITEM.match(line) and item:
                    units.append(" ".join(" ".join(item).split()))
                    item = []
                item.append(line.strip())
            if item:
                units.append(" ".join(" ".join(item).split()))
            continue
        paragraph = " ".join(block.split())
        units.extend(s for s in _SENTENCE_END.split(paragraph) if s)
    return units


def _pack(units: list[str], size: int) -> list[str]:
    """Units packed greedily into chunks of at most `size` words; a longer unit is cut into `size`-word pieces."""
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for unit in units:
        words = unit.split()
        if len(words) > size:
            if current:
                chunks.append(" ".join(current))
                current, count = [], 0
            chunks.extend(" ".join(words[i:i + size]) for i in range(0, len(words), size))
            continue
        if count + len(words) > size and current:
            chunks.append(" ".join(current))
            current, count = [], 0
        current.append(unit)
        count += len(words)
    if current:
        chunks.append(" ".join(current))
    return chunks


def chunk_concept(slug: str, text: str, size: int) -> list[Chunk]:
    """One concept file as chunks of at most `size` words: its summary, then each `##` section in order.

    The front matter's quiz is left out: it is the reader's test, not the handbook's explanation.
    """
    match = _FRONT_MATTER.match(text)
    meta, body = ({}, text) if match is None else (_toml(match.group(1)), match.group(2))
    title = str(meta.get("title") or slug)
    sections = [("Summary", str(meta.get("summary") or ""))]
    parts = _HEADING.split(body)
    sections += [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
    return [Chunk(slug=slug, title=title, section=name, text=piece, words=len(piece.split()))
            for name, section_text in sections for piece in _pack(_units(section_text), size)]


def _toml(text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


def chunk_corpus(files: dict[str, str], size: int) -> list[Chunk]:
    return [chunk for slug in sorted(files) for chunk in chunk_concept(slug, files[slug], size)]


# ------------------------------------------------------------------ the embedded index, on disk

@dataclass(frozen=True, eq=False)
class ChunkIndex:
    """The chunks of one chunk size and their unit-length MiniLM vectors (row i belongs to chunk i)."""
    size: int
    fingerprint: str
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray          # [n, 384] float32, unit length, read-only
    build_seconds: float         # encoding time when it was built (0 if every vector was reused)
    encoded: int                 # chunks encoded in that build (the rest were reused from an older index)

    @property
    def key(self) -> str:
        return f"chunks-{self.size}w-{self.fingerprint}"


def index_folder(root: Path | None = None) -> Path:
    return (root or cache_root()) / INDEX_FOLDER


def index_path(size: int, fingerprint: str, root: Path | None = None) -> Path:
    return index_folder(root) / f"chunks-{ENCODER_TAG}-{size}w-{fingerprint}.npz"


def load_chunk_index(size: int, files: dict[str, str] | None = None, root: Path | None = None) -> ChunkIndex | None:
    """The index for this chunk size and the current text, if it was built; else None."""
    files = read_concept_files() if files is None else files
    fingerprint = corpus_fingerprint(files)
    path = index_path(size, fingerprint, root)
    if not path.is_file():
        return None
    try:
        return _read(path, size, fingerprint)
    except (OSError, ValueError, KeyError):   # a damaged file is rebuilt, never shown
        return None


def _read(path: Path, size: int, fingerprint: str) -> ChunkIndex:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
    chunks = tuple(Chunk(**c) for c in meta["chunks"])
    if vectors.shape[0] != len(chunks):
        raise ValueError("index file does not match its chunks")
    vectors.flags.writeable = False
    return ChunkIndex(size=size, fingerprint=fingerprint, chunks=chunks, vectors=vectors,
                      build_seconds=float(meta.get("build_seconds", 0.0)), encoded=int(meta.get("encoded", 0)))


def _reusable_vectors(size: int, root: Path | None) -> dict[str, np.ndarray]:
    """Vectors from older indexes of this chunk size, by the exact text the encoder read."""
    known: dict[str, np.ndarray] = {}
    for path in index_folder(root).glob(f"chunks-{ENCODER_TAG}-{size}w-*.npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                vectors = np.asarray(data["vectors"], dtype=np.float32)
            for chunk, row in zip(meta["chunks"], vectors):
                known[Chunk(**chunk).embed_text] = row
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return known


class BuildStopped(Exception):
    """The reader (or the time budget) stopped a build before every chunk was encoded."""


def build_chunk_index(embed: Callable[[list[str]], np.ndarray], size: int, files: dict[str, str] | None = None,
                      root: Path | None = None, progress: Progress = lambda f, m: None,
                      should_stop: Callable[[], bool] = lambda: False) -> ChunkIndex:
    """Chunk the corpus, encode what no older index holds (`embed`: texts -> unit vectors), write, return.

    Batches are sorted by length so that padding is small; each batch is one encoder call.
    """
    files = read_concept_files() if files is None else files
    fingerprint = corpus_fingerprint(files)
    chunks = chunk_corpus(files, size)
    known = _reusable_vectors(size, root)
    todo = sorted({c.embed_text for c in chunks if c.embed_text not in known}, key=len)
    progress(0.0, f"Encoding {len(todo)} of {len(chunks)} chunks ({len(chunks) - len(todo)} unchanged, reused)")
    started = time.perf_counter()
    for start in range(0, len(todo), EMBED_BATCH):
        if should_stop():
            raise BuildStopped(f"stopped after {start} of {len(todo)} chunks")
        batch = todo[start:start + EMBED_BATCH]
        for text, row in zip(batch, np.asarray(embed(batch), dtype=np.float32)):
            known[text] = row
        done = min(start + EMBED_BATCH, len(todo))
        progress(done / max(len(todo), 1), f"Encoded {done} of {len(todo)} chunks with MiniLM")
    seconds = time.perf_counter() - started
    vectors = np.stack([known[c.embed_text] for c in chunks]).astype(np.float32) if chunks \
        else np.zeros((0, 384), dtype=np.float32)
    _write(index_path(size, fingerprint, root), vectors, chunks, seconds if todo else 0.0, len(todo))
    _remove_stale(size, fingerprint, root)
    vectors.flags.writeable = False
    return ChunkIndex(size=size, fingerprint=fingerprint, chunks=tuple(chunks), vectors=vectors,
                      build_seconds=seconds if todo else 0.0, encoded=len(todo))


def _write(path: Path, vectors: np.ndarray, chunks: list[Chunk], seconds: float, encoded: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"chunks": [c.__dict__ for c in chunks], "build_seconds": round(seconds, 2),
                       "encoded": encoded, "encoder": ENCODER_TAG, "chunker": CHUNKER_VERSION})
    handle, tmp = tempfile.mkstemp(prefix=path.stem + ".partial-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, vectors=vectors, meta=np.array(meta))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale(size: int, fingerprint: str, root: Path | None) -> None:
    """Older indexes of this size: their reusable vectors are in the new file now."""
    keep = index_path(size, fingerprint, root).name
    for path in index_folder(root).glob(f"chunks-{ENCODER_TAG}-{size}w-*.npz"):
        if path.name != keep and ".partial-" not in path.name:
            path.unlink(missing_ok=True)
