"""Diffusion samplers: small stateless steps x_t → x_s (s < t) and the loops that chain them.

Notation (Ho et al. 2020): x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε. Every sampler here needs only the
network's estimate of x_0 at (x_t, t), handed in as ``predict_x0(x_t, t)``; a model that predicts ε
or v converts (see :mod:`genlab.models.diffusion`). The final step goes to s = "clean", ᾱ_s = 1.

Samplers keep no state between calls; a multistep solver's history (DPM-Solver++(2M) uses the
previous x_0 estimate) is passed in by the loop, so one network can serve many requests at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.models.base import randn
from genlab.sampling.schedules import Spacing, timesteps

PredictX0 = Callable[[Tensor, int], Tensor]  # (x_t (B, C, H, W), t) → x̂_0 (B, C, H, W)
History = tuple[Tensor, float] | None  # the previous step's (x̂_0, λ_t), for multistep solvers


def log_snr(alpha_bar: float) -> float:
    """λ = log(α/σ) = ½ log(ᾱ / (1 − ᾱ)): the half log signal-to-noise ratio DPM-Solver steps in."""
    return 0.5 * math.log(alpha_bar / (1 - alpha_bar))


def ddpm_step(x_t: Tensor, x0: Tensor, ab_t: float, ab_s: float, *, eta: float, noise: Tensor | None,
              previous: History) -> Tensor:  # fmt: skip
    """Ancestral step: a draw from the posterior q(x_s | x_t, x̂_0) (Ho et al. 2020, eqs. 6–7).

    With s < t not adjacent, α_{t|s} = ᾱ_t/ᾱ_s and β_{t|s} = 1 − α_{t|s} take the place of α_t, β_t:
        μ = √ᾱ_s β_{t|s} / (1 − ᾱ_t) · x̂_0 + √α_{t|s} (1 − ᾱ_s) / (1 − ᾱ_t) · x_t
        σ² = β_{t|s} (1 − ᾱ_s) / (1 − ᾱ_t)            ("fixed small" variance, β̃)
    """
    alpha_ts = ab_t / ab_s
    beta_ts = 1 - alpha_ts
    mean = (math.sqrt(ab_s) * beta_ts / (1 - ab_t)) * x0 + (math.sqrt(alpha_ts) * (1 - ab_s) / (1 - ab_t)) * x_t
    var = beta_ts * (1 - ab_s) / (1 - ab_t)
    return mean if noise is None or var <= 0 else mean + math.sqrt(var) * noise


def ddim_step(x_t: Tensor, x0: Tensor, ab_t: float, ab_s: float, *, eta: float, noise: Tensor | None,
              previous: History) -> Tensor:  # fmt: skip
    """DDIM (Song et al. 2021, eq. 12): ε̂ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t),
        x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z,   σ = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s).
    η = 0 is deterministic; η = 1 has the DDPM posterior's variance.
    """
    eps = (x_t - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
    sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_s)
    x_s = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - sigma**2, 0.0)) * eps
    return x_s if noise is None or sigma == 0 else x_s + sigma * noise


def dpmpp_2m_step(x_t: Tensor, x0: Tensor, ab_t: float, ab_s: float, *, eta: float, noise: Tensor | None,
                  previous: History) -> Tensor:  # fmt: skip
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), the exact solution of the diffusion ODE in
    data-prediction form with x̂_0 extrapolated linearly in λ from the last two estimates:
        h = λ_s − λ_t,  r = (λ_t − λ_prev)/h,  D = (1 + 1/(2r)) x̂_0 − 1/(2r) x̂_0,prev
        x_s = (σ_s/σ_t) x_t + α_s (1 − e^{−h}) D
    The first step (no history) is first order (D = x̂_0, which is DDIM with η = 0); the last step,
    to the clean image (σ_s = 0), returns x̂_0.
    """
    if ab_s >= 1.0:
        return x0
    lam_t, lam_s = log_snr(ab_t), log_snr(ab_s)
    h = lam_s - lam_t
    d = x0
    if previous is not None:
        x0_prev, lam_prev = previous
        r = (lam_t - lam_prev) / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    sigma_t, sigma_s = math.sqrt(1 - ab_t), math.sqrt(1 - ab_s)
    return (sigma_s / sigma_t) * x_t + math.sqrt(ab_s) * (-math.expm1(-h)) * d


@dataclass(frozen=True)
class Sampler:
    name: str
    step: Callable[..., Tensor]
    stochastic: bool  # draws fresh noise every step (DDIM only when eta > 0)
    takes_eta: bool
    multistep: bool  # uses the previous step's x̂_0, so cannot follow RePaint's jumps back in time
    default_steps: int | None  # None: every training timestep
    spacing: Spacing  # how the visited timesteps are spread (see genlab.sampling.schedules.timesteps)
    description: str


