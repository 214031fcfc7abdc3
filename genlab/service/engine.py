"""Running generation requests for the service: limits, the model cache, request batching, and
turning samples into storable outputs (PNG images, text, MIDI).

Models are loaded once per (name, version) and kept in a small LRU cache. Requests for one model
and the same options that arrive while it is busy wait for it and then run together: images in one
``sample`` call, texts in one decoding loop (prompts left-padded). Each request keeps its own seed
through a :class:`~genlab.models.base.GeneratorGroup`, so batching never changes what a request
gets, up to float rounding. Streams run on their own.
"""

from __future__ import annotations

import io
import logging
import queue
import random
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.errors import ConfigError
from genlab.models.base import GeneratorGroup
from genlab.store.records import ModelInfo, Output

logger = logging.getLogger(__name__)

DEFAULT_NEW_TOKENS = 200
TEXT_OPTIONS = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "num_beams", "stop")


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask for (the service answers 422 beyond them)."""

    max_n: int = 16
    max_steps: int = 1000  # diffusion sampling steps
    max_new_tokens: int = 512
    max_beams: int = 4
    max_prompt_chars: int = 4000
    max_body_bytes: int = 64 * 1024
    rate_per_minute: float = 600.0  # per API key, sustained
    burst: int = 60  # per API key, at once
    cache_models: int = 4  # models kept loaded
    batch_window_ms: float = 5.0  # how long an image request waits for others to batch with


@dataclass(frozen=True)
class Job:
    """One validated generation request."""

    model: ModelInfo
    n: int
    seed: int
    prompt: str | None = None
    labels: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def batch_key(self) -> tuple:
        options = tuple(sorted((k, repr(v)) for k, v in self.options.items()))
        return (self.model.id, options, self.labels is None)


def new_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def validate(model: ModelInfo, loaded: torch.nn.Module, options: dict[str, Any], n: int, prompt: str | None,
             labels: tuple[int, ...] | None, limits: Limits) -> dict[str, Any]:  # fmt: skip
    """The request's generation options, checked against the model and the caps."""
    from genlab.models.base import sampling_options

    if not 1 <= n <= limits.max_n:
        raise ConfigError(f"n={n} must be between 1 and {limits.max_n}.")
    if prompt is not None and len(prompt) > limits.max_prompt_chars:
        raise ConfigError(f"the prompt has {len(prompt)} characters; the limit is {limits.max_prompt_chars}.")
    valid = TEXT_OPTIONS if model.modality in ("text", "music") else tuple(sampling_options(loaded))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {unknown} for {model.family} model {model.name}; valid: {list(valid)}."
        )
    if model.modality not in ("text", "music"):
        if prompt is not None:
            raise ConfigError(f"{model.name} is an image model and takes no prompt; give labels or parameters.")
        _check_labels(labels, n, int(getattr(loaded, "num_classes", 0)), model.name)
    elif labels is not None:
        raise ConfigError(f"{model.name} is a {model.modality} model and takes no labels; give a prompt.")
    options = dict(options)
    if model.modality in ("text", "music"):  # the effective values are recorded, for reproduction
        options["max_new_tokens"] = options.get("max_new_tokens") or min(DEFAULT_NEW_TOKENS, limits.max_new_tokens)
    elif options.get("sampler") == "ddpm" and options.get("num_steps") is None:  # ancestral: every step
        options["num_steps"] = int(loaded.config.num_train_steps)
    caps = {"num_steps": limits.max_steps, "max_new_tokens": limits.max_new_tokens, "num_beams": limits.max_beams}
    for key, cap in caps.items():
        value = options.get(key)
        if value is not None and not (isinstance(value, int) and 1 <= value <= cap):
            raise ConfigError(f"{key}={value!r} must be an integer from 1 to {cap}.")
    if model.modality in ("text", "music"):  # checked here, so a stream never starts with bad options
        from genlab.sampling.decoding import DecodingOptions

        DecodingOptions(**{k: v for k, v in options.items() if k != "stop" and v is not None})
    stop = options.get("stop")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise ConfigError("stop must be a list of non-empty strings.")
    return options


