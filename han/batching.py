"""Cut model batches out of `EncodedDocs` with numpy indexing, and group posts by length.

A batch holds only real sentences, each padded to the longest sentence of the batch; posts are
grouped by word count so little padding is computed.

    for index in length_buckets(encoded, batch_size=32, shuffle=True, seed=0):
        batch = make_batch(encoded, index)
        out = model(batch.words, batch.sent_lengths, batch.doc_lengths)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from han.text import EncodedDocs


@dataclass
class Batch:
    doc_index: np.ndarray  # (docs,) positions of the posts in their EncodedDocs
    words: torch.Tensor  # (sents, max_words) word ids, 0-padded
    sent_lengths: torch.Tensor  # (sents,)
    doc_lengths: torch.Tensor  # (docs,) sentences per post

    def to(self, device) -> "Batch":
        return Batch(self.doc_index, self.words.to(device), self.sent_lengths.to(device),
                     self.doc_lengths.to(device))


def make_batch(encoded: EncodedDocs, doc_index) -> Batch:
    doc_index = np.asarray(doc_index, dtype=np.int64)
    starts, ends = encoded.doc_offsets[doc_index], encoded.doc_offsets[doc_index + 1]
    counts = ends - starts
    # sentence ids of the chosen posts, in order: ranges [start, end) concatenated
    sent_ids = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    lengths = encoded.sent_lengths[sent_ids]
    width = int(lengths.max())
    positions = encoded.sent_offsets[sent_ids, None] + np.arange(width)
    real = np.arange(width) < lengths[:, None]
    words = np.where(real, encoded.tokens[np.minimum(positions, len(encoded.tokens) - 1)], 0)
    return Batch(doc_index, torch.from_numpy(words), torch.from_numpy(lengths), torch.from_numpy(counts))


def length_buckets(encoded: EncodedDocs, doc_index=None, *, batch_size: int, shuffle: bool = False,
                   seed: int = 0) -> list[np.ndarray]:
    """Posts sorted by word count and cut into batches; with `shuffle`, ties and batch order are random."""
    doc_index = np.arange(len(encoded)) if doc_index is None else np.asarray(doc_index)
    sizes = encoded.doc_word_counts()[doc_index]
    if shuffle:
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(len(doc_index)), sizes))
    else:
        order = np.argsort(sizes, kind="stable")
    batches = [doc_index[order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
