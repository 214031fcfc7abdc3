"""`genlab eval` end to end: runs and sample files, images and text, results written with provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from genlab.cli import app
from genlab.errors import ConfigError, DataError, UnknownNameError
from genlab.metrics.evaluate import EvalOptions, evaluate_run, evaluate_samples, read_text_samples

runner = CliRunner()
FAST = {"bootstrap": 5, "kid_subsets": 10, "kid_subset_size": 100, "batch_size": 100}


def test_image_run_writes_metrics_json_with_provenance(vae_run):
    options = EvalOptions(n=300, metrics=("fid", "kid", "is", "precision_recall", "density_coverage", "memorization",
                                          "bits_per_dim"), **FAST)  # fmt: skip
    result = evaluate_run(vae_run, options)
    stored = json.loads((vae_run / "metrics.json").read_text())
    assert stored == json.loads(json.dumps(result))
    m = result["metrics"]
    assert m["fid"]["value"] > 0 and m["fid"]["ci95"][0] < m["fid"]["value"] < m["fid"]["ci95"][1]
    assert m["kid"]["subsets"] == 10 and m["kid"]["std"] >= 0
    assert 1.0 <= m["inception_score"]["value"] <= 10.0
    assert 0 <= m["precision"]["value"] <= 1 and 0 <= m["coverage"]["value"] <= 1
    assert 0 <= m["memorization"]["value"] <= 1
    assert (vae_run / "memorization.png").exists() and m["memorization"]["closest_pairs_png"].endswith(".png")
    assert m["bits_per_dim"]["bound"] == "elbo" and m["bits_per_dim"]["value"] > 0
    ext = result["extractor"]
    assert ext["name"] == "domain:digits" and len(ext["weights_sha256"]) == 64 and ext["val_accuracy"] > 0.9
    assert result["n_generated"] == 300 and result["data"]["real_split"] == "train" and result["seed"] == 0


def test_fid_with_too_few_samples_is_refused_unless_allowed(vae_run):
    with pytest.raises(DataError, match=r"FID from 50 samples of 128-dimensional .* use --n 1280"):
        evaluate_run(vae_run, EvalOptions(n=50, metrics=("fid",), **FAST), write=False)
    result = evaluate_run(vae_run, EvalOptions(n=50, metrics=("fid",), allow_few=True, **FAST), write=False)
    assert result["metrics"]["fid"]["value"] > 0


def test_bad_options_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="unknown extractor 'clip'"):
        EvalOptions(extractor="clip")
    with pytest.raises(ConfigError, match="n=1 must be at least 2"):
        EvalOptions(n=1)
    with pytest.raises(ConfigError, match="kid_subsets=0 must be at least 1"):
        EvalOptions(kid_subsets=0)


def test_unknown_metric_and_metrics_of_the_other_modality(vae_run):
    with pytest.raises(UnknownNameError, match=r"unknown metric 'fdi'\. Did you mean 'fid'"):
        evaluate_run(vae_run, EvalOptions(metrics=("fdi",)), write=False)
    with pytest.raises(UnknownNameError, match="unknown metric 'perplexity'"):
        evaluate_run(vae_run, EvalOptions(metrics=("perplexity",)), write=False)


def test_tstr_of_a_conditional_run_and_refusal_for_unconditional(cvae_run, vae_run):
    result = evaluate_run(cvae_run, EvalOptions(n=200, metrics=("tstr", "bits_per_dim"), tstr_steps=10, **FAST),
                          write=False)  # fmt: skip
    assert result["metrics"]["bits_per_dim"]["value"] > 0  # log p(x | y), with the validation labels
    tstr = result["metrics"]["tstr"]
    assert tstr["n_synthetic"] == 200 and 0 <= tstr["synthetic_accuracy"] <= 1
    assert tstr["augmentation_gain"] == pytest.approx(tstr["augmented_accuracy"] - tstr["real_accuracy"])
    with pytest.raises(ConfigError, match="TSTR needs labelled samples"):
        evaluate_run(vae_run, EvalOptions(n=200, metrics=("tstr",), **FAST), write=False)


def test_scoring_a_sample_file_from_any_tool(tmp_path):
    from genlab.data.datasets import load_images

    real = load_images("digits")
    path = tmp_path / "theirs.npz"
    np.savez(path, samples=real.images[:400])  # a "generator" that returns training images
    result = evaluate_samples(path, "digits", EvalOptions(metrics=("fid", "memorization"), **FAST))
    assert result["samples"] == str(path) and result["n_generated"] == 400
    assert result["metrics"]["fid"]["value"] < 5.0  # close to the data it came from
    assert result["metrics"]["memorization"]["value"] > 0.5  # and flagged as copies of it
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, samples=np.zeros((10, 28, 28, 1), np.uint8))
    with pytest.raises(DataError, match=r"the samples are \(1, 28, 28\) .* but 'digits' is \(1, 8, 8\)"):
        evaluate_samples(wrong, "digits", EvalOptions(metrics=("fid",)))


def test_text_run_and_text_sample_files(gpt_run, tmp_path):
    options = EvalOptions(n=6, max_new_tokens=40, metrics=("perplexity", "bleu", "chrf", "self_bleu", "distinct_n",
                                                           "memorization"))  # fmt: skip
    result = evaluate_run(gpt_run, options)
    m = result["metrics"]
    assert m["perplexity"]["value"] > 1 and m["perplexity"]["bits_per_char"] > 0
    assert 0 <= m["bleu"]["value"] <= 100 and "nrefs:1" in m["bleu"]["signature"]
    assert 0 <= m["distinct_1"]["value"] <= 1 and "self_bleu" in m and "memorization" in m
    samples = tmp_path / "texts.jsonl"
    samples.write_text('{"text": "to be or not to be that is the question"}\n{"text": "a horse a horse"}\n')
    assert read_text_samples(samples) == ["to be or not to be that is the question", "a horse a horse"]
    scored = evaluate_samples(samples, "shakespeare", EvalOptions(metrics=("distinct_n", "memorization")))
    assert scored["metrics"]["distinct_1"]["value"] == pytest.approx(10 / 14)  # 10 distinct of 14 words


def test_cli_eval_json_and_table(vae_run, tmp_path):
    res = runner.invoke(app, ["eval", str(vae_run), "--metrics", "kid,precision_recall", "--n", "200", "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert set(result["metrics"]) == {"kid", "precision", "recall"}
    out_file = tmp_path / "m.json"
    res = runner.invoke(app, ["eval", str(vae_run), "--metrics", "kid", "--n", "200", "--out", str(out_file)])
    assert res.exit_code == 0, res.output
    assert "kid" in res.output and "domain:digits" in res.output and out_file.exists()
    res = runner.invoke(app, ["eval", "--samples", str(tmp_path / "none.npz"), "--data", "digits"])
    assert res.exit_code != 0
    res = runner.invoke(app, ["eval"])
    assert res.exit_code != 0 and "RUN_DIR or --samples" in res.output
