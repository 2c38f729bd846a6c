"""The Hierarchical Attention Network of the reference experiment (section 7), vectorised.

Five stages: a contextual word encoder (BiLSTM + residual projection + LayerNorm), additive word
attention, a sentence BiLSTM with additive sentence attention, document-level cross-attention from
each sentence's top-k words to the sentence states, and a gate between the two document paths.

Unlike the reference, which runs the word encoder once per sentence slot in a Python loop over a
(batch, sents, words) tensor padded to the longest sentence, the word level here runs once over
all real sentences of a batch: embeddings, residual, LayerNorm and attention scores are computed
on the real words only, and the BiLSTM runs over sentences grouped by length (see `bilstm`).
Padding never enters a result: top-k queries are taken from real words of real sentences only and
averaged over real queries only, so a post's output does not depend on which other posts share
its batch.

    model = HAN(HANConfig(vocab_size=len(vocab)))
    out = model(batch.words, batch.sent_lengths, batch.doc_lengths)   # out.logits: (docs, classes)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

MASKED = -1e9  # the reference's fill for masked attention scores


@dataclass
class HANConfig:
    vocab_size: int  # rows of the embedding table, <PAD>=0 and <UNK>=1 included
    embed_dim: int = 50  # word vector size (GloVe 6B 50-d by default)
    word_hidden: int = 256  # word BiLSTM hidden size per direction
    sent_hidden: int = 256  # sentence BiLSTM hidden size per direction
    attention_dim: int = 128  # additive attention projection size
    num_layers: int = 2  # layers of both BiLSTMs
    num_heads: int = 8  # cross-attention heads; must divide 2 * sent_hidden
    top_k: int = 15  # words per sentence used as cross-attention queries
    dropout: float = 0.4  # everywhere the reference applies dropout
    num_classes: int = 20  # the 20 newsgroups

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class HANOutput:
    logits: torch.Tensor  # (docs, classes)
    word_weights: torch.Tensor  # (sents, words) word attention of every real sentence, 0 on padding
    sent_weights: torch.Tensor  # (docs, max_sents) sentence attention, 0 on padding
    gate: torch.Tensor  # (docs, 2 * sent_hidden) weight of the cross path


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout like F.dropout, with the mask drawn by `rand_like` instead of `bernoulli_`
    (2.7x faster on a CPU: bernoulli_ was 9% of a seed-size training step)."""
    if not training or p == 0.0:
        return x
    keep = torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))  # in place: 0 or 1 / (1 - p), x's dtype
    return x * keep


class Dropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class AdditiveAttention(nn.Module):
    """score = v . dropout(tanh(W h)); softmax over the unmasked positions; weighted sum of h."""

    def __init__(self, hidden_dim: int, attention_dim: int, dropout: float):
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(hidden_dim, attention_dim), nn.Tanh(), Dropout(dropout))
        self.context = nn.Linear(attention_dim, 1, bias=False)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.context(self.attention(hidden)).squeeze(-1)  # (..., len)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor):
        weights = F.softmax(self.scores(hidden).masked_fill(~mask, MASKED), dim=-1)  # (n, len)
        return torch.bmm(weights.unsqueeze(1), hidden).squeeze(1), weights  # (n, hidden), (n, len)


# CPU BiLSTM: sequences run in groups of similar length. A group costs about as much as this many
# padded positions on top of its rows x width (measured: ~10 ms of fixed cost per group call, ~50 us per
# padded position, forward and backward of the seed word LSTM on 2 cores; a later sweep of 25-400 on
# seed-size batches was flat within 4%).
GROUP_COST = 200
# ... and no group holds more rows than GROUP_CELLS / hidden: oneDNN's cost per position grows with the
# rows of a call once its gate buffers outgrow the cache (measured on 2 cores, forward + backward, width
# 20: hidden 256 cheapest at 48-96 rows and ~20% dearer from 128; hidden 96 flat up to 128 rows).
GROUP_CELLS = 16384


def length_groups(lengths: torch.Tensor, group_cost: float = GROUP_COST) -> list[torch.Tensor]:
    """Indices of `lengths` in groups of similar length, ascending, that minimise the padded
    positions plus `group_cost` per group (an exact split over the distinct lengths)."""
    order = torch.argsort(lengths, stable=True)
    values, counts = torch.unique_consecutive(lengths[order].cpu(), return_counts=True)
    values, ends = values.tolist(), torch.cumsum(counts, 0).tolist()
    best, cut = [0.0], [0]  # best[j]: cost of the first j distinct lengths; cut[j]: where its last group starts
    for j in range(1, len(values) + 1):
        options = [(best[i] + group_cost + (ends[j - 1] - (ends[i - 1] if i else 0)) * values[j - 1], i)
                   for i in range(j)]
        cost, start = min(options)
        best.append(cost)
        cut.append(start)
    bounds, j = [], len(values)
    while j:
        bounds.append(ends[j - 1])
        j = cut[j]
    bounds = [0, *reversed(bounds)]
    return [order[a:b] for a, b in zip(bounds, bounds[1:])]