SAMPLERS = {
    s.name: s
    for s in (
        Sampler("ddpm", ddpm_step, True, False, False, None, "uniform", "ancestral (Ho et al. 2020)"),
        Sampler("ddim", ddim_step, False, True, False, 50, "uniform", "DDIM (Song et al. 2021); eta=0: deterministic"),
        Sampler("dpm++2m", dpmpp_2m_step, False, False, True, 20, "logsnr", "DPM-Solver++(2M) (Lu et al. 2022)"),
    )
}


def get_sampler(name: str, *, eta: float = 0.0) -> Sampler:
    if name not in SAMPLERS:
        raise ConfigError(f"sampler {name!r} is not one of {', '.join(SAMPLERS)}.")
    sampler = SAMPLERS[name]
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta={eta} must be in [0, 1].")
    if eta and not sampler.takes_eta:
        raise ConfigError(f"eta applies to the ddim sampler only, not {name}; drop --eta or use --sampler ddim.")
    return sampler


def sampler_steps(sampler: Sampler, num_steps: int | None, alphas_cumprod: Tensor) -> list[int]:
    """The timesteps ``sampler`` visits: ``num_steps`` of them (the sampler's default when None)."""
    total = len(alphas_cumprod)
    return timesteps(total, num_steps or sampler.default_steps or total, spacing=sampler.spacing,
                     alphas_cumprod=alphas_cumprod)  # fmt: skip


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return randn(tuple(x.shape), generator=generator, device=x.device)


def denoise(predict_x0: PredictX0, x: Tensor, *, alphas_cumprod: Tensor, steps: list[int], sampler: Sampler,
            eta: float = 0.0, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """Run ``sampler`` from ``x`` at timestep ``steps[0]`` through ``steps`` (decreasing) to a clean sample."""
    ab = alphas_cumprod.tolist()
    previous: History = None
    for i, t in enumerate(steps):
        ab_s = ab[steps[i + 1]] if i + 1 < len(steps) else 1.0
        x0 = predict_x0(x, t)
        noise = _noise(x, generator) if (sampler.stochastic or eta > 0) and ab_s < 1.0 else None
        x = sampler.step(x, x0, ab[t], ab_s, eta=eta, noise=noise, previous=previous)
        previous = (x0, log_snr(ab[t]))
    return x


def repaint(predict_x0: PredictX0, image: Tensor, mask: Tensor, *, alphas_cumprod: Tensor, steps: list[int],
            sampler: Sampler, eta: float = 0.0, resample: int = 1,
            generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """Inpainting by RePaint (Lugmayr et al. 2022): regenerate where ``mask`` is 1, keep ``image`` where 0.

    Each step samples the unknown region from the model and the known region from the forward
    process q(x_s | x_0 = image), then joins them; ``resample`` > 1 jumps back to t (re-noising with
    q(x_t | x_s)) and repeats the step so the two regions agree (their Algorithm 1, jump length 1).
    ``image``: (B, C, H, W) in the model's range; ``mask``: broadcastable to it, 1 = regenerate.
    """
    if sampler.multistep:
        raise ConfigError(f"inpainting jumps back in time, which {sampler.name} cannot follow; use ddpm or ddim.")
    if resample < 1:
        raise ConfigError(f"resample={resample} must be at least 1.")
    ab = alphas_cumprod.tolist()
    x = _noise(image, generator)
    for i, t in enumerate(steps):
        ab_s = ab[steps[i + 1]] if i + 1 < len(steps) else 1.0
        for r in range(resample):
            x0 = predict_x0(x, t)
            noise = _noise(x, generator) if (sampler.stochastic or eta > 0) and ab_s < 1.0 else None
            unknown = sampler.step(x, x0, ab[t], ab_s, eta=eta, noise=noise, previous=None)
            known = image if ab_s >= 1.0 else math.sqrt(ab_s) * image + math.sqrt(1 - ab_s) * _noise(x, generator)
            x_s = mask * unknown + (1 - mask) * known
            if r + 1 < resample and ab_s < 1.0:  # back to t: x_t ~ N(√(ᾱ_t/ᾱ_s) x_s, (1 − ᾱ_t/ᾱ_s) I)
                x = math.sqrt(ab[t] / ab_s) * x_s + math.sqrt(1 - ab[t] / ab_s) * _noise(x, generator)
        x = x_s
    return x


def noise_to(image: Tensor, t: int, alphas_cumprod: Tensor, generator: torch.Generator | None) -> Tensor:
    """A draw from q(x_t | x_0 = image): √ᾱ_t · image + √(1 − ᾱ_t) · ε (SDEdit's starting point)."""
    ab_t = float(alphas_cumprod[t])
    return math.sqrt(ab_t) * image + math.sqrt(1 - ab_t) * _noise(image, generator)
