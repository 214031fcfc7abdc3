"""Training-data deduplication: exact copies by content hash, near copies by MinHash (text) or
embedding cosine (images).

Both passes are greedy in input order, so the first item of each group of duplicates is kept:

1. **Exact**: sha256 of each item's canonical bytes (text with trailing whitespace stripped; an
   image's shape and uint8 pixels). Every later copy of an item is dropped.
2. **Near, text**: MinHash (Broder 1997) of each item's shingles, word 5-grams of the lowercased
   text with punctuation collapsed (character 5-grams below five words). LSH (``datasketch``)
   retrieves candidates among the items kept so far; a candidate counts only when the MinHash
   estimate of the Jaccard similarity is ``>= threshold``, as LSH alone lets false positives through.
3. **Near, images**: an item is dropped when its cosine similarity to an item kept so far is
   ``>= threshold``, in chunked float32 matrix products (memory O(chunk × N), never N × N).

The default image embedding is raw pixels, each image minus its mean and L2-normalised (cosine =
Pearson correlation). The domain feature networks (``embedding="domain"``) are classifiers: their
features make two different digits of one class as alike as a noisy copy, so a cosine threshold
cannot tell copies from neighbours there (on MNIST, 93% of images have another image at cosine
>= 0.98, while copies with ±8 grey levels of noise can fall to 0.984). They are offered for callers
who calibrate their own threshold.

:func:`dedup_texts` and :func:`dedup_images` work on items in memory; :func:`dedup_file` reads
what genlab's loaders read and writes the kept items in the input's format plus a JSON report,
both atomically.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from genlab.data.datasets import DATASETS, ImageData, load_images
from genlab.data.images import list_image_files
from genlab.data.text import load_text, read_text_file
from genlab.errors import ConfigError, DataError, unknown
from genlab.io import atomic_path, file_sha256

logger = logging.getLogger(__name__)

SHINGLE_SIZE = 5
#: a pair whose Jaccard similarity equals the threshold becomes an LSH candidate with this probability
LSH_RECALL = 0.95
#: float32 rounding: the cosine of an image and its copy can come out as 0.9999999
COSINE_TOLERANCE = 1e-6
PIXELS_DESCRIPTION = "pixels: each image minus its own mean, L2-normalised (cosine = Pearson correlation)"

Embed = Callable[[np.ndarray], np.ndarray]  # uint8 (N, H, W, C) → float (N, D)


# --- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Duplicate:
    """A removed item: ``index`` duplicates the kept item ``duplicate_of``.

    ``reason`` is "exact" when the two are identical (after normalisation), else "near";
    ``similarity`` is 1.0 for exact copies, else the MinHash Jaccard estimate (text) or the
    embedding cosine (images) to the kept item.
    """

    index: int
    reason: Literal["exact", "near"]
    duplicate_of: int
    similarity: float


@dataclass(frozen=True)
class DedupResult:
    """Which of ``num_input`` items to keep (indices, ascending), which were removed and why."""

    num_input: int
    kept: tuple[int, ...]
    removed: tuple[Duplicate, ...]
    #: JSON-ready: how items were compared and with which parameters
    method: dict[str, Any]

    def counts(self) -> dict[str, int]:
        exact = sum(d.reason == "exact" for d in self.removed)
        return {"input": self.num_input, "exact_removed": exact,
                "near_removed": len(self.removed) - exact, "kept": len(self.kept)}  # fmt: skip


def _check_threshold(value: float, what: str) -> None:
    if not 0.0 < value <= 1.0:  # also rejects NaN
        flag = "--" + what.replace("_", "-")
        raise ConfigError(
            f"{what}={value} is outside (0, 1]; give a similarity such as 0.8 ({flag}), "
            "or --exact-only (exact_only=True) to skip near duplicates."
        )


def _first_occurrence(digests: Sequence[str]) -> np.ndarray:
    """For each item, the index of the first item with the same digest (itself if it is the first)."""
    seen: dict[str, int] = {}
    return np.array([seen.setdefault(d, i) for i, d in enumerate(digests)], dtype=np.int64)


def _assemble(first: np.ndarray, near: dict[int, tuple[int, float]], method: dict[str, Any]) -> DedupResult:
    """Combine the exact pass (``first``) with the near pass over first occurrences (``near``: item →
    (kept item, similarity)). An exact copy of an item that the near pass dropped points at the kept
    item too, as a near duplicate with its copy's similarity."""
    removed, kept = [], []
    for i, rep in enumerate(first.tolist()):
        if rep in near:
            kept_index, similarity = near[rep]
            removed.append(Duplicate(i, "near", kept_index, similarity))
        elif rep != i:
            removed.append(Duplicate(i, "exact", rep, 1.0))
        else:
            kept.append(i)
    return DedupResult(len(first), tuple(kept), tuple(removed), method)


