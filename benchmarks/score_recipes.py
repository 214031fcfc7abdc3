"""Score the recipes with `genlab eval`'s code and put the table in benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/score_recipes.py                      # trains what is missing under runs/bench/
    .venv/bin/python benchmarks/score_recipes.py --run gpt-shakespeare=/path/to/run ...   # score existing runs

Each recipe's run is ``runs/bench/RECIPE`` (trained here with ``genlab.train(RECIPE)`` when absent) or the
directory given with ``--run RECIPE=DIR``; a run is only scored when its stored model and training configs
equal the recipe's current ones (else it is reported as stale and skipped). Image runs: 10,000 samples
(``--n``) against the training split in the shipped domain network's features, plus bits/dim for the
likelihood models and TSTR for the class-conditional ones. Text runs: perplexity on the validation split,
BLEU/chrF of greedy continuations of validation prompts, and diversity and copying of 100 samples.

Real data is scored the same way as a baseline: the validation split in place of samples (images), or 100
validation excerpts of the samples' length (text). Writes the "## Recipe scores" section of RESULTS.md and
every number to benchmarks/results/recipes.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import vae  # the sibling benchmark: results file, machine note

import genlab
from genlab import registry
from genlab.checkpoint import read_run_config
from genlab.config import to_dict
from genlab.data.datasets import load_images
from genlab.data.text import load_text
from genlab.errors import GenlabError
from genlab.metrics.evaluate import EvalOptions, evaluate_run, score_images, score_texts
from genlab.metrics.features import load_extractor

SECTION = "## Recipe scores"
JSON_OUT = vae.ROOT / "benchmarks" / "results" / "recipes.json"
IMAGE_RECIPES = ("vae-mnist", "cvae-mnist", "dcgan-mnist", "wgan-gp-mnist", "sngan-mnist", "cgan-mnist", "ddpm-mnist")
TEXT_RECIPES = ("gpt-shakespeare", "lstm-shakespeare", "gpt-chorales")
IMAGE_METRICS = ("fid", "kid", "is", "precision_recall", "density_coverage", "memorization")
TEXT_METRICS = ("perplexity", "bleu", "chrf", "self_bleu", "distinct_n", "memorization")
SHOWN = ("fid", "kid", "inception_score", "precision", "recall", "density", "coverage", "memorization",
         "bits_per_dim", "tstr", "perplexity", "bleu", "chrf", "self_bleu", "distinct_2", "distinct_3")  # fmt: skip


def run_for(recipe: str, given: dict[str, Path], root: Path) -> tuple[Path | None, str]:
    """The run to score and a note: given, reused, trained here, or stale (configs differ from the recipe)."""
    path = given.get(recipe, root / recipe)
    if not (path / "config.json").exists():
        if recipe in given:
            return None, f"no run at {path}"
        print(f"training {recipe} → {path}", flush=True)
        start = time.perf_counter()
        genlab.train(recipe, out=path)
        return path, f"trained here in {(time.perf_counter() - start) / 60:.1f} min"
    record = read_run_config(path)
    rec = registry.recipe(recipe)
    stored_model = {k: v for k, v in record["model"].items() if k not in ("channels", "height", "width",
                                                                          "num_classes", "vocab_size")}  # fmt: skip
    wanted_model = {k: v for k, v in to_dict(rec.model).items() if k in stored_model}
    if record.get("recipe") != recipe or stored_model != wanted_model or record["train"] != to_dict(rec.train):
        return None, f"stale: {path} was trained with other settings than today's {recipe}"
    try:
        genlab.load(path)
    except GenlabError as exc:
        return None, f"stale: {path} does not load with today's code ({exc})"
    return path, "reused" if recipe in given else "reused (runs/bench)"


def image_baseline(spec: str, options: EvalOptions) -> dict[str, Any]:
    """The validation split scored as if it were samples: what real data gets at its size."""
    data = load_images(spec)
    train, val = data.split(val_fraction=0.1, seed=0)
    extractor = load_extractor("domain", dataset=data.name)
    names = ("fid", "kid", "is", "precision_recall", "density_coverage", "memorization")
    opts = EvalOptions(**{**options.__dict__, "allow_few": True, "kid_subset_size": min(1000, len(val))})
    scores = score_images(val.images, val.labels, train, val, opts, names=names, extractor=extractor)
    return {"n_generated": len(val), "extractor": extractor.describe(), "metrics": scores}


def text_baseline(spec: str, length: int, count: int, seed: int) -> dict[str, Any]:
    """``count`` random validation excerpts of ``length`` tokens (characters, or music event words), scored
    as samples."""
    text = load_text(spec)
    train, val = text.split(val_fraction=0.1, seed=0)
    joined = "\n".join(val.documents)
    rng = np.random.default_rng(seed)
    if text.kind == "music":  # excerpts of whole event words
        words = joined.split()
        starts = rng.integers(0, len(words) - length, count)
        excerpts = [" ".join(words[s : s + length]) for s in starts]
    else:
        starts = rng.integers(0, len(joined) - length, count)
        excerpts = [joined[s : s + length] for s in starts]
    metrics = score_texts(excerpts, "\n".join(train.documents), EvalOptions(seed=seed),
                          names=("self_bleu", "distinct_n", "memorization"))  # fmt: skip
    return {"n_generated": count, "metrics": metrics}


def cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    value = f"{entry['value']:.4g}"
    if "ci95" in entry:
        value += f" [{entry['ci95'][0]:.3g}, {entry['ci95'][1]:.3g}]"
    return value


def section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = [SECTION, "",
             " then ".join(f"`{c}`" for c in results["commands"])
             + f" ({datetime.date.today().isoformat()}; {vae.machine_note(torch.get_num_threads())}).",
             "", "Images: n generated samples against the training split of the recipe's data, in the features of "
             "the shipped domain network (`domain:mnist`: 128-d, validation accuracy in its card). FID with a 95 % "
             "bootstrap interval over the samples (bias-corrected); KID ± std is over 100 subsets of 1,000; "
             "precision/recall k = 3, "
             "density/coverage k = 5; memorisation = share of samples whose nearest training image is < 1/3 the "
             "distance of the second nearest; TSTR = accuracy on real validation images of a classifier trained "
             "on 10,000 samples (real-only accuracy and the gain from adding the samples in the notes). "
             "The 'real validation' row scores the 500 held-out MNIST images the same way: what real data gets "
             "(its FID is inflated by its smaller n).", ""]  # fmt: skip
    image_rows = [r for r in results["rows"] if r["kind"] == "image"]
    text_rows = [r for r in results["rows"] if r["kind"] == "text"]
    if image_rows:
        lines += ["| recipe | n | FID | KID | IS | precision | recall | density | coverage | memorised | bits/dim "
                  "| TSTR acc |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in image_rows:
            m = r["metrics"]
            kid = f"{m['kid']['value'] * 1e3:.3g} ± {m['kid']['std'] * 1e3:.2g} ×10⁻³" if "kid" in m else "–"
            tstr = m.get("tstr")
            tstr_cell = "–" if not tstr else (f"{tstr['synthetic_accuracy']:.3f} (real {tstr['real_accuracy']:.3f}, "
                                             f"gain {tstr['augmentation_gain']:+.3f})")  # fmt: skip
            lines.append(f"| {r['name']} | {r['n_generated']:,} | {cell(m.get('fid'))} | {kid} | "
                         f"{cell(m.get('inception_score'))} | {cell(m.get('precision'))} | {cell(m.get('recall'))} | "
                         f"{cell(m.get('density'))} | {cell(m.get('coverage'))} | {cell(m.get('memorization'))} | "
                         f"{cell(m.get('bits_per_dim'))} | {tstr_cell} |")  # fmt: skip
        lines.append("")
    if text_rows:
        lines += ["Text and music: perplexity and bits/char on the validation split (non-overlapping windows of the "
                  "context); BLEU/chrF (sacrebleu) of 100 greedy continuations of 200 tokens of validation prompts "
                  "against the true continuations; self-BLEU, distinct-n and copying (share of samples with a "
                  "verbatim run of ≥ 20 words from the training text) over 100 samples of 200 tokens at "
                  "temperature 1. The 'real validation' rows score validation excerpts of the same length.", "",
                  "| recipe | perplexity | bits/char | BLEU | chrF | self-BLEU | distinct-2 | distinct-3 "
                  "| copied ≥ 20 words |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in text_rows:
            m = r["metrics"]
            bpc = m.get("perplexity", {}).get("bits_per_char")
            lines.append(f"| {r['name']} | {cell(m.get('perplexity'))} | {'–' if bpc is None else f'{bpc:.3f}'} | "
                         f"{cell(m.get('bleu'))} | {cell(m.get('chrf'))} | {cell(m.get('self_bleu'))} | "
                         f"{cell(m.get('distinct_2'))} | {cell(m.get('distinct_3'))} | "
                         f"{cell(m.get('memorization'))} |")  # fmt: skip
        lines.append("")
    notes = [f"- {name}: {note}" for name, note in results["notes"].items()]
    lines += ["Runs:", *notes, ""]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", action="append", default=[], help="RECIPE=DIR: score this existing run")
    p.add_argument("--runs-root", type=Path, default=vae.ROOT / "runs" / "bench", help="where runs are trained")
    p.add_argument("--recipes", help="comma-separated subset of the recipes")
    p.add_argument("--n", type=int, default=10_000, help="image samples per run (10,000)")
    p.add_argument("--texts", type=int, default=100, help="text samples per run (100)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    p.add_argument("--results", type=Path, default=vae.RESULTS, help="Markdown file to update (RESULTS.md)")
    p.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    p.add_argument(
        "--merge", action="store_true", help="keep the rows and metrics of results/recipes.json that are not scored now"
    )
    p.add_argument("--metrics", help="comma-separated subset of the metrics (with --merge: update only these)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    given = {k: Path(v) for k, v in (item.split("=", 1) for item in args.run)}
    wanted = args.recipes.split(",") if args.recipes else [*IMAGE_RECIPES, *TEXT_RECIPES]
    results: dict[str, Any] = {"rows": [], "notes": {}, "commands": [vae.command_line()]}
    for recipe in wanted:
        path, note = run_for(recipe, given, args.runs_root)
        results["notes"][recipe] = note
        if path is None:
            print(f"skipping {recipe}: {note}", flush=True)
            continue
        text = recipe in TEXT_RECIPES
        likelihood = registry.recipe(recipe).family in ("vae", "diffusion")
        names = TEXT_METRICS if text else IMAGE_METRICS + (("bits_per_dim",) if likelihood else ())
        model_config = read_run_config(path)["model"]
        if not text and model_config.get("num_classes", 0) > 0:
            names += ("tstr",)
        if args.metrics:
            names = tuple(n for n in names if n in args.metrics.split(","))
        options = EvalOptions(metrics=names, n=args.texts if text else args.n, seed=0, max_new_tokens=200)
        start = time.perf_counter()
        print(f"scoring {recipe} ({path})", flush=True)
        result = evaluate_run(path, options, write=False, progress=lambda m: print(f"  {m}", flush=True))
        results["notes"][recipe] += f"; scored in {(time.perf_counter() - start) / 60:.1f} min"
        results["rows"].append({"name": recipe, "kind": "text" if text else "image", "run": str(path), **result})
    if any(r in IMAGE_RECIPES for r in wanted):
        results["rows"].append({"name": "real validation (mnist)", "kind": "image",
                                **image_baseline("mnist", EvalOptions(seed=0))})  # fmt: skip
    for spec in ("shakespeare", "chorales"):
        if any(r in TEXT_RECIPES and registry.recipe(r).dataset == spec for r in wanted):
            results["rows"].append({"name": f"real validation ({spec})", "kind": "text",
                                    **text_baseline(spec, 200, args.texts, 0)})  # fmt: skip
    if args.merge and JSON_OUT.exists():  # rows, metrics and notes not scored now are kept
        old = json.loads(JSON_OUT.read_text())
        new = {r["name"]: r for r in results["rows"]}
        for row in old["rows"]:
            if row["name"] in new:
                new[row["name"]]["metrics"] = {**row["metrics"], **new[row["name"]]["metrics"]}
        results["rows"] = [r for r in old["rows"] if r["name"] not in new] + list(new.values())
        notes = {**old["notes"], **results["notes"]}
        for k in set(old["notes"]) & set(results["notes"]):
            notes[k] = f"{old['notes'][k]}; then {results['notes'][k]} ({args.metrics or 'all metrics'})"
        results["notes"] = notes
        order = {name: i for i, name in enumerate([*IMAGE_RECIPES, *TEXT_RECIPES])}
        results["rows"].sort(key=lambda r: (r["kind"], order.get(r["name"], len(order))))
        results["commands"] = [*old.get("commands", []), *results["commands"]]
    text = section(args, results)
    print("\n" + text)
    if not args.no_write:
        vae.write_section(args.results, text)
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {args.results} and {JSON_OUT}")


if __name__ == "__main__":
    main()
