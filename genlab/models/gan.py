"""Generative adversarial networks: DCGAN, WGAN-GP, hinge/SN-GAN and the conditional GAN.

Goodfellow et al. (2014): a generator G maps noise z ~ N(0, I) to images and a discriminator D
learns to tell them from real ones; the two are trained in turn (the trainer's two phases,
``discriminator`` then ``generator``). Three objectives, picked by ``loss``:

* ``bce`` — the original minimax game with the non-saturating generator loss −log D(G(z))
  (Goodfellow et al. 2014, §3), the DCGAN setup (Radford et al. 2016).
* ``wgan-gp`` — D is a critic estimating the Wasserstein-1 distance, kept 1-Lipschitz by a
  penalty on its gradient norm at random interpolates (Gulrajani et al. 2017, eq. 3).
* ``hinge`` — the hinge loss of SN-GAN / SAGAN (Miyato et al. 2018; Zhang et al. 2019), usually
  with ``spectral_norm`` on D (Miyato et al. 2018), which bounds each layer's Lipschitz constant.

Networks are DCGAN-style: G is linear → (C₀, h₀, w₀) → stride-2 transposed convolutions with
BatchNorm and ReLU → tanh, so images live in [-1, 1]; D mirrors it with stride-2 convolutions and
LeakyReLU(0.2). Between D's stages ``d_norm`` puts BatchNorm as in DCGAN (real and fake batches go
through D separately, so each is normalised by its own statistics), layer normalisation, or nothing;
WGAN-GP must not use BatchNorm, as its gradient penalty is per sample (Gulrajani et al. 2017, §4).
The number of stride-2 stages follows the image size, keeping the starting map at about 4–7 pixels
(7 for MNIST, 2 for 8×8 digits).

The conditional GAN (``num_classes > 0``) feeds G a one-hot label concatenated to z (Mirza &
Osindero 2014) and uses a projection discriminator (Miyato & Koyama 2018):
D(x, y) = w·φ(x) + b + ⟨embed(y), φ(x)⟩, with φ(x) the flattened features of the last stage.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm

from genlab.config import check, validate
from genlab.errors import ConfigError
from genlab.models.base import Batch, GenerativeModel, Loss, Phase, randn
from genlab.nn.blocks import one_hot
from genlab.registry import register_family

GANLoss = Literal["bce", "wgan-gp", "hinge"]


# --- sizes -------------------------------------------------------------------------------------
def conv_stages(height: int, width: int) -> int:
    """Stride-2 stages between the image and G's starting map: halve while both sides stay even and
    the smaller stays ≥ 4 (28 → 14 → 7, 32 → 4, 64 → 4), going down to 2 if needed for two stages
    (8 → 4 → 2). Sizes that allow fewer than two stages raise ConfigError."""
    stages, h, w = 0, height, width
    while h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 4:
        stages, h, w = stages + 1, h // 2, w // 2
    while stages < 2 and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 2:
        stages, h, w = stages + 1, h // 2, w // 2
    if stages < 2:
        raise ConfigError(
            f"a GAN cannot make {height}×{width} images: both sides must divide by 4 and be at least 8 "
            "(e.g. 8, 12, 16, 28, 32, 64); resize the data with --image-size 32 (or 28, 64)."
        )
    return stages


def stage_widths(base_channels: int, stages: int) -> list[int]:
    """Channels after each stride-2 stage of D (and before the matching stage of G): base·1, 2, 4, 8, 8…"""
    return [base_channels * min(2**i, 8) for i in range(stages)]


# --- config ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GANConfig:
    channels: int = 1
    height: int = 28
    width: int = 28
    latent_dim: int = 64
    base_channels: int = 64  # D's first stage; the width doubles per stage (capped at 8×), G mirrors it
    loss: GANLoss = "bce"
    spectral_norm: bool = False  # on every layer of D (Miyato et al. 2018)
    d_norm: Literal["batch", "layer", "none"] = "batch"  # normalisation between D's stages
    gp_weight: float = 10.0  # λ of the gradient penalty; used by loss="wgan-gp" only
    n_critic: int = 1  # discriminator steps per generator step (5 for WGAN-GP)
    d_lr_scale: float = 1.0  # D's learning rate = lr × d_lr_scale (two time-scale updates, Heusel et al. 2017)
    num_classes: int = 0  # > 0: conditional GAN on that many classes

    def __post_init__(self) -> None:
        validate(self)
        for name in ("channels", "height", "width", "latent_dim", "base_channels", "n_critic"):
            check(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be at least 1.")
        check(self.num_classes >= 0, f"num_classes={self.num_classes} must be ≥ 0 (0 = unconditional).")
        check(self.d_lr_scale > 0, f"d_lr_scale={self.d_lr_scale} must be > 0 (e.g. 0.5 slows D down).")
        check(
            self.loss != "wgan-gp" or self.gp_weight > 0,
            f"loss='wgan-gp' needs gp_weight > 0 (got {self.gp_weight}); 10 is the paper's value.",
        )
        check(self.gp_weight >= 0, f"gp_weight={self.gp_weight} must be ≥ 0.")
        check(
            self.loss != "wgan-gp" or self.d_norm != "batch",
            "loss='wgan-gp' cannot use d_norm='batch' (its gradient penalty is per sample); set d_norm=none or layer.",
        )
        conv_stages(self.height, self.width)


# --- networks ----------------------------------------------------------------------------------
def dcgan_init(module: nn.Module) -> None:
    """Weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02) (Radford et al. 2016, §4)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """(B, latent_dim) [+ one-hot (B, K)] → (B, C, H, W) in [-1, 1]."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        stages = conv_stages(config.height, config.width)
        widths = stage_widths(config.base_channels, stages)
        factor = 2**stages
        self.start = (widths[-1], config.height // factor, config.width // factor)  # e.g. (128, 7, 7)
        c0, h0, w0 = self.start
        self.project = nn.Linear(config.latent_dim + config.num_classes, c0 * h0 * w0, bias=False)
        self.norm0 = nn.BatchNorm2d(c0)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):  # each doubles H, W
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[0], config.channels, 4, 2, 1))  # the last doubling: to pixels
        self.body = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.project(z if cond is None else torch.cat([z, cond], dim=1))  # (B, C₀·h₀·w₀)
        h = F.relu(self.norm0(h.view(-1, *self.start)))  # (B, C₀, h₀, w₀)
        return torch.tanh(self.body(h))  # (B, C, H, W)


class Discriminator(nn.Module):
    """(B, C, H, W) [+ labels (B,)] → (B,) logits (bce) or critic values (wgan-gp, hinge)."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        stages = conv_stages(config.height, config.width)
        widths = stage_widths(config.base_channels, stages)
        layers: list[nn.Module] = []
        c_in = config.channels
        for i, c_out in enumerate(widths):  # each halves H and W
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1))
            # none on the first stage (Radford et al. 2016, §3). D's BatchNorm keeps no running statistics: they
            # would average real and fake batches, so validation D(real)/D(fake) would mean nothing; D never samples
            if i > 0 and config.d_norm == "batch":
                layers.append(nn.BatchNorm2d(c_out, track_running_stats=False))
            elif i > 0 and config.d_norm == "layer":
                layers.append(nn.GroupNorm(1, c_out))  # one group = layer norm over (C, H, W)
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        factor = 2**stages
        features = widths[-1] * (config.height // factor) * (config.width // factor)
        self.head = nn.Linear(features, 1)
        # projection discriminator: one feature-sized embedding per class (Miyato & Koyama 2018, eq. 3)
        self.embed = nn.Embedding(config.num_classes, features) if config.num_classes else None
        self.apply(dcgan_init)
        if config.spectral_norm:
            for module in [*self.body, self.head, self.embed]:
                if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    with_spectral_norm(module)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        phi = self.body(x).flatten(1)  # (B, F)
        out = self.head(phi).squeeze(1)  # (B,)
        if self.embed is not None:
            if labels is None:
                raise ConfigError("this GAN is conditional; give a label per item.")
            out = out + (self.embed(labels) * phi).sum(1)  # + ⟨embed(y), φ(x)⟩
        return out


# --- losses: pure functions of D's outputs -------------------------------------------------------
def discriminator_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """D's loss (without any penalty) from its outputs on real and fake items, both (B,)."""
    if kind == "bce":  # −log σ(D(x)) − log(1 − σ(D(G(z))))
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":  # E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))]
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "wgan-gp":  # E[D(G(z))] − E[D(x)]: minus the Wasserstein-1 estimate
        return fake.mean() - real.mean()
    raise ConfigError(f"loss {kind!r} is not one of 'bce', 'wgan-gp', 'hinge'.")


def generator_loss(kind: str, fake: Tensor) -> Tensor:
    """G's loss from D's outputs on its samples, (B,)."""
    if kind == "bce":  # non-saturating: −log σ(D(G(z))), strong gradients while D rejects the fakes
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wgan-gp"):  # −E[D(G(z))]
        return -fake.mean()
    raise ConfigError(f"loss {kind!r} is not one of 'bce', 'wgan-gp', 'hinge'.")


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None = None) -> Tensor:
    """E[(‖∇ D(x̂)‖₂ − 1)²] at x̂ = εx + (1 − ε)x̃, ε ~ U[0, 1] per item (Gulrajani et al. 2017, eq. 3).

    Works under ``torch.no_grad`` too (evaluation): the input gradient is then taken without a graph.
    """
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    create_graph = torch.is_grad_enabled()  # training: the penalty itself is differentiated w.r.t. D
    with torch.enable_grad():
        x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat, labels).sum(), x_hat, create_graph=create_graph)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


