"""The public workflow functions: the CLI calls exactly these.

``import_hf`` / ``export_hf`` (GPT-2 weights in the Hugging Face layout) are re-exported from
:mod:`genlab.models.hf`.

run_dir = genlab.train("vae-mnist", steps=2000, out="runs/vae")
model = genlab.load(run_dir)
images = genlab.sample(model, 16, seed=0)          # uint8 (16, 28, 28, 1)
genlab.save_samples(images, "samples.png")         # .png grid, or .npz array 'samples'
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genlab import registry, sequences
from genlab.checkpoint import (
    build_model,
    last_metrics,
    list_checkpoints,
    load_model,
    read_run_config,
    write_run_config,
)
from genlab.config import apply_overrides, field_names, from_dict, parse_overrides, to_dict
from genlab.data.datasets import ImageData, load_images
from genlab.data.images import read_image, resize_images, save_grid, to_tensor, to_uint8
from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.io import atomic_path
from genlab.models.base import GenerativeModel, keyword_options
from genlab.models.hf import export_hf as export_hf
from genlab.models.hf import import_hf as import_hf
from genlab.models.sequence import SequenceModel
from genlab.sampling.decoding import DecodingOptions
from genlab.training import distributed
from genlab.training.items import Items, TensorItems
from genlab.training.trainer import Event, TrainConfig, fit, resolve_device

#: training options that may change when a run is resumed: the budget and intervals (they do not change
#: the maths), and lr / grad_clip, the knobs to turn when resuming after a divergence
RESUMABLE_KEYS = {"steps", "max_minutes", "log_every", "eval_every", "sample_every", "checkpoint_every",
                  "keep_checkpoints", "lr", "grad_clip"}  # fmt: skip


# --- training --------------------------------------------------------------------------------
def _adapt_to_data(model_config: Any, data: ImageData, recipe_name: str) -> Any:
    """Give the model the data's image shape, and a conditional model the data's class count."""
    channels, height, width = data.shape
    changes: dict[str, Any] = {"channels": channels, "height": height, "width": width}
    if getattr(model_config, "num_classes", 0) > 0:
        if data.num_classes == 0:
            raise DataError(
                f"{recipe_name} is class-conditional but {data.name!r} has no labels; put the images in one "
                "sub-folder per class, or give 'labels' in the .npz."
            )
        changes["num_classes"] = data.num_classes
    return dataclasses.replace(model_config, **changes)


def _data_record(data: ImageData, spec: str, image_size: int | None, train_cfg: TrainConfig,
                 data_range: tuple[float, float], counts: tuple[int, int]) -> dict[str, Any]:  # fmt: skip
    return {**data.describe(), "spec": spec, "image_size": image_size, "range": list(data_range),
            "val_fraction": train_cfg.val_fraction, "split_seed": train_cfg.split_seed,
            "train_count": counts[0], "val_count": counts[1]}  # fmt: skip


def _prepare_run_dir(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The existing run's record when resuming; None for a fresh run. Refuses to mix runs."""
    config_path = run_dir / "config.json"
    if resume:
        if not config_path.exists():
            raise CheckpointError(f"nothing to resume in {run_dir} (no config.json); drop --resume to start a run.")
        return read_run_config(run_dir)
    if config_path.exists() and list_checkpoints(run_dir):
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out.")
    if config_path.exists():  # a run that stopped before its first checkpoint: nothing to lose, start afresh
        read_run_config(run_dir)  # only ever replace genlab's own files
        for name in ("config.json", "metrics.jsonl", "loss.png"):
            (run_dir / name).unlink(missing_ok=True)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CheckpointError(f"{run_dir} exists and is not a genlab run; choose an empty or new --out.")
    return None


