"""Text pipeline, batching and the vectorised HAN on real posts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from han.batching import length_buckets, make_batch
from han.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from han.inference import classify_tokenized, summarise
from han.model import HAN, HANConfig
from han.text import TextPipeline, Vocabulary, clean_text, encode_documents
from trainer.data import load_corpus


@pytest.fixture(scope="module")
def real(corpus_path):
    corpus = load_corpus(corpus_path)
    texts = corpus.train.raw[::40][:250]
    pipeline = TextPipeline.train(texts, max_sents=30, max_words=50)
    tokens = pipeline.tokenize_many(texts)
    vocab = Vocabulary.build(tokens, min_count=1)
    return pipeline, tokens, vocab, encode_documents(tokens, vocab)


def small_model(vocab, seed=0):
    torch.manual_seed(seed)
    return HAN(HANConfig(vocab_size=len(vocab), word_hidden=12, sent_hidden=16, attention_dim=8, num_layers=2,
                         num_heads=4, top_k=5, dropout=0.3)).eval()


def test_clean_text_follows_the_reference():
    assert clean_text("Mail ME@x.org, see http://a.b/c or www.d.e -- OK?!  C++") == "mail see or ok?! c"


def test_punkt_parameters_survive_json(real):
    pipeline, tokens, _, _ = real
    again = TextPipeline.from_json(json.loads(json.dumps(pipeline.to_json())))
    assert again.tokenize_many(["Dr. Smith went to Washington. He arrived at 5 p.m. on Monday!"]) == \
        pipeline.tokenize_many(["Dr. Smith went to Washington. He arrived at 5 p.m. on Monday!"])
    assert [again.tokenize(t) for t in ["x y. z w"]] == [pipeline.tokenize("x y. z w")]


def test_limits_and_filters(real):
    pipeline, tokens, vocab, encoded = real
    assert all(1 <= len(doc) <= 30 for doc in tokens if doc)
    assert all(1 <= len(s) <= 50 and all(w.isalpha() and len(w) > 1 for w in s) for doc in tokens for s in doc)
    assert vocab.words[:2] == ["<PAD>", "<UNK>"]
    empty = encode_documents([[]], vocab)
    assert empty.tokens.tolist() == [1] and empty.doc_sent_counts.tolist() == [1]


def test_batches_hold_only_real_sentences(real):
    _, tokens, _, encoded = real
    index = np.array([3, 17, 5])
    batch = make_batch(encoded, index)
    assert batch.doc_lengths.tolist() == [max(1, len(tokens[i])) for i in index]
    assert batch.sent_lengths.tolist() == [len(s) for i in index for s in tokens[i]]
    assert (batch.words[:, :1] != 0).all()  # every row is a real sentence
    buckets = length_buckets(encoded, batch_size=32)
    assert sorted(np.concatenate(buckets).tolist()) == list(range(len(encoded)))


def test_a_post_gets_the_same_output_alone_or_in_any_batch(real):
    _, tokens, vocab, encoded = real
    model = small_model(vocab)
    index = np.arange(40)
    with torch.no_grad():
        together = model(*_args(make_batch(encoded, index)))
        for i in (0, 7, 39):
            alone = model(*_args(make_batch(encoded, [i])))
            assert torch.allclose(alone.logits[0], together.logits[i], atol=1e-5)
            assert torch.allclose(alone.gate[0], together.gate[i], atol=1e-5)


def test_attention_is_zero_on_padding_and_sums_to_one(real):
    _, _, vocab, encoded = real
    model = small_model(vocab)
    batch = make_batch(encoded, np.arange(30))
    with torch.no_grad():
        out = model(*_args(batch))
    real_words = torch.arange(batch.words.size(1)) < batch.sent_lengths[:, None]
    assert torch.all(out.word_weights[~real_words] == 0)
    assert torch.allclose(out.word_weights.sum(-1), torch.ones(len(batch.sent_lengths)), atol=1e-5)
    real_sents = torch.arange(out.sent_weights.size(1)) < batch.doc_lengths[:, None]
    assert torch.all(out.sent_weights[~real_sents] == 0)
    stats = summarise(out, batch)
    assert torch.all(stats["num_words"] == torch.tensor(
        [encoded.doc_word_counts()[i] for i in range(30)], dtype=torch.float32))
    assert torch.all(stats["word_max"] <= 1) and torch.all(stats["word_entropy"] >= 0)


def test_checkpoint_round_trip_and_tamper_check(real, tmp_path):
    pipeline, tokens, vocab, _ = real
    model = small_model(vocab, seed=3)
    thresholds = {"word_over_concentration": 0.5, "diffuse_sentence_attention": 1.0, "short_document": 3,
                  "high_word_entropy": 2.0}
    path = save_checkpoint(tmp_path, version=4, model=model, pipeline=pipeline, vocab=vocab,
                           label_names=[f"g{i}" for i in range(20)], thresholds=thresholds,
                           extra_config={"preset": "test"}, metrics={}, history=[])
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "history.json", "metrics.json",
                                                     "model.safetensors", "vocab.json"]
    loaded = load_checkpoint(path)
    assert loaded.version == 4 and loaded.thresholds == thresholds
    first = classify_tokenized(loaded, tokens[:5])
    again = classify_tokenized(loaded, tokens[:5], micro_batch=2)
    for a, b in zip(first, again):
        assert np.allclose(a.probabilities, b.probabilities, atol=1e-6) and a.flags == b.flags
    with pytest.raises(CheckpointError, match="v4: weights sha256"):
        load_checkpoint(path, expected_sha256="0" * 64)
    (path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="v4: cannot load weights"):
        load_checkpoint(path)


def _args(batch):
    return batch.words, batch.sent_lengths, batch.doc_lengths


def test_bf16_training_step_runs_the_lstms_in_bf16_and_keeps_fp32_weights(real, monkeypatch):
    """--set precision=bf16: the trainer's autocast reaches the BiLSTMs (the op that makes it pay) and
    the result stays close to fp32; parameters and their gradients stay fp32."""
    import han.model

    _, _, vocab, encoded = real
    model = small_model(vocab)
    batch = make_batch(encoded, np.arange(0, 24))
    with torch.no_grad():
        exact = model(batch.words, batch.sent_lengths, batch.doc_lengths).logits
    seen, direction = [], han.model._lstm_direction

    def spy(*args):
        out = direction(*args)
        seen.append(out.dtype)
        return out
    monkeypatch.setattr(han.model, "_lstm_direction", spy)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch.words, batch.sent_lengths, batch.doc_lengths).logits.float()
    logits.sum().backward()
    assert seen and set(seen) == {torch.bfloat16}, seen
    assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
               for p in model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.word_encoder.lstm.parameters())
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = model(batch.words, batch.sent_lengths, batch.doc_lengths).logits.float()
    assert 0 < (rounded - exact).abs().max() < 0.05 * exact.abs().max() + 0.05
