"""Negative log-likelihood in bits per dimension, for the model families that define one.

bits/dim = −log₂ p(x) / D with D = C·H·W, averaged over images; lower is better. Both families give
an upper bound on it (a lower bound on log p), never the exact value:

- **VAE**: the ELBO (``num_samples=1``) or the importance-weighted bound of Burda et al. (2016) with
  K = ``num_samples``, from :meth:`genlab.models.vae.VAE.log_prob`. genlab feeds a VAE x = k/255
  (:func:`genlab.data.images.to_tensor`), so the 256 grey levels sit 1/255 apart. A ``gaussian``
  decoder is a density on [0, 1]; the probability of level k is ∫ p over its bin of width Δ = 1/255,
  ≈ p(k/255) · Δ, so −log₂ P(k) ≈ −log₂ p(k/255) + log₂ 255 per dimension (Theis et al. 2016; the
  familiar "+ 8 bits" belongs to scaling by 256). This evaluates the density at the bin centres, as
  ``log_prob`` does, rather than at uniformly dequantised points, so it is the usual midpoint
  estimate, not a certified bound, and it flatters a decoder whose σ is below the bin width. A
  ``bernoulli`` decoder reads grey levels as Bernoulli means: its number is reported as it is, and it
  is not a likelihood of 256-level data.
- **Diffusion**: the variational bound of Ho et al. (2020, eq. 5) as improved-diffusion's
  ``calc_bpd_loop`` computes it (Nichol & Dhariwal 2021):
  L = L_prior + Σ_{t≥1} L_t + L_0 with L_prior = KL(q(x_T|x_0) ‖ N(0, I)),
  L_t = KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t)) and L_0 = −log p_θ(x_0|x_1) under a Gaussian
  discretised to the 256 levels (bins 2/255 wide on [−1, 1], the edge bins open to ±∞). genlab
  counts timesteps from 0, so L_t is the term at index t and L_0 the one at index 0. The model's
  mean comes from its unclipped x̂_0; its variance is fixed: ``"posterior"`` β̃_t (DDPM's "fixed
  small", what genlab's samplers use) or ``"beta"`` β_t ("fixed large"). At index 0 β̃ is 0, so both
  use β̃ at index 1 there, as improved-diffusion does. One difference from improved-diffusion: the
  decoder uses the exact normal CDF in float64, not its tanh approximation.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.data.images import to_tensor
from genlab.errors import ConfigError, DataError
from genlab.models.base import GenerativeModel
from genlab.models.diffusion import Diffusion
from genlab.models.vae import VAE

logger = logging.getLogger(__name__)

LEVELS = 256  # 8-bit data
VARIANCES = ("posterior", "beta")


# --- Gaussian helpers, float64 ---------------------------------------------------------------------
def normal_kl(mean_1: Tensor, log_var_1: Tensor | float, mean_2: Tensor, log_var_2: Tensor | float) -> Tensor:
    """KL(N(mean_1, e^log_var_1) ‖ N(mean_2, e^log_var_2)) elementwise, in nats."""
    like = {"dtype": mean_1.dtype, "device": mean_1.device}
    log_var_1, log_var_2 = torch.as_tensor(log_var_1, **like), torch.as_tensor(log_var_2, **like)
    ratio, gap = torch.exp(log_var_1 - log_var_2), (mean_1 - mean_2).pow(2) * torch.exp(-log_var_2)
    return 0.5 * (-1.0 + log_var_2 - log_var_1 + ratio + gap)


def _log_normal_mass(lower: Tensor, upper: Tensor) -> Tensor:
    """log(Φ(upper) − Φ(lower)) for lower < upper, without cancellation in either tail."""
    flip = lower > 0  # both in the upper tail: Φ(u) − Φ(l) = Φ(−l) − Φ(−u)
    hi = torch.special.log_ndtr(torch.where(flip, -lower, upper))
    lo = torch.special.log_ndtr(torch.where(flip, -upper, lower))
    return hi + torch.log(-torch.expm1(lo - hi))


def discretized_gaussian_log_likelihood(x: Tensor, *, mean: Tensor, log_scale: Tensor | float, bin_width: float,
                                        data_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:  # fmt: skip
    """log P(x) elementwise in nats, P the mass of N(mean, e^{2 log_scale}) on x's bin.

    ``x`` holds values on the grid ``low, low + bin_width, …, high``; each bin is ``bin_width`` wide
    around its value, except that the lowest bin extends to −∞ and the highest to +∞ (Ho et al. 2020,
    eq. 13).
    """
    low, high = data_range
    half = bin_width / 2
    inv_scale = torch.exp(-torch.as_tensor(log_scale, dtype=x.dtype))
    upper, lower = (x - mean + half) * inv_scale, (x - mean - half) * inv_scale
    first = torch.special.log_ndtr(upper)  # (−∞, x + half]
    last = torch.special.log_ndtr(-lower)  # [x − half, ∞)
    return torch.where(x < low + half, first, torch.where(x > high - half, last, _log_normal_mass(lower, upper)))


# --- diffusion: the terms of the bound -------------------------------------------------------------
def _step(alphas_cumprod: Tensor, t: int, variance: str) -> tuple[float, float, float, float]:
    """(coefficient of x_0, of x_t, posterior variance β̃_t, the model's variance) of the step t → t−1.

    q(x_{t−1}|x_t, x_0) = N(c₀ x_0 + c_t x_t, β̃_t) with c₀ = √ᾱ_{t−1} β_t/(1 − ᾱ_t),
    c_t = √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t), β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) (Ho et al. 2020, eq. 7).
    """
    ab_t = float(alphas_cumprod[t])
    ab_prev = float(alphas_cumprod[t - 1]) if t > 0 else 1.0
    alpha_t = ab_t / ab_prev
    beta_t = 1.0 - alpha_t
    c_0, c_t = math.sqrt(ab_prev) * beta_t / (1 - ab_t), math.sqrt(alpha_t) * (1 - ab_prev) / (1 - ab_t)
    posterior = beta_t * (1 - ab_prev) / (1 - ab_t)
    if t == 0:  # β̃_0 = 0: the decoder takes β̃_1 under either choice (improved-diffusion's clipped log-variance)
        reverse = _step(alphas_cumprod, 1, "posterior")[2]
    elif variance == "posterior":
        reverse = posterior
    elif variance == "beta":
        reverse = beta_t
    else:
        raise ConfigError(f"variance={variance!r} is not one of {', '.join(map(repr, VARIANCES))}.")
    return c_0, c_t, posterior, reverse


def _predict_x0(model: Diffusion, x_t: Tensor, t: int, labels: Tensor | None) -> Tensor:
    """The model's x̂_0 at (x_t, t) in float64, unclipped: (B, C, H, W) → (B, C, H, W)."""
    t_batch = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
    out = model(x_t.float(), t_batch, labels).double()  # labels None: the "no label" embedding
    ab = float(model.alphas_cumprod[t])
    if model.config.prediction == "eps":
        return (x_t - math.sqrt(1 - ab) * out) / math.sqrt(ab)
    if model.config.prediction == "v":
        return math.sqrt(ab) * x_t - math.sqrt(1 - ab) * out
    raise ConfigError(f"prediction={model.config.prediction!r} is not one of 'eps', 'v'.")


