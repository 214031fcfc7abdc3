"""Token picking: the sampled distribution is the softmax, filtered tokens are never drawn."""

from __future__ import annotations

import torch

from genlab.sampling.decoding import DecodingOptions, pick, process_logits


def test_sampling_follows_the_softmax():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(50_000, 4)
    draws = pick(logits, DecodingOptions(), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    # 50,000 draws: the standard error of each frequency is below 0.0022
    assert torch.allclose(freq, probs, atol=0.01), freq


def test_filtered_tokens_are_never_drawn_and_greedy_is_argmax():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.1, -1.0]]).expand(20_000, 5)
    options = DecodingOptions(top_k=2)
    draws = pick(process_logits(logits, None, options), options, torch.Generator().manual_seed(1))
    assert set(draws.tolist()) == {0, 1}
    assert pick(logits[:1], DecodingOptions(temperature=0), None).item() == 0


def test_same_generator_seed_same_draws():
    logits = torch.randn(8, 100)
    a = pick(logits, DecodingOptions(), torch.Generator().manual_seed(5))
    assert torch.equal(a, pick(logits, DecodingOptions(), torch.Generator().manual_seed(5)))
