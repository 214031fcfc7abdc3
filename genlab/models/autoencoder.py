"""Autoencoders: dense, convolutional and denoising.

An autoencoder learns a code ``z = encoder(x)`` from which ``decoder(z)`` rebuilds ``x``. It has no
prior over codes, so it cannot sample new data; its uses are compression, features, and anomaly
scoring by reconstruction error. The denoising variant (Vincent et al. 2008) corrupts the input
(Gaussian noise and/or masking) and learns to rebuild the clean image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.config import check, validate
from genlab.models.base import Batch, GenerativeModel, Loss
from genlab.nn.blocks import (
    Activation,
    Architecture,
    ImageDecoder,
    ImageEncoder,
    check_image_config,
    image_coder_kwargs,
)
from genlab.registry import register_family


@dataclass(frozen=True)
class AutoencoderConfig:
    channels: int = 1
    height: int = 28
    width: int = 28
    latent_dim: int = 64
    architecture: Architecture = "mlp"
    hidden_dims: tuple[int, ...] = ()  # () with mlp: the textbook 784 → 64 → 784
    conv_channels: tuple[int, ...] = (32, 64)  # conv only: one entry per stride-2 stage
    activation: Activation = "relu"
    reconstruction: Literal["bce", "mse"] = "bce"  # bce treats pixels in [0, 1] as Bernoulli means
    noise_std: float = 0.0  # > 0: denoising, add N(0, noise_std²) to the inputs of loss()
    mask_prob: float = 0.0  # > 0: denoising, zero each input pixel of loss() with this probability

    def __post_init__(self) -> None:
        validate(self)
        check_image_config(self)
        check(self.noise_std >= 0, f"noise_std={self.noise_std} must be ≥ 0.")
        check(0 <= self.mask_prob < 1, f"mask_prob={self.mask_prob} must be in [0, 1).")


@register_family("ae", AutoencoderConfig, "autoencoder (dense or conv; denoising with noise_std/mask_prob)")
class Autoencoder(GenerativeModel):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__(config)
        kwargs = image_coder_kwargs(config)
        self.encoder = ImageEncoder(**kwargs, out_dim=config.latent_dim)
        self.decoder = ImageDecoder(**kwargs, in_dim=config.latent_dim)

    def corrupt(self, x: Tensor) -> Tensor:
        """The denoising corruption: additive Gaussian noise, then masking noise, clipped to [0, 1]."""
        cfg = self.config
        if cfg.noise_std > 0:
            x = x + cfg.noise_std * torch.randn_like(x)
        if cfg.mask_prob > 0:
            x = x * (torch.rand_like(x) >= cfg.mask_prob)
        return x.clamp(0, 1)

    def encode(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.decoder(z))

    def loss(self, batch: Batch, *, phase: str = "model") -> Loss:
        x = batch.x
        logits = self.decoder(self.encoder(self.corrupt(x)))  # (B, C, H, W)
        mse = F.mse_loss(torch.sigmoid(logits), x)
        if self.config.reconstruction == "bce":
            total = F.binary_cross_entropy_with_logits(logits, x)
        else:
            total = mse
        return Loss(total, {"mse": mse.detach()})