def diffusion_vlb_term(model: Diffusion, x_0: Tensor, t: int, noise: Tensor, *, labels: Tensor | None = None,
                       variance: str = "posterior") -> Tensor:  # fmt: skip
    """One term of the bound per item in nats, float64 (B,): L_t for t ≥ 1, the decoder's L_0 for t = 0.

    ``x_0`` float64 (B, C, H, W) on the 256-level grid of the model's data range, ``noise`` ε of the
    same shape; x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε is what the network sees (rounded to float32, and the
    posterior is taken at that same x_t).
    """
    ab = float(model.alphas_cumprod[t])
    x_t = (math.sqrt(ab) * x_0 + math.sqrt(1 - ab) * noise).float().double()
    c_0, c_t, posterior, model_var = _step(model.alphas_cumprod, t, variance)
    mean = c_0 * _predict_x0(model, x_t, t, labels) + c_t * x_t  # μ_θ(x_t, t), Ho et al. 2020 eq. 7 with x̂_0
    if t == 0:  # c_0 = 1, c_t = 0: the mean is x̂_0
        low, high = model.data_range
        log_p = discretized_gaussian_log_likelihood(
            x_0, mean=mean, log_scale=0.5 * math.log(model_var), bin_width=(high - low) / (LEVELS - 1),
            data_range=model.data_range,
        )  # fmt: skip
        return -log_p.flatten(1).sum(1)
    kl = normal_kl(c_0 * x_0 + c_t * x_t, math.log(posterior), mean, math.log(model_var))
    return kl.flatten(1).sum(1)