# --- model -------------------------------------------------------------------------------------
@register_family("gan", GANConfig, "GAN: DCGAN (bce), WGAN-GP, hinge/SN-GAN; conditional with num_classes")
class GAN(GenerativeModel):
    data_range = (-1.0, 1.0)

    def __init__(self, config: GANConfig) -> None:
        super().__init__(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)

    def phases(self) -> dict[str, Phase]:
        c = self.config
        return {
            "discriminator": Phase(list(self.discriminator.parameters()), repeats=c.n_critic, lr_scale=c.d_lr_scale),
            "generator": Phase(list(self.generator.parameters())),
        }

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, latent_dim) [+ labels (B,)] → (B, C, H, W) in [-1, 1], in G's current mode."""
        return self.generator(z, one_hot(labels, self.config.num_classes, z.shape[0], z.device))

    def loss(self, batch: Batch, *, phase: str = "discriminator") -> Loss:
        """One phase's objective on a real batch; fakes get the batch's labels (same class mix)."""
        if self.config.num_classes and batch.y is None:
            raise ConfigError(f"this GAN is conditioned on {self.config.num_classes} classes; the data needs labels.")
        z = torch.randn(len(batch), self.config.latent_dim, device=batch.x.device)
        if phase == "discriminator":
            return self._discriminator_loss(batch, z)
        if phase == "generator":
            return Loss(generator_loss(self.config.loss, self.discriminator(self.generate(z, batch.y), batch.y)))
        raise ConfigError(f"phase {phase!r} is not one of 'discriminator', 'generator'.")

    def _discriminator_loss(self, batch: Batch, z: Tensor) -> Loss:
        kind, y = self.config.loss, batch.y
        with torch.no_grad():  # G is frozen in this phase: no graph through it
            fake = self.generate(z, y)
        real_out, fake_out = self.discriminator(batch.x, y), self.discriminator(fake, y)  # (B,) each
        total = discriminator_loss(kind, real_out, fake_out)
        if kind == "bce":  # report D's probabilities
            terms = {"d_real": torch.sigmoid(real_out).mean(), "d_fake": torch.sigmoid(fake_out).mean()}
        else:  # report raw critic values
            terms = {"d_real": real_out.mean(), "d_fake": fake_out.mean()}
        if kind == "wgan-gp":
            gp = gradient_penalty(self.discriminator, batch.x, fake, y)
            total = total + self.config.gp_weight * gp
            terms |= {"gp": gp, "wasserstein": real_out.mean() - fake_out.mean()}
        return Loss(total, {k: v.detach() for k, v in terms.items()})

    # --- health ----------------------------------------------------------------------------------
    def diagnose(self, history: list[dict[str, float]]) -> str | None:
        """Warn when D has won (bce: D(real) > 0.95 and D(fake) < 0.05 for the last 5 logs; hinge: D's
        loss ≈ 0) or when G's loss (WGAN: the Wasserstein estimate) jumps 10× above its history."""
        recent = history[-5:]
        fix = "try d_lr_scale=0.5, spectral_norm=true or loss=hinge"
        if len(recent) == 5 and self.config.loss == "bce":
            real = [r.get("discriminator_d_real", 0.0) for r in recent]
            fake = [r.get("discriminator_d_fake", 1.0) for r in recent]
            if min(real) > 0.95 and max(fake) < 0.05:
                return (f"the discriminator has won (D(real) {real[-1]:.3f}, D(fake) {fake[-1]:.3f}), so the "
                        f"generator learns little; {fix}.")  # fmt: skip
        if len(recent) == 5 and self.config.loss == "hinge":
            if max(r.get("discriminator_loss", 1.0) for r in recent) < 0.02:
                return f"the discriminator has won (its hinge loss is ≈ 0), so the generator learns little; {fix}."
        key = "discriminator_wasserstein" if self.config.loss == "wgan-gp" else "generator_loss"
        values = [abs(r[key]) for r in history if key in r]
        if len(values) >= 6:
            typical = statistics.median(values[:-1])
            if values[-1] > 10 * typical and values[-1] > 10:
                what = "Wasserstein estimate" if key != "generator_loss" else "generator loss"
                return (f"the {what} jumped to {values[-1]:.3g} (typically {typical:.3g}): training is "
                        "diverging; lower lr, or try spectral_norm=true or d_lr_scale=0.5.")  # fmt: skip
        return None

    # --- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """(n, C, H, W) images in [-1, 1]; G runs in eval mode (BatchNorm running statistics), so each
        image depends only on its own noise and the seed, never on the rest of the batch."""
        labels = self.check_labels(n, labels, generator)
        z = randn((n, self.config.latent_dim), generator=generator, device=self.device)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generate(z, labels)
        finally:
            self.generator.train(was_training)
