"""Noise schedules for diffusion models: β_t for t = 0 … T−1 and the quantities derived from it.

Everything is computed in float64 (ᾱ_t reaches ~4e-5 at the end of the linear schedule, where
float32 loses digits of √(1 − ᾱ_t)) and cast where it is used.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from genlab.errors import ConfigError

Schedule = Literal["linear", "cosine"]


def betas(kind: Schedule, num_steps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_1 … β_T as float64 (T,).

    ``linear``: evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020, T = 1000), the same
    numbers as diffusers' ``beta_schedule="linear"``.
    ``cosine``: ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2) with s = 0.008, β_t = 1 − ᾱ(t)/ᾱ(t−1) clipped at
    0.999 (Nichol & Dhariwal 2021, eq. 17), diffusers' ``"squaredcos_cap_v2"``.
    """
    if num_steps < 1:
        raise ConfigError(f"num_train_steps={num_steps} must be at least 1.")
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ConfigError(f"schedule {kind!r} is not one of 'linear', 'cosine'.")


def alphas_cumprod(kind: Schedule, num_steps: int) -> Tensor:
    """ᾱ_t = Π_{i ≤ t} (1 − β_i), float64 (T,): x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε."""
    return torch.cumprod(1 - betas(kind, num_steps), dim=0)


Spacing = Literal["uniform", "logsnr"]


def timesteps(num_train_steps: int, num_steps: int, *, spacing: Spacing = "uniform",
              alphas_cumprod: Tensor | None = None) -> list[int]:  # fmt: skip
    """The training timesteps a sampler visits, from T−1 down to 0, strictly decreasing.

    Both ends are kept: sampling starts from pure noise at t = T−1 (the "trailing" choice of Lin et
    al. 2024, which showed that skipping the last noisy steps biases the samples) and ends with a
    denoising step at t = 0.

    ``uniform``: ``num_steps`` evenly spaced in t; ``num_steps = T`` visits every timestep, as in DDPM.
    ``logsnr``: evenly spaced in λ = ½ log(ᾱ/(1 − ᾱ)) (needs ``alphas_cumprod``), the spacing DPM-Solver
    recommends for small images (Lu et al. 2022, §3.3); neighbours that round to the same t are
    merged, so a few fewer steps than asked may result.
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ConfigError(f"num_steps={num_steps} must be between 1 and the model's {num_train_steps} training steps.")
    if num_steps == 1:
        return [num_train_steps - 1]
    if spacing == "uniform":
        points = torch.linspace(num_train_steps - 1, 0, num_steps, dtype=torch.float64).round().long()
        return [int(t) for t in points]
    if spacing == "logsnr":
        if alphas_cumprod is None:
            raise ConfigError("logsnr spacing needs the schedule's alphas_cumprod.")
        lam = 0.5 * torch.log(alphas_cumprod / (1 - alphas_cumprod))  # decreasing in t
        targets = torch.linspace(float(lam[-1]), float(lam[0]), num_steps, dtype=torch.float64)
        nearest = (lam[None, :] - targets[:, None]).abs().argmin(dim=1).tolist()
        return sorted(set(nearest), reverse=True)
    raise ConfigError(f"timestep spacing {spacing!r} is not one of 'uniform', 'logsnr'.")
