"""The trainer's view of data: whole items (images) and windows of a token stream."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import DataError
from genlab.training.items import TensorItems, TokenWindows
from genlab.training.trainer import BatchStream, eval_batches


def test_token_windows_are_every_offset():
    tokens = torch.arange(10)
    items = TokenWindows(tokens, length=4)
    assert len(items) == 7  # offsets 0..6
    batch = items.batch(torch.tensor([0, 6]))
    assert batch.x.tolist() == [[0, 1, 2, 3], [6, 7, 8, 9]] and batch.y is None


def test_validation_windows_predict_every_token_once():
    tokens = torch.arange(1, 22)  # 21 tokens: 20 targets
    items = TokenWindows(tokens, length=5)
    targets = torch.cat([b.x[:, 1:].reshape(-1) for b in eval_batches(items, batch_size=2, limit=0)])
    assert targets.tolist() == list(range(2, 22))


def test_short_stream_becomes_one_window_and_too_short_is_refused():
    assert TokenWindows.fit(torch.arange(3), 10).length == 3
    with pytest.raises(DataError, match="at least 2 tokens"):
        TokenWindows(torch.arange(5), length=1)
    with pytest.raises(DataError, match="no items"):
        BatchStream(TokenWindows(torch.arange(3), length=5), 2, seed=0)


def test_summary_turns_nats_into_perplexity_and_bits():
    items = TokenWindows(torch.arange(10), length=4, chars_per_token=2.0)
    out = items.summarize({"loss": math.log(8)})
    assert out["perplexity"] == pytest.approx(8.0)
    assert out["bits_per_token"] == pytest.approx(3.0)
    assert out["bits_per_char"] == pytest.approx(1.5)
    assert TensorItems(torch.zeros(2, 1)).summarize({"loss": 1.0}) == {}


def test_batch_order_is_a_pure_function_of_seed_and_position():
    items = TokenWindows(torch.arange(100), length=5)
    a, b = BatchStream(items, 8, seed=3), BatchStream(items, 8, seed=3)
    assert torch.equal(a.batch(13).x, b.batch(13).x)  # random access: no need to replay the stream
    epoch = torch.cat([a.batch(m).x[:, 0] for m in range(a.per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch)  # each window at most once per epoch
