"""The loader reads the real corpus the way the data README's numbers were measured."""
from __future__ import annotations

import os
import subprocess
import tarfile

import numpy as np
import pytest
from sklearn.metrics import accuracy_score
from sklearn.naive_bayes import MultinomialNB

from han.stripping import strip_post
from tests.conftest import PYTHON, ROOT
from trainer.baselines import tfidf_features
from trainer.data import LABEL_NAMES, DataError, load_corpus, train_validation_split

# ../shared/data/README.md: TF-IDF (10,000 features, English stop words) + MultinomialNB, test accuracy.
# Its 10,000-feature cut falls among terms tied in frequency (420 at 18 occurrences, seed protocol) and
# scikit-learn keeps whichever ties numpy's unstable, CPU-dependent argsort puts first: the same loader
# gives 0.7276 or 0.7289 on two machines. Our features break ties by the term; a loader that reads the
# corpus differently moves these scores by far more than the few posts that the ties move.
README_NB_ACCURACY = {"seed": 0.7276, "sklearn": 0.6745}
TIE_POSTS = 3


@pytest.mark.parametrize("protocol", ["seed", "sklearn"])
def test_naive_bayes_reproduces_the_readme(corpus_path, protocol):
    corpus = load_corpus(corpus_path, protocol)
    assert (len(corpus.train), len(corpus.test)) == (11314, 7532)
    assert corpus.label_names == sorted(LABEL_NAMES) and len(set(corpus.train.labels)) == 20
    X_train, X_test, vocabulary = tfidf_features(corpus.train.texts, corpus.test.texts)
    assert len(vocabulary) == 10000
    predictions = MultinomialNB().fit(X_train, corpus.train.labels).predict(X_test)
    correct = int((predictions == corpus.test.labels).sum())
    assert abs(correct - README_NB_ACCURACY[protocol] * 7532) <= TIE_POSTS + 0.5, correct / 7532
    assert accuracy_score(corpus.test.labels, predictions) == correct / 7532


FEATURES_DIGEST = """
import hashlib, sys
from trainer.baselines import tfidf_features
from trainer.data import load_corpus
corpus = load_corpus(sys.argv[1], "seed")
vocabulary = tfidf_features(corpus.train.texts, corpus.test.texts)[2]
print(hashlib.sha256("\\n".join(vocabulary).encode()).hexdigest())
"""


def test_baseline_features_do_not_depend_on_the_cpu(corpus_path):
    """The same 10,000 features with numpy's SIMD sorts on and off (what differs between CPUs)."""
    try:
        from numpy._core import _multiarray_umath as simd
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as simd
    found = [name for name in simd.__cpu_dispatch__ if simd.__cpu_features__.get(name)]
    digests = []
    for disabled in ([], found):
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(disabled)}
        result = subprocess.run([PYTHON, "-c", FEATURES_DIGEST, str(corpus_path)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1] and len(digests[0]) == 64


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
