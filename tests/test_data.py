"""The loader reads the real corpus the way the data README's numbers were measured."""
from __future__ import annotations

import tarfile

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score
from sklearn.naive_bayes import MultinomialNB

from han.stripping import strip_post
from trainer.data import LABEL_NAMES, DataError, load_corpus, train_validation_split

# ../shared/data/README.md: TF-IDF (10,000 features, English stop words) + MultinomialNB, test accuracy
README_NB_ACCURACY = {"seed": 0.7276, "sklearn": 0.6745}


@pytest.mark.parametrize("protocol", ["seed", "sklearn"])
def test_naive_bayes_reproduces_the_readme(corpus_path, protocol):
    corpus = load_corpus(corpus_path, protocol)
    assert (len(corpus.train), len(corpus.test)) == (11314, 7532)
    assert corpus.label_names == sorted(LABEL_NAMES) and len(set(corpus.train.labels)) == 20
    tfidf = TfidfVectorizer(max_features=10000, stop_words="english")
    X_train = tfidf.fit_transform(corpus.train.texts)
    predictions = MultinomialNB().fit(X_train, corpus.train.labels).predict(tfidf.transform(corpus.test.texts))
    assert round(accuracy_score(corpus.test.labels, predictions), 4) == README_NB_ACCURACY[protocol]


def test_folder_and_archive_give_the_same_corpus(corpus_path, tmp_path):
    with tarfile.open(corpus_path) as archive:
        archive.extractall(tmp_path, filter="data")
    from_folder, from_archive = load_corpus(tmp_path), load_corpus(corpus_path)
    assert from_folder.train.ids == from_archive.train.ids
    assert from_folder.test.texts == from_archive.test.texts


def test_seed_protocol_strips_headers_signature_and_quotes():
    raw = "From: a@b.c\nSubject: x\n\nHello there.\n> quoted line\n  > indented quote\nBody.\n--\nSig line\n"
    assert strip_post(raw, "seed") == "Hello there.\nBody."
    assert strip_post(raw.replace("\n", "\r\n"), "seed") == "Hello there.\nBody."


def test_a_post_without_headers_keeps_its_first_paragraph():
    plain = "Note: my first paragraph.\nStill first.\n\nSecond paragraph.\n> quoted"
    assert strip_post(plain, "seed") == "Note: my first paragraph.\nStill first.\n\nSecond paragraph."
    assert strip_post("One paragraph only.", "sklearn") == "One paragraph only."


def test_missing_data_says_where_to_point(tmp_path):
    with pytest.raises(DataError, match="HAN_DATA"):
        load_corpus(tmp_path / "nowhere.tar.gz")
    with pytest.raises(DataError, match="no 20news-bydate-train"):
        load_corpus(tmp_path)
    with pytest.raises(DataError, match="unknown protocol"):
        load_corpus(tmp_path, "strict")


def test_validation_split_is_the_seeded_ninety_ten():
    train, val = train_validation_split(11314, seed=42)
    assert (len(train), len(val)) == (10182, 1132)
    assert len(np.intersect1d(train, val)) == 0
    again, _ = train_validation_split(11314, seed=42)
    assert np.array_equal(train, again)
