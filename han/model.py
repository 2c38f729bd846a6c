"""The Hierarchical Attention Network of the reference experiment (section 7), vectorised.

Five stages: a contextual word encoder (BiLSTM + residual projection + LayerNorm), additive word
attention, a sentence BiLSTM with additive sentence attention, document-level cross-attention from
each sentence's top-k words to the sentence states, and a gate between the two document paths.

Unlike the reference, which runs the word encoder once per sentence slot in a Python loop over a
(batch, sents, words) tensor padded to the longest sentence, the word level here runs once over
all real sentences of a batch, packed. Padding never enters a result: top-k queries are taken
from real words of real sentences only and averaged over real queries only, so a post's output
does not depend on which other posts share its batch.

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


class AdditiveAttention(nn.Module):
    """score = v . dropout(tanh(W h)); softmax over the unmasked positions; weighted sum of h."""

    def __init__(self, hidden_dim: int, attention_dim: int, dropout: float):
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(hidden_dim, attention_dim), nn.Tanh(), nn.Dropout(dropout))
        self.context = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor):
        scores = self.context(self.attention(hidden)).squeeze(-1)  # (n, len)
        weights = F.softmax(scores.masked_fill(~mask, MASKED), dim=-1)
        return torch.bmm(weights.unsqueeze(1), hidden).squeeze(1), weights  # (n, hidden), (n, len)


class ContextualEncoder(nn.Module):
    """BiLSTM over packed sequences plus a linear residual of its input, then LayerNorm."""

    def __init__(self, input_dim: int, hidden: int, num_layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=num_layers, bidirectional=True, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.residual = nn.Linear(input_dim, 2 * hidden)
        self.norm = nn.LayerNorm(2 * hidden)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: (n, len, input_dim); lengths: (n,) >= 1
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return self.norm(out + self.residual(x))  # (n, len, 2 * hidden)


class CrossAttention(nn.Module):
    """Multi-head scaled dot-product attention: word queries over sentence keys/values."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the sentence state size {dim}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, query_mask, states, state_mask):
        # queries: (docs, q, dim), query_mask: (docs, q); states: (docs, s, dim), state_mask: (docs, s)
        docs, q, dim = queries.shape
        split = lambda t: t.view(docs, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (docs, heads, n, hd)
        Q, K, V = split(self.query(queries)), split(self.key(states)), split(self.value(states))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(self.head_dim)  # (docs, heads, q, s)
        scores = scores.masked_fill(~state_mask[:, None, None, :], MASKED)
        weights = self.dropout(F.softmax(scores, dim=-1))
        attended = (weights @ V).transpose(1, 2).reshape(docs, q, dim)
        projected = self.output(attended)  # (docs, q, dim)
        # mean over real queries only
        keep = query_mask.unsqueeze(-1).to(projected.dtype)
        return (projected * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class HAN(nn.Module):
    def __init__(self, config: HANConfig, embeddings: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
        if embeddings is not None:
            self.embedding.weight.data.copy_(embeddings)
        word_dim, sent_dim = 2 * c.word_hidden, 2 * c.sent_hidden
        self.dropout = nn.Dropout(c.dropout)
        self.word_encoder = ContextualEncoder(c.embed_dim, c.word_hidden, c.num_layers, c.dropout)
        self.word_attention = AdditiveAttention(word_dim, c.attention_dim, c.dropout)
        self.sent_encoder = ContextualEncoder(word_dim, c.sent_hidden, c.num_layers, c.dropout)
        self.sent_attention = AdditiveAttention(sent_dim, c.attention_dim, c.dropout)
        self.word_query = nn.Linear(word_dim, sent_dim)
        self.cross_attention = CrossAttention(sent_dim, c.num_heads, c.dropout)
        self.gate = nn.Sequential(nn.Linear(2 * sent_dim, sent_dim), nn.Sigmoid())
        self.classifier = nn.Sequential(nn.Linear(sent_dim, sent_dim // 2), nn.ReLU(), nn.Dropout(c.dropout),
                                        nn.Linear(sent_dim // 2, c.num_classes))

    def forward(self, words: torch.Tensor, sent_lengths: torch.Tensor, doc_lengths: torch.Tensor) -> HANOutput:
        # words: (sents, max_words) every real sentence of the batch, post after post
        # sent_lengths: (sents,) >= 1; doc_lengths: (docs,) >= 1 sentences per post
        n_sents, max_words = words.shape
        docs, max_sents = doc_lengths.numel(), int(doc_lengths.max())
        device = words.device

        # 1-2. word level, once over all sentences
        word_mask = torch.arange(max_words, device=device) < sent_lengths.unsqueeze(1)  # (sents, words)
        word_states = self.word_encoder(self.dropout(self.embedding(words)), sent_lengths)  # (sents, words, wd)
        sent_vectors, word_weights = self.word_attention(word_states, word_mask)  # (sents, wd), (sents, words)

        # sentences back into their posts: (docs, max_sents, wd)
        doc_index = torch.repeat_interleave(torch.arange(docs, device=device), doc_lengths)
        first = torch.cumsum(doc_lengths, 0) - doc_lengths
        slot = torch.arange(n_sents, device=device) - first[doc_index]
        sent_mask = torch.arange(max_sents, device=device) < doc_lengths.unsqueeze(1)  # (docs, max_sents)
        sent_grid = sent_vectors.new_zeros(docs, max_sents, sent_vectors.size(-1))
        sent_grid[doc_index, slot] = sent_vectors

        # 3. sentence level
        sent_states = self.sent_encoder(sent_grid, doc_lengths)  # (docs, max_sents, sd)
        sent_path, sent_weights = self.sent_attention(sent_states, sent_mask)  # (docs, sd), (docs, max_sents)

        # 4. cross-attention: the top-k real words of each sentence query the sentence states
        k = min(self.config.top_k, max_words)
        top_index = word_weights.topk(k, dim=-1).indices  # (sents, k)
        top_states = word_states.gather(1, top_index.unsqueeze(-1).expand(-1, -1, word_states.size(-1)))
        query_ok = torch.arange(k, device=device) < sent_lengths.unsqueeze(1)  # (sents, k)
        queries = top_states.new_zeros(docs, max_sents, k, top_states.size(-1))
        queries[doc_index, slot] = top_states
        query_mask = torch.zeros(docs, max_sents, k, dtype=torch.bool, device=device)
        query_mask[doc_index, slot] = query_ok
        queries = self.dropout(self.word_query(queries.view(docs, max_sents * k, -1)))
        cross_path = self.cross_attention(queries, query_mask.view(docs, -1), sent_states, sent_mask)

        # 5. gate and classifier
        gate = self.gate(torch.cat([sent_path, cross_path], dim=-1))
        document = gate * cross_path + (1 - gate) * sent_path
        return HANOutput(self.classifier(document), word_weights, sent_weights, gate)
