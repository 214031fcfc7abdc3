"""Token models end to end: training on text and music, generation from prompts, the CLI, and errors."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import genlab
from genlab.checkpoint import list_checkpoints
from genlab.errors import ConfigError, DataError
from tests.test_cli import assert_one_line_error


def _weights(run, name="model.safetensors"):
    from safetensors.torch import load_file

    return load_file(str(run / name))


# --- training ----------------------------------------------------------------------------------
def test_gpt_run_records_tokenizer_and_language_metrics(gpt_run):
    record = json.loads((gpt_run / "config.json").read_text())
    assert record["data"]["tokenizer"] == "char" and record["model"]["vocab_size"] == record["data"]["vocab_size"]
    assert (gpt_run / "tokenizer.json").exists()
    val = [json.loads(line) for line in (gpt_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert val["split"] == "val"
    assert val["perplexity"] == pytest.approx(torch.tensor(val["loss"]).exp().item(), rel=1e-6)
    assert val["bits_per_token"] == pytest.approx(val["loss"] / 0.6931471805599453, rel=1e-9)
    assert val["bits_per_char"] == pytest.approx(val["bits_per_token"], rel=0.01)  # one char per token
    assert val["loss"] < 4.0  # 30 steps already beat the uniform 73-way guess (ln 73 = 4.29)
    assert list((gpt_run / "samples").glob("*.txt"))


def test_loaded_model_returns_logits(gpt_run):
    model = genlab.load(gpt_run)
    ids = torch.tensor([model.tokenizer.encode("ROMEO:\nO, she")])
    logits = model(ids)
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)


class _Interrupt(Exception):
    pass


def test_resume_gives_identical_weights(tmp_path):
    overrides = ["steps=20", "checkpoint_every=10", "dropout=0.1"]  # dropout: the RNG state must resume too
    full = genlab.train("gpt-tiny", out=tmp_path / "full", overrides=overrides)

    def stop_at_step_15(event):
        if event.kind == "log" and event.step == 15:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        genlab.train("gpt-tiny", out=tmp_path / "cut", overrides=overrides, on_event=stop_at_step_15)
    assert list_checkpoints(tmp_path / "cut")[-1].name == "step-00000010"
    resumed = genlab.train("gpt-tiny", out=tmp_path / "cut", resume=True)
    for k, v in _weights(full).items():
        assert torch.equal(v, _weights(resumed)[k]), k


def test_bpe_tokenizer_trained_on_user_text(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat on the mat. the dog sat on the log.\n" * 200)
    run = genlab.train("gpt-tiny", data=text, out=tmp_path / "run", overrides=["tokenizer=bpe", "bpe_vocab_size=300",
                                                                               "steps=5"])  # fmt: skip
    record = json.loads((run / "config.json").read_text())
    assert record["data"]["tokenizer"] == "bpe" and record["model"]["vocab_size"] <= 300
    assert record["data"]["chars_per_token"] > 1.5  # merges make tokens longer than a character
    assert isinstance(genlab.generate(run, "the cat", max_new_tokens=5, seed=0)[0], str)


def test_lstm_trains_and_generates(lstm_run):
    texts = genlab.generate(lstm_run, ["KING:", "A"], n=2, max_new_tokens=300, seed=0)
    assert len(texts) == 4 and all(len(t) > 0 for t in texts)  # no context limit for a recurrent model


def test_jsonl_data(tmp_path):
    path = tmp_path / "lines.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"line {i} of the corpus"}) for i in range(300)))
    run = genlab.train("lstm-tiny", data=path, out=tmp_path / "run", overrides=["steps=3"])
    assert json.loads((run / "config.json").read_text())["data"]["documents"] == 300


# --- generation --------------------------------------------------------------------------------
def test_generation_is_seeded_and_shaped(gpt_run):
    model = genlab.load(gpt_run)
    a = genlab.generate(model, ["ROMEO:", "To be"], n=3, max_new_tokens=20, seed=1)
    assert len(a) == 6 and a == genlab.generate(model, ["ROMEO:", "To be"], n=3, max_new_tokens=20, seed=1)
    assert a != genlab.generate(model, ["ROMEO:", "To be"], n=3, max_new_tokens=20, seed=2)
    greedy = genlab.generate(model, "To be", max_new_tokens=20, temperature=0, seed=1)
    assert greedy == genlab.generate(model, "To be", max_new_tokens=20, temperature=0, seed=9)


def test_cached_and_uncached_generation_agree(gpt_run):
    model = genlab.load(gpt_run)
    kwargs = dict(n=2, max_new_tokens=60, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=3)  # beyond context 32
    assert genlab.generate(model, ["ROMEO:", "Now"], **kwargs) == genlab.generate(
        model, ["ROMEO:", "Now"], use_cache=False, **kwargs
    )


def test_stream_matches_batch_and_stop_strings_cut(gpt_run):
    model = genlab.load(gpt_run)
    whole = genlab.generate(model, "ROMEO:", max_new_tokens=40, seed=5)[0]
    assert "".join(genlab.generate(model, "ROMEO:", max_new_tokens=40, seed=5, stream=True)) == whole
    stop = whole[10:12]
    cut = genlab.generate(model, "ROMEO:", max_new_tokens=40, seed=5, stop=[stop])[0]
    assert cut == whole[: whole.find(stop)]
    streamed = "".join(genlab.generate(model, "ROMEO:", max_new_tokens=40, seed=5, stop=[stop], stream=True))
    assert streamed == cut


def test_beam_search_returns_best_first(gpt_run):
    model = genlab.load(gpt_run)
    beams = genlab.generate(model, "the ", num_beams=4, n=3, max_new_tokens=8)
    assert len(beams) == 3 and len(set(beams)) == 3


def test_long_prompt_keeps_its_end_with_a_warning(gpt_run, caplog):
    model = genlab.load(gpt_run)
    with caplog.at_level(logging.WARNING):
        out = genlab.generate(model, "ROMEO: " * 20, max_new_tokens=5, seed=0)
    assert "keeping its last 31" in caplog.text and len(out[0]) > 0


def test_sample_api_gives_text(gpt_run):
    texts = genlab.sample(gpt_run, 3, seed=0, max_new_tokens=15, temperature=0.7)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    with pytest.raises(ConfigError, match="has no option 'num_steps'; it takes prompt_ids, max_new_tokens"):
        genlab.sample(gpt_run, 2, num_steps=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_p": 0.0}, "top_p=0.0 must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p=1.5 must be in (0, 1]"),
        ({"temperature": -1.0}, "temperature=-1.0 must be ≥ 0 (0 means greedy decoding)"),
        ({"top_k": 0}, "top_k=0 must be at least 1"),
        ({"num_beams": 2, "top_k": 5}, "beam search is deterministic"),
        ({"num_beams": 2, "n": 3}, "at most --beam 2 sequences"),
        ({"stream": True, "n": 2}, "streaming shows one continuation"),
    ],
)
def test_bad_decoding_options(gpt_run, kwargs, message):
    with pytest.raises(ConfigError) as info:
        result = genlab.generate(gpt_run, "A", **kwargs)
        list(result)
    assert message in str(info.value)


def test_prompt_outside_char_vocabulary(gpt_run):
    with pytest.raises(DataError, match=r"characters outside this model's .*'€'"):
        genlab.generate(gpt_run, "price: 5€")


def test_image_model_cannot_generate_text(vae_run):
    with pytest.raises(ConfigError, match="vae models do not generate text"):
        genlab.generate(vae_run, "hello")


# --- data errors -------------------------------------------------------------------------------
def test_text_too_short_for_the_context(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("To be or not to be.\n" * 2)
    with pytest.raises(DataError, match="fewer than one window of 33"):
        genlab.train("gpt-tiny", data=path, out=tmp_path / "run")


def test_music_recipe_refuses_text(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("words " * 100)
    with pytest.raises(DataError, match="reads music but 'a' is text"):
        genlab.train("gpt-chorales", data=path, out=tmp_path / "run")


def test_image_recipe_refuses_text_dataset(tmp_path):
    with pytest.raises(DataError, match="'shakespeare' is a text dataset"):
        genlab.train("vae-tiny", data="shakespeare", out=tmp_path / "run")


# --- music -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def music_run(tmp_path_factory):
    """A tiny GPT trained on six MIDI files written from event text (no corpus parsing)."""
    from genlab.data.music import events_to_midi

    folder = tmp_path_factory.mktemp("midi")
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    for i in range(6):
        words = []
        for j, p in enumerate(scale * 3):
            words += [f"S:{p + i}", "dur:4", f"B:{p + i - 24}", "dur:4", "wait:4"]
            if j % 4 == 3:
                words += ["wait:2"]
        events_to_midi(" ".join(words), folder / f"piece{i}.mid")
    overrides = ["steps=10", "context_length=32", "num_layers=1", "embed_dim=32", "num_heads=2", "eval_batches=1"]
    return genlab.train("gpt-chorales", data=folder, out=tmp_path_factory.mktemp("runs") / "music",
                        overrides=overrides)  # fmt: skip


def test_music_run_generates_midi(cli, music_run, tmp_path):
    from genlab.data.music import midi_to_events

    record = json.loads((music_run / "config.json").read_text())
    assert record["data"]["kind"] == "music" and record["data"]["tokenizer"] == "music"
    out = tmp_path / "piece.mid"
    code, stdout, err = cli("generate", music_run, "--prompt", "S:60 dur:4", "--max-new-tokens", "40", "--out", out)
    assert code == 0, err
    assert "notes" in stdout and out.exists()
    assert midi_to_events(out).startswith("S:60 dur:")  # the prompt's note (cut short if the voice moves on)
    code, _, err = cli("sample", music_run, "--n", "2", "--max-new-tokens", "30", "--out", tmp_path / "s.mid")
    assert code == 0, err
    assert (tmp_path / "s-0.mid").exists() and (tmp_path / "s-1.mid").exists()
    assert_one_line_error(cli("generate", music_run, "--prompt", "X:60"), "unknown music event 'X:60'")


def test_corrupt_midi_is_one_line_error(cli, tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    (folder / "bad.mid").write_bytes(b"MThd\x00\x00garbage" * 10)
    assert_one_line_error(cli("train", "gpt-chorales", "--data", folder, "--out", tmp_path / "r"), "bad.mid")


# --- CLI ---------------------------------------------------------------------------------------
def test_cli_generate_sample_and_info(cli, gpt_run, tmp_path):
    code, out, err = cli("generate", gpt_run, "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", "1")
    assert code == 0, err
    assert out.startswith("ROMEO:")
    code, out, err = cli("generate", gpt_run, "--prompt", "A", "--prompt", "B", "--n", "2", "--max-new-tokens", "5",
                         "--out", tmp_path / "g.jsonl")  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["A", "A", "B", "B"] and all(r["text"][0] in "AB" for r in rows)
    code, out, err = cli("generate", gpt_run, "--prompt", "To", "--stream", "--max-new-tokens", "10")
    assert code == 0 and out.startswith("To"), err
    code, _, err = cli("sample", gpt_run, "--n", "2", "--max-new-tokens", "10", "--out", tmp_path / "s.txt")
    assert code == 0, err
    assert "=== sample 1 ===" in (tmp_path / "s.txt").read_text()
    code, out, _ = cli("info", gpt_run)
    assert code == 0 and "perplexity" in out and "bits_per_char" in out and "tokenizer" in out
    assert_one_line_error(cli("generate", gpt_run, "--top-p", "0"), "top_p=0.0 must be in (0, 1]")
    assert_one_line_error(cli("generate", gpt_run, "--prompt", "5€"), "'€'")
    assert_one_line_error(cli("sample", gpt_run, "--out", tmp_path / "x.png"), "use a .txt or .jsonl file name")
    assert_one_line_error(cli("generate", gpt_run, "--out", tmp_path / "x.mid"), "only music models write MIDI")


def test_cli_binary_and_empty_text(cli, tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02binary")
    assert_one_line_error(cli("train", "gpt-tiny", "--data", tmp_path / "bin.txt", "--out", tmp_path / "a"), "bin.txt")
    (tmp_path / "empty.txt").write_text("   \n")
    assert_one_line_error(cli("train", "gpt-tiny", "--data", tmp_path / "empty.txt", "--out", tmp_path / "b"),
                          "empty.txt")  # fmt: skip


def test_jsonl_field_named_in_the_path(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "body": f"review number {i} is fine"}) for i in range(300)))
    run = genlab.train("lstm-tiny", data=f"{path}#body", out=tmp_path / "run", overrides=["steps=2"])
    assert json.loads((run / "config.json").read_text())["data"]["spec"].endswith("reviews.jsonl#body")
    with pytest.raises(DataError, match="text_field"):
        genlab.train("lstm-tiny", data=path, out=tmp_path / "run2")
