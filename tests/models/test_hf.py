"""genlab's GPT against transformers' GPT2LMHeadModel: imported and exported weights give the same
logits and the same greedy tokens, both ways, and files genlab cannot read exactly are refused."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

import genlab
from genlab.data.tokenizers import BPETokenizer, CharTokenizer, GPT2Tokenizer
from genlab.errors import CheckpointError, ConfigError
from genlab.models.gpt import GPT, GPTConfig
from genlab.models.hf import (
    export_hf,
    gpt_config_from_hf,
    hf_config_from_gpt,
    import_hf,
    state_dict_from_hf,
    state_dict_to_hf,
)
from genlab.sampling.decoding import DecodingOptions, generate

transformers = pytest.importorskip("transformers")
needs_gpt2_ranks = pytest.mark.skipif(importlib.util.find_spec("whisper") is None, reason="GPT-2's BPE ranks")

VOCAB = 100
CHARS = CharTokenizer("".join(chr(0x100 + i) for i in range(VOCAB)))  # any 100 distinct characters
GREEDY = DecodingOptions(max_new_tokens=20, temperature=0)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def hf_model(**config) -> transformers.GPT2LMHeadModel:
    """A random GPT-2; a wide initialisation keeps the logits apart, so greedy ties cannot flip on rounding."""
    torch.manual_seed(0)
    settings = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=VOCAB, initializer_range=0.2,
                    bos_token_id=None, eos_token_id=None, pad_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**settings, **config})).eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "gpt2"
    hf_model().save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def imported(hf_dir, tmp_path_factory):
    """(genlab model, transformers model, the genlab run directory): the same weights."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        run = import_hf(hf_dir, tmp_path_factory.mktemp("runs") / "imported", tokenizer=CHARS)
        return genlab.load(run), transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval(), run


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def hf_greedy(model, prompts: list[list[int]], new: int = 20) -> list[list[int]]:
    """transformers' greedy continuations of left-padded prompts (pad 0, attention mask)."""
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=new, min_new_tokens=new,
                             pad_token_id=0, eos_token_id=None)  # fmt: skip
    return out[:, width:].tolist()


# --- import ------------------------------------------------------------------------------------
def test_imported_logits_match(imported):
    ours, theirs, _ = imported
    ids = random_ids(3, 40)
    with torch.no_grad():
        diff = (ours(ids) - theirs(ids).logits).abs().max()
    assert diff <= 1e-5


def test_imported_logits_match_left_padded(imported):
    ours, theirs, _ = imported
    ids, mask = random_ids(2, 16, seed=1), torch.ones(2, 16, dtype=torch.bool)
    mask[0, :5] = False
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours(ids, mask)
        b = theirs(ids, attention_mask=mask.long(), position_ids=positions).logits
    assert (a[mask] - b[mask]).abs().max() <= 1e-5


def test_imported_greedy_tokens_match(imported):
    ours, theirs, _ = imported
    prompt = [5, 17, 42, 8, 99, 3]
    assert generate(ours, [prompt], GREEDY) == hf_greedy(theirs, [prompt])


def test_imported_greedy_tokens_match_padded_batch(imported):
    ours, theirs, _ = imported
    prompts = [[1, 2, 3], [9, 8, 7, 6, 5, 4, 3], [50, 60, 70, 80, 90]]
    expected = hf_greedy(theirs, prompts)
    assert generate(ours, prompts, GREEDY) == expected
    assert [generate(ours, [p], GREEDY)[0] for p in prompts] == expected  # padding changes nothing


def test_imported_run_is_a_genlab_run(imported, hf_dir):
    ours, _, run = imported
    record = ours.run_record
    assert record["recipe"] is None and record["imported_from"]["path"] == str(hf_dir.resolve())
    assert set(record["imported_from"]["sha256"]) == {"model.safetensors"}
    assert ours.config == GPTConfig(vocab_size=VOCAB, context_length=64, num_layers=2, num_heads=2, embed_dim=32,
                                    dropout=0.1, activation="gelu_tanh", tokenizer="char")  # fmt: skip
    assert ours.tokenizer.chars == CHARS.chars
    info = genlab.info(run)
    assert info["family"] == "gpt" and info["steps_trained"] == 0


def test_sharded_safetensors_import(tmp_path, imported):
    hf_model().save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    model = genlab.load(import_hf(tmp_path / "sharded", tmp_path / "run", tokenizer=CHARS))
    ids = random_ids(1, 10)
    assert torch.equal(model(ids), imported[0](ids))