def _resume_configs(record: dict[str, Any], wanted: dict[str, Any], user_keys: set[str]) -> tuple[Any, TrainConfig]:
    """The stored configs of a run being resumed. Options the user gave again must agree with them,
    except those in ``RESUMABLE_KEYS`` (budget and intervals), which are taken from ``wanted``."""
    fam = registry.family(record["family"])
    stored = {"model": from_dict(fam.config_class, record["model"]), "train": from_dict(TrainConfig, record["train"])}
    changes: dict[str, Any] = {}
    for label, config in stored.items():
        for name in field_names(type(config)):
            old, new = getattr(config, name), getattr(wanted[label], name)
            if name not in user_keys or old == new:
                continue
            if label == "train" and name in RESUMABLE_KEYS:
                changes[name] = new
            else:
                raise CheckpointError(
                    f"this run was trained with {name}={old!r}; it cannot resume with {name}={new!r}. "
                    "Drop that option, or start a new run with another --out."
                )
    return stored["model"], dataclasses.replace(stored["train"], **changes)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a call to :func:`train` resolved to: configs, data and whether a run is resumed."""

    model: Any
    train: TrainConfig
    data_spec: str
    image_size: int | None
    record: dict[str, Any] | None  # the stored run when resuming


def _plan(
    recipe: str, rec: registry.Recipe, record: dict[str, Any] | None, *, data: str | Path | None,
    image_size: int | None, overrides: Mapping[str, str], requested: dict[str, Any],
) -> _Plan:  # fmt: skip
    """Recipe + overrides + options for a new run, or the stored run's configs when resuming."""
    configs = apply_overrides({"model": rec.model, "train": rec.train}, overrides)
    wanted_train = dataclasses.replace(configs["train"], **requested)
    if record is None:
        return _Plan(configs["model"], wanted_train, str(data if data is not None else rec.dataset), image_size, None)
    if record.get("recipe") != recipe:
        raise CheckpointError(f"this run directory holds a run of {record.get('recipe')!r}, not {recipe!r}.")
    user_keys = {key.rpartition(".")[2] for key in overrides} | set(requested)
    model_cfg, train_cfg = _resume_configs(record, {"model": configs["model"], "train": wanted_train}, user_keys)
    data_spec = record["data"]["spec"]
    if data is not None and str(data) != data_spec:
        raise CheckpointError(f"this run was trained on {data_spec!r}; resume it without --data {data}.")
    return _Plan(model_cfg, train_cfg, data_spec, record["data"].get("image_size"), record)


def _write_record(run_dir: Path, plan: _Plan, family: str, recipe: str, data_record: dict[str, Any]) -> None:
    """config.json for a new run; for a resumed one, the same record with the training config updated."""
    if plan.record is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, {
            "family": family, "recipe": recipe, "model": to_dict(plan.model), "train": to_dict(plan.train),
            "data": data_record,
        })  # fmt: skip
    else:
        record = {k: v for k, v in plan.record.items() if not k.startswith(("format", "genlab_"))}
        write_run_config(run_dir, {**record, "train": to_dict(plan.train)})


