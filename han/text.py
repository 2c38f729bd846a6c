"""Text pipeline shared by training and serving: clean, split sentences, tokenise, encode.

A post is first stripped of headers, signature and quotes by the corpus protocol the model was
trained with (han.stripping). Then the reference experiment's rules (section 4): lower-case, drop e-mail addresses and URLs,
keep letters, digits and `.!?`, split sentences with Punkt, keep alphabetic tokens longer than one
letter, at most `max_sents` sentences of `max_words` words. NLTK's pretrained Punkt data cannot be
downloaded here, so a Punkt model is trained on the training texts and its parameters travel in the
checkpoint: the worker splits sentences exactly as training did.

    pipeline = TextPipeline.train(raw_posts, protocol="seed", max_sents=30, max_words=50)
    vocab = Vocabulary.build(pipeline.tokenize_many(texts), min_count=2, max_size=50_000)
    encoded = encode_documents(pipeline.tokenize_many(texts), vocab)
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from nltk.tokenize.destructive import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer, PunktTrainer

from han.stripping import strip_post

PAD, UNK = 0, 1

_TOKEN = re.compile(r"\S+")
_URL = re.compile(r"http\S+|www\S+")
_NOT_KEPT = re.compile(r"[^a-zA-Z0-9\s\.\!\?]")
_SPACES = re.compile(r"\s+")
_word_tokenizer = NLTKWordTokenizer()


def clean_text(text: str) -> str:
    text = text.lower()
    # the reference's re.sub(r"\S+@\S+", "", text), in linear time: that pattern removes exactly the
    # whitespace-delimited tokens with an "@" that is neither their first nor their last character
    # (checked on all 18,846 posts); the regex itself is quadratic on a long unbroken token
    text = _TOKEN.sub(lambda m: "" if "@" in m.group()[1:-1] else m.group(), text)
    text = _URL.sub("", text)
    text = _NOT_KEPT.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def punkt_params_to_json(params: PunktParameters) -> dict:
    return {
        "abbrev_types": sorted(params.abbrev_types),
        "collocations": sorted([a, b] for a, b in params.collocations),
        "sent_starters": sorted(params.sent_starters),
        "ortho_context": dict(sorted(params.ortho_context.items())),
    }


def punkt_params_from_json(data: dict) -> PunktParameters:
    params = PunktParameters()
    params.abbrev_types = set(data["abbrev_types"])
    params.collocations = {(a, b) for a, b in data["collocations"]}
    params.sent_starters = set(data["sent_starters"])
    for word, flags in data["ortho_context"].items():
        params.ortho_context[word] = int(flags)
    return params


@dataclass
class TextPipeline:
    """Stripping, cleaning, Punkt sentence splitting and word filtering, with the limits of a preset."""

    punkt: PunktParameters
    protocol: str = "seed"  # how posts are stripped before cleaning (han.stripping)
    max_sents: int = 30  # sentences kept per post (the reference's 30)
    max_words: int = 50  # words kept per sentence (the reference's 50)

    def __post_init__(self):
        self._splitter = PunktSentenceTokenizer(self.punkt)

    @classmethod
    def train(cls, posts, *, protocol: str = "seed", max_sents: int = 30, max_words: int = 50) -> "TextPipeline":
        """Learn Punkt parameters (abbreviations, collocations, sentence starters) from the cleaned posts."""
        trainer = PunktTrainer()
        for post in posts:
            trainer.train(clean_text(strip_post(post, protocol)), finalize=False)
        trainer.finalize_training()
        return cls(trainer.get_params(), protocol=protocol, max_sents=max_sents, max_words=max_words)

    def to_json(self) -> dict:
        return {"protocol": self.protocol, "max_sents": self.max_sents, "max_words": self.max_words,
                "punkt": punkt_params_to_json(self.punkt)}

    @classmethod
    def from_json(cls, data: dict) -> "TextPipeline":
        return cls(punkt_params_from_json(data["punkt"]), protocol=data["protocol"],
                   max_sents=data["max_sents"], max_words=data["max_words"])

    def tokenize(self, post: str) -> list[list[str]]:
        """A post as sentences of kept words; sentences left empty by the filter are dropped."""
        sentences = []
        for sentence in self._splitter.tokenize(clean_text(strip_post(post, self.protocol)))[: self.max_sents]:
            words = [w for w in _word_tokenizer.tokenize(sentence) if w.isalpha() and len(w) > 1]
            if words:
                sentences.append(words[: self.max_words])
        return sentences

    def tokenize_many(self, texts) -> list[list[list[str]]]:
        return [self.tokenize(text) for text in texts]


@dataclass
class Vocabulary:
    """Words seen at least `min_count` times, most frequent first; `<PAD>`=0, `<UNK>`=1."""

    words: list[str]

    def __post_init__(self):
        self.index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, tokenized_docs, *, min_count: int = 2, max_size: int = 50_000) -> "Vocabulary":
        counts = Counter(w for doc in tokenized_docs for sentence in doc for w in sentence)
        kept = [w for w, c in counts.most_common(max_size) if c >= min_count]
        return cls(["<PAD>", "<UNK>", *kept])

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, words: list[str]) -> list[int]:
        return [self.index.get(w, UNK) for w in words]


@dataclass
class EncodedDocs:
    """Posts as flat arrays, so batches are cut with numpy indexing and no per-token Python.

    tokens: (total_words,) word ids of every kept sentence, post after post
    sent_offsets: (total_sents + 1,) where each sentence starts in `tokens`
    doc_offsets: (n_docs + 1,) where each post's sentences start in the sentence list
    """

    tokens: np.ndarray
    sent_offsets: np.ndarray
    doc_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def sent_lengths(self) -> np.ndarray:
        return np.diff(self.sent_offsets)

    @property
    def doc_sent_counts(self) -> np.ndarray:
        return np.diff(self.doc_offsets)

    def doc_word_counts(self) -> np.ndarray:
        return np.add.reduceat(self.sent_lengths, self.doc_offsets[:-1])


def encode_documents(tokenized_docs, vocab: Vocabulary) -> EncodedDocs:
    """Word ids of tokenised posts; a post with no kept word becomes one `<UNK>` (as the reference)."""
    tokens: list[int] = []
    sent_offsets = [0]
    doc_offsets = [0]
    for doc in tokenized_docs:
        sentences = doc or [["<UNK>"]]
        for sentence in sentences:
            tokens.extend(vocab.ids(sentence))
            sent_offsets.append(len(tokens))
        doc_offsets.append(len(sent_offsets) - 1)
    return EncodedDocs(np.asarray(tokens, dtype=np.int64), np.asarray(sent_offsets, dtype=np.int64),
                       np.asarray(doc_offsets, dtype=np.int64))