def _check_labels(labels: tuple[int, ...] | None, n: int, num_classes: int, name: str) -> None:
    """Labels are checked before batching, so one request's bad label never fails another's."""
    if labels is None:
        return
    if num_classes == 0:
        raise ConfigError(f"{name} is unconditional; drop the labels.")
    if len(labels) not in (1, n):
        raise ConfigError(f"got {len(labels)} labels for n={n}; give one label or one per sample.")
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        raise ConfigError(f"label {bad[0]} is out of range; {name} knows labels 0..{num_classes - 1}.")


class ModelCache:
    """Loaded models by registry id, least recently used dropped first; one load per model at a time."""

    def __init__(self, size: int, device: str = "cpu") -> None:
        self.size = size
        self.device = device
        self._models: OrderedDict[int, torch.nn.Module] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        self.loads = 0

    def __len__(self) -> int:
        return len(self._models)

    def get(self, model: ModelInfo) -> torch.nn.Module:
        with self._lock:
            if model.id in self._models:
                self._models.move_to_end(model.id)
                return self._models[model.id]
            loading = self._loading.setdefault(model.id, threading.Lock())
        with loading:  # concurrent first requests for one model wait for a single load
            with self._lock:
                if model.id in self._models:
                    return self._models[model.id]
            from genlab import api

            loaded = api.load(model.path, device=self.device)
            with self._lock:
                self.loads += 1
                self._models[model.id] = loaded
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            return loaded


class _Pending:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.done = threading.Event()
        self.result: list[Output] | None = None
        self.error: BaseException | None = None


class Engine:
    """Runs jobs: images batched per model and options, text one at a time per model."""

    def __init__(self, limits: Limits = Limits(), device: str = "cpu") -> None:
        self.limits = limits
        self.cache = ModelCache(limits.cache_models, device)
        self._queues: dict[tuple, list[_Pending]] = {}
        self._model_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self.batches: Counter[str] = Counter()  # generation calls made, by modality
        self.batched_jobs: Counter[str] = Counter()  # the requests they served

    def _model_lock(self, model_id: int) -> threading.Lock:
        with self._lock:
            return self._model_locks.setdefault(model_id, threading.Lock())

    def run(self, job: Job) -> list[Output]:
        """The job's outputs; run together with the jobs for the same model and options that
        arrive meanwhile, each with its own seed (batching never changes what a job gets)."""
        return self._run_batched(job)

    def start_stream(self, job: Job) -> tuple[queue.Queue, threading.Event]:
        """Generate one text (one prompt, n=1) in a worker thread, piece by piece: the queue gets
        ``("token", text)`` items, then ``("end", None)`` or ``("error", exception)``. Setting the
        event stops the worker at the next piece (the client left), so a stream no one reads never
        holds its model for longer than one token."""
        pieces: queue.Queue = queue.Queue()
        cancel = threading.Event()
        threading.Thread(target=self._stream_into, args=(job, pieces, cancel), name="genlab-stream",
                         daemon=True).start()  # fmt: skip
        return pieces, cancel

    def _stream_into(self, job: Job, pieces: queue.Queue, cancel: threading.Event) -> None:
        from genlab import api

        try:
            model = self.cache.get(job.model)
            with self._model_lock(job.model.id):
                for piece in api.generate(model, job.prompt, n=1, seed=job.seed, stream=True, **_text_options(job)):
                    if cancel.is_set():
                        break
                    pieces.put(("token", piece))
            pieces.put(("end", None))
        except BaseException as exc:  # handed to the reader, which answers with an error event
            pieces.put(("error", exc))

    # --- batching -----------------------------------------------------------------------------
    def _run_batched(self, job: Job) -> list[Output]:
        pending = _Pending(job)
        key = job.batch_key()
        with self._lock:
            queue = self._queues.setdefault(key, [])
            queue.append(pending)
            leader = len(queue) == 1
        if leader:
            time.sleep(self.limits.batch_window_ms / 1000)
            with self._model_lock(job.model.id):  # requests arriving meanwhile join the next batch
                with self._lock:
                    batch = self._queues.pop(key)
                self._run_batch(batch)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            jobs = [p.job for p in batch]
            if sum(j.n for j in jobs) > self.limits.max_n * 4:  # keep one call's memory bounded: split it
                for p in batch:
                    self._run_batch([p])
                return
            model = self.cache.get(jobs[0].model)
            text = jobs[0].model.modality in ("text", "music")
            outputs = self._text_batch(model, jobs) if text else self._image_batch(model, jobs)
            self.batches["text" if text else "image"] += 1
            self.batched_jobs["text" if text else "image"] += len(jobs)
            for p, result in zip(batch, outputs, strict=True):
                p.result = result
        except BaseException as exc:  # every waiting request learns of the failure
            for p in batch:
                p.error = exc
        finally:
            for p in batch:
                p.done.set()

    @staticmethod
    def _image_batch(model: torch.nn.Module, jobs: list[Job]) -> list[list[Output]]:
        from genlab.data.images import to_uint8

        group = GeneratorGroup([(torch.Generator().manual_seed(j.seed), j.n) for j in jobs])
        with torch.no_grad():
            x = model.sample(group.total, generator=group, labels=_batch_labels(jobs), **_image_options(jobs[0]))
        images = to_uint8(x, model.data_range)
        return [[_image_output(img) for img in part] for part in _split(images, jobs)]

    @staticmethod
    def _text_batch(model: torch.nn.Module, jobs: list[Job]) -> list[list[Output]]:
        """One decoding loop for every job's rows (prompt j repeated n_j times), each job's rows
        drawing from its own seed's generator; beam search (deterministic) runs job by job."""
        from genlab import api, sequences
        from genlab.sampling.decoding import DecodingOptions

        options = _text_options(jobs[0])
        stop = list(options.pop("stop", ()))
        decoding = DecodingOptions(**options)
        if decoding.num_beams > 1:
            texts = [api.generate(model, j.prompt, n=j.n, seed=j.seed, **_text_options(j)) for j in jobs]
        else:
            group = GeneratorGroup([(torch.Generator().manual_seed(j.seed), j.n) for j in jobs])
            prompts = [j.prompt for j in jobs for _ in range(j.n)]
            rows = sequences.generate_text(model, prompts, decoding, n=1, stop=stop, generator=group)
            texts = _split([row[0] for row in rows], jobs)
        if jobs[0].model.modality == "music":
            return [[Output("music", text=t, data=_midi_bytes(t), mime="audio/midi") for t in ts] for ts in texts]
        return [[Output("text", text=t) for t in ts] for ts in texts]


