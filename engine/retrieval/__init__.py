"""Retrieval: the handbook's own text cut into chunks and embedded, exact and approximate nearest-neighbour
search over real vectors, and retrieval-augmented generation with the live model.

- `chunks`: the concept files as chunks, their MiniLM vectors built once and kept on disk by a hash of the text;
- `exact`: brute-force search (the ground truth), and cosine / dot product / Euclidean side by side;
- `ann`: approximate indexes from faiss (HNSW, IVF), recall@k against exact search and queries per second;
- `rag`: prompts with and without retrieved context, greedy answers, the probability of a reference answer.
"""