# --- text ----------------------------------------------------------------------------------------
_NOT_WORD = re.compile(r"[\W_]+")  # runs of punctuation and whitespace


def text_digest(text: str) -> str:
    """sha256 of the text with trailing whitespace stripped: the key of exact duplicates."""
    return hashlib.sha256(text.rstrip().encode("utf-8", "surrogatepass")).hexdigest()


def text_shingles(text: str, *, size: int = SHINGLE_SIZE) -> set[str]:
    """Word ``size``-grams of the lowercased text with each run of punctuation and whitespace
    collapsed to one space; character ``size``-grams of that when it has fewer than ``size`` words."""
    words = _NOT_WORD.sub(" ", text.lower()).split()
    if len(words) >= size:
        return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
    joined = " ".join(words) or text.strip().lower()  # all punctuation: the text itself is its one shingle
    if len(joined) <= size:
        return {joined}
    return {joined[i : i + size] for i in range(len(joined) - size + 1)}


def text_minhashes(texts: Sequence[str], *, num_perm: int = 128, seed: int = 0) -> list:
    """One ``datasketch.MinHash`` of :func:`text_shingles` per text; ``m1.jaccard(m2)`` estimates the
    Jaccard similarity of two texts' shingle sets (standard error ≈ sqrt(J (1 − J) / num_perm))."""
    from datasketch import MinHash

    shingle_sets = ([s.encode("utf-8", "surrogatepass") for s in text_shingles(t)] for t in texts)
    return MinHash.bulk(shingle_sets, num_perm=num_perm, seed=seed)  # shares one set of permutations


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for LSH: the most rows per band (fewest false candidates) such that a pair of
    Jaccard similarity ``threshold`` collides in some band with probability 1 − (1 − t^r)^b ≥ 0.95."""
    best = (num_perm, 1)
    for rows in range(1, num_perm // 2 + 1):  # datasketch wants at least 2 bands
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= LSH_RECALL:
            best = (bands, rows)
    return best


def _near_texts(texts: Sequence[str], positions: Sequence[int], *, threshold: float, num_perm: int,
                seed: int) -> tuple[dict[int, tuple[int, float]], tuple[int, int]]:  # fmt: skip
    """Greedy MinHash-LSH pass over ``texts[positions]`` in order → {item: (kept item, Jaccard estimate)}."""
    from datasketch import MinHashLSH

    minhashes = text_minhashes([texts[i] for i in positions], num_perm=num_perm, seed=seed)
    signatures = np.stack([m.hashvalues for m in minhashes])  # (M, num_perm)
    bands, rows = lsh_bands(threshold, num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(bands, rows))  # holds only kept items
    near: dict[int, tuple[int, float]] = {}
    for j, minhash in enumerate(minhashes):
        candidates = lsh.query(minhash)
        if candidates:
            c = np.sort(np.fromiter(candidates, dtype=np.int64, count=len(candidates)))
            jaccard = (signatures[c] == signatures[j]).mean(axis=1)  # MinHash.jaccard, vectorised
            best = int(jaccard.argmax())  # ties: the earliest kept item
            if jaccard[best] >= threshold:
                near[positions[j]] = (positions[int(c[best])], float(jaccard[best]))
                continue
        lsh.insert(j, minhash)
    return near, (bands, rows)


def dedup_texts(texts: Sequence[str], *, threshold: float = 0.8, num_perm: int = 128, seed: int = 0,
                exact_only: bool = False) -> DedupResult:  # fmt: skip
    """Exact and near-duplicate texts; the first of each group is kept (see the module docstring).

    ``threshold``: Jaccard similarity of shingle sets in (0, 1]; ``num_perm``: MinHash permutations
    (more: a finer estimate, slower); ``seed``: MinHash's permutations.
    """
    _check_threshold(threshold, "threshold")
    if num_perm < 2:
        raise ConfigError(f"num_perm={num_perm} must be at least 2 (128 is usual).")
    first = _first_occurrence([text_digest(t) for t in texts])
    method: dict[str, Any] = {"exact": "sha256 of each item with trailing whitespace stripped"}
    near: dict[int, tuple[int, float]] = {}
    if not exact_only:
        unique = np.flatnonzero(first == np.arange(len(first))).tolist()
        near, (bands, rows) = _near_texts(texts, unique, threshold=threshold, num_perm=num_perm, seed=seed)
        method["near"] = {
            "kind": "minhash-lsh", "threshold": threshold, "num_perm": num_perm, "seed": seed,
            "shingles": f"word {SHINGLE_SIZE}-grams of lowercased text, punctuation collapsed "
                        f"(character {SHINGLE_SIZE}-grams below {SHINGLE_SIZE} words)",
            "lsh_bands": bands, "lsh_rows": rows, "verified_by": "MinHash Jaccard estimate >= threshold",
            "datasketch": importlib.metadata.version("datasketch"),
        }  # fmt: skip
    return _assemble(first, near, method)


# --- images --------------------------------------------------------------------------------------
def image_digest(image: np.ndarray) -> str:
    """sha256 of an image's shape and uint8 pixel bytes: the key of exact duplicates."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)  # a zero vector stays zero: cosine 0 to all