def _split(items: Sequence[Any], jobs: list[Job]) -> list[list[Any]]:
    """A batch's outputs back to its jobs: job j's are the next ``jobs[j].n``."""
    parts, start = [], 0
    for job in jobs:
        parts.append(list(items[start : start + job.n]))
        start += job.n
    return parts


def _text_options(job: Job) -> dict[str, Any]:
    options = {k: v for k, v in job.options.items() if v is not None}
    if "stop" in options:
        options["stop"] = tuple(options["stop"])
    return options


def _image_options(job: Job) -> dict[str, Any]:
    return {k: v for k, v in job.options.items() if v is not None}


def _batch_labels(jobs: list[Job]) -> torch.Tensor | None:
    """One label per sample, or None when no job gives labels (the model then draws each job's
    labels from its own generator). Jobs with and without labels never share a batch."""
    if jobs[0].labels is None:
        return None
    parts = [torch.as_tensor(j.labels, dtype=torch.long).expand(j.n) if len(j.labels) == 1
             else torch.as_tensor(j.labels, dtype=torch.long) for j in jobs]  # fmt: skip
    return torch.cat(parts)


def _image_output(image: np.ndarray) -> Output:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return Output("image", data=buf.getvalue(), mime="image/png", embedding_source=image)


def _midi_bytes(events: str) -> bytes | None:
    from genlab.data.music import events_to_midi

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "piece.mid"
        try:
            events_to_midi(events, path, strict=False)
        except Exception as exc:  # an unplayable piece is still kept as its event text
            logger.info("no MIDI for a generated piece: %s", exc)
            return None
        return path.read_bytes()