def diffusion_prior_kl(alphas_cumprod: Tensor, x_0: Tensor) -> Tensor:
    """L_prior = KL(q(x_T|x_0) ‖ N(0, I)) per item in nats, float64 (B,); needs no network."""
    ab = float(alphas_cumprod[-1])
    return normal_kl(math.sqrt(ab) * x_0, math.log1p(-ab), torch.zeros_like(x_0), 0.0).flatten(1).sum(1)


def _grid(images: np.ndarray, data_range: tuple[float, float]) -> Tensor:
    """uint8 (N, H, W, C) → float64 (N, C, H, W): :func:`~genlab.data.images.to_tensor` without float32 rounding."""
    low, high = data_range
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 255 * (high - low) + low


def _noise(shape: tuple[int, ...], seed: int, batch: int, t: int, device: torch.device) -> Tensor:
    """ε for one (batch, timestep), drawn on the CPU from its own seed: the same numbers whichever
    timesteps are evaluated and on whichever device."""
    stream = int(np.random.SeedSequence([seed, batch, t]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(stream)
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(device)


def _diffusion_nats(model: Diffusion, images: np.ndarray, labels: Tensor | None, *, num_timesteps: int | None,
                    variance: str, batch_size: int, seed: int) -> tuple[dict[str, np.ndarray], int]:  # fmt: skip
    """Per-image nats of each part of the bound, and how many of the T − 1 terms L_t were evaluated."""
    num_steps = model.config.num_train_steps
    _step(model.alphas_cumprod, 1, variance)  # a bad variance fails before any network runs
    if num_timesteps is not None and not 1 <= num_timesteps <= num_steps - 1:
        raise ConfigError(
            f"num_timesteps={num_timesteps} must be between 1 and {num_steps - 1} (the model's T − 1 KL terms); "
            "leave it out for the full bound."
        )
    k = num_steps - 1 if num_timesteps is None else num_timesteps
    chosen = torch.randperm(num_steps - 1, generator=torch.Generator().manual_seed(seed))[:k] + 1
    timesteps = sorted(chosen.tolist(), reverse=True)
    scale = (num_steps - 1) / k  # E over the draw of (T − 1)/k Σ_chosen L_t = Σ_{t=1}^{T−1} L_t
    parts: dict[str, list[Tensor]] = {"prior": [], "denoising": [], "decoder": []}
    for b, start in enumerate(range(0, len(images), batch_size)):
        x_0 = _grid(images[start : start + batch_size], model.data_range).to(model.device)
        y = None if labels is None else labels[start : start + batch_size]
        kl = torch.zeros(x_0.shape[0], dtype=torch.float64, device=x_0.device)
        for t in timesteps:
            kl += diffusion_vlb_term(model, x_0, t, _noise(x_0.shape, seed, b, t, x_0.device), labels=y,
                                     variance=variance)  # fmt: skip
        noise = _noise(x_0.shape, seed, b, 0, x_0.device)
        parts["prior"].append(diffusion_prior_kl(model.alphas_cumprod, x_0))
        parts["denoising"].append(scale * kl)
        parts["decoder"].append(diffusion_vlb_term(model, x_0, 0, noise, labels=y, variance=variance))
    return {name: torch.cat(v).cpu().numpy() for name, v in parts.items()}, k


# --- VAE -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """``VAE.log_prob`` draws ε from the global RNG: fork it, seed it, and restore it on exit."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _vae_nats(model: VAE, images: np.ndarray, labels: Tensor | None, *, num_samples: int, batch_size: int,
              seed: int) -> np.ndarray:  # fmt: skip
    """−(lower bound on log p(x)) per image, in nats of the decoder's own likelihood."""
    out = []
    with _seeded_global_rng(seed, model.device):
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start : start + batch_size], model.data_range).to(model.device)
            y = None if labels is None else labels[start : start + batch_size]
            out.append(-model.log_prob(x, y, num_samples=num_samples).double())
    return torch.cat(out).cpu().numpy()