def pixel_embedding(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) → float32 (N, H·W·C): each image's pixels minus their mean, L2-normalised."""
    x = np.asarray(images).reshape(len(images), -1).astype(np.float32)
    return _normalise(x - x.mean(axis=1, keepdims=True))


def greedy_cosine_duplicates(features: np.ndarray, *, threshold: float,
                             chunk_size: int = 1024) -> dict[int, tuple[int, float]]:  # fmt: skip
    """Greedy in row order: row j is a duplicate when its cosine to a row kept before it is
    ``>= threshold`` → {j: (most similar kept row, cosine)}. float32 (N, D) in, rows normalised here;
    memory O(chunk_size² + chunk_size × 4 chunk_size), never N × N."""
    x = _normalise(np.asarray(features, dtype=np.float32))
    kept_rows = np.empty_like(x)  # the kept features, contiguous and in order
    kept_index = np.empty(len(x), dtype=np.int64)
    num_kept = 0
    near: dict[int, tuple[int, float]] = {}
    for start in range(0, len(x), chunk_size):
        block = x[start : start + chunk_size]  # (B, D)
        best_sim = np.full(len(block), -np.inf, dtype=np.float32)
        best = np.full(len(block), -1, dtype=np.int64)
        for col in range(0, num_kept, 4 * chunk_size):  # rows kept in earlier blocks, (B, 4B) at a time
            sims = block @ kept_rows[col : min(col + 4 * chunk_size, num_kept)].T
            arg = sims.argmax(axis=1)
            value = sims[np.arange(len(block)), arg]
            better = value > best_sim  # strict: ties keep the earlier kept row
            best_sim[better], best[better] = value[better], kept_index[col + arg[better]]
        inner = block @ block.T  # (B, B): rows kept earlier in this block
        local = np.empty(len(block), dtype=np.int64)
        num_local = 0
        for b in range(len(block)):
            sim, match = float(best_sim[b]), int(best[b])
            if num_local:
                row = inner[b, local[:num_local]]
                a = int(row.argmax())
                if row[a] > sim:
                    sim, match = float(row[a]), start + int(local[a])
            if sim >= threshold - COSINE_TOLERANCE:
                near[start + b] = (match, min(sim, 1.0))
            else:
                local[num_local] = b
                num_local += 1
                kept_rows[num_kept], kept_index[num_kept] = block[b], start + b
                num_kept += 1
    return near


