"""Denoising diffusion models (DDPM) with classifier-free guidance, inpainting and image-to-image.

Training (Ho et al. 2020): pick t ~ U{0, …, T−1} and ε ~ N(0, I), make x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,
and regress the UNet's output on ε ("eps") or on v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 ("v", Salimans & Ho
2022). A conditional model sees its label replaced by "no label" with probability
``cond_drop_prob``, so the same network also predicts unconditionally and classifier-free guidance
(Ho & Salimans 2022) can extrapolate: out = out(∅) + w · (out(y) − out(∅)).

Generation is delegated to the stateless samplers in :mod:`genlab.sampling.diffusion`; this file
only turns the network's output into an estimate of x_0 at (x_t, t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.config import check, validate
from genlab.errors import ConfigError
from genlab.models.base import Batch, GenerativeModel, Loss, randn
from genlab.nn.unet import UNet, check_unet_size
from genlab.registry import register_family
from genlab.sampling import diffusion as samplers
from genlab.sampling.schedules import Schedule, alphas_cumprod


@dataclass(frozen=True)
class DiffusionConfig:
    channels: int = 1
    height: int = 28
    width: int = 28
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)  # one per UNet level; level i works at H / 2^i
    num_res_blocks: int = 1  # residual blocks per level on the way down (one more on the way up)
    attention_levels: tuple[int, ...] = (2,)  # levels with self-attention (the middle always has it)
    attention_heads: int = 4
    dropout: float = 0.0
    num_classes: int = 0  # > 0: class-conditional
    cond_drop_prob: float = 0.1  # conditional only: P(label → "no label") in training, for guidance
    schedule: Schedule = "linear"
    num_train_steps: int = 1000  # T
    prediction: Literal["eps", "v"] = "eps"
    clip_denoised: bool = True  # clamp each x̂_0 estimate to the data range while sampling

    def __post_init__(self) -> None:
        validate(self)
        check(self.channels >= 1 and self.height >= 1 and self.width >= 1, "channels, height and width must be ≥ 1.")
        check(len(self.channel_mults) >= 1, "channel_mults needs at least one level.")
        check(all(m >= 1 for m in self.channel_mults), f"channel_mults={self.channel_mults} must be ≥ 1.")
        check(self.base_channels >= 4, f"base_channels={self.base_channels} must be at least 4.")
        check(self.num_res_blocks >= 1, f"num_res_blocks={self.num_res_blocks} must be at least 1.")
        bad = [i for i in self.attention_levels if not 0 <= i < len(self.channel_mults)]
        check(not bad, f"attention_levels {bad} are not levels of channel_mults (0..{len(self.channel_mults) - 1}).")
        check(0 <= self.dropout < 1, f"dropout={self.dropout} must be in [0, 1).")
        check(self.num_classes >= 0, f"num_classes={self.num_classes} must be ≥ 0.")
        check(0 <= self.cond_drop_prob < 1, f"cond_drop_prob={self.cond_drop_prob} must be in [0, 1).")
        check(self.num_train_steps >= 2, f"num_train_steps={self.num_train_steps} must be at least 2.")
        check_unet_size(self.height, self.width, len(self.channel_mults))


@register_family("diffusion", DiffusionConfig, "DDPM with a UNet; DDPM/DDIM/DPM-Solver++ sampling, guidance, editing")
class Diffusion(GenerativeModel):
    data_range = (-1.0, 1.0)

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config)
        self.net = UNet(
            channels=config.channels, base_channels=config.base_channels, channel_mults=config.channel_mults,
            num_res_blocks=config.num_res_blocks, attention_levels=config.attention_levels,
            attention_heads=config.attention_heads, dropout=config.dropout, num_classes=config.num_classes,
        )  # fmt: skip
        # float64 on the CPU, a pure function of the config: not a weight, never saved
        self.alphas_cumprod = alphas_cumprod(config.schedule, config.num_train_steps)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """The network's raw output (ε or v, per ``config.prediction``): (B, C, H, W)."""
        return self.net(x_t, t, labels)

    # --- training -------------------------------------------------------------------------
    def _coefficients(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(√ᾱ_t, √(1 − ᾱ_t)) for each item, shaped (B, 1, 1, 1) in ``like``'s dtype and device."""
        ab = self.alphas_cumprod.to(like.device)[t]
        shape = (-1, 1, 1, 1)
        return ab.sqrt().to(like.dtype).view(shape), (1 - ab).sqrt().to(like.dtype).view(shape)

    def loss(self, batch: Batch, *, phase: str = "model") -> Loss:
        x0 = batch.x
        t = torch.randint(self.config.num_train_steps, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        a, s = self._coefficients(t, x0)
        x_t = a * x0 + s * eps
        labels = batch.y if self.num_classes else None
        if labels is not None and self.training and self.config.cond_drop_prob > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.config.cond_drop_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        target = eps if self.config.prediction == "eps" else a * eps - s * x0
        mse = F.mse_loss(self(x_t, t, labels).float(), target.float())
        return Loss(mse, {})

    # --- the denoiser the samplers call ---------------------------------------------------
    def _predict_x0(self, labels: Tensor | None, guidance_scale: float) -> samplers.PredictX0:
        """x̂_0(x_t, t), with classifier-free guidance when ``guidance_scale`` ≠ 1."""
        guided = labels is not None and guidance_scale != 1.0
        null = None if labels is None else torch.full_like(labels, self.num_classes)
        low, high = self.data_range

        def predict(x_t: Tensor, t: int) -> Tensor:
            t_batch = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
            if guided:  # one forward over [conditional; unconditional]
                both = self(torch.cat([x_t, x_t]), torch.cat([t_batch, t_batch]), torch.cat([labels, null]))
                cond, uncond = both.chunk(2)
                out = uncond + guidance_scale * (cond - uncond)
            else:
                out = self(x_t, t_batch, labels)
            ab = float(self.alphas_cumprod[t])
            if self.config.prediction == "eps":
                x0 = (x_t - math.sqrt(1 - ab) * out) / math.sqrt(ab)
            else:
                x0 = math.sqrt(ab) * x_t - math.sqrt(1 - ab) * out
            return x0.clamp(low, high) if self.config.clip_denoised else x0

        return predict

    def _options(self, labels: Tensor | None, sampler: str, num_steps: int | None, guidance_scale: float | None,
                 eta: float) -> tuple[samplers.Sampler, list[int], float]:  # fmt: skip
        chosen = samplers.get_sampler(sampler, eta=eta)
        if guidance_scale is not None and labels is None:
            raise ConfigError(
                "guidance_scale needs a class-conditional model and a label; this model is unconditional."
                if self.num_classes == 0
                else "guidance_scale needs a label to guide towards; give --label."
            )
        scale = 1.0 if guidance_scale is None else float(guidance_scale)
        check(scale >= 0, f"guidance_scale={scale} must be ≥ 0 (1 = no guidance).")
        return chosen, samplers.sampler_steps(chosen, num_steps, self.alphas_cumprod), scale

    # --- generation -----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               num_steps: int | None = None, sampler: str = "dpm++2m", guidance_scale: float | None = None,
               eta: float = 0.0) -> Tensor:  # fmt: skip
        """(n, C, H, W) images in [-1, 1]. ``num_steps`` defaults to the sampler's (ddpm: all T,
        ddim: 50, dpm++2m: 20). ``guidance_scale`` w: 1 = plain conditional, > 1 sharper classes."""
        labels = self.check_labels(n, labels, generator)
        chosen, steps, scale = self._options(labels, sampler, num_steps, guidance_scale, eta)
        c = self.config
        x = randn((n, c.channels, c.height, c.width), generator=generator, device=self.device)
        return samplers.denoise(self._predict_x0(labels, scale), x, alphas_cumprod=self.alphas_cumprod,
                                steps=steps, sampler=chosen, eta=eta, generator=generator)  # fmt: skip

    def _check_images(self, images: Tensor, what: str) -> Tensor:
        c = self.config
        if images.ndim != 4 or tuple(images.shape[1:]) != (c.channels, c.height, c.width):
            raise ConfigError(
                f"the {what} is {tuple(images.shape[1:])} (C, H, W) but this model makes "
                f"{(c.channels, c.height, c.width)}; resize it to {c.width}×{c.height} with {c.channels} channel(s)."
            )
        return images.to(self.device, torch.float32)

    @torch.no_grad()
    def inpaint(self, images: Tensor, mask: Tensor, *, generator: torch.Generator | None = None,
                labels: Tensor | None = None, num_steps: int | None = None, sampler: str = "ddpm",
                guidance_scale: float | None = None, eta: float = 0.0, resample: int = 4) -> Tensor:  # fmt: skip
        """Regenerate ``images`` (B, C, H, W, in [-1, 1]) where ``mask`` is 1, keeping the rest (RePaint).

        ``mask``: (B or 1, 1 or C, H, W) of 0/1. ``num_steps`` defaults to 50 and each is taken
        ``resample`` times, so the model runs num_steps × resample times.
        """
        images = self._check_images(images, "image")
        mask = mask.to(self.device, torch.float32)
        if mask.ndim != 4 or mask.shape[-2:] != images.shape[-2:]:
            raise ConfigError(
                f"the mask is {tuple(mask.shape[-2:])} (H, W) but the image is {tuple(images.shape[-2:])}; "
                "give a mask of the image's size."
            )
        labels = self.check_labels(images.shape[0], labels, generator)
        chosen, steps, scale = self._options(labels, sampler, num_steps or 50, guidance_scale, eta)
        return samplers.repaint(
            self._predict_x0(labels, scale), images, mask, alphas_cumprod=self.alphas_cumprod, steps=steps,
            sampler=chosen, eta=eta, resample=resample, generator=generator,
        )  # fmt: skip

    @torch.no_grad()
    def img2img(self, images: Tensor, *, strength: float, generator: torch.Generator | None = None,
                labels: Tensor | None = None, num_steps: int | None = None, sampler: str = "ddim",
                guidance_scale: float | None = None, eta: float = 0.0) -> Tensor:  # fmt: skip
        """SDEdit (Meng et al. 2022): noise ``images`` to t = strength · (T − 1), then denoise.

        ``strength`` 0 returns the images, 1 ignores them; in between keeps their layout and
        re-draws the detail. Of the sampler's ``num_steps`` (default 50) about strength × num_steps run.
        """
        if not 0.0 <= strength <= 1.0:
            raise ConfigError(f"strength={strength} must be in [0, 1]: 0 keeps the image, 1 ignores it.")
        images = self._check_images(images, "image")
        labels = self.check_labels(images.shape[0], labels, generator)
        chosen, steps, scale = self._options(labels, sampler, num_steps or 50, guidance_scale, eta)
        start = round(strength * (self.config.num_train_steps - 1))
        steps = [t for t in steps if t <= start]
        if strength == 0 or not steps:
            return images.clone()
        x = samplers.noise_to(images, steps[0], self.alphas_cumprod, generator)
        return samplers.denoise(self._predict_x0(labels, scale), x, alphas_cumprod=self.alphas_cumprod,
                                steps=steps, sampler=chosen, eta=eta, generator=generator)  # fmt: skip
