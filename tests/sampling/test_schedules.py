import itertools
import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.sampling.schedules import alphas_cumprod, betas, timesteps


def test_linear_betas_are_ho_et_al():
    b = betas("linear", 1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    assert torch.allclose(b.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_cosine_alpha_bar_follows_the_closed_form():
    T, s = 1000, 0.008

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    ab = alphas_cumprod("cosine", T)
    for t in (0, 10, 500, 900):  # β is not clipped at 0.999 before the very end
        assert ab[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert betas("cosine", T).max().item() <= 0.999


def test_alphas_cumprod_decreases_to_near_zero():
    ab = alphas_cumprod("linear", 1000)
    assert (ab.diff() < 0).all()
    assert 0 < ab[-1].item() < 1e-4


@pytest.mark.parametrize("k", [1, 2, 10, 20, 50, 1000])
def test_timesteps_run_from_last_to_zero(k):
    steps = timesteps(1000, k)
    assert len(steps) == k and steps[0] == 999
    assert k == 1 or steps[-1] == 0
    assert all(a > b for a, b in itertools.pairwise(steps))


def test_timesteps_visit_every_step_when_k_is_T():
    assert timesteps(100, 100) == list(range(99, -1, -1))


def test_logsnr_spacing_needs_the_schedule():
    with pytest.raises(ConfigError, match="logsnr spacing needs"):
        timesteps(1000, 10, spacing="logsnr")
    steps = timesteps(1000, 10, spacing="logsnr", alphas_cumprod=alphas_cumprod("linear", 1000))
    assert steps[0] == 999 and steps[-1] == 0 and all(a > b for a, b in itertools.pairwise(steps))


def test_bad_step_counts_are_refused():
    with pytest.raises(ConfigError, match="num_steps=2000 must be between 1 and the model's 1000"):
        timesteps(1000, 2000)
    with pytest.raises(ConfigError, match="schedule 'quadratic' is not one of"):
        betas("quadratic", 10)