def _domain_embed(images: np.ndarray, dataset: str | None) -> tuple[Embed, dict[str, Any]]:
    """The shipped domain network of ``dataset``, if there is one for images of this shape."""
    from genlab.metrics.features import load_extractor, shipped_domain_datasets  # metrics → torch: only here

    shipped = shipped_domain_datasets()
    if dataset not in shipped:
        raise DataError(
            f"no domain feature network ships for {dataset!r} (they exist for {', '.join(shipped)}); "
            "use embedding='pixels' (--embedding pixels) or pass your own embed function."
        )
    extractor = load_extractor("domain", dataset=dataset)
    if (*extractor.input_size, extractor.channels) != images.shape[1:]:
        raise DataError(
            f"the domain network of {dataset!r} takes {extractor.input_size} images with {extractor.channels} "
            f"channel(s), not {images.shape[1:]}; use embedding='pixels' (--embedding pixels)."
        )
    return (lambda x: extractor(x)[0]), {"embedding": "domain", "extractor": extractor.describe()}


def dedup_images(images: np.ndarray, *, threshold: float = 0.98, embed: Embed | None = None,
                 embedding: Literal["pixels", "domain"] = "pixels", dataset: str | None = None,
                 exact_only: bool = False, chunk_size: int = 1024) -> DedupResult:  # fmt: skip
    """Exact and near-duplicate images, uint8 (N, H, W, C); the first of each group is kept.

    Near duplicates have cosine ``>= threshold`` between embeddings: ``embed(images) → (N, D)`` if
    given, else :func:`pixel_embedding` ("pixels") or the shipped domain network of ``dataset``
    ("domain"; see the module docstring for why it is not the default).
    """
    _check_threshold(threshold, "image_threshold")
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
        raise DataError(f"images must be a non-empty uint8 array (N, H, W, C); got {images.dtype} {images.shape}.")
    first = _first_occurrence([image_digest(im) for im in images])
    method: dict[str, Any] = {"exact": "sha256 of each image's shape and uint8 pixels"}
    near: dict[int, tuple[int, float]] = {}
    if not exact_only:
        if embed is not None:
            description: dict[str, Any] = {"embedding": "caller", "function": getattr(embed, "__name__", repr(embed))}
        elif embedding == "pixels":
            embed, description = pixel_embedding, {"embedding": "pixels", "description": PIXELS_DESCRIPTION}
        elif embedding == "domain":
            embed, description = _domain_embed(images, dataset)
        else:
            raise ConfigError(f"embedding={embedding!r} is not one of 'pixels', 'domain'.")
        unique = np.flatnonzero(first == np.arange(len(first)))
        features = np.asarray(embed(images[unique]), dtype=np.float32)
        if features.shape[:1] != (len(unique),) or features.ndim != 2 or not np.isfinite(features).all():
            raise DataError(
                f"the embedding gave {features.shape} features for {len(unique)} images; it must return "
                "finite (N, D) arrays, one row per image."
            )
        found = greedy_cosine_duplicates(features, threshold=threshold, chunk_size=chunk_size)
        near = {int(unique[j]): (int(unique[k]), sim) for j, (k, sim) in found.items()}
        method["near"] = {"kind": "cosine", "threshold": threshold, **description}
    return _assemble(first, near, method)


# --- files ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DedupOptions:
    """What :func:`dedup_file` compares and how; validated on construction."""

    threshold: float = 0.8  # text: Jaccard similarity (MinHash estimate)
    image_threshold: float = 0.98  # images: cosine similarity of embeddings
    num_perm: int = 128
    seed: int = 0
    unit: Literal["line", "paragraph"] = "line"  # the items of a .txt file
    text_field: str = "text"  # the field of a .jsonl record that holds the text
    exact_only: bool = False
    embedding: Literal["pixels", "domain"] = "pixels"

    def __post_init__(self) -> None:
        _check_threshold(self.threshold, "threshold")
        _check_threshold(self.image_threshold, "image_threshold")
        if self.num_perm < 2:
            raise ConfigError(f"num_perm={self.num_perm} must be at least 2 (128 is usual).")
        if self.unit not in ("line", "paragraph"):
            raise ConfigError(f"unit={self.unit!r} is not one of 'line', 'paragraph'.")
        if self.embedding not in ("pixels", "domain"):
            raise ConfigError(f"embedding={self.embedding!r} is not one of 'pixels', 'domain'.")


