"""genlab.data.dedup: planted exact and near duplicates in text and images, the MinHash estimate,
the report, round trips through genlab's loaders, the command line and atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genlab.cli import app
from genlab.data import dedup
from genlab.data.datasets import load_images
from genlab.data.dedup import (
    DedupOptions,
    dedup_file,
    dedup_images,
    dedup_texts,
    greedy_cosine_duplicates,
    lsh_bands,
    pixel_embedding,
    text_minhashes,
    text_shingles,
)
from genlab.data.text import load_text
from genlab.errors import ConfigError, DataError, UnknownNameError
from genlab.io import file_sha256


def _sentences(n: int, words: int = 60, seed: int = 0) -> list[str]:
    """``n`` unrelated sentences of random made-up words."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(3000)]
    return [" ".join(rng.choice(vocab, size=words)).capitalize() + "." for _ in range(n)]


def _one_word_changed(sentence: str, position: int = 30) -> str:
    words = sentence.split()
    words[position] = "zzzchanged"
    return " ".join(words)


def _digits(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    data = load_images("digits")  # the first 120 have no pair at pixel cosine >= 0.98
    return data.images[:n], data.labels[:n]


def _noisy(image: np.ndarray, seed: int, amount: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image.astype(np.int64) + rng.integers(-amount, amount + 1, image.shape), 0, 255).astype(np.uint8)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- shingles and MinHash --------------------------------------------------------------------------
def test_shingles_are_word_5grams_with_punctuation_collapsed_and_chars_for_short_items():
    assert text_shingles("The cat, the HAT... sat on--the mat!") == {
        "the cat the hat sat", "cat the hat sat on", "the hat sat on the", "hat sat on the mat",
    }  # fmt: skip
    assert text_shingles("Hamlet:") == {"hamle", "amlet"}  # one word: character 5-grams
    assert text_shingles("HAMLET.") == text_shingles("hamlet")
    assert text_shingles("Go!") == {"go"}
    assert text_shingles("...") == {"..."}  # nothing but punctuation: the text is its own shingle


def test_minhash_estimate_is_within_0_1_of_exact_jaccard():
    base = _sentences(1, words=80, seed=3)[0].split()
    other = _sentences(1, words=80, seed=4)[0].split()
    pairs = [(base, base[:40] + other[:40]), (base, base[:70] + other[:10]), (base, base[10:]), (base, other)]
    for a, b in pairs:
        sa, sb = text_shingles(" ".join(a)), text_shingles(" ".join(b))
        exact = len(sa & sb) / len(sa | sb)
        ma, mb = text_minhashes([" ".join(a), " ".join(b)], num_perm=128, seed=0)
        assert abs(ma.jaccard(mb) - exact) < 0.1, (exact, ma.jaccard(mb))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("num_perm", [16, 128])
def test_lsh_bands_find_a_pair_at_the_threshold_with_probability_095(threshold, num_perm):
    bands, rows = lsh_bands(threshold, num_perm)
    assert bands >= 2 and bands * rows <= num_perm
    recall = 1 - (1 - threshold**rows) ** bands
    assert recall >= 0.95 or rows == 1


# --- text ------------------------------------------------------------------------------------------
def test_planted_exact_and_near_duplicate_lines_are_found_and_unrelated_lines_kept():
    lines = _sentences(30)
    lines += [lines[3] + "   ", _one_word_changed(lines[7]), lines[12].upper().replace(".", "!")]
    result = dedup_texts(lines, threshold=0.7)
    removed = {d.index: d for d in result.removed}
    assert sorted(removed) == [30, 31, 32]
    assert (removed[30].reason, removed[30].duplicate_of, removed[30].similarity) == ("exact", 3, 1.0)
    assert (removed[31].reason, removed[31].duplicate_of) == ("near", 7)
    assert 0.7 <= removed[31].similarity < 1.0
    assert (removed[32].reason, removed[32].duplicate_of, removed[32].similarity) == ("near", 12, 1.0)
    assert result.kept == tuple(range(30))
    assert result.counts() == {"input": 33, "exact_removed": 1, "near_removed": 2, "kept": 30}
    assert result.method["near"]["threshold"] == 0.7 and result.method["near"]["num_perm"] == 128


def test_exact_only_and_the_threshold_decide_what_is_near():
    lines = _sentences(10)
    lines += [lines[0], _one_word_changed(lines[1])]
    assert [d.index for d in dedup_texts(lines, exact_only=True).removed] == [10]
    assert [d.index for d in dedup_texts(lines, threshold=1.0).removed] == [10]
    assert [d.index for d in dedup_texts(lines, threshold=0.7).removed] == [10, 11]


def test_a_copy_of_a_near_duplicate_points_at_the_kept_item():
    lines = _sentences(5)
    near = _one_word_changed(lines[2])
    result = dedup_texts([*lines, near, near], threshold=0.7)
    assert [(d.index, d.reason, d.duplicate_of) for d in result.removed] == [(5, "near", 2), (6, "near", 2)]
    assert result.removed[0].similarity == result.removed[1].similarity


# --- images ----------------------------------------------------------------------------------------
def test_planted_image_copies_are_found_and_distinct_digits_kept():
    images, _ = _digits(100)
    assert dedup_images(images).removed == ()  # distinct digits: nothing goes
    planted = np.concatenate([images, images[10:11], _noisy(images[20], 1)[None], _noisy(images[30], 2)[None]])
    result = dedup_images(planted)
    found = [(d.index, d.reason, d.duplicate_of) for d in result.removed]
    assert found == [(100, "exact", 10), (101, "near", 20), (102, "near", 30)]
    assert all(d.similarity >= 0.98 for d in result.removed)
    assert result.method["near"]["embedding"] == "pixels"


def test_a_caller_embedding_is_used_and_described():
    images, labels = _digits(50)
    calls = []

    def by_label(x: np.ndarray) -> np.ndarray:  # every image of a class the same: one kept per class
        calls.append(len(x))
        index = [next(i for i in range(50) if np.array_equal(images[i], im)) for im in x]
        return np.eye(10, dtype=np.float32)[labels[index]]

    result = dedup_images(images, embed=by_label)
    assert calls == [50]
    assert len(result.kept) == len(set(labels.tolist()))
    assert result.method["near"] == {"kind": "cosine", "threshold": 0.98, "embedding": "caller", "function": "by_label"}


def test_domain_embedding_describes_its_network_and_refuses_a_foreign_shape():
    images, _ = _digits(40)
    result = dedup_images(images, embedding="domain", dataset="digits")
    assert result.method["near"]["extractor"]["name"] == "domain:digits"
    with pytest.raises(DataError, match="no domain feature network ships for None"):
        dedup_images(images, embedding="domain")
    with pytest.raises(DataError, match="takes"):
        dedup_images(np.zeros((3, 28, 28, 1), np.uint8) + np.arange(3, dtype=np.uint8)[:, None, None, None],
                     embedding="domain", dataset="digits")  # fmt: skip


def test_chunked_greedy_cosine_matches_a_full_matrix_reference():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16)).astype(np.float32)
    features = np.concatenate([base, base[rng.integers(0, 40, 25)] + 0.05 * rng.normal(size=(25, 16))])
    features = features[rng.permutation(len(features))].astype(np.float32)
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = x @ x.T
    expected, kept = {}, []
    for j in range(len(x)):
        if kept and sims[j, kept].max() >= 0.97:
            expected[j] = kept[int(sims[j, kept].argmax())]
        else:
            kept.append(j)
    for chunk_size in (1, 7, 1000):
        found = greedy_cosine_duplicates(features, threshold=0.97, chunk_size=chunk_size)
        assert {j: k for j, (k, _) in found.items()} == expected
    assert len(expected) > 10


