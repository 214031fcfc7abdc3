"""The ``genlab`` command: parse → call :mod:`genlab.api` → format. Nothing happens here that
Python callers cannot do; errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from genlab import api, registry, sequences
from genlab.errors import GenlabError
from genlab.training import distributed

app = typer.Typer(
    help="Train, sample and inspect deep generative models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)  # pipes and logs: no wrapping
err = Console(stderr=True, soft_wrap=True)

RunDir = Annotated[Path, typer.Argument(help="A run directory written by `genlab train`.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")]


@app.command()
def datasets() -> None:
    """List the bundled datasets (any folder of images or .npy/.npz works too)."""
    from genlab.data.datasets import DATASETS

    table = Table("name", "modality", "shape", "count", "licence", "source")
    for d in DATASETS.values():
        table.add_row(d.name, d.modality, d.shape, d.count, d.licence, d.source)
    out.print(table)


@app.command()
def models() -> None:
    """List every recipe (ready-to-train setup) and model family."""
    table = Table("recipe", "family", "data", "steps", "description")
    for r in registry.recipes():
        table.add_row(r.name, r.family, r.dataset, str(r.train.steps), r.description)
    out.print(table)
    fams = Table("family", "config", "description")
    for f in registry.families():
        fams.add_row(f.name, f.config_class.__name__, f.description)
    out.print(fams)


class _ProgressBar:
    """Renders trainer events as a rich progress bar with loss and throughput."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn() if minutes is None else TextColumn(""),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=err, disable=not err.is_terminal,
        )  # fmt: skip
        self.task = None
        self.val = ""
        self.status = ""

    def __call__(self, event) -> None:
        if event.kind == "start":
            self.progress.start()
            total = self.minutes * 60 if self.minutes else event.total_steps
            done = event.elapsed_s if self.minutes else event.step
            self.task = self.progress.add_task("train", total=total, completed=done, status="")
            return
        if event.kind == "eval":
            self.val = f" val {_headline(event.metrics)}"
            if not err.is_terminal:  # logs and CI: one plain line per evaluation instead of a bar
                total = f"/{event.total_steps}" if event.total_steps else ""
                err.print(f"step {event.step}{total}{self.status}{self.val}", highlight=False)
        if event.kind == "warning":
            err.print(f"[yellow]warning[/] step {event.step}: {event.message}", highlight=False)
        if event.kind == "log":
            m = event.metrics
            self.status = " " + _headline(m)
            status = f"step {event.step} {_headline(m)}{self.val} {m['items_per_s']:.0f} it/s"
            done = event.elapsed_s if self.minutes else event.step
            self.progress.update(self.task, completed=done, status=status)
        if event.kind == "end":
            if self.minutes:
                self.progress.update(self.task, completed=self.minutes * 60)
            self.progress.stop()


def _headline(metrics: dict[str, float]) -> str:
    """The figures worth a glance: the loss, or each phase's loss and D(real)/D(fake) for a GAN."""
    if "loss" in metrics:
        extra = "".join(f" {name} {metrics[key]:.3g}" for key, name in
                        (("bits_per_char", "bpc"), ("perplexity", "ppl")) if key in metrics)  # fmt: skip
        return f"loss {metrics['loss']:.4g}{extra}"
    shown = [k for k in metrics if k.endswith("_loss")] + [k for k in metrics if k.endswith(("d_real", "d_fake"))]
    names = {"discriminator_loss": "D", "generator_loss": "G"}
    return " ".join(f"{names.get(k, k.split('_', 1)[-1])} {metrics[k]:.3g}" for k in shown) or "-"


