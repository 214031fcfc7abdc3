"""The contract every genlab model keeps.

A model is a plain ``nn.Module`` built from one frozen config. The trainer, the CLI and the
service use only what is declared here:

* ``loss(batch, *, phase=...) -> Loss`` — the training objective for one batch; ``phase`` picks the
  objective when the model has several optimisers (a GAN's discriminator and generator).
* ``phases()`` — one :class:`Phase` per optimiser (its parameters, how many times it steps per
  training step, its learning-rate scale), in the order the trainer steps them.
* ``diagnose(history) -> str | None`` — a warning about training health from the recent log
  records (a GAN whose discriminator has won), or None.
* ``sample(n, *, generator, labels, **options)`` — new data: images (n, C, H, W) in the model's
  data range, or for token models (``modality == "tokens"``, :mod:`genlab.models.sequence`) a list
  of n token-id lists;
  a family declares its own keyword-only sampling options (a diffusion model's ``num_steps``,
  ``sampler``, ``guidance_scale``) and :func:`sampling_options` lists them.
* ``encode`` / ``decode`` / ``reconstruct`` — where the model has a latent space.

``forward`` takes tensors only; nothing here knows about steps, epochs or run directories.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError, GenlabError


@dataclass(frozen=True)
class Batch:
    """One batch of training data. ``x``: (B, C, H, W) float images in the model's data range, or
    (B, T + 1) int64 token windows for a sequence model."""

    x: Tensor
    y: Tensor | None = None  # (B,) int64 class labels, when the data has them

    def to(self, device: torch.device | str) -> Batch:
        y = None if self.y is None else self.y.to(device, non_blocking=True)
        return Batch(self.x.to(device, non_blocking=True), y)

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class Phase:
    """One optimiser of a model: what it updates and how often."""

    params: list[nn.Parameter]
    repeats: int = 1  # optimiser steps per training step, each on a fresh batch (a WGAN critic: 5)
    lr_scale: float = 1.0  # this phase's learning rate = the schedule's × lr_scale (two time-scale updates)


@dataclass(frozen=True)
class Loss:
    """What ``loss`` returns: the scalar to minimise and detached terms to log."""

    total: Tensor  # scalar, carries the graph
    terms: dict[str, Tensor] = field(default_factory=dict)  # scalars, logged as floats

    def tensors(self) -> dict[str, Tensor]:
        """Every term as a detached scalar tensor, ``loss`` included (no device sync)."""
        return {"loss": self.total.detach(), **{k: v.detach() for k, v in self.terms.items()}}

    def items(self) -> dict[str, float]:
        """Every term as a Python float, ``loss`` included."""
        return {k: float(v) for k, v in self.tensors().items()}


class GenerativeModel(nn.Module):
    """Base class: holds the config and declares the contract; no behaviour of its own beyond it."""

    family: ClassVar[str] = ""
    #: what the model generates: "image" (tensors (B, C, H, W)) or "tokens" (lists of token ids)
    modality: ClassVar[str] = "image"
    #: the range data must be scaled to before it reaches ``loss`` / ``encode``
    data_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    # --- training -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        """Optimiser name → :class:`Phase`, stepped in this order each training step.

        With several phases the trainer computes gradients only for the phase being stepped (the
        other phases' parameters are frozen meanwhile), so a GAN's generator loss does not fill the
        discriminator's gradients and the discriminator loss need not detach the generator's output.
        """
        return {"model": Phase([p for p in self.parameters() if p.requires_grad])}

    def loss(self, batch: Batch, *, phase: str = "model") -> Loss:
        raise NotImplementedError

    def diagnose(self, history: list[dict[str, float]]) -> str | None:
        """A one-line warning about training health, or None.

        ``history`` holds the most recent training log records (oldest first), each the mean of
        the logged loss terms over its interval, plus ``step``.
        """
        return None

    # --- generation -----------------------------------------------------------------------
    @property
    def can_sample(self) -> bool:
        return type(self).sample is not GenerativeModel.sample

    @property
    def num_classes(self) -> int:
        """Number of classes the model is conditioned on (0 = unconditional)."""
        return int(getattr(self.config, "num_classes", 0))

    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        raise GenlabError(f"{self.family} models have no prior to sample from; use reconstruct or a VAE.")

    def check_labels(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor | None:
        """Validate sampling labels; draw uniform ones for a conditional model when none are given."""
        if self.num_classes == 0:
            if labels is not None:
                raise ConfigError(f"this {self.family} model is unconditional; drop the label.")
            return None
        device = self.device
        if labels is None:
            return randint(self.num_classes, (n,), generator=generator, device=device)
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).to(device)
        if labels.numel() == 1:
            labels = labels.expand(n)
        if labels.numel() != n:
            raise ConfigError(f"got {labels.numel()} labels for {n} samples; give one label or one per sample.")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise ConfigError(
                f"label {int(bad[0])} was never seen in training; this model knows labels 0..{self.num_classes - 1}."
            )
        return labels

    # --- latent space ---------------------------------------------------------------------
    @property
    def has_latent(self) -> bool:
        return type(self).encode is not GenerativeModel.encode

    def encode(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, C, H, W) → (B, latent_dim): the point estimate of each input's code."""
        raise GenlabError(f"{self.family} models have no encoder.")

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, latent_dim) → (B, C, H, W) in the data range."""
        raise GenlabError(f"{self.family} models have no decoder.")

    @torch.no_grad()
    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Decode the encoding of ``x``: (B, C, H, W) → (B, C, H, W)."""
        return self.decode(self.encode(x, labels), labels)

    @torch.no_grad()
    def anomaly_score(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, C, H, W) → (B,) mean squared reconstruction error per item; high = unusual."""
        return (self.reconstruct(x, labels) - x).pow(2).flatten(1).mean(1)

    # --- helpers --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def keyword_options(method: Callable[..., Any]) -> list[str]:
    """The keyword-only options of a generation method beyond ``generator``, ``labels`` and ``strength``."""
    params = inspect.signature(method).parameters.values()
    skip = ("generator", "labels", "strength")
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in skip]


def sampling_options(model: GenerativeModel) -> list[str]:
    """The keyword-only options ``model.sample`` takes beyond ``generator`` and ``labels``."""
    return keyword_options(model.sample)


class GeneratorGroup:
    """One generator per slice of a batch, for batching several requests into one ``sample`` call.

    Rows ``[start, start + count)`` draw all their randomness (labels, latents, every sampler step's
    noise) from their own generator, in the same order and shapes as a call of ``count`` samples
    alone would, so each request gets the samples it would have got by itself.
    """

    def __init__(self, parts: Sequence[tuple[torch.Generator, int]]) -> None:
        if not parts or any(count < 1 for _, count in parts):
            raise ConfigError("a generator group needs at least one (generator, count) with count >= 1.")
        if len({g.device for g, _ in parts}) != 1:
            raise ConfigError("the generators of a group must be on one device.")
        self.parts = list(parts)
        self.device = parts[0][0].device
        self.total = sum(count for _, count in parts)

    def draw(self, fn: Callable[[tuple[int, ...], torch.Generator], Tensor], shape: tuple[int, ...]) -> Tensor:
        """``fn(shape_i, generator_i)`` for each part, concatenated along the batch dimension."""
        if shape[0] != self.total:
            raise ConfigError(f"a draw of {shape[0]} rows from a generator group of {self.total} rows.")
        return torch.cat([fn((count, *shape[1:]), g) for g, count in self.parts])


Generator = torch.Generator | GeneratorGroup


def generator_device(generator: Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def randn(shape: tuple[int, ...], *, generator: Generator | None, device: torch.device) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved: same numbers on CPU and CUDA."""
    if isinstance(generator, GeneratorGroup):
        return generator.draw(lambda s, g: torch.randn(s, generator=g, device=g.device), shape).to(device)
    return torch.randn(shape, generator=generator, device=generator_device(generator)).to(device)


def randint(high: int, shape: tuple[int, ...], *, generator: Generator | None, device: torch.device) -> Tensor:
    """Uniform integers in [0, high), drawn like :func:`randn`."""
    if isinstance(generator, GeneratorGroup):
        return generator.draw(lambda s, g: torch.randint(high, s, generator=g, device=g.device), shape).to(device)
    return torch.randint(high, shape, generator=generator, device=generator_device(generator)).to(device)
