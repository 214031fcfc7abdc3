"""The shared model contract: batching several requests with a GeneratorGroup changes no request's samples."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.errors import ConfigError
from genlab.models.base import GeneratorGroup, randint, randn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_group_draws_match_separate_draws():
    group = GeneratorGroup([(_gen(1), 2), (_gen(2), 3)])
    together = randn((5, 4), generator=group, device=torch.device("cpu"))
    apart = torch.cat([randn((2, 4), generator=_gen(1), device=torch.device("cpu")),
                       randn((3, 4), generator=_gen(2), device=torch.device("cpu"))])  # fmt: skip
    assert torch.equal(together, apart)
    labels = randint(10, (5,), generator=GeneratorGroup([(_gen(1), 2), (_gen(2), 3)]), device=torch.device("cpu"))
    assert torch.equal(labels, torch.cat([torch.randint(10, (2,), generator=_gen(1)),
                                          torch.randint(10, (3,), generator=_gen(2))]))  # fmt: skip


def test_group_errors():
    with pytest.raises(ConfigError, match="count >= 1"):
        GeneratorGroup([(_gen(0), 0)])
    with pytest.raises(ConfigError, match="a draw of 4 rows from a generator group of 5"):
        randn((4, 2), generator=GeneratorGroup([(_gen(1), 2), (_gen(2), 3)]), device=torch.device("cpu"))


@pytest.mark.parametrize("run", ["cvae_run", "ddpm_run"])
def test_batched_sampling_equals_separate_sampling(run, request):
    """Labels, latents and every sampler step's noise come from each request's own generator."""
    model = genlab.load(request.getfixturevalue(run))
    options = {"num_steps": 5} if "ddpm" in run else {}
    with torch.no_grad():
        apart = [model.sample(2, generator=_gen(3), **options), model.sample(1, generator=_gen(4), **options)]
        together = model.sample(3, generator=GeneratorGroup([(_gen(3), 2), (_gen(4), 1)]), **options)
    torch.testing.assert_close(together, torch.cat(apart), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("run", ["gpt_run", "lstm_run"])
def test_batched_decoding_equals_separate_decoding(run, request):
    """Prompts of different lengths (left-padded), several rows per request, rows ending early at a
    stop string: each request's rows draw from its own generator as they would alone."""
    from genlab import sequences
    from genlab.sampling.decoding import DecodingOptions

    model = genlab.load(request.getfixturevalue(run))
    options = DecodingOptions(max_new_tokens=20, temperature=0.9)
    jobs = [("ROMEO:", 2, 1), ("To be, or not to be", 1, 2), (None, 3, 3)]  # (prompt, n, seed)
    alone = [sequences.generate_text(model, [p], options, n=n, seed=s, stop=["\n\n"])[0] for p, n, s in jobs]
    group = GeneratorGroup([(_gen(s), n) for _, n, s in jobs])
    rows = sequences.generate_text(model, [p for p, n, _ in jobs for _ in range(n)], options, n=1, stop=["\n\n"],
                                   generator=group)  # fmt: skip
    flat = [row[0] for row in rows]
    assert flat == [text for texts in alone for text in texts]