def _reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(n, width) positions that reverse each sequence within its length; padding stays put."""
    t = torch.arange(width, device=lengths.device).unsqueeze(0)
    return torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)


def _lstm_direction(lstm: nn.LSTM, layer: int, suffix: str, x: torch.Tensor) -> torch.Tensor:
    """One layer, one direction of `lstm` over full (unpacked) sequences."""
    weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    zeros = x.new_zeros(1, x.size(0), lstm.hidden_size)
    out, _, _ = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, lstm.training, False, True)
    return out


def packed_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The textbook way: pack, run, unpack (fast with cuDNN; slow to backpropagate on a CPU)."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]


def shape_bucket(value: int, min_step: int) -> int:
    """`value` rounded up to a ladder of four steps per octave (at most 25% more, at least
    `min_step`): the CPU BiLSTM runs on a bounded set of shapes, so oneDNN's primitive cache is
    reused instead of growing with every new (rows, width) it sees."""
    step = max(min_step, 1 << max(0, value.bit_length() - 3))
    return -(-value // step) * step


def grouped_bilstm_tokens(lstm: nn.LSTM, tokens: torch.Tensor, lengths: torch.Tensor,
                          group_cost: float = GROUP_COST, max_rows: int | None = None) -> torch.Tensor:
    """(n_tokens, 2 * hidden) outputs of a bidirectional `lstm` over sequences stored back to back in
    `tokens` (n_tokens, input_dim), sequence i holding lengths[i] >= 1 rows; the same result as
    `packed_bilstm`, faster on a CPU. Sequences are sorted into groups of similar length
    (`length_groups`, each cut into parts of at most `max_rows`, by default GROUP_CELLS / hidden
    size), each group is gathered straight from `tokens` into a padded block and run
    unpacked (oneDNN's fused kernels); the reverse direction reads each sequence reversed within its
    own length, so padding (always at the end) never reaches a real position, and only real
    positions come back.

    Without gradients (inference: the worker, evaluation), each group is padded to a bucketed
    (rows, width) shape (see `shape_bucket`): a long-running worker then meets a bounded set of
    shapes. Training keeps exact shapes (padding would cost backward time, and a run is finite)."""
    n_tokens, dim = tokens.shape
    bucket = shape_bucket if not torch.is_grad_enabled() else lambda value, _: value
    starts = torch.cumsum(lengths, 0) - lengths
    source = torch.cat([tokens, tokens.new_zeros(1, dim)])  # row n_tokens: the padding
    outputs, offsets = [], torch.empty_like(lengths)  # offsets: each sequence's first row in cat(outputs)
    groups = length_groups(lengths, group_cost)
    max_rows = max_rows or max(8, GROUP_CELLS // lstm.hidden_size)
    groups = [part for group in groups for part in torch.tensor_split(group, -(-len(group) // max_rows))]
    done = 0  # rows of the padded blocks so far
    for chunk in groups:  # every layer of one group, then the next group
        rows, w = len(chunk), int(lengths[chunk].max())
        padded_rows, padded_w = bucket(rows, 8), bucket(w, 4)
        chunk_lengths = F.pad(lengths[chunk], (0, padded_rows - rows))  # padding rows: length 0
        t = torch.arange(padded_w, device=tokens.device)
        real = t < chunk_lengths.unsqueeze(1)  # (rows, width)
        where = torch.where(real, F.pad(starts[chunk], (0, padded_rows - rows)).unsqueeze(1) + t, n_tokens)
        reverse = _reverse_index(chunk_lengths, padded_w).unsqueeze(-1)
        hidden = source.index_select(0, where.view(-1)).view(padded_rows, padded_w, dim)
        for layer in range(lstm.num_layers):
            if layer:  # padding positions hold junk here; it never reaches a real position
                hidden = dropout(hidden, lstm.dropout, lstm.training)
            forward = _lstm_direction(lstm, layer, "", hidden)
            backward = _lstm_direction(lstm, layer, "_reverse", hidden.gather(1, reverse.expand_as(hidden)))
            backward = backward.gather(1, reverse.expand_as(backward))
            hidden = torch.cat([forward, backward], dim=-1)
        outputs.append(hidden.reshape(-1, hidden.size(-1)))
        offsets[chunk] = done + torch.arange(rows, device=tokens.device) * padded_w
        done += padded_rows * padded_w
    # every token's row among the blocks' rows: one gather, no boolean indexing
    token_rows = torch.repeat_interleave(offsets, lengths) + torch.arange(n_tokens, device=tokens.device) \
        - torch.repeat_interleave(starts, lengths)
    return torch.cat(outputs).index_select(0, token_rows)


def grouped_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, group_cost: float = GROUP_COST,
                   max_rows: int | None = None):
    """`grouped_bilstm_tokens` on a padded batch x (n, len, input_dim): (n, len, 2 * hidden), zeros
    beyond each length."""
    real = torch.arange(x.size(1), device=x.device) < lengths.unsqueeze(1)
    out = x.new_zeros(*real.shape, 2 * lstm.hidden_size)
    out[real] = grouped_bilstm_tokens(lstm, x[real], lengths, group_cost, max_rows).to(out.dtype)
    return out


def bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(n, len, 2 * hidden) outputs of a bidirectional `lstm`, zeros beyond each length."""
    return packed_bilstm(lstm, x, lengths) if x.is_cuda else grouped_bilstm(lstm, x, lengths)


def bilstm_tokens(lstm: nn.LSTM, tokens: torch.Tensor, real: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The same on real positions only: tokens (n_real, input_dim) at the True places of real
    (n, len) -> (n_real, 2 * hidden)."""
    if not tokens.is_cuda:
        return grouped_bilstm_tokens(lstm, tokens, lengths)
    padded = tokens.new_zeros(*real.shape, tokens.size(-1))
    padded[real] = tokens
    return packed_bilstm(lstm, padded, lengths)[real]


class ContextualEncoder(nn.Module):
    """BiLSTM plus a linear residual of its input, then LayerNorm."""

    def __init__(self, input_dim: int, hidden: int, num_layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=num_layers, bidirectional=True, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.residual = nn.Linear(input_dim, 2 * hidden)
        self.norm = nn.LayerNorm(2 * hidden)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: (n, len, input_dim) zero beyond lengths; lengths: (n,) >= 1
        return self.norm(bilstm(self.lstm, x, lengths) + self.residual(x))  # (n, len, 2 * hidden)

    def forward_tokens(self, tokens: torch.Tensor, real: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The same on real positions only: tokens (n_real, input_dim), real (n, len) -> (n_real, 2 * hidden)."""
        return self.norm(bilstm_tokens(self.lstm, tokens, real, lengths) + self.residual(tokens))


class CrossAttention(nn.Module):
    """Multi-head scaled dot-product attention: word queries over sentence keys/values, averaged
    over the real queries. Averaging and the output projection are linear, so the attention weights
    are averaged first and V and the projection applied once per post (the same value as averaging
    the projected attended queries, as the reference does, without a (docs, queries, dim) tensor)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the sentence state size {dim}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, queries, query_mask, states, state_mask):
        # queries: (docs, q, dim) already through self.query, 0 where query_mask is False
        # states: (docs, s, dim), state_mask: (docs, s)
        docs, _, dim = queries.shape
        split = lambda t: t.view(docs, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (docs, heads, n, hd)
        Q, K, V = split(queries), split(self.key(states)), split(self.value(states))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(self.head_dim)  # (docs, heads, q, s)
        scores = scores.masked_fill(~state_mask[:, None, None, :], MASKED)
        weights = self.dropout(F.softmax(scores, dim=-1))  # (docs, heads, q, s)
        # the mean over real queries of weights @ V is (their mean weights) @ V: no (docs, q, dim) tensor
        keep = query_mask.to(weights.dtype)
        mean_weights = (keep[:, None, None, :] @ weights) / keep.sum(1).clamp(min=1.0)[:, None, None, None]
        return self.output((mean_weights @ V).reshape(docs, dim))  # (docs, heads, 1, hd) -> (docs, dim)


class HAN(nn.Module):
    def __init__(self, config: HANConfig, embeddings: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
        if embeddings is not None:
            self.embedding.weight.data.copy_(embeddings)
        word_dim, sent_dim = 2 * c.word_hidden, 2 * c.sent_hidden
        self.dropout = Dropout(c.dropout)
        self.word_encoder = ContextualEncoder(c.embed_dim, c.word_hidden, c.num_layers, c.dropout)
        self.word_attention = AdditiveAttention(word_dim, c.attention_dim, c.dropout)
        self.sent_encoder = ContextualEncoder(word_dim, c.sent_hidden, c.num_layers, c.dropout)
        self.sent_attention = AdditiveAttention(sent_dim, c.attention_dim, c.dropout)
        self.word_query = nn.Linear(word_dim, sent_dim)
        self.cross_attention = CrossAttention(sent_dim, c.num_heads, c.dropout)
        self.gate = nn.Sequential(nn.Linear(2 * sent_dim, sent_dim), nn.Sigmoid())
        self.classifier = nn.Sequential(nn.Linear(sent_dim, sent_dim // 2), nn.ReLU(), Dropout(c.dropout),
                                        nn.Linear(sent_dim // 2, c.num_classes))

    def forward(self, words: torch.Tensor, sent_lengths: torch.Tensor, doc_lengths: torch.Tensor) -> HANOutput:
        # words: (sents, max_words) every real sentence of the batch, post after post
        # sent_lengths: (sents,) >= 1; doc_lengths: (docs,) >= 1 sentences per post
        n_sents, max_words = words.shape
        docs, max_sents = doc_lengths.numel(), int(doc_lengths.max())
        device = words.device

        # 1-2. word level, once over all sentences, on real words only
        word_mask = torch.arange(max_words, device=device) < sent_lengths.unsqueeze(1)  # (sents, words)
        embedded = self.dropout(self.embedding(words[word_mask]))  # (real words, embed)
        word_states = self.word_encoder.forward_tokens(embedded, word_mask, sent_lengths)  # (real words, wd)
        scores = torch.full((n_sents, max_words), MASKED, dtype=word_states.dtype, device=device)
        scores[word_mask] = self.word_attention.scores(word_states).to(scores.dtype)  # autocast may differ
        word_weights = F.softmax(scores, dim=-1)  # (sents, words), 0 on padding
        sent_of_word = torch.repeat_interleave(torch.arange(n_sents, device=device), sent_lengths)
        weighted = word_weights[word_mask].unsqueeze(-1) * word_states
        sent_vectors = weighted.new_zeros(n_sents, weighted.size(-1)).index_add(0, sent_of_word, weighted)

        # sentences back into their posts: (docs, max_sents, wd)
        doc_index = torch.repeat_interleave(torch.arange(docs, device=device), doc_lengths)
        first = torch.cumsum(doc_lengths, 0) - doc_lengths
        slot = torch.arange(n_sents, device=device) - first[doc_index]
        sent_mask = torch.arange(max_sents, device=device) < doc_lengths.unsqueeze(1)  # (docs, max_sents)
        sent_grid = sent_vectors.new_zeros(docs, max_sents, sent_vectors.size(-1))
        sent_grid[doc_index, slot] = sent_vectors

        # 3. sentence level
        sent_states = self.sent_encoder(sent_grid, doc_lengths)  # (docs, max_sents, sd)
        sent_path, sent_weights = self.sent_attention(sent_states, sent_mask)  # (docs, max_sents)

        # 4. cross-attention: the top-k real words of each sentence query the sentence states
        k = min(self.config.top_k, max_words)
        top_position = word_weights.topk(k, dim=-1).indices  # (sents, k)
        query_ok = top_position < sent_lengths.unsqueeze(1)  # the top-k of a short sentence ends in padding
        sent_start = torch.cumsum(sent_lengths, 0) - sent_lengths  # first real word of each sentence
        top_words = (sent_start.unsqueeze(1) + top_position)[query_ok]  # (queries,) rows of word_states
        queries = self.cross_attention.query(self.dropout(self.word_query(word_states[top_words])))
        # each post's real queries, packed to the left of a (docs, max queries, sd) grid
        query_doc = doc_index.repeat_interleave(k)[query_ok.reshape(-1)]  # (queries,)
        per_doc = torch.bincount(query_doc, minlength=docs)
        position = torch.arange(len(query_doc), device=device) - (torch.cumsum(per_doc, 0) - per_doc)[query_doc]
        query_grid = queries.new_zeros(docs, int(per_doc.max()), queries.size(-1))
        query_grid[query_doc, position] = queries
        query_mask = torch.arange(query_grid.size(1), device=device) < per_doc.unsqueeze(1)
        cross_path = self.cross_attention(query_grid, query_mask, sent_states, sent_mask)

        # 5. gate and classifier
        gate = self.gate(torch.cat([sent_path, cross_path], dim=-1))
        document = gate * cross_path + (1 - gate) * sent_path
        return HANOutput(self.classifier(document), word_weights, sent_weights, gate)
