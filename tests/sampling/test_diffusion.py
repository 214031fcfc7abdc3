"""Each sampler's update against its closed form, and the loops against an exactly known model:
for Gaussian data N(μ, s²) the optimal denoiser E[x_0 | x_t] has a closed form."""

import itertools
import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.sampling import diffusion as d
from genlab.sampling.schedules import alphas_cumprod, timesteps

AB = alphas_cumprod("linear", 1000)


def _pair(t=600, s=400):
    return AB[t].item(), AB[s].item()


def _x(seed, shape=(4, 1, 3, 3)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_ddpm_step_is_the_gaussian_posterior():
    """q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0): a product of Gaussians, computed here by precisions."""
    ab_t, ab_s = _pair()
    a_ts = ab_t / ab_s
    x_t, x0, z = _x(0), _x(1), _x(2)
    precision = 1 / (1 - ab_s) + a_ts / (1 - a_ts)
    var = 1 / precision
    mean = var * (math.sqrt(ab_s) * x0 / (1 - ab_s) + math.sqrt(a_ts) * x_t / (1 - a_ts))
    got_mean = d.ddpm_step(x_t, x0, ab_t, ab_s, eta=0.0, noise=None, previous=None)
    got = d.ddpm_step(x_t, x0, ab_t, ab_s, eta=0.0, noise=z, previous=None)
    torch.testing.assert_close(got_mean, mean)
    torch.testing.assert_close(got, mean + math.sqrt(var) * z)


def test_ddim_eta0_follows_the_noise_it_infers():
    """With the true x_0, η = 0 maps √ᾱ_t x_0 + √(1−ᾱ_t) ε to √ᾱ_s x_0 + √(1−ᾱ_s) ε exactly."""
    ab_t, ab_s = _pair()
    x0, eps = _x(0), _x(1)
    x_t = math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * eps
    got = d.ddim_step(x_t, x0, ab_t, ab_s, eta=0.0, noise=None, previous=None)
    torch.testing.assert_close(got, math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps)


def test_ddim_eta1_is_ddpm():
    ab_t, ab_s = _pair()
    x_t, x0, z = _x(0), _x(1), _x(2)
    ddim = d.ddim_step(x_t, x0, ab_t, ab_s, eta=1.0, noise=z, previous=None)
    ddpm = d.ddpm_step(x_t, x0, ab_t, ab_s, eta=0.0, noise=z, previous=None)
    torch.testing.assert_close(ddim, ddpm)


def test_dpmpp_2m_matches_k_diffusion_formulation():
    """k-diffusion's sample_dpmpp_2m works in σ = √((1−ᾱ)/ᾱ) on x/√ᾱ; the same step in VP form must agree."""
    ab_prev, ab_t, ab_s = AB[800].item(), AB[600].item(), AB[400].item()
    x_t, x0, x0_prev = _x(0), _x(1), _x(2)

    def sigma(ab):
        return math.sqrt((1 - ab) / ab)

    t_prev, t_cur, t_next = (-math.log(sigma(a)) for a in (ab_prev, ab_t, ab_s))
    h, h_last = t_next - t_cur, t_cur - t_prev
    r = h_last / h
    denoised_d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    x_k = x_t / math.sqrt(ab_t)
    x_k = (sigma(ab_s) / sigma(ab_t)) * x_k - math.expm1(-h) * denoised_d
    expected = math.sqrt(ab_s) * x_k
    got = d.dpmpp_2m_step(x_t, x0, ab_t, ab_s, eta=0.0, noise=None, previous=(x0_prev, d.log_snr(ab_prev)))
    torch.testing.assert_close(got, expected)


def test_dpmpp_first_step_is_ddim_and_last_returns_x0():
    ab_t, ab_s = _pair()
    x_t, x0 = _x(0), _x(1)
    first = d.dpmpp_2m_step(x_t, x0, ab_t, ab_s, eta=0.0, noise=None, previous=None)
    torch.testing.assert_close(first, d.ddim_step(x_t, x0, ab_t, ab_s, eta=0.0, noise=None, previous=None))
    assert d.dpmpp_2m_step(x_t, x0, ab_t, 1.0, eta=0.0, noise=None, previous=(x0, 0.0)) is x0


MU, S = 0.7, 0.4


def gaussian_denoiser(x_t: torch.Tensor, t: int) -> torch.Tensor:
    """E[x_0 | x_t] for x_0 ~ N(μ, s²): μ + √ᾱ s² / (ᾱ s² + 1 − ᾱ) · (x_t − √ᾱ μ)."""
    ab = AB[t].item()
    return MU + math.sqrt(ab) * S**2 / (ab * S**2 + 1 - ab) * (x_t - math.sqrt(ab) * MU)


@pytest.mark.parametrize(
    ("name", "steps", "eta", "tol"),
    [("ddpm", 1000, 0.0, 0.01), ("ddpm", 250, 0.0, 0.02), ("ddim", 250, 0.0, 0.01), ("ddim", 250, 1.0, 0.02),
     ("ddim", 50, 0.0, 0.03), ("dpm++2m", 20, 0.0, 0.01), ("dpm++2m", 10, 0.0, 0.02)],
)  # fmt: skip
def test_samplers_recover_the_data_distribution(name, steps, eta, tol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((40_000,), generator=g, dtype=torch.float64)
    sampler = d.get_sampler(name, eta=eta)
    out = d.denoise(gaussian_denoiser, x, alphas_cumprod=AB, steps=d.sampler_steps(sampler, steps, AB),
                    sampler=sampler, eta=eta, generator=g)  # fmt: skip
    assert out.mean().item() == pytest.approx(MU, abs=tol)
    assert out.std().item() == pytest.approx(S, abs=tol)


def test_dpm_solver_steps_evenly_in_log_snr():
    steps = d.sampler_steps(d.SAMPLERS["dpm++2m"], 20, AB)
    lam = [d.log_snr(AB[t].item()) for t in steps]
    gaps = [b - a for a, b in itertools.pairwise(lam)]
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 20
    assert max(gaps) < 1.5 * min(gaps[:-1])  # the last gap ends at t = 0, the finest step there is


def test_deterministic_samplers_need_no_randomness():
    x = _x(0, (100,))
    runs = [
        d.denoise(gaussian_denoiser, x, alphas_cumprod=AB, steps=timesteps(1000, 10), sampler=d.SAMPLERS["ddim"],
                  generator=torch.Generator().manual_seed(seed))
        for seed in (1, 2)
    ]  # fmt: skip
    torch.testing.assert_close(runs[0], runs[1])


def test_repaint_keeps_the_known_region_exactly():
    image = _x(0, (2, 1, 4, 4)).clamp(-1, 1)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[..., :2, :] = 1
    out = d.repaint(gaussian_denoiser, image, mask, alphas_cumprod=AB, steps=timesteps(1000, 10),
                    sampler=d.SAMPLERS["ddpm"], resample=2, generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(out[..., 2:, :], image[..., 2:, :])
    assert not torch.allclose(out[..., :2, :], image[..., :2, :])


def test_repaint_refuses_multistep_solvers():
    with pytest.raises(ConfigError, match="use ddpm or ddim"):
        d.repaint(gaussian_denoiser, _x(0), torch.ones(1, 1, 3, 3), alphas_cumprod=AB, steps=[999, 0],
                  sampler=d.SAMPLERS["dpm++2m"])  # fmt: skip


def test_noise_to_draws_from_the_forward_process():
    image = torch.full((50_000,), 0.5, dtype=torch.float64)
    x = d.noise_to(image, 500, AB, torch.Generator().manual_seed(0))
    ab = AB[500].item()
    assert x.mean().item() == pytest.approx(math.sqrt(ab) * 0.5, abs=0.01)
    assert x.std().item() == pytest.approx(math.sqrt(1 - ab), abs=0.01)


def test_sampler_names_and_eta_are_checked():
    with pytest.raises(ConfigError, match="sampler 'euler' is not one of ddpm, ddim, dpm\\+\\+2m"):
        d.get_sampler("euler")
    with pytest.raises(ConfigError, match="eta applies to the ddim sampler only"):
        d.get_sampler("dpm++2m", eta=0.5)
    with pytest.raises(ConfigError, match=r"eta=2\.0 must be in"):
        d.get_sampler("ddim", eta=2.0)
