"""Recurrent language models: LSTM (Hochreiter & Schmidhuber 1997) or GRU (Cho et al. 2014).

Token embedding → dropout → stacked recurrent layers (dropout between them) → dropout → output
layer, optionally tied to the embedding (Press & Wolf 2017; a projection to the embedding size is
added when the hidden size differs, as in Merity et al.'s AWD-LSTM). Training reads windows of
``context_length`` tokens, each from a zero state (truncated backpropagation through time).
Generation carries the recurrent state forward, so it has no context limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from genlab.config import check, validate
from genlab.models.sequence import SequenceModel, check_sequence_config
from genlab.registry import register_family


@dataclass(frozen=True)
class RNNConfig:
    vocab_size: int = 0  # 0: set from the tokenizer when training
    context_length: int = 256  # tokens per training window (the truncated-BPTT length)
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = 256
    hidden_dim: int = 512
    num_layers: int = 2
    dropout: float = 0.2  # on the embeddings, between layers and before the output layer
    tie_weights: bool = True
    tokenizer: Literal["char", "bpe", "gpt2", "music"] = "char"
    bpe_vocab_size: int = 1024

    def __post_init__(self) -> None:
        validate(self)
        check_sequence_config(self)
        check(self.num_layers >= 1, f"num_layers={self.num_layers} must be at least 1.")
        check(self.embed_dim >= 1 and self.hidden_dim >= 1, "embed_dim and hidden_dim must be at least 1.")
        check(0 <= self.dropout < 1, f"dropout={self.dropout} must be in [0, 1).")


class RNNState:
    """The recurrent state of one generation call: h (and c for an LSTM), (layers, B, hidden)."""

    def __init__(self, state: Tensor | tuple[Tensor, Tensor], length: int) -> None:
        self.state, self.length = state, length

    def select(self, index: Tensor) -> None:
        if isinstance(self.state, tuple):
            self.state = tuple(s.index_select(1, index) for s in self.state)
        else:
            self.state = self.state.index_select(1, index)


@register_family("rnn", RNNConfig, "LSTM/GRU language model (text, music) with tied embeddings")
class RNNLanguageModel(SequenceModel):
    def __init__(self, config: RNNConfig) -> None:
        super().__init__(config)
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        cell = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.rnn = cell(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                        dropout=c.dropout if c.num_layers > 1 else 0.0)  # fmt: skip
        self.drop = nn.Dropout(c.dropout)
        out_dim = c.hidden_dim
        self.proj = None
        if c.tie_weights and c.hidden_dim != c.embed_dim:
            self.proj = nn.Linear(c.hidden_dim, c.embed_dim)
            out_dim = c.embed_dim
        self.head = nn.Linear(out_dim, c.vocab_size)
        if c.tie_weights:
            self.head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, 0.0, 0.05)

    @property
    def max_length(self) -> int | None:
        return None

    def _logits(self, hidden: Tensor) -> Tensor:
        hidden = self.drop(hidden)
        if self.proj is not None:
            hidden = self.proj(hidden)
        return self.head(hidden)

    def _run(self, ids: Tensor, mask: Tensor | None, state=None) -> tuple[Tensor, object]:
        """(B, T) ids → (B, T, H) outputs and the final state. Left-padded rows are packed so that
        padding never enters the state; their outputs at pad positions are zeros."""
        x = self.drop(self.embed(ids))
        if mask is None:
            return self.rnn(x, state)
        T = ids.shape[1]
        lengths = mask.sum(1)
        shift = (T - lengths).tolist()
        # left padding → right padding (real tokens first), pack, run, and shift back
        right = torch.stack([x[i].roll(-s, 0) for i, s in enumerate(shift)])
        packed = pack_padded_sequence(right, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        return torch.stack([out[i].roll(s, 0) for i, s in enumerate(shift)]), state

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T) ids (``mask``: real tokens, left padding False) → (B, T, V) logits."""
        return self._logits(self._run(ids, mask)[0])

    def prefill(self, ids: Tensor, mask: Tensor | None) -> tuple[Tensor, RNNState]:
        out, state = self._run(ids, mask)
        return self._logits(out[:, -1]), RNNState(state, ids.shape[1])

    def step(self, ids: Tensor, cache: RNNState) -> Tensor:
        out, cache.state = self.rnn(self.drop(self.embed(ids[:, None])), cache.state)
        cache.length += 1
        return self._logits(out[:, -1])
