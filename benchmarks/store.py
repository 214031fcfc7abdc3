"""The store's search and the deduplication, timed beside plain baselines.

    .venv/bin/python benchmarks/store.py                 # about 2 minutes on 2 cores

- vector search: genlab's FAISS index (exact inner product) against a NumPy brute-force matrix
  product over the same 100,000 × 384 unit vectors, plain and restricted to 1 % of the ids; the two
  must return the same ids;
- text embeddings: all-MiniLM-L6-v2 sentences/s through genlab's embedder;
- store search: keyword (FTS5 BM25), vector and hybrid over a SQLite store of 10,000 generations;
- deduplication: `genlab data dedup` on the bundled MNIST and Shakespeare (lines), in process.

Writes benchmarks/results/store.json and prints a Markdown section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results" / "store.json"


def _timed(fn, reps: int) -> dict[str, float]:
    fn(0)  # warm
    times = []
    for i in range(reps):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}


def vector_search(n: int, dim: int, reps: int) -> dict:
    from genlab.store.vectors import VectorIndex

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.choice(10**9, n, replace=False).astype(np.int64)
    q = rng.normal(size=(reps + 1, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = VectorIndex(dim)
    index.add(ids, x)
    allowed = set(rng.choice(ids, n // 100, replace=False).tolist())
    allowed_array = np.fromiter(allowed, dtype=np.int64)

    def brute(i: int, allowed_ids=None) -> list[int]:
        """Brute force; restricted to ``allowed_ids``, their rows are looked up per query, as genlab does."""
        rows = None if allowed_ids is None else np.flatnonzero(np.isin(ids, allowed_ids))
        sub = x if rows is None else x[rows]
        scores = sub @ q[i]
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        return (ids if rows is None else ids[rows])[top].tolist()

    same = all([i for i, _ in index.search(q[r], 10)[0]] == brute(r) for r in range(20))
    same_filtered = all([i for i, _ in index.search(q[r], 10, allowed_ids=allowed)[0]] == brute(r, allowed_array)
                        for r in range(20))  # fmt: skip
    return {
        "vectors": n, "dim": dim, "same_ids_as_numpy": bool(same and same_filtered),
        "genlab_plain": _timed(lambda i: index.search(q[i], 10), reps),
        "numpy_plain": _timed(lambda i: brute(i), reps),
        "genlab_filtered_1pct": _timed(lambda i: index.search(q[i], 10, allowed_ids=allowed), reps),
        "numpy_filtered_1pct": _timed(lambda i: brute(i, allowed_array), reps),
    }  # fmt: skip


def embeddings(count: int) -> dict:
    from genlab.store.embeddings import text_embedder

    rng = np.random.default_rng(0)
    words = ("a the cat dog model image digit sample noise latent diffusion draws blurry sharp red blue small "
             "large handwritten seven three quickly slowly").split()  # fmt: skip
    sentences = [" ".join(rng.choice(words, rng.integers(6, 13))) for _ in range(count)]
    start = time.perf_counter()
    embedder = text_embedder()
    embedder.embed(["warm up"])
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    embedder.embed(sentences, batch_size=64)
    seconds = time.perf_counter() - start
    single = _timed(lambda i: embedder.embed([sentences[i]]), 100)
    return {"load_s": load_s, "sentences": count, "sentences_per_s": count / seconds, "one_sentence": single}


def store_search(count: int, reps: int, work: Path) -> dict:
    from genlab.store import Output, Store

    run = work / "gpt"
    import genlab

    genlab.train("gpt-tiny", out=run, device="cpu")
    store = Store.open(work / "s.db")
    model = store.register_model(run, "gpt")
    texts = genlab.generate(genlab.load(run), None, n=200, max_new_tokens=60, seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(0, count, 100):  # requests of 100 outputs
        batch = [Output("text", text=texts[j % len(texts)] + f" {i + j}") for j in range(100)]
        store.record_generations(batch, model=model, user_id=f"user{i % 7}", parameters={}, seed=i, prompt="ROMEO:")
    record_s = time.perf_counter() - start
    words = [w for t in texts for w in t.split() if w.isalpha() and len(w) > 3][:200]
    queries = [" ".join(rng.choice(words, 2)) for _ in range(reps + 1)]
    out = {"generations": count, "record_per_s": count / record_s}
    for mode in ("keyword", "vector", "hybrid"):
        out[mode] = _timed(lambda i, mode=mode: store.search(queries[i], mode=mode, k=10), reps)
    store.close()
    return out


def dedup() -> dict:
    from genlab.data.dedup import DedupOptions, dedup_file

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, target in [("mnist", "mnist", "m.npz"), ("shakespeare lines", "shakespeare", "s.txt")]:
            start = time.perf_counter()
            result = dedup_file(source, Path(tmp) / target, options=DedupOptions())
            counts = result.report["counts"]
            out[name] = {"seconds": time.perf_counter() - start, **counts}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vectors", type=int, default=100_000)
    p.add_argument("--generations", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
            "vector_search": vector_search(args.vectors, 384, args.reps),
            "embeddings": embeddings(1000),
            "store_search": store_search(args.generations, args.reps // 4, Path(tmp)),
            "dedup": dedup(),
        }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    v, e, s, d = (results[k] for k in ("vector_search", "embeddings", "store_search", "dedup"))
    print(
        f"## Store: search and deduplication\n\nCommand: `.venv/bin/python benchmarks/store.py`  \n"
        f"Date: {results['date']}  \nMachine: {results['machine']}, torch threads 2\n"
    )
    print("| what | genlab | baseline | ratio |\n|---|--:|--:|--:|")
    rows = [
        (f"vector search, {v['vectors']:,}×384, k=10", "genlab_plain", "numpy_plain"),
        ("same, 1 % of ids allowed", "genlab_filtered_1pct", "numpy_filtered_1pct"),
    ]
    for label, ours, theirs in rows:
        a, b = v[ours]["median_ms"], v[theirs]["median_ms"]
        print(f"| {label} (median ms) | {a:.2f} | {b:.2f} (NumPy brute force) | {b / a:.2f}× |")
    print(
        f"\nSame top-10 ids as NumPy: {v['same_ids_as_numpy']}. MiniLM: {e['sentences_per_s']:.0f} sentences/s "
        f"in batches of 64, {e['one_sentence']['median_ms']:.1f} ms for one sentence, {e['load_s']:.1f} s to load."
    )
    print(f"\nStore of {s['generations']:,} generations (recorded at {s['record_per_s']:.0f}/s, embeddings included): "
          + ", ".join(f"{m} search median {s[m]['median_ms']:.1f} ms (p90 {s[m]['p90_ms']:.1f})"
                      for m in ("keyword", "vector", "hybrid")) + ".")  # fmt: skip
    for name, r in d.items():
        print(
            f"\nDedup {name}: {r['input']:,} items → {r['kept']:,} kept ({r['exact_removed']:,} exact, "
            f"{r['near_removed']:,} near) in {r['seconds']:.1f} s."
        )


if __name__ == "__main__":
    main()