def test_pixel_embedding_is_invariant_to_brightness_and_contrast():
    images, _ = _digits(2)
    brighter = (images.astype(np.int64) // 2 + 100).astype(np.uint8)
    cosine = (pixel_embedding(images) * pixel_embedding(brighter)).sum(axis=1)
    assert np.allclose(cosine, 1.0, atol=1e-3)


# --- files and the report --------------------------------------------------------------------------
@pytest.fixture
def text_file(tmp_path) -> Path:
    lines = _sentences(8)
    lines += [lines[2] + "  ", _one_word_changed(lines[5])]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines[:4]) + "\n\n" + "\n".join(lines[4:]) + "\n", encoding="utf-8")
    return path


def test_text_file_report_and_round_trip(text_file, tmp_path):
    out = tmp_path / "clean.txt"
    result = dedup_file(text_file, out, options=DedupOptions(threshold=0.7))
    assert result.report_path == tmp_path / "clean.txt.dedup.json"
    report = json.loads(result.report_path.read_text())
    assert report == result.report
    assert report["input"] == {"path": str(text_file), "sha256": file_sha256(text_file), "hash_of": "file",
                               "unit": "line"}  # fmt: skip
    assert report["counts"] == {"input": 10, "exact_removed": 1, "near_removed": 1, "kept": 8}
    assert report["method"]["near"]["kind"] == "minhash-lsh" and report["method"]["near"]["seed"] == 0
    assert [(r["index"], r["reason"], r["duplicate_of"], r["item"]) for r in report["removed"]] == [
        (8, "exact", 2, "line 10"), (9, "near", 5, "line 11"),
    ]  # fmt: skip
    assert report["output"]["sha256"] == file_sha256(out)
    kept = load_text(out).documents[0].split("\n")[:-1]
    assert kept == _sentences(8)
    again = dedup_file(out, tmp_path / "again.txt", options=DedupOptions(threshold=0.7))
    assert again.report["counts"]["kept"] == 8  # the output has no duplicates left


