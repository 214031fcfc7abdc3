"""What the trainer iterates over: a set of items it can index in any order.

Images are items one by one (:class:`TensorItems`). A token stream is items as windows: item ``i``
is the ``length`` tokens starting at offset ``i`` (:class:`TokenWindows`), so every offset is a
training example once per epoch, in a seeded order, without copying the stream (nanoGPT draws
random offsets with replacement; a permutation of offsets sees each exactly once).

Both keep the trainer's contract: ``len(items)``, ``items.batch(index) -> Batch``,
``items.eval_index()`` (the items one validation pass covers, in order), ``items.to(device)`` and
``items.summarize(means)`` (figures derived from the averaged validation loss terms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor

from genlab.errors import DataError
from genlab.models.base import Batch


class Items(Protocol):
    def __len__(self) -> int: ...
    def batch(self, index: Tensor) -> Batch: ...
    def eval_index(self) -> Tensor: ...
    def to(self, device: torch.device | str) -> Items: ...
    def summarize(self, means: dict[str, float]) -> dict[str, float]: ...


@dataclass(frozen=True)
class TensorItems:
    """Items stored whole: x (N, ...) and optional int64 labels (N,)."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, index: Tensor) -> Batch:
        return Batch(self.x[index], None if self.y is None else self.y[index])

    def eval_index(self) -> Tensor:
        return torch.arange(len(self.x), device=self.x.device)

    def to(self, device: torch.device | str) -> TensorItems:
        return TensorItems(self.x.to(device), None if self.y is None else self.y.to(device))

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        return {}


@dataclass(frozen=True)
class TokenWindows:
    """Windows of ``length`` tokens (a model's context + 1: inputs and shifted targets) of a 1-D stream.

    ``chars_per_token`` (characters of text per token of this stream) turns nats/token into bits
    per character; None for token streams that are not text.
    """

    tokens: Tensor  # (N,) int64
    length: int
    chars_per_token: float | None = None

    def __post_init__(self) -> None:
        if self.tokens.dim() != 1:
            raise ValueError("tokens must be a 1-D stream")
        if self.length < 2:
            raise DataError(f"a window needs at least 2 tokens (an input and a target), got {self.length}.")

    @classmethod
    def fit(cls, tokens: Tensor, length: int, chars_per_token: float | None = None) -> TokenWindows:
        """Windows of ``length``, or one window of the whole stream when it is shorter (validation text)."""
        return cls(tokens, max(2, min(length, len(tokens))), chars_per_token)

    def __len__(self) -> int:
        return max(len(self.tokens) - self.length + 1, 0)

    def batch(self, index: Tensor) -> Batch:
        offsets = torch.arange(self.length, device=self.tokens.device)
        return Batch(self.tokens[index.to(self.tokens.device)[:, None] + offsets])  # (B, length)

    def eval_index(self) -> Tensor:
        """Windows whose targets tile the stream once: every token is predicted exactly once."""
        return torch.arange(0, len(self), self.length - 1, device=self.tokens.device)

    def to(self, device: torch.device | str) -> TokenWindows:
        return replace(self, tokens=self.tokens.to(device))

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """Perplexity and bits per token (and per character) from the mean loss in nats/token."""
        if "loss" not in means:
            return {}
        nats = means["loss"]
        out = {"perplexity": math.exp(min(nats, 700.0)), "bits_per_token": nats / math.log(2)}
        if self.chars_per_token:
            out["bits_per_char"] = out["bits_per_token"] / self.chars_per_token
        return out
