"""``genlab eval``: score a run (or any file of samples) and record every figure with its provenance.

:func:`evaluate_run` samples a trained run, scores the samples against the data it was trained on
and writes ``metrics.json`` into the run directory; :func:`evaluate_samples` scores a sample file
made by any tool (``.npz``/``.npy``/image folder, or ``.txt``/``.jsonl`` text) against a dataset.
The result is JSON-ready: each metric maps to ``{"value": …}`` plus what qualifies it (a
confidence interval, a standard deviation, k, the subsets), and the top level says which data,
split, extractor, sample counts and seed were used.

Image metrics use real features of the run's **training split** (what the model saw); likelihoods
and TSTR are tested on its **validation split**.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genlab.config import check
from genlab.data.datasets import ImageData, load_images
from genlab.errors import ConfigError, DataError, unknown
from genlab.io import write_json
from genlab.metrics import image as im
from genlab.metrics.features import Extractor, load_extractor, real_features

IMAGE_METRICS = ("fid", "kid", "is", "precision_recall", "density_coverage", "memorization", "tstr", "bits_per_dim")
TEXT_METRICS = ("perplexity", "bleu", "chrf", "self_bleu", "distinct_n", "memorization")
DEFAULT_IMAGE_METRICS = ("fid", "kid", "precision_recall", "density_coverage", "memorization")
DEFAULT_TEXT_METRICS = ("perplexity", "self_bleu", "distinct_n", "memorization")
METRICS_FILE = "metrics.json"


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What ``genlab eval`` was asked for (recorded with the result)."""

    metrics: tuple[str, ...] | None = None  # None: the defaults of the modality
    n: int | None = None  # samples to generate (default: 10,000 images / 100 texts)
    seed: int = 0
    extractor: str = "domain"
    inception_weights: str | None = None
    bootstrap: int = 20  # FID bootstrap resamples for the 95% interval (0: none)
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    allow_few: bool = False  # compute FID with fewer samples than feature dimensions (biased)
    max_new_tokens: int = 200
    tstr_steps: int = 300
    likelihood_images: int = 500  # validation images for bits_per_dim
    likelihood_timesteps: int | None = 100  # diffusion: KL terms in the unbiased estimate (None: all T − 1)
    device: str = "cpu"
    batch_size: int = 250

    def __post_init__(self) -> None:
        check(self.n is None or self.n >= 2, f"n={self.n} must be at least 2 samples.")
        check(self.extractor in ("domain", "inception"), f"unknown extractor {self.extractor!r}; use domain|inception.")
        for name in ("bootstrap", "tstr_steps"):
            check(getattr(self, name) >= 0, f"{name}={getattr(self, name)} must be ≥ 0.")
        for name in ("kid_subsets", "kid_subset_size", "max_new_tokens", "likelihood_images", "batch_size"):
            check(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be at least 1.")


def _metric_list(requested: Sequence[str] | None, available: Sequence[str], default: Sequence[str],
                 kind: str) -> tuple[str, ...]:  # fmt: skip
    names = tuple(default if not requested else requested)
    aliases = {"inception_score": "is", "pr": "precision_recall", "prdc": "density_coverage", "bpd": "bits_per_dim"}
    names = tuple(aliases.get(n, n) for n in names)
    bad = [n for n in names if n not in available]
    if bad:
        raise unknown("metric", bad[0], available, hint=f"(for {kind} models)")
    return names


def _base(kind: str, options: EvalOptions, **fields: Any) -> dict[str, Any]:
    import genlab

    return {
        "genlab_version": genlab.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kind": kind,
        "seed": options.seed,
        **fields,
        "options": dataclasses.asdict(options),
        "metrics": {},
    }


# --- images ---------------------------------------------------------------------------------------
def score_images(samples: np.ndarray, labels: np.ndarray | None, train: ImageData, val: ImageData | None,
                 options: EvalOptions, *, names: Sequence[str], extractor: Extractor, model: Any = None,
                 progress: Callable[[str], None] | None = None,
                 pairs_path: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Every image metric in ``names`` for uint8 ``samples`` against the ``train`` (and ``val``) split;
    with ``pairs_path``, the memorisation audit's closest pairs are drawn there (PNG)."""
    say = progress or (lambda _: None)
    out: dict[str, Any] = {}
    needs_features = {"fid", "kid", "is", "precision_recall", "density_coverage", "memorization"} & set(names)
    if needs_features:
        say(f"features of {len(train)} real images ({extractor.name}, cached)")
        real = real_features(extractor, train, batch_size=options.batch_size)
        say(f"features of {len(samples)} generated images")
        fake, fake_logits = extractor(samples, batch_size=options.batch_size)
        n_min, dim = min(len(fake), len(real.features)), extractor.feature_dim
        if "fid" in names:
            if n_min < dim and not options.allow_few:
                raise DataError(
                    f"FID from {n_min} samples of {dim}-dimensional {extractor.name} features is dominated by bias; "
                    f"use --n {10 * dim} or more (at least {dim}), or pass --allow-few-samples."
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", im.SampleSizeWarning)  # refused or allowed above
                value = im.frechet_distance(real.stats, im.GaussianStats.of(fake))
                entry: dict[str, Any] = {"value": value}
                if options.bootstrap > 0:
                    say(f"FID bootstrap ({options.bootstrap} resamples)")
                    low, high = im.bootstrap_fid(real.stats, fake, resamples=options.bootstrap, seed=options.seed,
                                                 estimate=value)  # fmt: skip
                    entry.update(ci95=[low, high], bootstrap=options.bootstrap)
            out["fid"] = entry
        if "kid" in names:
            k = im.kid(real.features, fake, subsets=options.kid_subsets, subset_size=options.kid_subset_size,
                       seed=options.seed)  # fmt: skip
            out["kid"] = {"value": k.mean, "std": k.std, "subsets": k.subsets, "subset_size": k.subset_size}
        if "is" in names:
            splits = 10 if min(len(fake), len(real.logits)) >= 10 else 1
            mean, std = im.inception_score(fake_logits, splits=splits, seed=options.seed)
            real_is, _ = im.inception_score(real.logits, splits=splits, seed=options.seed)
            out["inception_score"] = {"value": mean, "std": std, "splits": splits, "real_data_value": real_is,
                                      "classes": extractor.num_classes}  # fmt: skip
        if "precision_recall" in names:
            p, r = im.precision_recall(real.features, fake, k=3)
            out["precision"] = {"value": p, "k": 3}
            out["recall"] = {"value": r, "k": 3}
        if "density_coverage" in names:
            d, c = im.density_coverage(real.features, fake, k=5)
            out["density"] = {"value": d, "k": 5}
            out["coverage"] = {"value": c, "k": 5}
        if "memorization" in names:
            from genlab.metrics.memorization import memorization, save_closest_pairs

            report = memorization(fake, real.features)
            out["memorization"] = {"value": report["near_copy_share"], **report}
            if pairs_path is not None and samples.shape[1:] == train.images.shape[1:]:
                save_closest_pairs(samples, train.images, report, pairs_path)
                out["memorization"]["closest_pairs_png"] = str(pairs_path)
    if "bits_per_dim" in names:
        out["bits_per_dim"] = _bits_per_dim(model, val, options, say)
    if "tstr" in names:
        out["tstr"] = _tstr(samples, labels, train, val, options, say)
    return out


def _bits_per_dim(model: Any, val: ImageData | None, options: EvalOptions, say: Callable[[str], None]) -> dict:
    if model is None:
        raise ConfigError("bits_per_dim needs the model, not only its samples: run `genlab eval RUN_DIR`.")
    if val is None or len(val) == 0:
        raise DataError("bits_per_dim is measured on the validation split, and this run has none.")
    from genlab.metrics.likelihood import bits_per_dim

    count = min(len(val), options.likelihood_images)
    extra = {}
    if model.family == "diffusion" and options.likelihood_timesteps is not None:
        extra["num_timesteps"] = min(options.likelihood_timesteps, model.config.num_train_steps - 1)
    # a conditional VAE's bound is of log p(x | y): give it the true labels (a diffusion model scores
    # unconditionally, with its "no label" embedding)
    labels = val.labels[:count] if model.family == "vae" and model.num_classes and val.labels is not None else None
    say(f"bits/dim on {count} validation images")
    result = bits_per_dim(model, val.images[:count], labels=labels, seed=options.seed, device=options.device,
                          **extra)  # fmt: skip
    return {"value": result["bits_per_dim"], **result}


def _tstr(samples: np.ndarray, labels: np.ndarray | None, train: ImageData, val: ImageData | None,
          options: EvalOptions, say: Callable[[str], None]) -> dict:  # fmt: skip
    if labels is None or train.labels is None:
        raise ConfigError("TSTR needs labelled samples: evaluate a class-conditional run (e.g. cgan-mnist).")
    if val is None or val.labels is None or len(val) == 0:
        raise DataError("TSTR tests on the validation split, and this data has none.")
    from genlab.metrics.tstr import tstr

    say(f"TSTR: three classifiers of {options.tstr_steps} steps")
    result = tstr((samples, labels), (train.images, train.labels), (val.images, val.labels), train.num_classes,
                  steps=options.tstr_steps, seed=options.seed, device=options.device)  # fmt: skip
    return {"value": result["synthetic_accuracy"], **result}


def _sample_images(model: Any, n: int, seed: int, batch: int) -> tuple[np.ndarray, np.ndarray | None]:
    """n samples in batches (the same as one call of n with this seed is not promised: batch i uses seed + i)."""
    from genlab.api import sample

    labels = np.arange(n) % model.num_classes if model.num_classes else None
    parts = []
    for i, start in enumerate(range(0, n, batch)):
        chunk = None if labels is None else labels[start : start + batch].tolist()
        parts.append(sample(model, min(batch, n - start), seed=seed + i, labels=chunk))
    return np.concatenate(parts), labels


# --- text ---------------------------------------------------------------------------------------
def score_texts(samples: Sequence[str], train_text: str, options: EvalOptions, *, names: Sequence[str],
                model: Any = None, val_text: str | None = None, references: Sequence[str] | None = None,
                hypotheses: Sequence[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Text metrics: diversity and memorisation of ``samples``; BLEU/chrF of ``hypotheses`` against
    ``references``; perplexity of ``model`` on ``val_text``."""
    from genlab.metrics import text as tm

    out: dict[str, Any] = {}
    if "perplexity" in names:
        if model is None or not val_text:
            raise ConfigError("perplexity needs the model and held-out text: run `genlab eval RUN_DIR`.")
        res = tm.perplexity(model, val_text, device=options.device)
        out["perplexity"] = {"value": res["perplexity"], **res}
    for name, fn in (("bleu", tm.bleu), ("chrf", tm.chrf)):
        if name in names:
            if not references or hypotheses is None:
                raise ConfigError(f"{name} compares with references: give --references FILE (one per sample).")
            res = fn(hypotheses, references)
            out[name] = {"value": res["score"], **res}
    if "self_bleu" in names:
        out["self_bleu"] = {"value": tm.self_bleu(samples, max_texts=200, seed=options.seed), "max_texts": 200}
    if "distinct_n" in names:
        for n in (1, 2, 3):
            out[f"distinct_{n}"] = {"value": tm.distinct_n(samples, n)}
    if "memorization" in names:
        report = tm.ngram_overlap(samples, train_text)
        out["memorization"] = {"value": report.get("near_copy_share"), **report}
    return out


def _prompted(model: Any, val_text: str, options: EvalOptions, count: int) -> tuple[list[str], list[str]]:
    """Greedy continuations of ``count`` prompts cut from the validation text at evenly spaced token
    offsets, and the true continuations (both ``max_new_tokens`` tokens long)."""
    from genlab.api import generate

    tok = model.tokenizer
    ids = tok.encode(val_text)
    span = min(64, (model.max_length or 128) // 2)  # prompt tokens: half the context at most
    length = options.max_new_tokens
    starts = np.linspace(0, max(len(ids) - span - length, 0), count).astype(int)
    prompts = [tok.decode(ids[s : s + span]) for s in starts]
    refs = [tok.decode(ids[s + span : s + span + length]) for s in starts]
    hyps = generate(model, prompts, max_new_tokens=length, temperature=0.0, seed=options.seed)
    return list(hyps), refs


# --- entry points ---------------------------------------------------------------------------------
def evaluate_run(run_dir: str | Path, options: EvalOptions = EvalOptions(), *, write: bool = True,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Sample the run's model, score it, and (``write``) save ``metrics.json`` in the run directory."""
    from genlab.api import load
    from genlab.checkpoint import read_run_config

    run_dir = Path(run_dir)
    record = read_run_config(run_dir)
    model = load(run_dir, device=options.device)
    say = progress or (lambda _: None)
    started = time.perf_counter()
    split = {"val_fraction": record["train"]["val_fraction"], "seed": record["train"]["split_seed"]}
    if model.modality == "tokens":
        result = _evaluate_text_run(run_dir, model, record, split, options, say)
    else:
        names = _metric_list(options.metrics, IMAGE_METRICS, DEFAULT_IMAGE_METRICS, "image")
        data = load_images(record["data"]["spec"], image_size=record["data"].get("image_size"))
        train, val = data.split(**split)
        n = options.n or 10_000
        extractor = load_extractor(options.extractor, dataset=data.name, inception_weights=options.inception_weights,
                                   device=options.device)  # fmt: skip
        say(f"sampling {n} images")
        samples, labels = _sample_images(model, n, options.seed, options.batch_size)
        result = _base("image", options, run=str(run_dir), recipe=record.get("recipe"),
                       data={"name": data.name, "sha256": data.content_hash(), "real_split": "train",
                             "n_real": len(train), "n_val": len(val)},
                       n_generated=len(samples), extractor=extractor.describe(samples.shape[1:3]))  # fmt: skip
        result["metrics"] = score_images(samples, labels, train, val, options, names=names, extractor=extractor,
                                         model=model, progress=say,
                                         pairs_path=run_dir / "memorization.png" if write else None)  # fmt: skip
    result["seconds"] = round(time.perf_counter() - started, 1)
    if write:
        write_json(run_dir / METRICS_FILE, result)
    return result


def _evaluate_text_run(run_dir: Path, model: Any, record: dict, split: dict, options: EvalOptions,
                       say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    from genlab.api import sample
    from genlab.data.text import load_text

    names = _metric_list(options.metrics, TEXT_METRICS, DEFAULT_TEXT_METRICS, "text")
    text = load_text(record["data"]["spec"])
    train, val = text.split(**split)
    val_text = "\n".join(val.documents)
    n = options.n or 100
    say(f"sampling {n} texts of {options.max_new_tokens} tokens")
    samples = sample(model, n, seed=options.seed, max_new_tokens=options.max_new_tokens)
    hyps = refs = None
    if {"bleu", "chrf"} & set(names):
        if not val_text:
            raise DataError("BLEU/chrF compare continuations of held-out text, and this run has no validation split.")
        say("prompted continuations of validation text")
        hyps, refs = _prompted(model, val_text, options, min(n, 100))
    result = _base("text", options, run=str(run_dir), recipe=record.get("recipe"),
                   data={"name": text.name, "sha256": text.content_hash(), "n_train_docs": len(train),
                         "n_val_docs": len(val)},
                   n_generated=len(samples),
                   sampling={"max_new_tokens": options.max_new_tokens, "temperature": 1.0})  # fmt: skip
    result["metrics"] = score_texts(samples, "\n".join(train.documents), options, names=names, model=model,
                                    val_text=val_text, references=refs, hypotheses=hyps)  # fmt: skip
    if text.kind == "music" and "perplexity" in result["metrics"]:  # characters of event words mean nothing
        result["metrics"]["perplexity"]["bits_per_char"] = None
    return result


def read_text_samples(path: Path) -> list[str]:
    """Texts from ``.jsonl`` (field "text") or ``.txt`` (genlab's ``=== sample i ===`` blocks, else one per line)."""
    import json

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}.") from None
    if path.suffix.lower() == ".jsonl":
        texts = []
        for i, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    texts.append(str(json.loads(line)["text"]))
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"{path}:{i} is not a JSON object with a 'text' field.") from None
        return texts
    if raw.startswith("=== sample "):
        import re

        return [t.strip("\n") for t in re.split(r"^=== sample \d+ ===\n", raw, flags=re.M) if t.strip()]
    return [line for line in raw.splitlines() if line.strip()]


def evaluate_samples(samples_path: str | Path, data: str, options: EvalOptions = EvalOptions(), *,
                     references: str | Path | None = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Score a sample file made by any tool against dataset ``data`` (a name or a path)."""
    path = Path(samples_path)
    if not path.exists():
        raise DataError(f"no samples at {path}; give a .npz/.npy file, an image folder, or .txt/.jsonl text.")
    started = time.perf_counter()
    if path.suffix.lower() in (".txt", ".jsonl"):
        from genlab.data.text import load_text

        names = _metric_list(options.metrics, TEXT_METRICS, ("self_bleu", "distinct_n", "memorization"), "text")
        samples = read_text_samples(path)
        if not samples:
            raise DataError(f"{path} holds no texts.")
        text = load_text(data)
        refs = read_text_samples(Path(references)) if references else None
        result = _base("text", options, samples=str(path), data={"name": text.name, "sha256": text.content_hash()},
                       n_generated=len(samples))  # fmt: skip
        result["metrics"] = score_texts(samples, "\n".join(text.documents), options, names=names,
                                        references=refs, hypotheses=samples)  # fmt: skip
    else:
        names = _metric_list(options.metrics, IMAGE_METRICS, DEFAULT_IMAGE_METRICS, "image")
        generated = load_images(path)
        real = load_images(data)
        if generated.shape != real.shape:
            raise DataError(
                f"the samples are {generated.shape} (C, H, W) but {real.name!r} is {real.shape}; "
                "resize one to the other's size and channel count first."
            )
        train, val = real.split(val_fraction=0.1, seed=0)
        extractor = load_extractor(options.extractor, dataset=real.name, inception_weights=options.inception_weights,
                                   device=options.device)  # fmt: skip
        result = _base("image", options, samples=str(path),
                       data={"name": real.name, "sha256": real.content_hash(), "real_split": "train",
                             "n_real": len(train), "split": "val_fraction 0.1, seed 0 (the recipes' split)"},
                       n_generated=len(generated),
                       extractor=extractor.describe(generated.images.shape[1:3]))  # fmt: skip
        result["metrics"] = score_images(generated.images, generated.labels, train, val, options, names=names,
                                         extractor=extractor, progress=progress)  # fmt: skip
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
