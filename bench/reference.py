"""The reference experiment's structure, written plainly: a Python loop over sentence slots.

This is the yardstick for han.model.HAN. It borrows the weights of a HAN and runs them the way
the reference notebook did (section 7): posts padded to (batch, max_sents, max_words), the word
encoder called once per sentence slot, every sentence padded to the longest of the batch. Padding
is kept out of the cross-attention queries, as in han.model, so the two must agree to float noise.

    loop = ReferenceLoopHAN(model)
    docs, doc_lengths, sent_lengths = reference_collate(encoded, index)
    logits, word_weights, sent_weights, gate = loop(docs, doc_lengths, sent_lengths)
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from han.model import HAN, MASKED
from han.text import EncodedDocs


def reference_collate(encoded: EncodedDocs, doc_index):
    """The reference's collate_fn: a (docs, max_sents, max_words) tensor, empty slots of length 1."""
    docs = []
    for d in doc_index:
        start, end = encoded.doc_offsets[d], encoded.doc_offsets[d + 1]
        docs.append([encoded.tokens[encoded.sent_offsets[s]:encoded.sent_offsets[s + 1]].tolist()
                     for s in range(start, end)])
    doc_lengths = [len(doc) for doc in docs]
    max_sents = max(doc_lengths)
    max_words = max(len(sentence) for doc in docs for sentence in doc)
    sent_lengths = [[len(s) for s in doc] + [1] * (max_sents - len(doc)) for doc in docs]
    padded = [[s + [0] * (max_words - len(s)) for s in doc] + [[0] * max_words] * (max_sents - len(doc))
              for doc in docs]
    return torch.LongTensor(padded), torch.LongTensor(doc_lengths), torch.LongTensor(sent_lengths)


def _encode(encoder, x, lengths):
    """pack -> BiLSTM -> unpack -> zero-pad to full length -> + residual -> LayerNorm (reference order)."""
    packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
    out, _ = encoder.lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True)
    if out.size(1) < x.size(1):
        out = torch.cat([out, out.new_zeros(out.size(0), x.size(1) - out.size(1), out.size(2))], dim=1)
    return encoder.norm(out + encoder.residual(x))


def _attend(attention, hidden, mask):
    scores = attention.context(attention.attention(hidden)).squeeze(-1)
    weights = F.softmax(scores.masked_fill(mask == 0, MASKED), dim=-1)
    return torch.bmm(weights.unsqueeze(1), hidden).squeeze(1), weights


class ReferenceLoopHAN(nn.Module):
    def __init__(self, model: HAN):
        super().__init__()
        self.m = model

    def forward(self, docs, doc_lengths, sent_lengths):
        m = self.m
        batch, max_sents, max_words = docs.shape
        sent_reprs, word_attns, word_states = [], [], []
        for i in range(max_sents):  # the reference's loop over sentence slots
            words, lengths = docs[:, i, :], sent_lengths[:, i]
            embedded = m.dropout(m.embedding(words))
            hidden = _encode(m.word_encoder, embedded, lengths)
            mask = torch.arange(max_words, device=docs.device).unsqueeze(0) < lengths.unsqueeze(1)
            vector, weights = _attend(m.word_attention, hidden, mask)
            sent_reprs.append(vector)
            word_attns.append(weights)
            word_states.append(hidden)
        sent_reprs = torch.stack(sent_reprs, 1)  # (batch, sents, wd)
        word_attns = torch.stack(word_attns, 1)  # (batch, sents, words)
        word_states = torch.stack(word_states, 1)  # (batch, sents, words, wd)

        sent_states = _encode(m.sent_encoder, sent_reprs, doc_lengths)
        sent_mask = torch.arange(max_sents, device=docs.device).unsqueeze(0) < doc_lengths.unsqueeze(1)
        sent_path, sent_weights = _attend(m.sent_attention, sent_states, sent_mask)

        k = min(m.config.top_k, max_words)
        top = torch.topk(word_attns, k, dim=-1).indices  # (batch, sents, k)
        filtered = torch.gather(word_states.view(batch * max_sents, max_words, -1), 1,
                                top.view(batch * max_sents, k, 1).expand(-1, -1, word_states.size(-1)))
        queries = m.dropout(m.word_query(filtered.view(batch, max_sents * k, -1)))
        query_ok = (torch.arange(k, device=docs.device) < sent_lengths.unsqueeze(-1)) & sent_mask.unsqueeze(-1)
        cross = m.cross_attention
        q = cross.query(queries).view(batch, -1, cross.num_heads, cross.head_dim).transpose(1, 2)
        kk = cross.key(sent_states).view(batch, max_sents, cross.num_heads, cross.head_dim).transpose(1, 2)
        v = cross.value(sent_states).view(batch, max_sents, cross.num_heads, cross.head_dim).transpose(1, 2)
        scores = torch.matmul(q, kk.transpose(-2, -1)) / math.sqrt(cross.head_dim)
        scores = scores.masked_fill(sent_mask.unsqueeze(1).unsqueeze(2) == 0, MASKED)
        attn = cross.dropout(F.softmax(scores, dim=-1))
        attended = torch.matmul(attn, v).transpose(1, 2).contiguous().view(batch, max_sents * k, -1)
        projected = cross.output(attended)  # the reference projects every query, then averages
        keep = query_ok.view(batch, -1, 1).float()
        cross_path = (projected * keep).sum(1) / keep.sum(1).clamp(min=1.0)

        gate = m.gate(torch.cat([sent_path, cross_path], dim=-1))
        document = gate * cross_path + (1 - gate) * sent_path
        return m.classifier(document), word_attns, sent_weights, gate