def train(
    recipe: str,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    checkpoint_every: int | None = None,
    resume: bool = False,
    overrides: Mapping[str, str] | list[str] | None = None,
    image_size: int | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> Path:
    """Train ``recipe`` (see ``genlab models``) and return the run directory.

    ``data`` is a dataset name or a path (folder of images, .npy, .npz); ``overrides`` are
    ``key=value`` strings for any model or training config field. With ``resume`` the run in
    ``out`` continues from its latest checkpoint (``steps``/``minutes`` may be raised, ``lr`` and
    ``grad_clip`` lowered).
    """
    rec = registry.recipe(recipe)
    overrides = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    requested = {"steps": steps, "batch_size": batch_size, "seed": seed, "checkpoint_every": checkpoint_every}
    requested = {k: v for k, v in requested.items() if v is not None}
    if minutes is not None:
        requested["max_minutes"] = float(minutes)
        if steps is None:
            requested["steps"] = None  # the time budget, not a step count, ends the run
    run_dir = Path(out) if out is not None else Path("runs") / recipe
    w = distributed.world()
    record = _prepare_run_dir(run_dir, resume)  # every process checks before process 0 writes anything
    distributed.barrier(w)
    plan = _plan(recipe, rec, record, data=data, image_size=image_size, overrides=overrides, requested=requested)
    fam = registry.family(rec.family)
    if fam.model_class.modality == "tokens":
        prepared = _prepare_tokens(plan, recipe, run_dir, record)
    else:
        prepared = _prepare_images(plan, fam.model_class.data_range, recipe, record)
    plan = dataclasses.replace(plan, model=prepared.model_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.train.seed)  # the initial weights are part of what the seed fixes
        model = registry.build(rec.family, plan.model)
    if prepared.tokenizer is not None:
        model.tokenizer = prepared.tokenizer
    if w.is_main:
        _write_record(run_dir, plan, rec.family, recipe, prepared.record)
        if prepared.tokenizer is not None and record is None:
            prepared.tokenizer.save(run_dir)
    distributed.barrier(w)
    run_device = resolve_device(device)
    if run_device.type == "cuda" and w.size > 1:  # one GPU per process
        run_device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(run_device)

    def on_sample(m: GenerativeModel, step: int) -> None:
        prepared.preview(m, run_dir / "samples" / f"step-{step:08d}", plan.train.seed)

    fit(
        model, plan.train, device=run_device, run_dir=run_dir, resume=resume, on_event=on_event, world=w,
        train_data=prepared.train, val_data=prepared.val, on_sample=on_sample,
    )  # fmt: skip
    distributed.barrier(w)  # process 0 has written the final checkpoint
    return run_dir


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """The data side of a run: the model config adapted to the data, training and validation items,
    the run's "data" record, the tokenizer (token models) and how to write a training preview."""

    model_config: Any
    train: Items
    val: Items | None
    record: dict[str, Any]
    preview: Callable[[GenerativeModel, Path, int], None]
    tokenizer: Any = None


def _prepare_images(plan: _Plan, data_range: tuple[float, float], recipe: str,
                    stored: dict[str, Any] | None) -> _Prepared:  # fmt: skip
    images = load_images(plan.data_spec, image_size=plan.image_size)
    if stored is not None and stored["data"]["sha256"] != images.content_hash():
        raise CheckpointError(
            f"the data at {plan.data_spec!r} changed since this run started; resume needs the same data."
        )
    train_split, val_split = images.split(val_fraction=plan.train.val_fraction, seed=plan.train.split_seed)
    record = _data_record(images, plan.data_spec, plan.image_size, plan.train, data_range,
                          (len(train_split), len(val_split)))  # fmt: skip

    def preview(model: GenerativeModel, stem: Path, seed: int) -> None:
        write_preview(model, stem.with_suffix(".png"), val_split, seed=seed)

    return _Prepared(_adapt_to_data(plan.model, images, recipe), _items(train_split, data_range),
                     _items(val_split, data_range), record, preview)  # fmt: skip


def _prepare_tokens(plan: _Plan, recipe: str, run_dir: Path, stored: dict[str, Any] | None) -> _Prepared:
    if plan.image_size is not None:
        raise ConfigError(f"--image-size applies to images; {recipe} trains on token sequences.")
    p = sequences.prepare(plan.model, plan.data_spec, val_fraction=plan.train.val_fraction,
                          split_seed=plan.train.split_seed, recipe=recipe, run_dir=run_dir, stored=stored)  # fmt: skip
    kind = p.record["kind"]

    def preview(model: GenerativeModel, stem: Path, seed: int) -> None:
        sequences.write_preview(model, stem, seed=seed, kind=kind)

    return _Prepared(p.model_config, p.train, p.val, p.record, preview, p.tokenizer)


def _tensors(data: ImageData, data_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor | None]:
    y = None if data.labels is None else torch.from_numpy(data.labels)
    return to_tensor(data.images, data_range), y


def _items(data: ImageData, data_range: tuple[float, float]) -> TensorItems:
    return TensorItems(*_tensors(data, data_range))


def write_preview(model: GenerativeModel, path: Path, val: ImageData, *, seed: int) -> None:
    """A grid of samples (one row per class for conditional models), or reconstructions for models
    that cannot sample."""
    generator = torch.Generator().manual_seed(seed)
    if model.can_sample:
        labels = None
        if model.num_classes:
            per = max(1, 64 // model.num_classes)
            labels = torch.arange(model.num_classes).repeat_interleave(per)
        n = 64 if labels is None else len(labels)
        images = to_uint8(model.sample(n, generator=generator, labels=labels), model.data_range)
        save_grid(images, path, ncol=None if labels is None else per)
    elif model.has_latent and len(val):
        originals, recon = _reconstruct(model, val, 32)
        save_grid(_pairs(originals, recon), path, ncol=8)


# --- loading and generation ------------------------------------------------------------------
def load(run_dir: str | Path, *, device: str = "cpu", use_ema: bool = True) -> GenerativeModel:
    """The trained model of a run (eval mode) with its frozen ``config``; EMA weights when kept."""
    return load_model(run_dir, device=resolve_device(device), use_ema=use_ema)


def _model(model_or_run: GenerativeModel | str | Path) -> GenerativeModel:
    return model_or_run if isinstance(model_or_run, GenerativeModel) else load(model_or_run)


def sample(
    model_or_run: GenerativeModel | str | Path,
    n: int = 64,
    *,
    seed: int = 0,
    labels: int | list[int] | None = None,
    **options: Any,
) -> np.ndarray | list[str]:
    """``n`` new samples; the same seed gives the same samples. Images come as uint8 (n, H, W, C);
    a token model's samples as n strings (text, or music event words: see :mod:`genlab.data.music`).

    ``options`` are the model family's sampling options (a diffusion model's ``num_steps``,
    ``sampler``, ``guidance_scale``; a language model's ``max_new_tokens``, ``temperature``,
    ``top_k``, ``top_p``…); ``None`` values mean the family's default.
    """
    if n < 1:
        raise ConfigError(f"n={n} must be at least 1.")
    model = _model(model_or_run)
    options = _options_of(model.sample, options)
    generator = torch.Generator().manual_seed(seed)
    label_tensor = None if labels is None else torch.as_tensor(labels)
    with torch.no_grad():
        out = model.sample(n, generator=generator, labels=label_tensor, **options)
    if model.modality == "tokens":
        return [model.tokenizer.decode(ids) if model.tokenizer is not None else " ".join(map(str, ids)) for ids in out]
    return to_uint8(out, model.data_range)


# --- text and music (token models) ----------------------------------------------------------------
def _token_model(model_or_run: GenerativeModel | str | Path) -> SequenceModel:
    model = _model(model_or_run)
    if not isinstance(model, SequenceModel):
        raise ConfigError(f"{model.family} models do not generate text; use `genlab sample` for images.")
    return model


def generate(
    model_or_run: GenerativeModel | str | Path,
    prompt: str | Sequence[str] | None = None,
    *,
    n: int = 1,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 1,
    stop: Sequence[str] = (),
    seed: int = 0,
    stream: bool = False,
    use_cache: bool = True,
) -> list[str] | Iterator[str]:
    """Continue ``prompt`` (a string, several strings, or None for the model's start token) with a
    language model: ``n`` continuations of each prompt, the new text only; continuation j of
    prompt i is item ``i * n + j``. ``temperature=0`` decodes greedily; ``num_beams > 1`` runs beam
    search (returning the n best beams); a continuation ends at the end-of-text token, at any of
    the ``stop`` strings (which are cut off) or after ``max_new_tokens``. A prompt longer than the
    context keeps its last tokens (a warning says so). With ``stream=True`` (one prompt, n=1) the
    result is an iterator of text pieces as they are generated."""
    model = _token_model(model_or_run)
    if n < 1:
        raise ConfigError(f"n={n} must be at least 1.")
    options = DecodingOptions(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              repetition_penalty=repetition_penalty, num_beams=num_beams)  # fmt: skip
    prompts = [prompt] if prompt is None or isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ConfigError("give at least one prompt (or none at all to start from the model's start token).")
    stop = [stop] if isinstance(stop, str) else list(stop)
    if stream:
        if n != 1 or len(prompts) != 1:
            raise ConfigError("streaming shows one continuation; give one prompt and n=1.")
        return sequences.stream_text(model, prompts[0], options, stop=stop, seed=seed)
    rows = sequences.generate_text(model, prompts, options, n=n, stop=stop, seed=seed, use_cache=use_cache)
    return [text for row in rows for text in row]


def save_texts(texts: Sequence[str], out: str | Path, *, model: GenerativeModel,
               prompts: Sequence[str] | None = None) -> list[Path]:  # fmt: skip
    """Write generated text (``.txt``, ``.jsonl``) or, for a music model, MIDI (``.mid``)."""
    kind = "music" if getattr(model.config, "tokenizer", "") == "music" else "text"
    return sequences.save_texts(texts, out, kind=kind, prompts=prompts)


# --- editing (diffusion models) ---------------------------------------------------------------
ImageInput = str | Path | np.ndarray  # an image file, or a uint8 (H, W, C) array


def _edit_model(model_or_run: GenerativeModel | str | Path, what: str) -> GenerativeModel:
    model = _model(model_or_run)
    if not hasattr(model, what):
        raise ConfigError(f"{model.family} models cannot {what}; train a diffusion recipe such as ddpm-mnist.")
    return model


def _read_input(image: ImageInput, channels: int) -> np.ndarray:
    """A path or a uint8 array (H, W, C) → uint8 (H, W, C) with the model's channel count."""
    if isinstance(image, (str, Path)):
        return read_image(image, channels=channels)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3:
        raise ConfigError(f"an image array must be uint8 (H, W, C), got {array.dtype} {array.shape}.")
    return array


def _edit_inputs(model: GenerativeModel, image: ImageInput, mask: ImageInput | None, n: int,
                 resize: bool) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """(n copies of the image as a (n, C, H, W) tensor in the model's range, the 0/1 mask (1, 1, H, W))."""
    if n < 1:
        raise ConfigError(f"n={n} must be at least 1.")
    c = model.config
    array = _read_input(image, c.channels)
    mask_array = None
    if mask is not None:
        mask_array = _read_input(mask, 1)
        if mask_array.shape[:2] != array.shape[:2]:
            raise ConfigError(
                f"the mask is {mask_array.shape[1]}×{mask_array.shape[0]} but the image is "
                f"{array.shape[1]}×{array.shape[0]}; give a mask of the image's size (white = regenerate)."
            )
    if array.shape[:2] != (c.height, c.width):
        if not resize:
            raise ConfigError(
                f"the image is {array.shape[1]}×{array.shape[0]} but the model makes {c.width}×{c.height}; "
                "resize it, or pass --resize (resize=True) to resize and centre-crop."
            )
        array = resize_images(array[None], (c.height, c.width))[0]
        if mask_array is not None:
            mask_array = resize_images(mask_array[None], (c.height, c.width))[0]
    x = to_tensor(np.repeat(array[None], n, axis=0), model.data_range).to(model.device)
    m = None if mask_array is None else torch.from_numpy(mask_array > 127).float().permute(2, 0, 1)[None]
    return x, m


def inpaint(model_or_run: GenerativeModel | str | Path, image: ImageInput, mask: ImageInput, *, n: int = 1,
            seed: int = 0, labels: int | list[int] | None = None, resize: bool = False,
            **options: Any) -> np.ndarray:  # fmt: skip
    """Regenerate the white part of ``mask`` in ``image`` (RePaint), keeping the rest: ``n`` uint8
    (n, H, W, C) variations. ``options``: num_steps, sampler (ddpm|ddim), guidance_scale, eta, resample."""
    model = _edit_model(model_or_run, "inpaint")
    x, m = _edit_inputs(model, image, mask, n, resize)
    generator = torch.Generator().manual_seed(seed)
    label_tensor = None if labels is None else torch.as_tensor(labels)
    out = model.inpaint(x, m, generator=generator, labels=label_tensor, **_options_of(model.inpaint, options))
    return to_uint8(out, model.data_range)


def img2img(model_or_run: GenerativeModel | str | Path, image: ImageInput, *, strength: float, n: int = 1,
            seed: int = 0, labels: int | list[int] | None = None, resize: bool = False,
            **options: Any) -> np.ndarray:  # fmt: skip
    """SDEdit: noise ``image`` to ``strength`` ∈ [0, 1] and denoise (towards ``labels`` if given):
    ``n`` uint8 (n, H, W, C) variations. ``options``: num_steps, sampler, guidance_scale, eta."""
    model = _edit_model(model_or_run, "img2img")
    x, _ = _edit_inputs(model, image, None, n, resize)
    generator = torch.Generator().manual_seed(seed)
    label_tensor = None if labels is None else torch.as_tensor(labels)
    out = model.img2img(x, strength=strength, generator=generator, labels=label_tensor,
                        **_options_of(model.img2img, options))  # fmt: skip
    return to_uint8(out, model.data_range)


def _options_of(method: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Drop unset options; refuse ones ``method`` (a model's sample/inpaint/img2img) does not take."""
    given = {k: v for k, v in options.items() if v is not None}
    known = keyword_options(method)
    for key in given:
        if key not in known:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            family = getattr(method.__self__, "family", "this")
            raise ConfigError(f"{family} models' {method.__name__} has no option {key!r}; {takes}.")
    return given


def save_samples(images: np.ndarray, out: str | Path, *, labels: np.ndarray | None = None) -> Path:
    """``.png`` → a grid; ``.npz`` → array ``samples`` uint8 (N, H, W, C) (and ``labels``)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".npz":
        arrays = {"samples": images} if labels is None else {"samples": images, "labels": labels}
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return out
    if suffix in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        return save_grid(images, out)
    raise ConfigError(f"cannot write samples to {out}: use a .png (grid) or .npz (array) file name.")


def _run_data(
    model: GenerativeModel, data: str | Path | None, *, split: Literal["val", "all"] = "val", resize: bool = False
) -> ImageData:
    """Real images for reconstruction/interpolation/scoring: the run's own validation split, or
    ``data``, which must match the model's image shape unless ``resize`` is set."""
    record = getattr(model, "run_record", None) or {}
    info = record.get("data", {})
    cfg = model.config
    want = (cfg.channels, cfg.height, cfg.width)
    if data is None:
        if "spec" not in info:
            raise DataError("this model has no record of its training data; pass --data NAME|PATH.")
        images = load_images(info["spec"], image_size=info.get("image_size"))
        if split == "val":
            _, val = images.split(val_fraction=info.get("val_fraction", 0.1), seed=info.get("split_seed", 0))
            images = val if len(val) else images
    elif resize:
        images = load_images(data, image_size=(cfg.height, cfg.width), channels=cfg.channels)
    else:
        images = load_images(data, channels=cfg.channels if Path(str(data)).is_dir() else None)
    if images.shape != want:
        raise DataError(
            f"images in {images.name!r} are {_shape(images.shape)} but this model takes {_shape(want)}; "
            "pass --resize to fit them (bicubic resize + centre crop)."
        )
    return images


def _shape(chw: tuple[int, int, int]) -> str:
    c, h, w = chw
    return f"{h}×{w}×{c}"


def _batched(fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], x: torch.Tensor,
             y: torch.Tensor | None, batch: int = 256) -> torch.Tensor:  # fmt: skip
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(fn(x[i : i + batch], None if y is None else y[i : i + batch]).cpu())
    return torch.cat(outs)


def _reconstruct(model: GenerativeModel, data: ImageData, n: int) -> tuple[np.ndarray, np.ndarray]:
    data_range = model.data_range
    x, y = _tensors(data.subset(np.arange(min(n, len(data)))), data_range)
    labels = y.to(model.device) if (y is not None and model.num_classes) else None
    recon = model.reconstruct(x.to(model.device), labels)
    return to_uint8(x, data_range), to_uint8(recon, data_range)


def _pairs(originals: np.ndarray, recon: np.ndarray, ncol: int = 8) -> np.ndarray:
    """Rows of ``ncol`` originals, each followed by the row of their reconstructions."""
    rows = []
    for i in range(0, len(originals), ncol):
        a, b = originals[i : i + ncol], recon[i : i + ncol]
        pad = ncol - len(a)
        if pad:
            blank = np.full((pad, *a.shape[1:]), 255, np.uint8)
            a, b = np.concatenate([a, blank]), np.concatenate([b, blank])
        rows += [a, b]
    return np.concatenate(rows)


def reconstruct(model_or_run: GenerativeModel | str | Path, n: int = 32, *, data: str | Path | None = None,
                seed: int = 0, resize: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(originals, reconstructions), each uint8 (n, H, W, C), from ``n`` validation images
    (picked by ``seed``) of the run's data, or of ``data``."""
    model = _model(model_or_run)
    _require_latent(model, "reconstruct")
    images = _run_data(model, data, resize=resize)
    pick = np.random.default_rng(seed).permutation(len(images))[:n]
    return _reconstruct(model, images.subset(np.sort(pick)), n)


def save_reconstructions(originals: np.ndarray, recon: np.ndarray, out: str | Path) -> Path:
    return save_grid(_pairs(originals, recon), out, ncol=8)


def _require_latent(model: GenerativeModel, what: str) -> None:
    if not model.has_latent:
        raise ConfigError(f"{model.family} models have no latent space to {what}; use an ae or vae run.")


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) of rows of ``a``, ``b`` at fractions ``t``: the path
    keeps Gaussian codes at a typical norm, where lerp passes through the low-density centre."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolate(model_or_run: GenerativeModel | str | Path, *, steps: int = 8, pairs: int = 4,
                method: Literal["slerp", "lerp"] = "slerp", data: str | Path | None = None,
                seed: int = 0, resize: bool = False) -> np.ndarray:  # fmt: skip
    """Latent walks between pairs of real images: uint8 (pairs · steps, H, W, C), one walk per row,
    the two real images' reconstructions at the ends."""
    if steps < 2:
        raise ConfigError(f"steps={steps} must be at least 2 (the two ends).")
    if method not in ("slerp", "lerp"):
        raise ConfigError(f"method {method!r} is not one of 'slerp', 'lerp'.")
    model = _model(model_or_run)
    _require_latent(model, "interpolate")
    images = _run_data(model, data, resize=resize)
    if len(images) < 2:
        raise DataError("interpolation needs at least two images.")
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(len(images), 2, replace=False) for _ in range(pairs)])  # (pairs, 2)
    x, y = _tensors(images.subset(idx.reshape(-1)), model.data_range)
    x = x.to(model.device)
    labels = y.to(model.device) if (y is not None and model.num_classes) else None
    with torch.no_grad():
        z = model.encode(x, labels).view(pairs, 2, -1)
        t = torch.linspace(0, 1, steps, device=x.device).view(1, steps, 1)
        a, b = z[:, :1], z[:, 1:]
        walk = slerp(a, b, t) if method == "slerp" else a + t * (b - a)  # (pairs, steps, D)
        walk_labels = None if labels is None else labels.view(pairs, 2)[:, :1].expand(pairs, steps).reshape(-1)
        out = model.decode(walk.reshape(pairs * steps, -1), walk_labels)
    return to_uint8(out, model.data_range)


