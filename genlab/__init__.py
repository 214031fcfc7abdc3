"""genlab: train, sample, edit, evaluate, store and serve deep generative models."""

__version__ = "0.1.0"

from genlab.api import (
    evaluate,
    export_hf,
    generate,
    img2img,
    import_hf,
    info,
    inpaint,
    interpolate,
    load,
    reconstruct,
    sample,
    save_samples,
    save_texts,
    score,
    train,
)

__all__ = [
    "__version__",
    "evaluate",
    "export_hf",
    "generate",
    "img2img",
    "import_hf",
    "info",
    "inpaint",
    "interpolate",
    "load",
    "reconstruct",
    "sample",
    "save_samples",
    "save_texts",
    "score",
    "train",
]