@app.command()
def train(
    recipe: Annotated[str, typer.Argument(help="Recipe name, see `genlab models`.")],
    overrides: Annotated[
        Optional[list[str]], typer.Argument(help="key=value config overrides, e.g. latent_dim=16 lr=3e-4")
    ] = None,
    data: Annotated[Optional[str], typer.Option(help="Dataset name or path (folder of images, .npy, .npz).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimiser steps.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Train for this many minutes instead of --steps.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Items per optimiser step.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default runs/RECIPE).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Training seed.")] = None,
    device: Device = "auto",
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Steps between checkpoints.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    image_size: Annotated[Optional[int], typer.Option(help="Resize (and centre-crop) images to N×N.")] = None,
) -> None:
    """Train a recipe; writes config, weights, checkpoints, metrics and sample grids to the run directory."""
    if steps is not None and minutes is not None:
        raise GenlabError("give --steps or --minutes, not both.")
    bar = _ProgressBar(minutes)
    try:
        run_dir = api.train(
            recipe, data=data, out=out_dir, steps=steps, minutes=minutes, batch_size=batch_size, seed=seed,
            device=device, checkpoint_every=checkpoint_every, resume=resume, overrides=overrides or [],
            image_size=image_size, on_event=bar,
        )  # fmt: skip
    finally:
        bar.progress.stop()
    if not distributed.world().is_main:
        return  # under torchrun, process 0 reports
    summary = api.info(run_dir)
    val = summary["last_val"]
    out.print(f"trained {summary['recipe']} for {summary['steps_trained']} steps"
              + (f"; validation loss {val['loss']:.4g}" if "loss" in val else ""))  # fmt: skip
    out.print(f"run directory: {run_dir}  (model.safetensors, config.json, metrics.jsonl, loss.png, samples/)")