@dataclass(frozen=True)
class DedupInput:
    """Items read for deduplication, where they came from, and how to write the kept ones back."""

    source: str
    format: Literal[".npz", ".txt", ".jsonl"]  # the format the kept items are written in
    sha256: str
    hash_of: Literal["file", "data"]  # the file's bytes, or the loaded data (folders, bundled names)
    unit: str  # "image", "line", "paragraph" or "record"
    images: ImageData | None = None
    texts: tuple[str, ...] = ()
    records: tuple[str, ...] = ()  # .jsonl: each text item's line as read, other fields included
    item_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.texts)


def _split_items(document: str, unit: str) -> list[tuple[int, str]]:
    """(1-based line number, item) of each non-empty line, or each paragraph (lines between blank lines)."""
    numbered = list(enumerate(document.split("\n"), start=1))
    if unit == "line":
        return [(n, line) for n, line in numbered if line.strip()]
    if unit == "paragraph":
        items, lines, start = [], [], 0
        for n, line in [*numbered, (0, "")]:  # a blank line at the end closes the last paragraph
            if line.strip():
                start = start if lines else n
                lines.append(line)
            elif lines:
                items.append((start, "\n".join(lines)))
                lines = []
        return items
    raise ConfigError(f"unit={unit!r} is not one of 'line', 'paragraph'.")


def _read_text(source: str, path: Path, unit: str, text_field: str) -> DedupInput:
    data = load_text(source, text_field=text_field)
    if data.kind != "text":
        raise DataError(f"{source!r} is {data.kind}; dedup handles images and text.")
    hashed = ("file", file_sha256(path)) if path.is_file() else ("data", data.content_hash())
    if path.suffix.lower() == ".jsonl" and path.is_file():
        if unit != "line":
            raise ConfigError(f"--unit {unit} applies to .txt input; the items of {path} are its records.")
        lines = read_text_file(path).split("\n")  # as load_text numbers them: item_names are "line N"
        records = tuple(lines[int(name.removeprefix("line ")) - 1] for name in data.item_names)
        return DedupInput(source, ".jsonl", hashed[1], hashed[0], "record", texts=data.documents, records=records,
                          item_names=data.item_names)  # fmt: skip
    texts, names = [], []
    for d, document in enumerate(data.documents):
        prefix = f"{data.item_names[d]}, " if len(data.documents) > 1 and data.item_names else ""
        for number, item in _split_items(document, unit):
            texts.append(item)
            names.append(f"{prefix}line {number}")
    if not texts:
        raise DataError(f"{source} has no text to deduplicate; give it some non-empty lines.")
    return DedupInput(source, ".txt", hashed[1], hashed[0], unit, texts=tuple(texts), item_names=tuple(names))


def load_dedup_input(source: str | Path, *, unit: str = "line", text_field: str = "text") -> DedupInput:
    """Read items with genlab's loaders: a bundled image or text dataset by name, a folder of images
    or of .txt files, a .npy/.npz, .txt (items: non-empty lines or paragraphs) or .jsonl (records) file."""
    key = str(source)
    path = Path(key).expanduser()
    if key in DATASETS:
        modality = DATASETS[key].modality
        if modality not in ("image", "text"):
            raise DataError(f"{key!r} is a {modality} dataset; dedup handles image and text datasets.")
    elif not path.exists():
        names = [n for n, info in DATASETS.items() if info.modality in ("image", "text")]
        raise unknown("dataset", key, names, hint="Or give a path to a folder of images, .npy/.npz, .txt or .jsonl.")
    elif path.is_dir():
        modality = "image" if list_image_files(path) else "text"
    elif path.suffix.lower() in (".npy", ".npz"):
        modality = "image"
    elif path.suffix.lower() in (".txt", ".jsonl"):
        modality = "text"
    else:
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r}; dedup reads a folder of images, .npy/.npz, "
            ".txt or .jsonl, or a bundled dataset name (see `genlab datasets`)."
        )
    if modality == "text":
        return _read_text(key, path, unit, text_field)
    data = load_images(key)
    hashed = ("file", file_sha256(path)) if path.is_file() else ("data", data.content_hash())
    return DedupInput(key, ".npz", hashed[1], hashed[0], "image", images=data, item_names=data.item_names)


