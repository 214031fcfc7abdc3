"""What autoregressive token models (GPT, LSTM/GRU) share: the next-token loss and sampling.

A sequence model is a :class:`GenerativeModel` over token ids. Its training batch ``x`` is
(B, T + 1) int64: the model reads ``x[:, :-1]`` and is scored on predicting ``x[:, 1:]`` (loss in
nats per token; the trainer turns validation loss into perplexity and bits per token/character).
``model(ids)`` returns logits (B, T, V). For decoding it gives ``prefill`` and ``step`` (see
:mod:`genlab.sampling.decoding`); the tokenizer that maps text to ids is attached by training and
loading as ``model.tokenizer`` and saved beside the weights as ``tokenizer.json``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import ConfigError
from genlab.models.base import Batch, GenerativeModel, Loss
from genlab.sampling.decoding import DecodingOptions, beam_search, generate

#: what ``tokenizer=`` may name in a sequence model's config
TOKENIZER_KINDS = ("char", "bpe", "gpt2", "music")


def check_sequence_config(config: Any) -> None:
    """Shared checks of ``vocab_size`` and ``context_length`` (vocab_size 0 = set from the tokenizer)."""
    if config.vocab_size < 0 or config.context_length < 1:
        raise ConfigError(f"vocab_size={config.vocab_size} must be ≥ 0 and context_length={config.context_length} ≥ 1.")


class SequenceModel(GenerativeModel):
    """Base class of token models: subclasses give ``forward``, ``prefill``, ``step`` and ``max_length``."""

    modality: ClassVar[str] = "tokens"
    data_range: ClassVar[tuple[float, float]] = (0.0, 0.0)  # token ids: no scaling

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if config.vocab_size < 1:
            raise ConfigError(
                "vocab_size=0: it is set from the tokenizer when training; give vocab_size=N to build the model alone."
            )
        self.tokenizer = None  # attached by genlab.train / genlab.load

    @property
    def max_length(self) -> int | None:
        """The context window in tokens (None: no limit)."""
        return self.config.context_length

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T) int64 token ids (``mask``: True at real tokens, left padding False) → (B, T, V) logits."""
        raise NotImplementedError

    def prefill(self, ids: Tensor, mask: Tensor | None) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def step(self, ids: Tensor, cache: Any) -> Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch, *, phase: str = "model") -> Loss:
        x = batch.x
        if x.dtype != torch.long or x.dim() != 2:
            raise ConfigError(f"a sequence model trains on (B, T+1) int64 token ids, got {x.dtype} {tuple(x.shape)}.")
        logits = self(x[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1))
        return Loss(nll)

    def check_ids(self, ids: Tensor) -> None:
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ConfigError(f"token ids must be in 0..{self.config.vocab_size - 1} (this model's vocabulary).")

    def start_ids(self) -> list[int]:
        """The prompt of an unprompted sample: the tokenizer's start (end-of-text or a newline), else id 0."""
        return self.tokenizer.start_ids() if self.tokenizer is not None else [0]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        prompt_ids: list[int] | None = None,
        max_new_tokens: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
        num_beams: int = 1,
    ) -> list[list[int]]:
        """``n`` continuations of ``prompt_ids`` (default: :meth:`start_ids`) as lists of new token ids,
        each ending before the tokenizer's end-of-text. ``num_beams > 1`` returns the n best beams."""
        self.check_labels(n, labels, generator)
        options = DecodingOptions(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                  top_p=top_p, repetition_penalty=repetition_penalty, num_beams=num_beams)  # fmt: skip
        prompt = list(prompt_ids) if prompt_ids else self.start_ids()
        eos = None if self.tokenizer is None else self.tokenizer.eos_id
        if num_beams > 1:
            if n > num_beams:
                raise ConfigError(f"beam search returns at most num_beams={num_beams} sequences; got n={n}.")
            return beam_search(self, prompt, options, eos_id=eos, num_return=n)
        return generate(self, [prompt] * n, options, generator=generator, eos_id=eos)