# --- export ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tie_weights", [True, False])
def test_exported_model_matches_in_transformers(tmp_path, tie_weights):
    torch.manual_seed(1)
    config = GPTConfig(vocab_size=VOCAB, context_length=48, num_layers=2, num_heads=4, embed_dim=32,
                       activation="gelu_tanh", tie_weights=tie_weights)  # fmt: skip
    ours = GPT(config).eval()
    with torch.no_grad():
        for p in ours.parameters():  # beyond GPT-2's 0.02 initialisation: logits far apart
            p.mul_(3.0)
    ours.tokenizer = CHARS
    theirs = transformers.GPT2LMHeadModel.from_pretrained(export_hf(ours, tmp_path / "hf")).eval()
    assert theirs.config.tie_word_embeddings is tie_weights
    ids = random_ids(2, 30)
    with torch.no_grad():
        assert (ours(ids) - theirs(ids).logits).abs().max() <= 1e-5
    prompts = [[4, 5, 6, 7], [10, 20]]
    assert generate(ours, prompts, GREEDY) == hf_greedy(theirs, prompts)
    # and back: genlab → transformers → genlab leaves every tensor exactly as it was
    back = genlab.load(import_hf(tmp_path / "hf", tmp_path / "run"))
    assert back.config == config and back.tokenizer.chars == CHARS.chars
    mine, theirs_back = ours.state_dict(), back.state_dict()
    assert mine.keys() == theirs_back.keys()
    assert all(torch.equal(mine[k], theirs_back[k]) for k in mine)


def test_export_without_biases_writes_zero_biases(tmp_path):
    torch.manual_seed(2)
    ours = GPT(GPTConfig(vocab_size=VOCAB, context_length=16, num_layers=1, num_heads=2, embed_dim=16,
                         bias=False, activation="gelu")).eval()  # fmt: skip
    theirs = transformers.GPT2LMHeadModel.from_pretrained(export_hf(ours, tmp_path / "hf")).eval()
    assert theirs.config.activation_function == "gelu"
    ids = random_ids(2, 12)
    with torch.no_grad():
        assert (ours(ids) - theirs(ids).logits).abs().max() <= 1e-5


def test_state_dict_names_round_trip():
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=16, num_layers=3, num_heads=2, embed_dim=16))
    hf = state_dict_to_hf(model.state_dict(), model.config)
    assert "lm_head.weight" not in hf and hf["transformer.h.2.attn.c_attn.weight"].shape == (16, 48)
    no_prefix = {k.removeprefix("transformer."): v for k, v in hf.items()}
    no_prefix["h.0.attn.bias"] = torch.ones(1, 1, 16, 16)  # old transformers' causal-mask buffer: skipped
    back = state_dict_from_hf(no_prefix)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


# --- GPT-2's own tokenizer ---------------------------------------------------------------------------
@needs_gpt2_ranks
def test_gpt2_vocabulary_gets_gpt2_tokenizer_and_generates(tmp_path):
    theirs = hf_model(n_layer=1, n_embd=16, n_positions=32, vocab_size=50257)
    theirs.save_pretrained(tmp_path / "hf", safe_serialization=True)
    run = import_hf(tmp_path / "hf", tmp_path / "run")
    model = genlab.load(run)
    assert isinstance(model.tokenizer, GPT2Tokenizer) and model.config.tokenizer == "gpt2"
    text = genlab.generate(run, "hello world", max_new_tokens=5, temperature=0)
    assert len(text) == 1
    expected = hf_greedy(theirs, [[31373, 995]], new=5)[0]  # "hello world" in GPT-2's ids
    assert text[0] == model.tokenizer.decode(expected)

    # exported with GPT-2's vocab.json + merges.txt, derived from tiktoken's ranks
    out = export_hf(run, tmp_path / "export")
    assert (out / "merges.txt").read_text().splitlines()[1:4] == ["Ġ t", "Ġ a", "h e"]  # GPT-2's first merges
    only_files = tmp_path / "vocab-merges"
    only_files.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(out / name, only_files)
    sample = "Hello world! It's 2026, naïve café 🤖 — isn't it?\n\n  indented   spaces\tand tabs 12345"
    assert BPETokenizer.from_hf_dir(only_files).encode(sample) == model.tokenizer.encode(sample)
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(out)
    assert fast(sample).input_ids == model.tokenizer.encode(sample) and fast.eos_token_id == 50256
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 50256