def score(
    model_or_run: GenerativeModel | str | Path, data: str | Path, *, resize: bool = False
) -> tuple[np.ndarray, ImageData]:
    """Anomaly scores: mean squared reconstruction error per image of ``data`` (high = unusual)."""
    model = _model(model_or_run)
    _require_latent(model, "score")
    images = _run_data(model, data, split="all", resize=resize)
    x, y = _tensors(images, model.data_range)
    labels = y if (y is not None and model.num_classes) else None
    scores = _batched(lambda xb, yb: model.anomaly_score(xb.to(model.device), yb), x, labels)
    return scores.numpy(), images


def save_scores(scores: np.ndarray, out: str | Path, names: list[str] | None = None) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "name", "score"])
            for i, s in enumerate(scores):
                writer.writerow([i, names[i] if names else "", f"{float(s):.6g}"])
    return out


# --- run information -------------------------------------------------------------------------
def info(run_dir: str | Path) -> dict[str, Any]:
    """Config, parameter count, steps trained and last metrics of a run."""
    run_dir = Path(run_dir)
    record = read_run_config(run_dir)
    model = build_model(record)
    checkpoints = list_checkpoints(run_dir)
    last = last_metrics(run_dir)
    return {
        "run_dir": str(run_dir),
        "recipe": record.get("recipe"),
        "family": record["family"],
        "parameters": model.num_parameters(),
        "steps_trained": int(checkpoints[-1].name.split("-")[1]) if checkpoints else 0,
        "steps_planned": record["train"]["steps"],
        "data": {k: v for k, v in record["data"].items() if k != "class_names"},
        "model": record["model"],
        "train": record["train"],
        "last_train": last.get("train", {}),
        "last_val": last.get("val", {}),
    }


