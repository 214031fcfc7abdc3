"""genlab: train, sample, edit, evaluate, store and serve deep generative models."""

__version__ = "0.1.0"

from genlab.api import (
    img2img,
    info,
    inpaint,
    interpolate,
    load,
    reconstruct,
    sample,
    save_samples,
    score,
    train,
)

__all__ = [
    "__version__",
    "img2img",
    "info",
    "inpaint",
    "interpolate",
    "load",
    "reconstruct",
    "sample",
    "save_samples",
    "score",
    "train",
]
