"""Our vectorised HAN equals the reference's per-sentence loop with the same weights (eval mode,
real batches of the corpus), for the small preset's and the seed preset's dimensions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.reference import ReferenceLoopHAN, reference_collate
from han.batching import make_batch
from han.model import HAN, HANConfig
from han.text import TextPipeline, Vocabulary, encode_documents
from trainer.data import load_corpus
from trainer.presets import preset


@pytest.fixture(scope="module")
def encoded(corpus_path):
    posts = load_corpus(corpus_path).test.raw[::150][:48]
    pipeline = TextPipeline.train(posts)
    tokens = pipeline.tokenize_many(posts)
    vocab = Vocabulary.build(tokens, min_count=1)
    return encode_documents(tokens, vocab), len(vocab)


@pytest.mark.parametrize("preset_name", ["small", "seed"])
def test_same_logits_and_attention_as_the_reference_loop(encoded, preset_name):
    docs, vocab_size = encoded
    c = preset(preset_name)
    torch.manual_seed(1)
    model = HAN(HANConfig(vocab_size=vocab_size, embed_dim=c.embed_dim, word_hidden=c.word_hidden,
                          sent_hidden=c.sent_hidden, attention_dim=c.attention_dim, num_layers=c.num_layers,
                          num_heads=c.num_heads, top_k=c.top_k, dropout=c.dropout)).eval()
    loop = ReferenceLoopHAN(model).eval()
    for index in (np.arange(0, 16), np.arange(16, 48, 2), np.array([5, 40, 41, 7, 30])):
        batch = make_batch(docs, index)
        padded, doc_lengths, sent_lengths = reference_collate(docs, index)
        with torch.no_grad():
            ours = model(batch.words, batch.sent_lengths, batch.doc_lengths)
            logits, word_attns, sent_weights, gate = loop(padded, doc_lengths, sent_lengths)
        assert torch.allclose(ours.logits, logits, atol=1e-5, rtol=0)
        assert torch.allclose(ours.sent_weights, sent_weights, atol=1e-5, rtol=0)
        assert torch.allclose(ours.gate, gate, atol=1e-5, rtol=0)
        real = torch.cat([word_attns[d, : int(n)] for d, n in enumerate(doc_lengths)])
        assert torch.allclose(ours.word_weights, real[:, : ours.word_weights.size(1)], atol=1e-5, rtol=0)
        assert torch.all(real[:, ours.word_weights.size(1):] == 0)


def test_grouped_bilstm_equals_packed_in_values_and_gradients(monkeypatch):
    from functools import partial

    import han.model
    from han.model import grouped_bilstm, length_groups, packed_bilstm

    rows, direction = [], han.model._lstm_direction
    monkeypatch.setattr(han.model, "_lstm_direction", lambda lstm, layer, suffix, x: rows.append(x.size(0)) or
                        direction(lstm, layer, suffix, x))

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True)
    lengths = torch.tensor([7, 1, 3, 7, 2, 5, 4, 6, 1])
    x = torch.randn(len(lengths), 7, 6) * (torch.arange(7) < lengths[:, None]).unsqueeze(-1)
    # one group per distinct length, a few groups, one group, one group cut into parts of 2 rows
    for group_cost, max_rows in ((0.0, None), (3.0, None), (1e9, None), (1e9, 2)):
        results = []
        rows.clear()
        for run in (packed_bilstm, partial(grouped_bilstm, group_cost=group_cost, max_rows=max_rows)):
            lstm.zero_grad()
            inputs = x.clone().requires_grad_(True)
            out = run(lstm, inputs, lengths)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            results.append((out.detach(), inputs.grad, [p.grad.clone() for p in lstm.parameters()]))
        (a, ga, pa), (b, gb, pb) = results
        groups = len(length_groups(lengths, group_cost))
        assert groups == {0.0: 7, 1e9: 1}.get(group_cost, 3)
        parts = 5 if max_rows == 2 else groups  # 9 sequences in parts of at most 2 rows
        assert len(rows) == parts * 2 * 2 and sum(rows) == len(lengths) * 2 * 2  # each part: 2 layers x 2 directions
        assert max(rows) <= (max_rows or len(lengths))
        assert torch.allclose(a, b, atol=1e-6)
        assert torch.allclose(ga, gb, atol=1e-6)
        assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(pa, pb))


def test_grouped_bilstm_without_gradients_pads_to_bucketed_shapes_and_still_equals_packed(monkeypatch):
    """Inference pads each group to a bucketed (rows, width): padding rows and columns never reach a result."""
    import han.model
    from han.model import grouped_bilstm, packed_bilstm

    shapes, direction = [], han.model._lstm_direction
    monkeypatch.setattr(han.model, "_lstm_direction", lambda lstm, layer, suffix, x: shapes.append(tuple(x.shape[:2]))
                        or direction(lstm, layer, suffix, x))
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True).eval()
    lengths = torch.tensor([9, 1, 3, 9, 2, 5, 4, 6, 1, 7, 7])
    x = torch.randn(len(lengths), 9, 6) * (torch.arange(9) < lengths[:, None]).unsqueeze(-1)
    with torch.no_grad():
        expected = packed_bilstm(lstm, x, lengths)
        for group_cost in (0.0, 3.0, 1e9):
            shapes.clear()
            got = grouped_bilstm(lstm, x, lengths, group_cost=group_cost)
            assert torch.allclose(got, expected, atol=1e-6), group_cost
            assert all(rows % 8 == 0 and width % 4 == 0 for rows, width in shapes), shapes  # padded shapes
    assert shapes == [(16, 12)] * 4  # one group of 11 rows of width 9 runs as 16 x 12 (2 layers x 2 directions)


def test_length_groups_are_the_cheapest_split():
    """Against every split of the distinct lengths into contiguous groups (brute force)."""
    from itertools import combinations

    from han.model import length_groups

    rng = np.random.default_rng(0)
    for trial in range(30):
        lengths = torch.from_numpy(rng.integers(1, 13, size=int(rng.integers(1, 40))))
        group_cost = float(rng.choice([0.0, 5.0, 40.0, 500.0]))
        cost = lambda groups: sum(group_cost + len(g) * int(lengths[g].max()) for g in groups)
        groups = length_groups(lengths, group_cost)
        assert sorted(torch.cat(groups).tolist()) == list(range(len(lengths)))  # each index once
        values = sorted(set(lengths.tolist()))
        best = min(
            sum(group_cost + int((lengths > lo).logical_and(lengths <= hi).sum()) * hi
                for lo, hi in zip((0, *cuts), (*cuts, values[-1])))
            for k in range(len(values)) for cuts in combinations(values[:-1], k))
        assert cost(groups) == best, (trial, lengths.tolist(), group_cost)


def test_bench_train_times_every_run_on_the_same_posts(corpus_path, monkeypatch):
    """`python -m bench train` on the tiny preset: the five runs are timed, on the same posts."""
    import math

    from bench.__main__ import bench_train

    monkeypatch.setenv("HAN_DATA", str(corpus_path))
    result = bench_train("tiny", n_batches=1, seed=0, rounds=2)
    runs = ["loop", "ours_same", "ours_bucketed", "loop_bf16", "ours_bucketed_bf16"]
    assert all(math.isfinite(result[run]) and result[run] > 0 for run in runs), result
    assert result["docs"] == result["batch_size"] == preset("tiny").batch_size
    assert result["embed_dim"] == 50  # the packaged vectors' size, what the trainer trains with by default
    assert result["lstm_flops_per_doc"] > 0