# --- evaluation -------------------------------------------------------------------------------------
def evaluate(
    run_or_samples: str | Path,
    *,
    data: str | None = None,
    metrics: Sequence[str] | None = None,
    n: int | None = None,
    seed: int = 0,
    extractor: str = "domain",
    inception_weights: str | Path | None = None,
    references: str | Path | None = None,
    write: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Score a run (``run_or_samples`` a run directory; ``metrics.json`` is written there unless
    ``write=False``) or, with ``data``, a sample file from any tool against that dataset.

    ``metrics``: image runs ``fid, kid, is, precision_recall, density_coverage, memorization, tstr,
    bits_per_dim``; text runs ``perplexity, bleu, chrf, self_bleu, distinct_n, memorization``
    (``None``: the defaults). Further ``options`` are fields of
    :class:`genlab.metrics.EvalOptions` (``bootstrap``, ``kid_subsets``, ``allow_few``…).
    Returns the JSON-ready result: every value with the extractor, sample counts and seed.
    """
    from genlab.metrics.evaluate import EvalOptions, evaluate_run, evaluate_samples

    unknown_options = set(options) - set(field_names(EvalOptions))
    if unknown_options:
        raise ConfigError(f"unknown evaluation option(s) {sorted(unknown_options)}; valid: {field_names(EvalOptions)}.")
    eval_options = EvalOptions(
        metrics=tuple(metrics) if metrics else None, n=n, seed=seed, extractor=extractor,
        inception_weights=str(inception_weights) if inception_weights else None, **options,
    )  # fmt: skip
    if data is not None:
        return evaluate_samples(run_or_samples, data, eval_options, references=references)
    return evaluate_run(run_or_samples, eval_options, write=write)
