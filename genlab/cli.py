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
    rag: Annotated[
        Optional[str], typer.Option(help="Condition on passages of this collection (`genlab rag add`).")
    ] = None,
    rag_k: Annotated[int, typer.Option(help="With --rag: passages to retrieve.")] = 3,
    db: Annotated[
        Optional[str], typer.Option(help="Store database for --rag/--store (default: $GENLAB_DB, else ./genlab.db).")
    ] = None,
    record: Annotated[
        Optional[bool], typer.Option("--store/--no-store", help="Record the generations (default: with --rag).")
    ] = None,
) -> None:
    """Continue a text prompt with a language model (GPT, LSTM), or write music as MIDI."""
    model = api.load(run_dir, device=device)
    prompts = prompt or [None]
    music = getattr(model.config, "tokenizer", "") == "music"
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                   repetition_penalty=repetition_penalty, num_beams=beam, stop=stop or (), seed=seed)  # fmt: skip
    kind = "music" if music else "text"
    if rag is not None or record:
        full = _generate_with_store(model, run_dir, prompts, options, n=n, kind=kind, collection=rag, k=rag_k, db=db,
                                    stream=stream, record=record)  # fmt: skip
    elif stream:
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


data_app = typer.Typer(help="Prepare training data: deduplicate.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("dedup")
def data_dedup(
    path: Annotated[str, typer.Argument(help="Dataset name or path: folder of images, .npy/.npz, .txt, .jsonl.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the kept items (.npz, .txt or .jsonl).")],
    threshold: Annotated[float, typer.Option(help="Text: Jaccard similarity (MinHash) of a near duplicate.")] = 0.8,
    image_threshold: Annotated[float, typer.Option(help="Images: cosine similarity of a near duplicate.")] = 0.98,
    num_perm: Annotated[int, typer.Option(help="Text: MinHash permutations.")] = 128,
    seed: Annotated[int, typer.Option(help="Text: MinHash seed.")] = 0,
    unit: Annotated[str, typer.Option(help="Items of a .txt file: line | paragraph.")] = "line",
    field: Annotated[str, typer.Option(help="The text field of .jsonl records.")] = "text",
    embedding: Annotated[str, typer.Option(help="Images: pixels | domain (the shipped feature network).")] = "pixels",
    exact_only: Annotated[bool, typer.Option("--exact-only", help="Remove exact duplicates only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Remove exact and near-duplicate items; writes the kept items and OUT.dedup.json (what went, and why)."""
    from genlab.data.dedup import DedupOptions, dedup_file

    options = DedupOptions(threshold=threshold, image_threshold=image_threshold, num_perm=num_perm, seed=seed,
                           unit=unit, text_field=field, exact_only=exact_only, embedding=embedding)  # fmt: skip
    result = dedup_file(path, out_file, options=options)
    report = result.report
    if as_json:
        print(json.dumps({k: v for k, v in report.items() if k != "removed"}, indent=2))
        return
    counts, near = report["counts"], report["method"].get("near")
    table = Table("", "items", title=f"{path}: {report['input']['unit']} items", show_header=False)
    for key, label in (("input", "input"), ("exact_removed", "exact duplicates removed"),
                       ("near_removed", "near duplicates removed"), ("kept", "kept")):  # fmt: skip
        table.add_row(label, f"{counts[key]:,}")
    if near is None:
        table.add_row("near duplicates", "not searched (--exact-only)")
    elif near["kind"] == "cosine":
        table.add_row("near duplicates", f"cosine >= {near['threshold']:g} ({near['embedding']} embedding)")
    else:
        table.add_row("near duplicates", f"MinHash Jaccard >= {near['threshold']:g} ({near['num_perm']} permutations)")
    out.print(table)
    out.print(f"wrote {result.data_path} and the report {result.report_path}")


# --- the store and the service ---------------------------------------------------------------
Db = Annotated[Optional[str], typer.Option("--db", help="Store database: a SQLite path or SQLAlchemy URL "
                                           "(default: $GENLAB_DB, else ./genlab.db).")]  # fmt: skip


def _store(db: str | None, *, embed: bool = True):
    from genlab.store import Store

    return Store.open(db, embed=embed)


@app.command()
def register(
    run_dir: RunDir,
    name: Annotated[str, typer.Option(help="The name the service will serve it under.")],
    version: Annotated[Optional[str], typer.Option(help="Default: the next integer for this name.")] = None,
    db: Db = None,
) -> None:
    """Add a trained run to the store's model registry (idempotent for the same weights)."""
    with _store(db, embed=False) as store:
        model = store.register_model(run_dir, name, version=version)
    out.print(f"registered {model.name}:{model.version} ({model.family}, {model.modality}) "
              f"weights sha256 {model.weights_sha256[:12]}…")  # fmt: skip


keys_app = typer.Typer(help="API keys of the service: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@data_app.command("register")
def data_register(
    path: Annotated[Path, typer.Argument(help="A data file or folder.")],
    name: Annotated[str, typer.Option(help="The dataset's name.")],
    kind: Annotated[str, typer.Option(help="real | synthetic")] = "real",
    model: Annotated[Optional[str], typer.Option(help="Synthetic data: the registered model that made it.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Synthetic data: the seed it was sampled with.")] = None,
    db: Db = None,
) -> None:
    """Record a dataset in the store by the content hash of its files (its version)."""
    with _store(db, embed=False) as store:
        info = store.register_dataset(path, name, kind=kind, model=model, seed=seed)
    out.print(f"{info.kind} dataset {info.name} version {info.version[:12]}… ({info.path})")


@data_app.command("list")
def data_list(kind: Annotated[Optional[str], typer.Option(help="real | synthetic")] = None, db: Db = None) -> None:
    """The datasets recorded in the store; synthetic ones with the model and seed that made them."""
    with _store(db, embed=False) as store:
        rows = store.list_datasets(kind=kind)
        models = {m.id: f"{m.name}:{m.version}" for m in store.list_models()}
    table = Table("name", "version", "kind", "made by", "seed", "path")
    for d in rows:
        table.add_row(d.name, d.version[:12], d.kind, models.get(d.model_id, ""), "" if d.seed is None else str(d.seed),
                      d.path)  # fmt: skip
    out.print(table)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin | editor | viewer")],
    user: Annotated[str, typer.Option(help="The user the key acts as.")] = "default",
    db: Db = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    with _store(db, embed=False) as store:
        record, key = store.create_key(role=role, user_id=user)
    err.print(f"{record.role} key for {record.user_id} (id {record.id}); it is shown only now:")
    out.print(key, highlight=False)


@keys_app.command("list")
def keys_list(db: Db = None) -> None:
    """The keys, by prefix (never the keys themselves)."""
    with _store(db, embed=False) as store:
        keys = store.list_keys()
    table = Table("id", "prefix", "user", "role", "created", "revoked")
    for k in keys:
        table.add_row(str(k.id), k.prefix, k.user_id, k.role, f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")  # fmt: skip
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix (from `genlab keys list`).")],
                db: Db = None) -> None:  # fmt: skip
    """Revoke a key: it stops working at once."""
    with _store(db, embed=False) as store:
        record = store.revoke_key(prefix)
    out.print(f"revoked {record.prefix} ({record.role}, {record.user_id})")


@keys_app.command("fernet")
def keys_fernet() -> None:
    """Print a new key for encrypting sensitive prompts; export it as GENLAB_FERNET_KEY."""
    from genlab.store.privacy import PromptCipher

    out.print(PromptCipher.new_key(), highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: Db = None,
    device: Device = "auto",
    max_n: Annotated[int, typer.Option(help="Most outputs per request.")] = 16,
    rate: Annotated[float, typer.Option(help="Requests per minute per key (sustained).")] = 600.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    threads: Annotated[Optional[int], typer.Option(help="torch threads per operation (default: torch's).")] = None,
) -> None:
    """Serve the registered models over HTTP: the API under /v1, a web page at /, docs at /docs."""
    import torch
    import uvicorn

    if threads is not None:  # many concurrent small requests: one thread each beats splitting every op
        torch.set_num_threads(threads)

    from genlab.service.app import create_app
    from genlab.service.engine import Limits

    store = _store(db)
    if not store.list_keys():
        err.print("[yellow]no API keys yet:[/yellow] create one with `genlab keys create --role admin`.")
    app_ = create_app(store, limits=Limits(max_n=max_n, rate_per_minute=rate), device=device)
    err.print(f"serving {len(store.list_models())} model(s) from {store.url} on http://{host}:{port}/")
    try:
        uvicorn.run(app_, host=host, port=port, log_level=log_level)
    finally:
        store.close()


# --- retrieval-augmented generation ----------------------------------------------------------
rag_app = typer.Typer(help="Passages for retrieval-augmented generation (`genlab generate --rag`): "
                           "add, list, search, delete.", no_args_is_help=True)  # fmt: skip
app.add_typer(rag_app, name="rag")


@rag_app.command("add")
def rag_add(
    collection: Annotated[str, typer.Argument(help="Collection name (made if new).")],
    files: Annotated[list[Path], typer.Argument(help=".txt or .md files, or folders of them.")],
    chunk_chars: Annotated[int, typer.Option(help="Most characters per passage.")] = 800,
    overlap: Annotated[int, typer.Option(help="Characters carried over when a long paragraph is split.")] = 100,
    db: Db = None,
) -> None:
    """Split text files into passages and add the new ones (with their embeddings) to a collection."""
    from genlab.store import Store, rag

    with Store.open(db) as store:
        counts = rag.add_documents(store, collection, files, chunk_chars=chunk_chars, overlap=overlap)
    total = counts["passages"]
    out.print(f"{collection}: added {counts['added']} of {total} passage{'s' if total != 1 else ''} "
              f"({counts['skipped']} already there)")  # fmt: skip


@rag_app.command("list")
def rag_list(db: Db = None) -> None:
    """The collections and how many passages each holds."""
    from genlab.store import Store, rag

    with Store.open(db) as store:
        collections = rag.list_collections(store)
    table = Table("collection", "passages", "created")
    for c in collections:
        table.add_row(c["name"], str(c["documents"]), f"{c['created_at']:%Y-%m-%d %H:%M}")
    out.print(table)


@rag_app.command("search")
def rag_search(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("--k", help="Passages to show.")] = 3,
    mode: Annotated[str, typer.Option(help="keyword | vector | hybrid")] = "hybrid",
    db: Db = None,
) -> None:
    """Show the passages that `generate --rag` would retrieve for QUERY, best first."""
    from genlab.store import Store, rag

    with Store.open(db) as store:
        passages = rag.retrieve(store, collection, query, k=k, mode=mode)
    for i, doc in enumerate(passages, start=1):
        out.print(f"{i}. {doc.source} (id {doc.id})", style="bold", highlight=False, markup=False)
        out.print(doc.text, highlight=False, markup=False)
    if not passages:
        err.print(f"no passage of {collection} matches {query!r}", highlight=False, markup=False)


@rag_app.command("delete")
def rag_delete(collection: Annotated[str, typer.Argument(help="Collection name.")], db: Db = None) -> None:
    """Remove a collection with its passages, embeddings and index."""
    from genlab.store import Store, rag

    with Store.open(db) as store:
        count = rag.delete_collection(store, collection)
    out.print(f"deleted {collection} ({count} passage{'s' if count != 1 else ''})")


def _generate_with_store(model, run_dir: Path, prompts: list, options: dict, *, n: int, kind: str,
                         collection: str | None, k: int, db: str | None, stream: bool,
                         record: bool | None) -> list[str]:  # fmt: skip
    """`generate --rag/--store`: each prompt's continuations (prompt included), recorded in the store."""
    from genlab.store import Store, rag

    if stream:
        raise GenlabError("--stream prints one plain continuation; drop it with --rag or --store.")
    record = record if record is not None else collection is not None
    parameters = {key: value for key, value in options.items() if key != "seed"}
    if collection is not None:
        parameters.update(rag=collection, rag_k=k)
    full = []
    with Store.open(db) as store:
        registered = rag.registered_model(store, run_dir) if record else None  # once: it hashes the weights
        for prompt in prompts:
            used = []
            if collection is not None:
                texts, used = rag.generate_with_rag(store, model, prompt, collection=collection, k=k, n=n, **options)
                sources = ", ".join(doc.source for doc in used) or "no passage (none fit)"
                err.print(f"{prompt!r}: conditioned on {sources}", style="dim", highlight=False, markup=False)
            else:
                texts = api.generate(model, [prompt], n=n, **options)
            if record:
                rows = rag.record_text_generations(store, registered, prompt, texts, passages=used, kind=kind,
                                                   parameters=parameters, seed=options["seed"])  # fmt: skip
                err.print(f"recorded generation {', '.join(str(g.id) for g in rows)} in {store.url}", style="dim",
                          highlight=False, markup=False)  # fmt: skip
            full += [sequences.join(prompt, t, kind=kind) for t in texts]
    return full


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
