"""The reference's TF-IDF baselines (section 9), trained and scored with every version.

TF-IDF (10,000 features, English stop words) fit on the training posts, then Logistic Regression,
Multinomial Naive Bayes and a linear SVM, scored on the same test posts as the HAN.

    baselines = run_baselines(train_texts, train_labels, test_texts, test_labels)
    baselines["naive_bayes"]["accuracy"]
"""
from __future__ import annotations

import time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.svm import LinearSVC

from trainer.metrics import scores

CLASSIFIERS = {
    "logistic_regression": ("Logistic Regression", lambda: LogisticRegression(max_iter=1000, class_weight="balanced")),
    "naive_bayes": ("Naive Bayes", MultinomialNB),
    "linear_svm": ("Linear SVM", lambda: LinearSVC(max_iter=2000, class_weight="balanced")),
}


def run_baselines(train_texts, train_labels, test_texts, test_labels) -> dict[str, dict]:
    tfidf = TfidfVectorizer(max_features=10000, stop_words="english")
    X_train = tfidf.fit_transform(train_texts)
    X_test = tfidf.transform(test_texts)
    results = {}
    for key, (name, make) in CLASSIFIERS.items():
        started = time.perf_counter()
        predictions = make().fit(X_train, train_labels).predict(X_test)
        results[key] = {"name": name, **scores(test_labels, predictions),
                        "seconds": round(time.perf_counter() - started, 2)}
    return results


def best_baseline(baselines: dict[str, dict], metric: str = "accuracy") -> tuple[str, dict]:
    return max(baselines.items(), key=lambda item: item[1][metric])