@dataclass(frozen=True)
class DedupOutput:
    data_path: Path
    report_path: Path
    report: dict[str, Any]  # as written to report_path


def report_path_for(out: str | Path) -> Path:
    """Where :func:`dedup_file` writes its report: ``<out>.dedup.json``."""
    return Path(f"{out}.dedup.json")


def _check_out(source: str, out: Path) -> None:
    path = Path(source).expanduser()
    if path.exists() and path.resolve() == out.resolve():
        raise DataError(f"--out {out} is the input itself; write the deduplicated copy to a new path.")
    if out.is_dir():
        raise DataError(f"--out {out} is a folder; give a file path such as {out / 'dedup.npz'}.")


def dedup_file(source: str | Path, out: str | Path, *, options: DedupOptions = DedupOptions(),
               embed: Embed | None = None) -> DedupOutput:  # fmt: skip
    """Deduplicate a dataset (see :func:`load_dedup_input`) and write the kept items to ``out`` in the
    input's format (.npz of ``images`` [+ ``labels``] for image data, .txt or .jsonl for text) and the
    report to ``<out>.dedup.json``; both appear only when both are complete."""
    out = Path(out).expanduser()
    _check_out(str(source), out)
    data = load_dedup_input(source, unit=options.unit, text_field=options.text_field)
    if out.suffix.lower() != data.format:
        raise DataError(f"--out {out}: {data.unit} items of {source} are written as {data.format}; "
                        f"name the output like {out.with_suffix(data.format).name}.")  # fmt: skip
    if data.images is not None:
        dataset = str(source) if str(source) in DATASETS else None
        result = dedup_images(data.images.images, threshold=options.image_threshold, embed=embed,
                              embedding=options.embedding, dataset=dataset, exact_only=options.exact_only)  # fmt: skip
    else:
        result = dedup_texts(data.texts, threshold=options.threshold, num_perm=options.num_perm, seed=options.seed,
                             exact_only=options.exact_only)  # fmt: skip
    logger.info("dedup %s: %s", source, result.counts())
    report = _report(data, result)
    report_path = report_path_for(out)
    with atomic_path(report_path) as report_tmp, atomic_path(out) as data_tmp:  # data lands first, then report
        _write_kept(data, result.kept, data_tmp)
        report["output"] = {"path": str(out), "sha256": file_sha256(data_tmp), "report": str(report_path)}
        report_tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return DedupOutput(out, report_path, report)


def _report(data: DedupInput, result: DedupResult) -> dict[str, Any]:
    names = data.item_names

    def entry(d: Duplicate) -> dict[str, Any]:
        row = {"index": d.index, "reason": d.reason, "duplicate_of": d.duplicate_of, "similarity": d.similarity}
        if names:
            row |= {"item": names[d.index], "duplicate_of_item": names[d.duplicate_of]}
        return row

    path = Path(data.source).expanduser()
    source = str(path.resolve()) if path.exists() else data.source  # a bundled dataset's name
    return {
        "input": {"path": source, "sha256": data.sha256, "hash_of": data.hash_of, "unit": data.unit},
        "counts": result.counts(),
        "method": result.method,
        "removed": [entry(d) for d in result.removed],
    }


def _write_kept(data: DedupInput, kept: Sequence[int], path: Path) -> None:
    if data.images is not None:
        subset = data.images.subset(np.asarray(kept, dtype=np.int64))
        arrays = {"images": subset.images} | ({"labels": subset.labels} if subset.labels is not None else {})
        with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a path
            np.savez(f, **arrays)
    elif data.format == ".jsonl":
        path.write_text("".join(data.records[i] + "\n" for i in kept), encoding="utf-8")
    else:
        separator = "\n\n" if data.unit == "paragraph" else "\n"
        path.write_text(separator.join(data.texts[i] for i in kept) + "\n", encoding="utf-8")
