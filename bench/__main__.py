"""Benchmarks that print numbers: python -m bench train [--preset small] [--batches 8] [--rounds 2] [--embed-dim 300]
                                   python -m bench soak [--batches 500] [--warmup 500] [--batch-size 16]

`train` times the trainer's training step (trainer.train.train_step: forward, backward, clipping,
the trainer's loss, fused AdamW and parameter groups, subnormals flushed) on han.model.HAN and on the
reference's per-sentence-slot loop (bench.reference) with the same weights, on the same real
posts of the corpus, in one run, and prints docs/s of each and their ratio. Each is first run
untimed over as many batches of other posts (the steady state of a long run is what is timed);
then the runs take turns, a pass over the timed batches each, `--rounds` times over, so that the
ratios hold on a shared machine whose speed drifts:

  loop, reference batches   the reference: random batches padded to (docs, max_sents, max_words)
  ours, same batches        our vectorised model on exactly those posts
  ours, length-bucketed     our trainer's batches: the same posts regrouped by length

and then the loop and ours length-bucketed again under bfloat16 autocast (the trainer's `--set
precision=bf16`). Word vectors are 50-d, the packaged ones the trainer uses by default, unless
`--embed-dim` says otherwise (the reference's seed run had 300).

`soak` runs a real worker over many batches and prints its resident memory and the fitted slope
(bench.soak).
"""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace

import numpy as np
import torch

from bench.reference import ReferenceLoopHAN, reference_collate
from han.batching import length_buckets, make_batch
from han.model import HAN, HANConfig
from han.settings import get_settings
from han.text import TextPipeline, Vocabulary, encode_documents
from trainer.data import load_corpus
from trainer.embeddings import PACKAGED, PACKAGED_DIM
from trainer.presets import PRESETS, preset
from trainer.train import make_criterion, make_optimizer, subnormals_flushed, train_step


def _corpus_batches(config, n_batches: int, seed: int):
    corpus = load_corpus(get_settings().data, config.protocol)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(corpus.train))[: n_batches * config.batch_size]
    posts = [corpus.train.raw[i] for i in pick]
    pipeline = TextPipeline.train(posts[:500], protocol=config.protocol, max_sents=config.max_sents,
                                  max_words=config.max_words)
    tokens = pipeline.tokenize_many(posts)
    vocab = Vocabulary.build(tokens, min_count=1, max_size=config.max_vocab)
    labels = corpus.train.labels[pick]
    return encode_documents(tokens, vocab), vocab, labels


def _model(config, vocab) -> HAN:
    torch.manual_seed(0)
    return HAN(HANConfig(vocab_size=len(vocab), embed_dim=config.embed_dim, word_hidden=config.word_hidden,
                         sent_hidden=config.sent_hidden, attention_dim=config.attention_dim,
                         num_layers=config.num_layers, num_heads=config.num_heads, top_k=config.top_k,
                         dropout=config.dropout))


def lstm_flops(config, encoded, first: int = 0) -> float:
    """Forward FLOPs of the word and sentence BiLSTMs on the real positions of the posts of `encoded`
    from `first` on: the work every implementation of the model must do (2 per multiply-add, gates only)."""
    sents = int(encoded.doc_offsets[-1] - encoded.doc_offsets[first])
    words = int(encoded.sent_offsets[encoded.doc_offsets[-1]] - encoded.sent_offsets[encoded.doc_offsets[first]])

    def per_position(input_dim, hidden):  # both directions, every layer
        layers = [input_dim] + [2 * hidden] * (config.num_layers - 1)
        return sum(2 * 2 * 4 * hidden * (d + hidden) for d in layers)
    return words * per_position(config.embed_dim, config.word_hidden) + sents * per_position(
        2 * config.word_hidden, config.sent_hidden)


def gemm_rate(size: int = 1024, repeats: int = 20) -> float:
    """This machine's fp32 matrix-multiply rate in FLOP/s (best of `repeats`), a ceiling for the LSTMs."""
    a, b = torch.randn(4 * size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats + 2):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * 4 * size ** 3 / best