def test_bpe_and_char_tokenizers_survive_export_and_import(tmp_path):
    text = "To be, or not to be, that is the question. " * 20
    for kind, tokenizer in (("bpe", BPETokenizer.train([text], vocab_size=300)), ("char", CharTokenizer.train([text]))):
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=16, num_layers=1, num_heads=2,
                              embed_dim=16, activation="gelu_tanh", tokenizer=kind))  # fmt: skip
        model.tokenizer = tokenizer
        back = genlab.load(import_hf(export_hf(model, tmp_path / f"{kind}-hf"), tmp_path / f"{kind}-run"))
        assert type(back.tokenizer) is type(tokenizer) and back.config.tokenizer == kind
        assert back.tokenizer.encode(text) == tokenizer.encode(text)
        fast = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path / f"{kind}-hf")
        assert fast(text).input_ids == tokenizer.encode(text)


# --- refusals ----------------------------------------------------------------------------------
def test_rotary_export_refused(tmp_path):
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=16, num_layers=1, num_heads=2, embed_dim=16,
                          positions="rotary"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"positions='rotary'.*learned"):
        export_hf(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(ConfigError, match="rotary"):
        hf_config_from_gpt(model.config)


def test_pickle_only_folder_refused(tmp_path, hf_dir):
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(hf_dir / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"never unpickles.*safe_serialization=True"):
        import_hf(folder, tmp_path / "run", tokenizer=CHARS)
    assert not (tmp_path / "run").exists()


def test_corrupt_config_refused(tmp_path, hf_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(hf_dir, folder)
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_embd": ')
    with pytest.raises(CheckpointError, match=r"config.json is corrupt"):
        import_hf(folder, tmp_path / "run", tokenizer=CHARS)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_type", "llama", "model_type='llama'"),
        ("activation_function", "relu", "activation_function='relu'"),
        ("n_inner", 100, "n_inner=100.*multiple of n_embd=32"),
        ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx=True"),
        ("scale_attn_weights", False, "scale_attn_weights=False"),
        ("add_cross_attention", True, "add_cross_attention=True"),
        ("n_head", 5, "embed_dim=32 must divide by num_heads=5"),
    ],
)
def test_configs_genlab_cannot_represent_are_refused(field, value, message):
    config = {"model_type": "gpt2", "n_embd": 32, "n_head": 2, "n_layer": 2, field: value}
    with pytest.raises(CheckpointError, match=message):
        gpt_config_from_hf(config)


def test_config_defaults_and_mlp_width():
    config = gpt_config_from_hf({"model_type": "gpt2", "n_inner": 1536})
    assert (config.vocab_size, config.context_length, config.embed_dim, config.mlp_ratio) == (50257, 1024, 768, 2)
    assert config.activation == "gelu_tanh" and config.tie_weights


def test_missing_and_misshapen_tensors_named(hf_dir):
    from safetensors.torch import load_file

    tensors = load_file(hf_dir / "model.safetensors")
    config = gpt_config_from_hf(json.loads((hf_dir / "config.json").read_text()), tokenizer="char")
    with pytest.raises(CheckpointError, match=r"lack 'h.1.mlp.c_fc.bias'"):
        state_dict_from_hf({k: v for k, v in tensors.items() if k != "transformer.h.1.mlp.c_fc.bias"}, config)
    wrong = {**tensors, "transformer.wpe.weight": torch.zeros(32, 32)}
    with pytest.raises(CheckpointError, match=r"'wpe.weight' has shape \(32, 32\).*\(64, 32\)"):
        state_dict_from_hf(wrong, config)
    with pytest.raises(CheckpointError, match=r"'h\.0\.crossattention\.c_attn\.weight', which GPT2LMHeadModel"):
        state_dict_from_hf({**tensors, "transformer.h.0.crossattention.c_attn.weight": torch.zeros(1)}, config)


def test_output_folder_must_be_new_or_empty(tmp_path, hf_dir):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        import_hf(hf_dir, tmp_path / "taken", tokenizer=CHARS)
    (tmp_path / "empty").mkdir()
    assert genlab.load(import_hf(hf_dir, tmp_path / "empty", tokenizer=CHARS)).config.vocab_size == VOCAB


def test_no_tokenizer_refused_with_the_fix(tmp_path, hf_dir):
    with pytest.raises(CheckpointError, match=r"no tokenizer.*tokenizer.json.*tokenizer= to import_hf"):
        import_hf(hf_dir, tmp_path / "run")