def test_paragraph_units(tmp_path):
    paragraphs = ["First line.\nSecond line.", "Another one\nhere", "First line.\nSecond line.  "]
    source = tmp_path / "p.txt"
    source.write_text("\n\n  \n".join(paragraphs) + "\n", encoding="utf-8")
    result = dedup_file(source, tmp_path / "q.txt", options=DedupOptions(unit="paragraph"))
    assert [(r["index"], r["duplicate_of"], r["item"]) for r in result.report["removed"]] == [(2, 0, "line 9")]
    assert (tmp_path / "q.txt").read_text() == "First line.\nSecond line.\n\nAnother one\nhere\n"


def test_jsonl_keeps_whole_records_with_their_other_fields(tmp_path):
    lines = _sentences(4)
    records = [{"id": i, "body": t} for i, t in enumerate([*lines, lines[1], "   "])]
    source = tmp_path / "r.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    result = dedup_file(source, tmp_path / "s.jsonl", options=DedupOptions(text_field="body"))
    assert result.report["removed"][0] | {"similarity": 1} == {
        "index": 4, "reason": "exact", "duplicate_of": 1, "similarity": 1, "item": "line 5",
        "duplicate_of_item": "line 2",
    }  # fmt: skip
    kept = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert kept == records[:4]
    assert load_text(tmp_path / "s.jsonl#body").documents == tuple(lines)


def test_image_npz_round_trips_through_load_images_with_labels(tmp_path):
    images, labels = _digits(60)
    images = np.concatenate([images, images[5:6], _noisy(images[7], 3)[None]])
    labels = np.concatenate([labels, labels[[5, 7]]])
    source = tmp_path / "digits.npz"
    np.savez(source, images=images, labels=labels)
    result = dedup_file(source, tmp_path / "kept.npz")
    assert result.report["counts"] == {"input": 62, "exact_removed": 1, "near_removed": 1, "kept": 60}
    assert result.report["method"]["near"]["embedding"] == "pixels"
    loaded = load_images(tmp_path / "kept.npz")
    assert np.array_equal(loaded.images, images[:60]) and np.array_equal(loaded.labels, labels[:60])


def test_image_folder_reports_file_names(tmp_path):
    from PIL import Image

    images, _ = _digits(4)
    folder = tmp_path / "pics"
    folder.mkdir()
    for i, im in enumerate([*images, images[1]]):
        Image.fromarray(im[..., 0]).save(folder / f"{i}.png")
    result = dedup_file(folder, tmp_path / "pics.npz", options=DedupOptions(exact_only=True))
    assert result.report["input"]["hash_of"] == "data"
    assert [(r["item"], r["duplicate_of_item"]) for r in result.report["removed"]] == [("4.png", "1.png")]
    assert "near" not in result.report["method"]


