"""Train the domain feature networks that ship in genlab/metrics/weights/ (one per bundled image dataset).

    python scripts/train_feature_nets.py                       # digits, mnist, fashion-mnist
    python scripts/train_feature_nets.py --data mnist --epochs 20
    python scripts/train_feature_nets.py --data path/to/images --out my-net.safetensors

Each network is a small CNN classifier (genlab.metrics.features.DomainNet) trained with a fixed recipe and seed on
the dataset's training split (the recipes' split: val_fraction 0.1, split seed 0, or the dataset's own test split);
its accuracy on the validation split is measured and stored with the weights, in the safetensors metadata.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import genlab
from genlab.data.datasets import load_images
from genlab.metrics.features import classifier_accuracy, domain_weights_path, save_domain_net, train_classifier

EPOCHS = {"digits": 60, "mnist": 15, "fashion-mnist": 8}
SEED = 0


def train_one(spec: str, *, epochs: int, out: Path) -> dict:
    data = load_images(spec)
    if data.labels is None:
        raise SystemExit(f"{spec} has no labels; a domain network is a classifier and needs them.")
    train, val = data.split(val_fraction=0.1, seed=0)
    start = time.perf_counter()
    net = train_classifier(train.images, train.labels, data.num_classes, epochs=epochs, seed=SEED)
    seconds = time.perf_counter() - start
    c, h, w = data.shape
    card = {
        "dataset": data.name, "dataset_sha256": data.content_hash(), "train_count": len(train),
        "val_count": len(val), "val_accuracy": round(classifier_accuracy(net, val.images, val.labels), 4),
        "train_accuracy": round(classifier_accuracy(net, train.images, train.labels), 4),
        "epochs": epochs, "seed": SEED, "channels": c, "height": h, "width": w, "num_classes": data.num_classes,
        "widths": [32, 64, 128], "script": "scripts/train_feature_nets.py", "genlab_version": genlab.__version__,
        "torch_version": torch.__version__, "train_seconds": round(seconds, 1),
    }  # fmt: skip
    save_domain_net(net, out, card)
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", help="dataset name or path (repeatable; default: all bundled)")
    parser.add_argument("--epochs", type=int, help="override the per-dataset epoch count")
    parser.add_argument("--out", type=Path, help="output file (only with one --data)")
    args = parser.parse_args()
    specs = args.data or list(EPOCHS)
    if args.out and len(specs) != 1:
        raise SystemExit("--out needs exactly one --data.")
    for spec in specs:
        out = args.out or domain_weights_path(spec)
        card = train_one(spec, epochs=args.epochs or EPOCHS.get(spec, 20), out=out)
        print(f"{spec}: val accuracy {card['val_accuracy']:.4f} ({card['train_seconds']} s) -> {out}")


if __name__ == "__main__":
    main()