def _vae_likelihood(model: VAE) -> tuple[str, float]:
    """What the VAE's number is a likelihood of, and the bits/dim to add for the bin width."""
    if model.config.likelihood == "gaussian":
        scale = math.exp(float(model.log_scale))
        if scale < 1 / (LEVELS - 1):
            logger.warning(
                "the VAE's decoder scale σ = %.3g is below the bin width 1/255: the bin-centre estimate of the "
                "discrete likelihood is unreliable (too low) for this model.", scale,
            )  # fmt: skip
        kind = "gaussian density on x = k/255 in [0, 1] + log2(255) bits/dim for bins 1/255 wide (256-level NLL)"
        return kind, math.log2(LEVELS - 1)
    if model.config.likelihood == "bernoulli":
        return "bernoulli (on grey levels in [0, 1]; not a discrete 256-level likelihood)", 0.0
    raise ConfigError(f"likelihood={model.config.likelihood!r} is not one of 'bernoulli', 'gaussian'.")


# --- checks and the entry point --------------------------------------------------------------------
def _check_images(model: GenerativeModel, images: Any) -> np.ndarray:
    images = np.asarray(images)
    c = model.config
    expected = (c.height, c.width, c.channels)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise DataError(
            f"images are {images.shape} but this {model.family} model takes (N, {c.height}, {c.width}, {c.channels}) "
            f"(N, H, W, C); resize them to {c.width}×{c.height} with {c.channels} channel(s)."
        )
    if images.dtype != np.uint8:
        raise DataError(
            f"images must be uint8 (0–255): bits/dim is a likelihood of 8-bit data; got {images.dtype}. "
            "Convert with genlab.data.images.as_uint8_images."
        )
    if len(images) == 0:
        raise DataError("no images were given.")
    return images


def _check_labels(model: GenerativeModel, labels: Any, n: int) -> Tensor | None:
    if labels is None:
        if isinstance(model, VAE) and model.num_classes:
            raise ConfigError(f"this conditional vae needs labels, one per image (0..{model.num_classes - 1}).")
        return None  # a conditional diffusion model is scored unconditionally, with its "no label" embedding
    labels = (labels if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))).long().reshape(-1)
    if labels.numel() != n:
        raise ConfigError(f"got {labels.numel()} labels for {n} images; give one label per image.")
    return model.check_labels(n, labels, None)


def _check_device(model: GenerativeModel, device: str | torch.device | None) -> None:
    if device is None:
        return
    want, have = torch.device(device), model.device
    if want.type != have.type or (want.index is not None and want.index != have.index):
        raise ConfigError(f"device={str(want)!r} but the model is on {have}; move it with model.to({str(want)!r}).")


def _summary(nats: np.ndarray, dims: int) -> tuple[float, float | None]:
    bits = nats / (dims * math.log(2))
    std_error = float(bits.std(ddof=1) / math.sqrt(len(bits))) if len(bits) > 1 else None
    return float(bits.mean()), std_error