def _interleaved(runs: dict, rounds: int) -> dict:
    """docs/s of each run: name -> (step, collate, timed batches, warm-up batches). Each run first
    steps untimed through its warm-up batches (other posts: a training run is thousands of steps, so
    what is timed is the steady state, not the first calls' one-off costs); then the runs take turns,
    one pass over the timed batches each, `rounds` times over, so that a slow spell of a shared
    machine falls on all of them alike instead of on whichever ran then. (Turns of single batches
    were tried: the loop's large allocations then slowed the next step of ours by ~10%, which a
    training run never meets.)"""
    for step, collate, _, warmup in runs.values():
        for index in warmup:
            step(*collate(index))
    seconds = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, (step, collate, batches, _) in runs.items():
            started = time.perf_counter()
            for index in batches:
                step(*collate(index))
            seconds[name] += time.perf_counter() - started
    return {name: rounds * sum(len(index) for index in runs[name][2]) / seconds[name] for name in runs}


def bench_train(preset_name: str, n_batches: int, seed: int, rounds: int = 2, embed_dim: int | None = None) -> dict:
    config = preset(preset_name)
    # the word vectors' size the trainer would train with: the packaged vectors' 50 by default
    # (the seed preset says 300, the reference's; the trainer follows the vectors it is given)
    config = replace(config, embed_dim=embed_dim or (PACKAGED_DIM if config.embeddings == PACKAGED
                                                     else config.embed_dim))
    encoded, vocab, labels = _corpus_batches(config, 2 * n_batches, seed)  # half warm-up, half timed
    warmup_posts, timed_posts = np.arange(n_batches * config.batch_size), np.arange(n_batches * config.batch_size,
                                                                                    len(encoded))
    random_batches = [np.arange(i, i + config.batch_size) for i in range(0, len(encoded), config.batch_size)]
    random_warmup, random_batches = random_batches[:n_batches], random_batches[n_batches:]
    bucketed_warmup = length_buckets(encoded, warmup_posts, batch_size=config.batch_size,
                                     shuffle=True, seed=seed)
    bucketed = length_buckets(encoded, timed_posts, batch_size=config.batch_size, shuffle=True, seed=seed)

    def trainer(model, forward, precision="fp32"):
        """The trainer's own step (trainer.train.train_step) and optimizer on `model`."""
        step_config = replace(config, precision=precision)
        han = model.m if isinstance(model, ReferenceLoopHAN) else model
        optimizer = make_optimizer(han, step_config)
        model.train()
        return lambda batch, target: train_step(model, lambda: forward(batch), target, loss_fn, optimizer,
                                                step_config)

    ours = _model(config, vocab)
    # the trainer's loss: class weights balanced over these posts' labels, label smoothing
    loss_fn = make_criterion(labels, ours.config.num_classes, config)
    loop = ReferenceLoopHAN(copy.deepcopy(ours))
    loop_bf16 = ReferenceLoopHAN(copy.deepcopy(ours))
    ours_bf16 = copy.deepcopy(ours)
    ours_collate = lambda index: (make_batch(encoded, index), torch.from_numpy(labels[index]))
    loop_collate = lambda index: (reference_collate(encoded, index), torch.from_numpy(labels[index]))
    ours_step = trainer(ours, lambda b: ours(b.words, b.sent_lengths, b.doc_lengths).logits)
    with subnormals_flushed():  # as the trainer runs
        rates = _interleaved({
            "loop": (trainer(loop, lambda b: loop(*b)[0]), loop_collate, random_batches, random_warmup),
            "ours_same": (ours_step, ours_collate, random_batches, random_warmup),
            "ours_bucketed": (ours_step, ours_collate, bucketed, bucketed_warmup),
            # the same two with --set precision=bf16 (bfloat16 autocast), against the loop under the same autocast
            "loop_bf16": (trainer(loop_bf16, lambda b: loop_bf16(*b)[0], "bf16"), loop_collate, random_batches,
                          random_warmup),
            "ours_bucketed_bf16": (trainer(ours_bf16, lambda b: ours_bf16(b.words, b.sent_lengths,
                                                                          b.doc_lengths).logits, "bf16"),
                                   ours_collate, bucketed, bucketed_warmup),
        }, rounds)
    # backward of an LSTM costs about twice its forward: a step holds ~3x the forward FLOPs
    step_flops_per_doc = 3 * lstm_flops(config, encoded, len(warmup_posts)) / len(timed_posts)
    return {"preset": preset_name, "embed_dim": config.embed_dim, "docs": len(timed_posts),
            "batch_size": config.batch_size,
            "threads": torch.get_num_threads(), **rates, "lstm_flops_per_doc": step_flops_per_doc}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="training throughput: vectorised HAN vs the reference loop")
    train.add_argument("--preset", action="append", choices=list(PRESETS),
                       help="preset dimensions to time (repeatable; default: small and seed)")
    train.add_argument("--batches", type=int, default=8, help="batches of real posts per measurement")
    train.add_argument("--rounds", type=int, default=2, help="passes over the timed batches, runs taking turns")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--embed-dim", type=int, help="word vector size (default: the packaged vectors' 50, what "
                                                     "the trainer uses with them; the reference's seed run had 300)")
    soak = sub.add_parser("soak", help="worker resident memory over many batches")
    soak.add_argument("--batches", type=int, default=500)
    soak.add_argument("--batch-size", type=int, default=16)
    soak.add_argument("--warmup", type=int, default=500, help="batches classified before the measured ones")
    soak.add_argument("--model-preset", default="tiny", help="preset of the model the worker serves")
    args = parser.parse_args(argv)
    if args.command == "train" and (args.rounds < 1 or args.batches < 1 or (args.embed_dim or 1) < 1):
        parser.error("--rounds, --batches and --embed-dim must be at least 1")
    if args.command == "soak":
        from bench.soak import print_soak, run_soak

        print_soak(run_soak(args.batches, args.batch_size, str(get_settings().data), args.warmup, args.model_preset))
        return
    print(f"{'preset':<8} {'embed':>5} {'docs':>5} {'batch':>5} {'loop docs/s':>12} {'ours same':>10} {'ratio':>6} "
          f"{'ours bucketed':>14} {'ratio':>6} {'LSTM GFLOP/doc':>15} {'ours GFLOP/s':>13} {'ceiling docs/s':>15} "
          f"{'ratio':>6}")
    rows = [bench_train(name, args.batches, args.seed, args.rounds, args.embed_dim)
            for name in args.preset or ["small", "seed"]]
    rate = gemm_rate()
    for r in rows:
        ceiling = rate / r["lstm_flops_per_doc"]  # the BiLSTMs alone, run at this machine's GEMM rate
        print(f"{r['preset']:<8} {r['embed_dim']:>5} {r['docs']:>5} {r['batch_size']:>5} {r['loop']:>12.1f} {r['ours_same']:>10.1f} "
              f"{r['ours_same'] / r['loop']:>5.1f}x {r['ours_bucketed']:>14.1f} {r['ours_bucketed'] / r['loop']:>5.1f}x "
              f"{r['lstm_flops_per_doc'] / 1e9:>15.2f} {r['ours_bucketed'] * r['lstm_flops_per_doc'] / 1e9:>13.1f} "
              f"{ceiling:>15.1f} {ceiling / r['loop']:>5.1f}x", flush=True)
    print(f"\nbf16 autocast (--set precision=bf16), same posts:\n{'preset':<8} {'loop docs/s':>12} "
          f"{'ours bucketed':>14} {'ratio':>6} {'vs fp32 loop':>13} {'vs fp32 ours':>13}")
    for r in rows:
        print(f"{r['preset']:<8} {r['loop_bf16']:>12.1f} {r['ours_bucketed_bf16']:>14.1f} "
              f"{r['ours_bucketed_bf16'] / r['loop_bf16']:>5.1f}x {r['ours_bucketed_bf16'] / r['loop']:>12.1f}x "
              f"{r['ours_bucketed_bf16'] / r['ours_bucketed']:>12.2f}x", flush=True)
    print(f"fp32 matrix multiply on this machine: {rate / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads). "
          "'ceiling' is the rate at which the BiLSTMs' own work (forward + backward, about 3x the forward FLOPs "
          "on real positions) would run if it went at that speed, with nothing else in the step: no "
          "implementation of the same model in fp32 trains faster here.")


if __name__ == "__main__":
    main()
