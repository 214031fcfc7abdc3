"""The one trainer and its config."""

from genlab.training.ema import EMA
from genlab.training.trainer import Event, TrainConfig, TrainState, fit, learning_rate, resolve_device

__all__ = ["EMA", "Event", "TrainConfig", "TrainState", "fit", "learning_rate", "resolve_device"]
