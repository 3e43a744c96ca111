"""`python -m engine.retrieval.prepare`: encode the handbook's chunks at every chunk size now, so the retrieval
pages open at once. Each index is kept on disk by a hash of the concept files' text; an index already built for
the current text is left as it is, and a changed text re-encodes only its changed chunks."""
import time

from engine.model.encoder import embed_sentences, load_encoder
from engine.retrieval.chunks import CHUNK_SIZES, build_chunk_index, load_chunk_index, read_concept_files


def main() -> None:
    files = read_concept_files()
    encoder = None
    for size in CHUNK_SIZES:
        started = time.perf_counter()
        index = load_chunk_index(size, files)
        if index is None:
            encoder = encoder or load_encoder()
            index = build_chunk_index(lambda texts: embed_sentences(encoder, texts), size, files)
        print(f"  {len(index.chunks):,} chunks of up to {size} words ready ({index.encoded} encoded now) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
