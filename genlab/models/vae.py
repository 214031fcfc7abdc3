"""Variational autoencoders: VAE, β-VAE and conditional VAE.

Kingma & Welling (2014): a Gaussian encoder q(z|x) = N(μ(x), diag σ²(x)), a standard normal
prior p(z) = N(0, I) and a decoder p(x|z), trained by maximising the evidence lower bound

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))  ≤  log p(x).

β-VAE (Higgins et al. 2017) weights the KL term by β; the conditional VAE (Sohn et al. 2015)
feeds a class label to both encoder and decoder so ``sample(labels=…)`` draws that class.

The decoder is Bernoulli (pixels in [0, 1] as Bernoulli means, the classic MNIST choice) or
Gaussian with one learned scale σ shared by all pixels (Rybkin et al. 2021, σ-VAE), which
balances the two ELBO terms without a hand-tuned β.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.config import check, validate
from genlab.models.base import Batch, GenerativeModel, Loss, randn
from genlab.nn.blocks import (
    Activation,
    Architecture,
    ImageDecoder,
    ImageEncoder,
    check_image_config,
    image_coder_kwargs,
    one_hot,
)
from genlab.registry import register_family

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class VAEConfig:
    channels: int = 1
    height: int = 28
    width: int = 28
    latent_dim: int = 16
    architecture: Architecture = "mlp"
    hidden_dims: tuple[int, ...] = (512, 256)
    conv_channels: tuple[int, ...] = (32, 64)  # conv only: one entry per stride-2 stage
    activation: Activation = "relu"
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    beta: float = 1.0  # weight of the KL term; > 1 is β-VAE
    num_classes: int = 0  # > 0: conditional VAE on that many classes

    def __post_init__(self) -> None:
        validate(self)
        check_image_config(self)
        check(self.beta >= 0, f"beta={self.beta} must be ≥ 0.")
        check(self.num_classes >= 0, f"num_classes={self.num_classes} must be ≥ 0.")


@register_family("vae", VAEConfig, "variational autoencoder (β-VAE with beta, conditional with num_classes)")
class VAE(GenerativeModel):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        kwargs = image_coder_kwargs(config)
        k = config.num_classes
        self.encoder = ImageEncoder(**kwargs, out_dim=2 * config.latent_dim, cond_dim=k)
        self.decoder = ImageDecoder(**kwargs, in_dim=config.latent_dim, cond_dim=k)
        if config.likelihood == "gaussian":  # log σ of the Gaussian decoder, learned (σ-VAE)
            self.log_scale = nn.Parameter(torch.zeros(()))

    @property
    def data_dims(self) -> int:
        return self.config.channels * self.config.height * self.config.width

    def _cond(self, x_or_z: Tensor, labels: Tensor | None) -> Tensor | None:
        return one_hot(labels, self.config.num_classes, x_or_z.shape[0], x_or_z.device)

    def posterior(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x): (B, C, H, W) → mean (B, D) and log-variance (B, D)."""
        mean, log_var = self.encoder(x, self._cond(x, labels)).chunk(2, dim=1)
        return mean, log_var.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    def encode(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.posterior(x, labels)[0]

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """The decoder's mean image in [0, 1]."""
        return torch.sigmoid(self.decoder(z, self._cond(z, labels)))

    def reconstruction_nll(self, x: Tensor, logits: Tensor) -> Tensor:
        """−log p(x|z) per item in nats: (B, C, H, W) × 2 → (B,)."""
        if self.config.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:  # Gaussian N(x; sigmoid(logits), σ²)
            z = (x - torch.sigmoid(logits)) * torch.exp(-self.log_scale)
            nll = 0.5 * z.pow(2) + self.log_scale + 0.5 * LOG_2PI
        return nll.flatten(1).sum(1)

    @staticmethod
    def kl_divergence(mean: Tensor, log_var: Tensor) -> Tensor:
        """KL(N(μ, σ²) ‖ N(0, I)) per item in nats, closed form: ½ Σ (μ² + σ² − 1 − log σ²)."""
        return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)

    def loss(self, batch: Batch, *, phase: str = "model") -> Loss:
        x = batch.x
        mean, log_var = self.posterior(x, batch.y)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)  # reparameterisation trick
        logits = self.decoder(z, self._cond(z, batch.y))
        recon = self.reconstruction_nll(x, logits)  # (B,)
        kl = self.kl_divergence(mean, log_var)  # (B,)
        total = (recon + self.config.beta * kl).mean()
        nelbo = (recon + kl).mean().detach()
        return Loss(
            total,
            {
                "recon": recon.mean().detach(),
                "kl": kl.mean().detach(),
                "nelbo": nelbo,
                "bits_per_dim": nelbo / (self.data_dims * math.log(2)),
                "mse": F.mse_loss(torch.sigmoid(logits), x).detach(),  # of the decoded sample z, per pixel
            },
        )

    @torch.no_grad()
    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, num_samples: int = 1) -> Tensor:
        """Lower bound on log p(x) per item in nats, (B, C, H, W) → (B,).

        ``num_samples=1`` is the ELBO; K > 1 is the importance-weighted bound (Burda et al. 2016)
        log (1/K) Σ_k p(x, z_k) / q(z_k|x), which tightens as K grows.
        """
        mean, log_var = self.posterior(x, labels)
        std = torch.exp(0.5 * log_var)
        weights = []
        for _ in range(num_samples):
            eps = torch.randn_like(mean)
            z = mean + std * eps
            log_px_z = -self.reconstruction_nll(x, self.decoder(z, self._cond(z, labels)))
            log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(1)
            log_qz = -0.5 * (eps.pow(2) + LOG_2PI + log_var).sum(1)
            weights.append(log_px_z + log_pz - log_qz)
        return torch.logsumexp(torch.stack(weights), 0) - math.log(num_samples)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """Draw z ~ N(0, I) and decode: (n, C, H, W) mean images in [0, 1]."""
        labels = self.check_labels(n, labels, generator)
        z = randn((n, self.config.latent_dim), generator=generator, device=self.device)
        return self.decode(z, labels)