def bits_per_dim(model: GenerativeModel, images: np.ndarray, *, labels: Any = None, num_samples: int = 1,
                 num_timesteps: int | None = None, variance: str | None = None, batch_size: int = 64, seed: int = 0,
                 device: str | torch.device | None = None) -> dict[str, Any]:  # fmt: skip
    """Upper bound on the negative log-likelihood of ``images`` in bits per dimension (module docstring).

    ``images``: uint8 (N, H, W, C) of the model's size. ``labels``: (N,) class ids for a conditional
    model (a conditional diffusion model without them is scored unconditionally). VAE:
    ``num_samples`` K importance samples (1 = ELBO). Diffusion: ``num_timesteps`` k < T − 1 estimates
    Σ_{t≥1} L_t without bias from k distinct seeded timesteps, scaled by (T − 1)/k (None = all,
    T network passes per batch); ``variance`` "posterior" (default) or "beta". ``seed`` (with the same
    ``batch_size``) fixes every random draw. Runs on the model's device (``device``, if given, must be it).

    Returns a JSON-able dict: ``bits_per_dim`` (mean over images), ``std_error`` (of that mean over
    images; None for one image; with k < T − 1 it omits the spread from the draw of timesteps, which
    is shared by all images), ``n``, ``bound`` ("elbo", "iwae-K" or "vlb"), ``likelihood`` (what
    the number is a likelihood of), ``num_timesteps`` (L_t terms evaluated, None for a VAE) and
    ``terms`` (mean bits/dim of each part; they add up to ``bits_per_dim``).
    """
    if model.modality != "image":
        raise ConfigError(
            f"{model.family} models score tokens, not images: use their perplexity; bits/dim needs a vae or "
            "diffusion model."
        )
    if not isinstance(model, (VAE, Diffusion)):
        raise ConfigError(f"{model.family} models define no likelihood; bits/dim needs a vae or diffusion model.")
    for name, value in (("batch_size", batch_size), ("num_samples", num_samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a whole number ≥ 1.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a whole number ≥ 0.")
    _check_device(model, device)
    images = _check_images(model, images)
    labels = _check_labels(model, labels, len(images))
    dims = int(np.prod(images.shape[1:]))
    was_training = model.training
    model.eval()  # no dropout while scoring
    try:
        with torch.no_grad():
            if isinstance(model, VAE):
                return _vae_result(model, images, labels, num_samples=num_samples, num_timesteps=num_timesteps,
                                   variance=variance, batch_size=batch_size, seed=seed, dims=dims)  # fmt: skip
            return _diffusion_result(model, images, labels, num_samples=num_samples, num_timesteps=num_timesteps,
                                     variance=variance, batch_size=batch_size, seed=seed, dims=dims)  # fmt: skip
    finally:
        model.train(was_training)


def _vae_result(model: VAE, images: np.ndarray, labels: Tensor | None, *, num_samples: int,
                num_timesteps: int | None, variance: str | None, batch_size: int, seed: int,
                dims: int) -> dict[str, Any]:  # fmt: skip
    if num_timesteps is not None or variance is not None:
        raise ConfigError("num_timesteps and variance apply to diffusion models; a vae's bound takes num_samples.")
    likelihood, bin_bits = _vae_likelihood(model)
    model_bits, std_error = _summary(_vae_nats(model, images, labels, num_samples=num_samples,
                                               batch_size=batch_size, seed=seed), dims)  # fmt: skip
    return {
        "bits_per_dim": model_bits + bin_bits, "std_error": std_error, "n": len(images),
        "bound": "elbo" if num_samples == 1 else f"iwae-{num_samples}", "likelihood": likelihood,
        "num_timesteps": None, "seed": seed, "terms": {"negative_bound": model_bits, "discretisation": bin_bits},
    }  # fmt: skip


def _diffusion_result(model: Diffusion, images: np.ndarray, labels: Tensor | None, *, num_samples: int,
                      num_timesteps: int | None, variance: str | None, batch_size: int, seed: int,
                      dims: int) -> dict[str, Any]:  # fmt: skip
    if num_samples != 1:
        raise ConfigError("num_samples applies to vae models; a diffusion model's bound takes num_timesteps.")
    variance = "posterior" if variance is None else variance
    parts, k = _diffusion_nats(model, images, labels, num_timesteps=num_timesteps, variance=variance,
                               batch_size=batch_size, seed=seed)  # fmt: skip
    mean, std_error = _summary(sum(parts.values()), dims)
    return {
        "bits_per_dim": mean, "std_error": std_error, "n": len(images), "bound": "vlb",
        "likelihood": f"discretised gaussian decoder, 256 levels on [-1, 1] (bins 2/255 wide), variance={variance}",
        "num_timesteps": k, "seed": seed, "conditioned_on_labels": labels is not None,
        "terms": {name: _summary(nats, dims)[0] for name, nats in parts.items()},
    }  # fmt: skip
