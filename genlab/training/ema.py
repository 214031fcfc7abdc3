"""Exponential moving average of model weights (Polyak averaging), used for sampling."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """Keeps ``shadow = decay · shadow + (1 − decay) · weights`` for every floating-point tensor.

    The effective decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates so the
    average is not dominated by the random initialisation (the warm-up of tf.train.ExponentialMovingAverage).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.float(), 1.0 - decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        self.shadow = {k: state[k].to(self.shadow[k].device).float() for k in self.shadow}
        self.num_updates = num_updates

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast back to each tensor's dtype)."""
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})
