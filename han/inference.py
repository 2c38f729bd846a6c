"""Classify posts in length-sorted micro-batches and summarise where the model looked.

One function serves the trainer's test evaluation, the worker and the analyses, so the numbers the
trainer reports are the numbers the database will hold. Every statistic is computed over real
words and real sentences only, in batched tensor operations.

    results = classify_texts(loaded, ["first post ...", "second post ..."], device="cpu")
    results[0].predicted, results[0].probabilities, results[0].summary, results[0].flags
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from han.batching import length_buckets, make_batch
from han.text import encode_documents

EPS = 1e-10  # the reference's guard inside log()
TOP_WORDS = 5  # words kept per post in the summary, ranked by word weight x sentence weight
FLAG_NAMES = ("word_over_concentration", "diffuse_sentence_attention", "short_document", "high_word_entropy")


@dataclass
class PostResult:
    predicted: int
    probabilities: np.ndarray  # (classes,)
    summary: dict  # word_entropy, word_max, word_max_mean, sent_entropy, sent_max, gate_mean, counts, top_words
    flags: dict  # FLAG_NAMES -> bool


def _segment(values: torch.Tensor, index: torch.Tensor, n: int, reduce: str) -> torch.Tensor:
    return values.new_zeros(n).scatter_reduce(0, index, values, reduce, include_self=False)


def summarise(out, batch) -> dict[str, torch.Tensor]:
    """Per-post attention statistics of one batch, each a (docs,) tensor."""
    docs = batch.doc_lengths.numel()
    doc_index = torch.repeat_interleave(torch.arange(docs, device=batch.words.device), batch.doc_lengths)
    w = out.word_weights  # (sents, words), exactly 0 on padding
    sent_entropy_words = -(w * torch.log(w + EPS)).sum(-1)  # (sents,)
    sent_max_word = w.max(-1).values
    s = out.sent_weights  # (docs, max_sents), exactly 0 on padding
    return {
        "word_entropy": _segment(sent_entropy_words, doc_index, docs, "mean"),
        "word_max": _segment(sent_max_word, doc_index, docs, "amax"),
        "word_max_mean": _segment(sent_max_word, doc_index, docs, "mean"),
        "sent_entropy": -(s * torch.log(s + EPS)).sum(-1),
        "sent_max": s.max(-1).values,
        "gate_mean": out.gate.mean(-1),
        "num_sentences": batch.doc_lengths.to(w.dtype),
        "num_words": _segment(batch.sent_lengths.to(w.dtype), doc_index, docs, "sum"),
    }


def failure_flags(summary: dict, thresholds: dict) -> dict[str, bool]:
    """The four failure modes of DESIGN.md, with thresholds frozen in the checkpoint."""
    return {
        "word_over_concentration": summary["word_max_mean"] > thresholds["word_over_concentration"],
        "diffuse_sentence_attention": summary["sent_entropy"] > thresholds["diffuse_sentence_attention"],
        "short_document": summary["num_sentences"] < thresholds["short_document"],
        "high_word_entropy": summary["word_entropy"] > thresholds["high_word_entropy"],
    }


def _top_words(out, batch, tokenized, k: int = TOP_WORDS) -> list[list[list]]:
    """[[word, weight], ...] per post: word weight times its sentence's weight, highest first."""
    docs = batch.doc_lengths.numel()
    doc_index = torch.repeat_interleave(torch.arange(docs), batch.doc_lengths.cpu())
    first = torch.cumsum(batch.doc_lengths.cpu(), 0) - batch.doc_lengths.cpu()
    slot = torch.arange(len(doc_index)) - first[doc_index]
    sent_weight = out.sent_weights.cpu()[doc_index, slot]  # (sents,)
    scores = (out.word_weights.cpu() * sent_weight[:, None]).numpy()
    result = []
    for d, doc in enumerate(tokenized):
        rows = range(int(first[d]), int(first[d] + batch.doc_lengths[d]))
        words = [(float(scores[r, i]), word) for r, sentence in zip(rows, doc) for i, word in enumerate(sentence)]
        words.sort(key=lambda item: -item[0])
        result.append([[word, round(score, 6)] for score, word in words[:k]])
    return result


def classify_tokenized(loaded, tokenized, *, device="cpu", micro_batch: int = 64) -> list[PostResult]:
    """Classify tokenised posts; micro-batches of similar length, results in input order."""
    tokenized = [doc or [["<UNK>"]] for doc in tokenized]
    encoded = encode_documents(tokenized, loaded.vocab)
    results: list[PostResult | None] = [None] * len(tokenized)
    model = loaded.model.to(device).eval()
    with torch.inference_mode():
        for index in length_buckets(encoded, batch_size=micro_batch):
            batch = make_batch(encoded, index).to(device)
            out = model(batch.words, batch.sent_lengths, batch.doc_lengths)
            probabilities = torch.softmax(out.logits.float(), -1).cpu().numpy()
            stats = {name: values.cpu().numpy() for name, values in summarise(out, batch).items()}
            top = _top_words(out, batch, [tokenized[i] for i in index])
            for j, i in enumerate(index):
                summary = {name: float(values[j]) for name, values in stats.items()}
                summary["num_sentences"] = int(summary["num_sentences"])
                summary["num_words"] = int(summary["num_words"])
                summary["top_words"] = top[j]
                flags = {name: bool(v) for name, v in failure_flags(summary, loaded.thresholds).items()}
                results[i] = PostResult(int(probabilities[j].argmax()), probabilities[j], summary, flags)
    return results


def classify_texts(loaded, texts, *, device="cpu", micro_batch: int = 64) -> list[PostResult]:
    return classify_tokenized(loaded, loaded.pipeline.tokenize_many(texts), device=device, micro_batch=micro_batch)


def explain_text(loaded, text: str, *, device="cpu") -> dict:
    """One post with every sentence's words and weights, the sentence weights, the top-3 labels,
    the summary and the flags, from the checkpoint `loaded`."""
    tokenized = loaded.pipeline.tokenize(text) or [["<UNK>"]]
    encoded = encode_documents([tokenized], loaded.vocab)
    model = loaded.model.to(device).eval()
    with torch.inference_mode():
        batch = make_batch(encoded, [0]).to(device)
        out = model(batch.words, batch.sent_lengths, batch.doc_lengths)
        summary = {name: float(v[0]) for name, v in summarise(out, batch).items()}
    probabilities = torch.softmax(out.logits.float(), -1)[0].cpu().numpy()
    word_weights = out.word_weights.cpu().numpy()
    sent_weights = out.sent_weights[0].cpu().numpy()
    summary["num_sentences"], summary["num_words"] = int(summary["num_sentences"]), int(summary["num_words"])
    sentences = [{"weight": float(sent_weights[i]),
                  "words": [[w, float(word_weights[i, j])] for j, w in enumerate(sentence)]}
                 for i, sentence in enumerate(tokenized)]
    order = probabilities.argsort()[::-1]
    return {
        "predicted": loaded.label_names[int(order[0])],
        "top3": [[loaded.label_names[int(i)], float(probabilities[i])] for i in order[:3]],
        "sentences": sentences,
        "summary": summary,
        "flags": {name: bool(v) for name, v in failure_flags(summary, loaded.thresholds).items()},
    }