# --- errors and atomicity --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, r"threshold=0.0 is outside \(0, 1\]"),
        ({"image_threshold": 1.5}, r"--image-threshold"),
        ({"threshold": float("nan")}, "outside"),
        ({"num_perm": 1}, "at least 2"),
        ({"unit": "sentence"}, "'line', 'paragraph'"),
        ({"embedding": "clip"}, "'pixels', 'domain'"),
    ],
)
def test_options_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DedupOptions(**kwargs)


def test_bad_inputs_raise_one_teaching_error_and_write_nothing(tmp_path, text_file):
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "table.csv").write_text("a,b\n", encoding="utf-8")
    np.savez(tmp_path / "none.npz", images=np.zeros((0, 8, 8, 1), np.uint8))
    cases = [
        (tmp_path / "missing.txt", UnknownNameError, "unknown dataset"),
        (tmp_path / "empty.txt", DataError, "empty"),
        (tmp_path / "none.npz", DataError, "holds no images"),
        (tmp_path / "table.csv", DataError, "unsupported file type '.csv'"),
    ]
    for source, error, match in cases:
        with pytest.raises(error, match=match):
            dedup_file(source, tmp_path / "out" / "x.txt")
    with pytest.raises(DataError, match="is the input itself"):
        dedup_file(text_file, text_file)
    with pytest.raises(DataError, match=r"written as \.txt"):
        dedup_file(text_file, tmp_path / "out" / "x.npz")
    assert not (tmp_path / "out").exists() or _leftovers(tmp_path / "out") == []


def test_a_failure_while_writing_leaves_neither_file(tmp_path, text_file, monkeypatch):
    real_sha256 = dedup.file_sha256

    def broken(path):  # the output's hash, taken from its temp file ".x.txt.*.tmp" after it was written
        if Path(path).name.startswith("."):
            raise OSError("disk full")
        return real_sha256(path)

    monkeypatch.setattr(dedup, "file_sha256", broken)
    with pytest.raises(OSError, match="disk full"):
        dedup_file(text_file, tmp_path / "out" / "x.txt")
    assert _leftovers(tmp_path / "out") == []


def test_an_embedding_error_leaves_nothing(tmp_path):
    images, _ = _digits(10)
    np.save(tmp_path / "a.npy", images)

    def wrong(x):
        return np.zeros((len(x) + 1, 3))

    with pytest.raises(DataError, match="one row per image"):
        dedup_file(tmp_path / "a.npy", tmp_path / "b.npz", embed=wrong)
    assert _leftovers(tmp_path) == ["a.npy"]


# --- command line ----------------------------------------------------------------------------------
def test_cli_dedup_prints_a_summary_and_writes_both_files(text_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "clean.txt"
    result = runner.invoke(app, ["data", "dedup", str(text_file), "--out", str(out), "--threshold", "0.7"])
    assert result.exit_code == 0, result.output
    assert "near duplicates removed" in result.output and str(out) in result.output
    assert out.exists() and (tmp_path / "clean.txt.dedup.json").exists()
    result = runner.invoke(app, ["data", "dedup", str(text_file), "--out", str(out), "--exact-only", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["counts"] == {"input": 10, "exact_removed": 1, "near_removed": 0, "kept": 9}
    assert "removed" not in summary and summary["output"]["report"] == str(out) + ".dedup.json"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["{tmp}/missing.txt", "--out", "{tmp}/o.txt"], "unknown dataset"),
        (["{src}", "--out", "{src}"], "is the input itself"),
        (["{src}", "--out", "{tmp}/o.txt", "--threshold", "1.5"], "outside (0, 1]"),
        (["{src}", "--out", "{tmp}/o.txt", "--unit", "sentence"], "'line', 'paragraph'"),
        (["{tmp}/t.csv", "--out", "{tmp}/o.txt"], "unsupported file type"),
    ],
)
def test_cli_bad_input_exits_non_zero_with_one_line(cli, text_file, tmp_path, args, fragment):
    (tmp_path / "t.csv").write_text("a\n", encoding="utf-8")
    before = _leftovers(tmp_path)
    code, _, err = cli("data", "dedup", *(a.format(tmp=tmp_path, src=text_file) for a in args))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0]
    assert _leftovers(tmp_path) == before