@app.command()
def sample(
    run_dir: RunDir,
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Images: FILE.png (grid) or FILE.npz (uint8 [N,H,W,C]). Text: FILE.txt or "
            "FILE.jsonl. Music: FILE.mid (FILE-0.mid, FILE-1.mid… when --n > 1).",
        ),
    ],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 64,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    label: Annotated[Optional[int], typer.Option(help="Class label (conditional models).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Diffusion: denoising steps (default: the sampler's).")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Diffusion: ddpm | ddim | dpm++2m.")] = None,
    guidance_scale: Annotated[
        Optional[float], typer.Option(help="Diffusion: classifier-free guidance scale w (1 = none).")
    ] = None,
    eta: Annotated[Optional[float], typer.Option(help="Diffusion, DDIM: 0 deterministic … 1 DDPM-like.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Text/music: tokens per sample (default 200).")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Text/music: 0 = greedy, default 1.")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="Text/music: keep the k most likely tokens.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Text/music: nucleus sampling, p in (0, 1].")] = None,
    device: Device = "cpu",
) -> None:
    """Draw new samples from a trained model (images, text or music)."""
    model = api.load(run_dir, device=device)
    options = {
        "num_steps": steps,
        "sampler": sampler,
        "guidance_scale": guidance_scale,
        "eta": eta,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
    }
    if model.modality == "tokens":
        texts = api.sample(model, n, seed=seed, labels=label, **options)
        paths = api.save_texts(texts, out_file, model=model)
        out.print(f"wrote {n} sample{'s' if n > 1 else ''} to {', '.join(map(str, paths))}")
        return
    images = api.sample(model, n, seed=seed, labels=label, **options)
    labels = None if label is None else [label] * n
    api.save_samples(images, out_file, labels=None if labels is None else np.array(labels))
    out.print(f"wrote {n} samples to {out_file}")


@app.command()
def generate(
    run_dir: RunDir,
    prompt: Annotated[
        Optional[list[str]], typer.Option(help="Text to continue (repeat for several; default: the start token).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per continuation.")] = 200,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy (most likely token).")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample among the k most likely tokens.")] = None,
    top_p: Annotated[
        Optional[float], typer.Option(help="Nucleus sampling: the smallest set with probability p.")
    ] = None,
    repetition_penalty: Annotated[float, typer.Option(help="> 1 discourages repeating tokens.")] = 1.0,
    beam: Annotated[int, typer.Option(help="Beam search with B beams (deterministic).")] = 1,
    n: Annotated[int, typer.Option("--n", help="Continuations per prompt.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    stop: Annotated[Optional[list[str]], typer.Option(help="End a continuation at this text (repeatable).")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they are generated.")] = False,
    out_file: Annotated[
        Optional[Path], typer.Option("--out", help="Also write FILE.txt / FILE.jsonl, or FILE.mid for music.")
    ] = None,
    device: Device = "cpu",
) -> None:
    """Continue a text prompt with a language model (GPT, LSTM), or write music as MIDI."""
    model = api.load(run_dir, device=device)
    prompts = prompt or [None]
    music = getattr(model.config, "tokenizer", "") == "music"
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                   repetition_penalty=repetition_penalty, num_beams=beam, stop=stop or (), seed=seed)  # fmt: skip
    kind = "music" if music else "text"
    if stream:
        text = ""
        if prompts[0] and not music:
            out.print(prompts[0], end="", highlight=False, markup=False)
        for piece in api.generate(model, prompts[0] if len(prompts) == 1 else prompts, n=n, stream=True, **options):
            text += piece
            if not music:
                out.print(piece, end="", highlight=False, markup=False)
        if not music:
            out.print()
        full = [sequences.join(prompts[0], text, kind=kind)]
    else:
        texts = api.generate(model, prompts, n=n, **options)
        full = [sequences.join(prompts[i // n], t, kind=kind) for i, t in enumerate(texts)]
    for i, text in enumerate(full):
        if music:
            from genlab.data.music import describe_events

            summary = describe_events(text)
            out.print(f"{f'{i}: ' if len(full) > 1 else ''}{summary['notes']} notes, "
                      f"{summary['length_quarters']:g} quarter notes, voices {summary['notes_per_voice']}",
                      highlight=False, markup=False)  # fmt: skip
        elif not stream:
            if len(full) > 1:
                out.print(f"[bold]=== {i} ===[/]")
            out.print(text, highlight=False, markup=False)
    if out_file is not None:
        paths = api.save_texts(full, out_file, model=model, prompts=[p or "" for p in prompts for _ in range(n)])
        out.print(f"wrote {', '.join(map(str, paths))}")
    elif music:
        out.print("music: pass --out FILE.mid to write the piece as MIDI", highlight=False)


@app.command()
def convert(
    run_dir: Annotated[Optional[Path], typer.Argument(help="A genlab GPT run to export (with --to-hf).")] = None,
    from_hf: Annotated[
        Optional[Path], typer.Option(help="Import a Hugging Face GPT-2 directory (config.json + model.safetensors).")
    ] = None,
    to_hf: Annotated[Optional[Path], typer.Option(help="Export RUN_DIR to this directory in the GPT-2 layout.")] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="With --from-hf: the run directory to write.")
    ] = None,
) -> None:
    """Move GPT weights between genlab and the Hugging Face GPT-2 layout, offline (safetensors only)."""
    if from_hf is not None and run_dir is None and to_hf is None:
        if out_dir is None:
            raise GenlabError("give --out RUN_DIR: where to write the imported run.")
        written = api.import_hf(from_hf, out_dir)
        model = api.load(written)
        out.print(f"imported {from_hf} → {written} ({model.num_parameters():,} parameters, "
                  f"tokenizer {model.tokenizer.kind if model.tokenizer else 'none'})")  # fmt: skip
    elif run_dir is not None and to_hf is not None and from_hf is None:
        written = api.export_hf(run_dir, to_hf)
        out.print(f"exported {run_dir} → {written} (load it with transformers' GPT2LMHeadModel.from_pretrained)")
    else:
        raise GenlabError("use `genlab convert --from-hf DIR --out RUN_DIR` or `genlab convert RUN_DIR --to-hf DIR`.")


def _save_edits(images: np.ndarray, out_file: Path) -> None:
    api.save_samples(images, out_file)
    out.print(f"wrote {len(images)} image{'s' if len(images) > 1 else ''} to {out_file}")


Steps = Annotated[Optional[int], typer.Option(help="Denoising steps (default 50).")]
Label = Annotated[Optional[int], typer.Option(help="Class label to steer towards (conditional models).")]
Guidance = Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale (with --label).")]
Resize = Annotated[bool, typer.Option("--resize", help="Resize and centre-crop the image to the model's size.")]
EditOut = Annotated[Path, typer.Option("--out", help="FILE.png (a grid when --n > 1) or FILE.npz.")]


@app.command()
def inpaint(
    run_dir: RunDir,
    image: Annotated[Path, typer.Option(help="The image to edit (PNG/JPEG).")],
    mask: Annotated[Path, typer.Option(help="Same-size mask: white = regenerate, black = keep.")],
    out_file: EditOut,
    n: Annotated[int, typer.Option("--n", help="Number of variations.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    label: Label = None,
    steps: Steps = None,
    sampler: Annotated[Optional[str], typer.Option(help="ddpm (default) | ddim.")] = None,
    guidance_scale: Guidance = None,
    resample: Annotated[Optional[int], typer.Option(help="RePaint resampling per step (default 4).")] = None,
    resize: Resize = False,
    device: Device = "cpu",
) -> None:
    """Regenerate the masked part of an image with a diffusion model, keeping the rest (RePaint)."""
    model = api.load(run_dir, device=device)
    options = {"num_steps": steps, "sampler": sampler, "guidance_scale": guidance_scale, "resample": resample}
    _save_edits(api.inpaint(model, image, mask, n=n, seed=seed, labels=label, resize=resize, **options), out_file)


@app.command()
def img2img(
    run_dir: RunDir,
    image: Annotated[Path, typer.Option(help="The image to start from (PNG/JPEG).")],
    strength: Annotated[float, typer.Option(help="0 keeps the image … 1 ignores it.")],
    out_file: EditOut,
    n: Annotated[int, typer.Option("--n", help="Number of variations.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    label: Label = None,
    steps: Steps = None,
    sampler: Annotated[Optional[str], typer.Option(help="ddim (default) | ddpm | dpm++2m.")] = None,
    guidance_scale: Guidance = None,
    resize: Resize = False,
    device: Device = "cpu",
) -> None:
    """Redraw an image with a diffusion model, keeping its layout (SDEdit)."""
    model = api.load(run_dir, device=device)
    options = {"num_steps": steps, "sampler": sampler, "guidance_scale": guidance_scale}
    images = api.img2img(model, image, strength=strength, n=n, seed=seed, labels=label, resize=resize, **options)
    _save_edits(images, out_file)


@app.command()
def reconstruct(
    run_dir: RunDir,
    out_file: Annotated[Path, typer.Option("--out", help="PNG: rows of originals, each above its reconstructions.")],
    n: Annotated[int, typer.Option("--n", help="Number of images.")] = 32,
    data: Annotated[
        Optional[str], typer.Option(help="Other data to reconstruct (default: the run's validation split).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Which images to pick.")] = 0,
    resize: Annotated[bool, typer.Option("--resize", help="Resize --data images to the model's size.")] = False,
) -> None:
    """Show validation images beside their reconstructions."""
    originals, recon = api.reconstruct(run_dir, n, data=data, seed=seed, resize=resize)
    api.save_reconstructions(originals, recon, out_file)
    mse = float(((originals / 255.0 - recon / 255.0) ** 2).mean())
    out.print(f"wrote {len(originals)} originals and reconstructions to {out_file} (pixel MSE {mse:.4g})")


@app.command()
def interpolate(
    run_dir: RunDir,
    out_file: Annotated[Path, typer.Option("--out", help="PNG: one latent walk per row.")],
    steps: Annotated[int, typer.Option(help="Images per walk, ends included.")] = 8,
    pairs: Annotated[int, typer.Option(help="Number of walks.")] = 4,
    method: Annotated[str, typer.Option(help="slerp | lerp")] = "slerp",
    data: Annotated[Optional[str], typer.Option(help="Take the end points from this data.")] = None,
    seed: Annotated[int, typer.Option(help="Which images to pick.")] = 0,
    resize: Annotated[bool, typer.Option("--resize", help="Resize --data images to the model's size.")] = False,
) -> None:
    """Walk the latent space between pairs of real examples."""
    images = api.interpolate(run_dir, steps=steps, pairs=pairs, method=method, data=data, seed=seed, resize=resize)
    from genlab.data.images import save_grid

    save_grid(images, out_file, ncol=steps)
    out.print(f"wrote {pairs} {method} walks of {steps} steps to {out_file}")


@app.command()
def score(
    run_dir: RunDir,
    data: Annotated[str, typer.Option(help="Dataset name or path to score.")],
    out_file: Annotated[Optional[Path], typer.Option("--out", help="CSV of per-item scores.")] = None,
    top: Annotated[int, typer.Option(help="Show the N most unusual items.")] = 10,
    resize: Annotated[bool, typer.Option("--resize", help="Resize --data images to the model's size.")] = False,
) -> None:
    """Anomaly scores: reconstruction error per item (high = unlike the training data)."""
    scores, images = api.score(run_dir, data, resize=resize)
    if out_file is not None:
        api.save_scores(scores, out_file, list(images.item_names) or None)
    table = Table("index", "item", "score", title=f"{len(scores)} items of {images.name}: mean {scores.mean():.4g}, "
                                          f"median {float(sorted(scores)[len(scores) // 2]):.4g}")  # fmt: skip
    for i in scores.argsort()[::-1][:top]:
        name = images.item_names[i] if images.item_names else ""
        table.add_row(str(int(i)), name, f"{float(scores[i]):.4g}")
    out.print(table)
    if out_file is not None:
        out.print(f"wrote scores to {out_file}")


def _format_metric(name: str, entry: dict) -> tuple[str, str]:
    value = entry.get("value")
    shown = "–" if value is None else f"{value:.4g}"
    if "ci95" in entry:
        shown += f"  (95% CI {entry['ci95'][0]:.4g}–{entry['ci95'][1]:.4g})"
    elif "std" in entry:
        shown += f" ± {entry['std']:.2g}"
    details = {
        "memorization": lambda e: f"{e.get('near_copies', '')} near-copies" if "near_copies" in e else "",
        "tstr": lambda e: (f"real {e['real_accuracy']:.3f}, real+synthetic {e['augmented_accuracy']:.3f} "
                           f"(gain {e['augmentation_gain']:+.3f})"),
        "perplexity": lambda e: f"{e['bits_per_char']:.3f} bits/char" if e.get("bits_per_char") else "",
        "bits_per_dim": lambda e: f"{e.get('bound', '')}, {e.get('likelihood', '')}",
    }  # fmt: skip
    extra = details[name](entry) if name in details else ""
    return shown, extra


@app.command("eval")
def evaluate(
    run_dir: Annotated[Optional[Path], typer.Argument(help="A run directory (or use --samples).")] = None,
    metrics: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated: fid,kid,is,precision_recall,density_coverage,memorization,tstr,"
            "bits_per_dim (images); perplexity,bleu,chrf,self_bleu,distinct_n,memorization (text)."
        ),
    ] = None,
    n: Annotated[
        Optional[int], typer.Option("--n", help="Samples to generate (default 10,000 images, 100 texts).")
    ] = None,
    extractor: Annotated[
        str, typer.Option(help="Image features: domain (shipped) | inception (local weights).")
    ] = "domain",
    inception_weights: Annotated[
        Optional[Path], typer.Option(help="FID Inception weights file (or $GENLAB_INCEPTION_WEIGHTS).")
    ] = None,
    samples: Annotated[
        Optional[Path], typer.Option(help="Score this file (.npz/.npy/folder, .txt/.jsonl) instead.")
    ] = None,
    data: Annotated[Optional[str], typer.Option(help="With --samples: the dataset to compare with.")] = None,
    references: Annotated[Optional[Path], typer.Option(help="With text --samples: references for BLEU/chrF.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling, subset and bootstrap seed.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="FID bootstrap resamples for the 95% interval (0: none).")] = 20,
    allow_few_samples: Annotated[
        bool, typer.Option("--allow-few-samples", help="Compute FID with fewer samples than feature dimensions.")
    ] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Text: tokens per generated sample.")] = 200,
    device: Device = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Also write the result to this JSON file.")] = None,
) -> None:
    """Score a run (writes RUN_DIR/metrics.json) or a sample file from any tool against a dataset."""
    from genlab.io import write_json
    from genlab.metrics.evaluate import EvalOptions, evaluate_run, evaluate_samples

    if (run_dir is None) == (samples is None):
        raise typer.BadParameter("give a RUN_DIR or --samples FILE --data NAME (one of them).")
    names = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None
    options = EvalOptions(metrics=names, n=n, seed=seed, extractor=extractor, bootstrap=bootstrap,
                          inception_weights=str(inception_weights) if inception_weights else None,
                          allow_few=allow_few_samples, max_new_tokens=max_new_tokens,
                          device=str(api.resolve_device(device)))  # fmt: skip
    progress = None if as_json else (lambda message: err.print(f"[dim]{message}…[/dim]", highlight=False))
    if samples is not None:
        if data is None:
            raise typer.BadParameter("--samples needs --data NAME|PATH, the real data to compare with.")
        result = evaluate_samples(samples, data, options, references=references, progress=progress)
    else:
        result = evaluate_run(run_dir, options, progress=progress)
    if out_file is not None:
        write_json(out_file, result)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    ext = result.get("extractor", {})
    source = result.get("run") or result.get("samples")
    title = f"{source}: {result['n_generated']} samples vs {result['data']['name']}"
    if ext:
        title += f", features {ext['name']} ({ext['weights_sha256'][:12]})"
    table = Table("metric", "value", "notes", title=title)
    for name, entry in result["metrics"].items():
        table.add_row(name, *_format_metric(name, entry))
    out.print(table)
    if run_dir is not None:
        out.print(f"wrote {run_dir / 'metrics.json'}")


@app.command()
def info(run_dir: RunDir, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Config, parameter count, steps and last metrics of a run."""
    summary = api.info(run_dir)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table("field", "value", show_header=False)
    for key in ("run_dir", "recipe", "family"):
        table.add_row(key, str(summary[key]))
    table.add_row("parameters", f"{summary['parameters']:,}")
    planned = summary["steps_planned"]
    budget = summary["train"].get("max_minutes")
    limit = f"of {planned}" if planned is not None else ""
    limit += f" (time budget {budget:g} min)" if budget else ""
    table.add_row("steps", f"{summary['steps_trained']} {limit}".strip())
    d = summary["data"]
    if "tokenizer" in d:
        table.add_row("data", f"{d['name']} ({d['train_count']} train / {d['val_count']} val documents, "
                              f"{d['train_tokens']:,} / {d['val_tokens']:,} tokens)")  # fmt: skip
        table.add_row("tokenizer", f"{d['tokenizer']}, {d['vocab_size']:,} tokens")
    else:
        table.add_row("data", f"{d['name']} ({d['train_count']} train / {d['val_count']} val, "
                              f"{d['channels']}×{d['height']}×{d['width']})")  # fmt: skip
    table.add_row("model", json.dumps(summary["model"]))
    for split in ("train", "val"):
        m = {k: v for k, v in summary[f"last_{split}"].items() if k not in ("step", "split")}
        table.add_row(f"last {split}", ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
    out.print(table)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="genlab: %(message)s")
    try:
        app()  # click's standalone mode handles usage errors (exit 2) and Ctrl-C (exit 1)
    except GenlabError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
