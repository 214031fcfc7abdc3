"""Hugging Face's GPT-2 layout ↔ genlab's GPT: configs, weight names and whole folders.

genlab's GPT with ``activation="gelu_tanh"``, biases and learned positions is GPT-2's architecture
exactly, and its :class:`~genlab.models.gpt.Dense` layers store weights (in, out) like transformers'
``Conv1D``, so the weights move across unchanged; only their names differ::

    transformer.wte / wpe              tok_emb / pos_emb
    transformer.h.{i}.ln_1 / ln_2      blocks.{i}.norm1 / norm2
    transformer.h.{i}.attn.c_attn      blocks.{i}.attn.qkv    (C, 3C): q | k | v, heads inside each
    transformer.h.{i}.attn.c_proj      blocks.{i}.attn.proj
    transformer.h.{i}.mlp.c_fc / c_proj  blocks.{i}.mlp.fc / proj
    transformer.ln_f                   norm_f
    lm_head                            head                   (omitted when tied to wte, as transformers does)

:func:`import_hf` turns a folder written by ``save_pretrained`` (``config.json`` + ``model.safetensors``
and the tokenizer files) into a genlab run directory that :func:`genlab.load` reads; :func:`export_hf`
writes a genlab GPT as such a folder, which ``GPT2LMHeadModel.from_pretrained`` reads. Only
safetensors are read: genlab never unpickles (a ``pytorch_model.bin`` can run code when loaded).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.checkpoint import load_model, load_tensors, save_tensors, write_run_config
from genlab.config import to_dict
from genlab.data.tokenizers import BPETokenizer, CharTokenizer, GPT2Tokenizer, Tokenizer
from genlab.errors import CheckpointError, ConfigError
from genlab.io import file_sha256, read_json, write_json, write_text
from genlab.models.gpt import GPT, GPTConfig

log = logging.getLogger(__name__)

#: what transformers' GPT2Config assumes for a field a config.json leaves out
HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
    "activation_function": "gelu_new", "resid_pdrop": 0.1, "layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "add_cross_attention": False,
    "tie_word_embeddings": True,
}  # fmt: skip
#: HF activation name → genlab's (gelu_new and gelu_pytorch_tanh are the same tanh approximation)
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
#: buffers old transformers saved beside the weights (the causal mask): not parameters, skipped
IGNORED = re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")
#: the layers GPT-2 gives a bias (a genlab model with bias=False is exported with zeros there)
BIASED = ("norm1", "norm2", "norm_f", "qkv", "proj", "fc")
GPT2_VOCAB = 50257
SPECIAL = "<|endoftext|>"


def _refuse(field: str, value: Any, why: str) -> CheckpointError:
    return CheckpointError(
        f"config.json has {field}={value!r}: {why}, so genlab's GPT cannot represent this model exactly; "
        "run it with transformers instead."
    )


# --- configs ------------------------------------------------------------------------------------
def gpt_config_from_hf(hf_config: Mapping[str, Any], *, tokenizer: str = "gpt2") -> GPTConfig:
    """The :class:`GPTConfig` of a transformers GPT-2 ``config.json`` (fields it leaves out take
    GPT2Config's defaults). Raises :class:`CheckpointError` naming the first field genlab's GPT
    cannot reproduce exactly. genlab has one dropout rate: it takes ``resid_pdrop`` (GPT-2's three
    rates are equal). ``tokenizer`` is the kind of tokenizer the run will carry."""
    if not isinstance(hf_config, Mapping):
        raise CheckpointError(f"config.json must hold a JSON object, got {type(hf_config).__name__}.")
    c = {**HF_DEFAULTS, **hf_config}
    if c.get("model_type") != "gpt2":
        model_type = c.get("model_type")
        raise CheckpointError(
            f"config.json has model_type={model_type!r}; genlab imports GPT-2 (model_type gpt2) only."
        )
    if c["activation_function"] not in ACTIVATIONS:
        raise _refuse("activation_function", c["activation_function"], f"genlab's GPT has {', '.join(ACTIVATIONS)}")
    for field, wanted in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                          ("add_cross_attention", False)):  # fmt: skip
        if c[field] is not wanted:
            raise _refuse(field, c[field], f"genlab's GPT attends as {field}={wanted}")
    if c["reorder_and_upcast_attn"]:  # changes the rounding of fp16 attention only, not the maths
        log.info("reorder_and_upcast_attn=true: genlab computes fp32 attention in fp32, the same maths")
    embed, inner = c["n_embd"], c["n_inner"]
    whole = isinstance(inner, int) and isinstance(embed, int) and embed > 0 and inner % embed == 0 and inner >= embed
    if inner is not None and not whole:
        raise _refuse("n_inner", inner, f"genlab's MLP width is a whole multiple of n_embd={embed}")
    try:
        return GPTConfig(
            vocab_size=c["vocab_size"], context_length=c["n_positions"], num_layers=c["n_layer"],
            num_heads=c["n_head"], embed_dim=embed, mlp_ratio=4 if inner is None else inner // embed,
            dropout=c["resid_pdrop"], bias=True, positions="learned", activation=ACTIVATIONS[c["activation_function"]],
            norm_eps=c["layer_norm_epsilon"], tie_weights=c["tie_word_embeddings"], tokenizer=tokenizer,
        )  # fmt: skip
    except ConfigError as exc:
        raise CheckpointError(f"config.json does not describe a valid GPT-2 ({exc})") from None


def hf_config_from_gpt(config: GPTConfig) -> dict[str, Any]:
    """A transformers ``GPT2Config`` dict for ``config`` (``GPT2Config(**d)`` or ``config.json``).

    ``bias=False`` is exported as zero biases (the same function); rotary positions have no place in
    GPT-2's layout and are refused with :class:`ConfigError`."""
    if config.positions != "learned":
        raise ConfigError(
            f"positions={config.positions!r}: GPT-2's layout has only a learned position table (wpe); "
            "export a model trained with positions='learned', or share the genlab run directory instead."
        )
    if config.vocab_size < 1:
        raise ConfigError("vocab_size=0: export a built model (its vocabulary is set from the tokenizer).")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_embd": config.embed_dim,
        "n_layer": config.num_layers,
        "n_head": config.num_heads,
        "n_inner": None if config.mlp_ratio == 4 else config.mlp_ratio * config.embed_dim,
        "activation_function": "gelu_new" if config.activation == "gelu_tanh" else "gelu",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": config.tie_weights,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": "float32",
    }


# --- weights ------------------------------------------------------------------------------------
def _name_pairs(num_layers: int, tied: bool) -> list[tuple[str, str]]:
    """(genlab name, HF name without the "transformer." prefix) of every tensor; the head last."""
    pairs = [("tok_emb.weight", "wte.weight"), ("pos_emb.weight", "wpe.weight")]
    block = [("norm1", "ln_1"), ("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("norm2", "ln_2"),
             ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")]  # fmt: skip
    for i in range(num_layers):
        pairs += [(f"blocks.{i}.{g}.{p}", f"h.{i}.{h}.{p}") for g, h in block for p in ("weight", "bias")]
    pairs += [("norm_f.weight", "ln_f.weight"), ("norm_f.bias", "ln_f.bias")]
    return [*pairs, ("head.weight", "wte.weight" if tied else "lm_head.weight")]


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """genlab name → shape of every tensor of a GPT with ``config`` (built on the meta device: free)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in GPT(config).state_dict().items()}


def state_dict_from_hf(tensors: Mapping[str, Tensor], config: GPTConfig | None = None) -> dict[str, Tensor]:
    """genlab's GPT state dict from a GPT-2 one (keys with or without "transformer.", as
    ``GPT2LMHeadModel`` or ``GPT2Model`` saves them; the causal-mask buffers of old files are skipped).

    With ``config`` every tensor's shape is checked and the head follows ``config.tie_weights``;
    without, the layer count and tying are read from the names. A missing, unexpected or
    wrong-shaped tensor raises :class:`CheckpointError` naming it. Floating tensors become float32.
    """
    plain = {}
    for key, value in tensors.items():
        if IGNORED.match(key):
            continue
        name = key.removeprefix("transformer.")
        if name in plain:
            raise CheckpointError(f"the weights hold {name!r} both with and without the 'transformer.' prefix.")
        plain[name] = value
    if config is None:
        layers = {int(m.group(1)) for k in plain if (m := re.match(r"h\.(\d+)\.", k))}
        num_layers, tied = max(layers, default=-1) + 1, "lm_head.weight" not in plain
    else:
        num_layers, tied = config.num_layers, config.tie_weights
    pairs = _name_pairs(num_layers, tied)
    missing = [h for _, h in pairs if h not in plain]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"the GPT-2 weights lack {missing[0]!r}{more}; the file is incomplete or not GPT-2.")
    used = {h for _, h in pairs} | ({"lm_head.weight"} if tied else set())  # a tied head saved anyway: unused
    extra = sorted(set(plain) - used)
    if extra:
        raise CheckpointError(
            f"the GPT-2 weights hold {extra[0]!r}, which GPT2LMHeadModel does not have; genlab imports "
            "GPT2LMHeadModel and GPT2Model checkpoints only."
        )
    state = {g: plain[h].float() if plain[h].is_floating_point() else plain[h] for g, h in pairs}
    if config is not None:
        for name, shape in expected_shapes(config).items():
            if tuple(state[name].shape) != shape:
                hf = dict(pairs)[name]
                raise CheckpointError(
                    f"the GPT-2 weight {hf!r} has shape {tuple(state[name].shape)}, but config.json implies {shape}; "
                    "the weights and the config are from different models."
                )
    return state


def state_dict_to_hf(state: Mapping[str, Tensor], config: GPTConfig | None = None) -> dict[str, Tensor]:
    """GPT-2 names ("transformer." prefix, as ``GPT2LMHeadModel`` saves) for genlab's GPT state dict.

    The head is written as ``lm_head.weight`` only when untied (``config.tie_weights``, or without a
    config when it differs from the token embedding). A model without biases (``config.bias=False``)
    gets zero biases, which compute the same function."""
    state = dict(state)
    if "pos_emb.weight" not in state:
        raise ConfigError("the model has no pos_emb.weight (rotary positions?); GPT-2's layout needs learned ones.")
    if config is not None and not config.bias:
        for name, value in list(state.items()):
            if name.endswith(".weight") and name.rsplit(".", 2)[-2] in BIASED:
                width = value.shape[-1] if value.dim() == 2 else value.shape[0]
                state.setdefault(name[: -len("weight")] + "bias", value.new_zeros(width))
    tok, head = state["tok_emb.weight"], state.get("head.weight")
    tied = config.tie_weights if config is not None else head is None or head is tok or torch.equal(head, tok)
    num_layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    out = {}
    for g, h in _name_pairs(num_layers, tied):
        if g == "head.weight" and tied:
            continue
        if g not in state:
            raise CheckpointError(f"the genlab state dict lacks {g!r}; it is not a GPT's.")
        out[h if h.startswith("lm_head") else f"transformer.{h}"] = state[g]
    return out


def _read_hf_tensors(hf_dir: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors of ``model.safetensors`` (or of the shards its index names) and each file's sha256."""
    single, index = hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = read_json(index)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index} is corrupt ({exc!r}).") from None
        files = [hf_dir / name for name in sorted(set(weight_map.values()))]
    elif list(hf_dir.glob("pytorch_model*.bin")):
        raise CheckpointError(
            f"{hf_dir} has only pytorch_model.bin, a pickle, and genlab never unpickles (a pickle can run code when "
            "loaded). Convert it once, in an environment you trust: `GPT2LMHeadModel.from_pretrained(DIR)"
            ".save_pretrained(DIR, safe_serialization=True)` writes model.safetensors."
        )
    else:
        raise CheckpointError(f"{hf_dir} has no model.safetensors; give the folder `save_pretrained` wrote.")
    tensors: dict[str, Tensor] = {}
    for path in files:
        tensors.update(load_tensors(path))
    return tensors, {path.name: file_sha256(path) for path in files}


# --- tokenizers ---------------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (the alphabet of vocab.json and merges.txt)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def gpt2_vocab_and_merges(tokenizer: GPT2Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's ``vocab.json`` and ``merges.txt`` derived from tiktoken's ranks: the ranks are GPT-2's
    ids, and the merge that made token r is found by running BPE on its bytes with the merges ranked
    below r, which ends in exactly the two parts that were merged (about a second)."""
    import tiktoken.load

    ranks = tiktoken.load.load_tiktoken_bpe(str(tokenizer.ranks_path))
    to_char = _bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(to_char[b] for b in token)

    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:  # apply the lowest-ranked merge below ``rank`` until two parts remain
            found = [(ranks.get(a + b, rank), i) for i, (a, b) in enumerate(itertools.pairwise(parts))]
            best, i = min(found)
            if best >= rank:
                raise CheckpointError(f"GPT-2's BPE ranks are inconsistent at token {token!r}; reinstall them.")
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        merges.append((text(parts[0]), text(parts[1])))
    vocab = {text(token): rank for token, rank in ranks.items()} | {SPECIAL: tokenizer.eos_id}
    return vocab, merges


def _hf_tokenizer_json(tokenizer: Tokenizer) -> tuple[str, dict[str, str]] | None:
    """(tokenizer.json text, extra files) in Hugging Face's format, or None for kinds it cannot hold."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.tokenizer.to_str(), {}
    if isinstance(tokenizer, GPT2Tokenizer):
        vocab, merges = gpt2_vocab_and_merges(tokenizer)
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([AddedToken(SPECIAL, special=True)])
        files = {"vocab.json": json.dumps(vocab, ensure_ascii=False),
                 "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)}  # fmt: skip
        return hf.to_str(), files
    if isinstance(tokenizer, CharTokenizer):  # one word per character, decoded by concatenation
        hf = HFTokenizer(models.WordLevel({c: i for i, c in enumerate(tokenizer.chars)}, unk_token=None))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        hf.decoder = decoders.Fuse()
        return hf.to_str(), {}
    return None


def _char_tokenizer(data: dict[str, Any]) -> CharTokenizer | None:
    """A character tokenizer when ``tokenizer.json`` is a word-level vocabulary of single characters
    with ids 0..n-1 (what :func:`export_hf` writes for one), else None."""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "WordLevel" or not isinstance(model.get("vocab"), dict):
        return None
    vocab = model["vocab"]
    order = sorted(vocab, key=vocab.get)
    if any(len(c) != 1 for c in order) or [vocab[c] for c in order] != list(range(len(order))):
        return None
    return CharTokenizer("".join(order))


def _read_tokenizer(hf_dir: Path, vocab_size: int) -> Tokenizer:
    """The tokenizer files of ``hf_dir``, else GPT-2's own tokenizer for a 50,257-token vocabulary."""
    if (hf_dir / "tokenizer.json").is_file():
        try:
            char = _char_tokenizer(read_json(hf_dir / "tokenizer.json"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{hf_dir / 'tokenizer.json'} is corrupt ({exc}).") from None
        if char is not None:
            return char
    if (hf_dir / "tokenizer.json").is_file() or (hf_dir / "vocab.json").is_file():
        return BPETokenizer.from_hf_dir(hf_dir)
    if vocab_size == GPT2_VOCAB:
        return GPT2Tokenizer()
    raise CheckpointError(
        f"{hf_dir} has no tokenizer (tokenizer.json, or vocab.json + merges.txt) and its {vocab_size}-token "
        f"vocabulary is not GPT-2's {GPT2_VOCAB:,}; copy the model's tokenizer files into the folder, or pass "
        "tokenizer= to import_hf."
    )


# --- folders ------------------------------------------------------------------------------------
def _fresh_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CheckpointError(f"{out_dir} exists and is not empty; choose a new or empty output folder.")


def _publish(tmp: Path, out_dir: Path) -> Path:
    """Rename the finished ``tmp`` folder onto ``out_dir``: readers see all of it or nothing."""
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked before the work began)
    tmp.rename(out_dir)
    return out_dir


def import_hf(hf_dir: str | Path, out_dir: str | Path, *, tokenizer: Tokenizer | None = None) -> Path:
    """Turn a transformers GPT-2 folder (``config.json``, ``model.safetensors`` and the tokenizer files)
    into a genlab run directory for :func:`genlab.load` / :func:`genlab.generate`; returns ``out_dir``.

    The tokenizer is ``tokenizer`` when given; else the folder's ``tokenizer.json`` or ``vocab.json`` +
    ``merges.txt`` (a character vocabulary written by :func:`export_hf` comes back as genlab's
    character tokenizer); else GPT-2's own for a 50,257-token model; else the import is refused.
    ``out_dir`` must be new or empty. The run records where it came from (path and sha256 of the
    weights) and that genlab did not train it.
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    _fresh_dir(out_dir)
    if not (hf_dir / "config.json").is_file():
        raise CheckpointError(f"{hf_dir} has no config.json; give the folder `save_pretrained` wrote.")
    try:
        hf_config = read_json(hf_dir / "config.json")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{hf_dir / 'config.json'} is corrupt ({exc}).") from None
    config = gpt_config_from_hf(hf_config)
    tensors, hashes = _read_hf_tensors(hf_dir)
    tokenizer = tokenizer if tokenizer is not None else _read_tokenizer(hf_dir, config.vocab_size)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size}; "
            "they are from different models."
        )
    config = GPTConfig(**{**to_dict(config), "tokenizer": tokenizer.kind})
    state = state_dict_from_hf(tensors, config)
    source = str(hf_dir.resolve())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_run_config(tmp, {
            "family": "gpt", "recipe": None, "model": to_dict(config),
            "train": {"steps": None, "max_minutes": None},  # not trained by genlab
            "data": {"name": f"imported from {source}", "kind": "text", "spec": None, "tokenizer": tokenizer.kind,
                     "vocab_size": tokenizer.vocab_size, "train_count": 0, "val_count": 0, "train_tokens": 0,
                     "val_tokens": 0},
            "imported_from": {"format": "transformers GPT-2", "path": source, "sha256": hashes,
                              "config": hf_config},
        })  # fmt: skip
        save_tensors(tmp / "model.safetensors", state, {"family": "gpt", "imported_from": source})
        tokenizer.save(tmp)
        return _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_hf(model_or_run_dir: GPT | str | Path, out_dir: str | Path) -> Path:
    """Write a genlab GPT (a model, or a run directory: its EMA weights when it kept them) as a
    transformers GPT-2 folder that ``GPT2LMHeadModel.from_pretrained(out_dir)`` loads: ``config.json``,
    ``model.safetensors``, ``generation_config.json`` and, for a BPE, GPT-2 or character tokenizer,
    ``tokenizer.json`` and ``tokenizer_config.json`` (GPT-2's also as ``vocab.json`` + ``merges.txt``).
    A music tokenizer has no Hugging Face form and is left out (with a warning). ``out_dir`` must be
    new or empty; returns it."""
    out_dir = Path(out_dir)
    _fresh_dir(out_dir)
    model = model_or_run_dir if isinstance(model_or_run_dir, GPT) else load_model(model_or_run_dir)
    if not isinstance(model, GPT):
        raise ConfigError(f"only GPT models export to GPT-2's layout; this is a {type(model).__name__}.")
    config = model.config
    hf_config = hf_config_from_gpt(config)
    tokenizer = model.tokenizer
    eos = None if tokenizer is None else tokenizer.eos_id
    hf_config |= {"bos_token_id": eos, "eos_token_id": eos}
    state = state_dict_to_hf({k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}, config)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_json(tmp / "config.json", hf_config)
        write_json(tmp / "generation_config.json", {} if eos is None else {"bos_token_id": eos, "eos_token_id": eos})
        save_tensors(tmp / "model.safetensors", state, {"format": "pt"})  # transformers requires "format": "pt"
        hf_tokenizer = None if tokenizer is None else _hf_tokenizer_json(tokenizer)
        if hf_tokenizer is None and tokenizer is not None:
            log.warning("the %s tokenizer has no Hugging Face form; %s has no tokenizer files", tokenizer.kind, out_dir)
        if hf_tokenizer is not None:
            text, files = hf_tokenizer
            write_text(tmp / "tokenizer.json", text)
            for name, content in files.items():
                write_text(tmp / name, content)
            special = {"bos_token": SPECIAL, "eos_token": SPECIAL, "unk_token": SPECIAL} if eos is not None else {}
            write_json(tmp / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast",
                       "model_max_length": config.context_length, "clean_up_tokenization_spaces": False,
                       **special})  # fmt: skip
        return _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = [
    "export_hf",
    "gpt2_vocab_and_merges",
    "gpt_config_from_hf",
    "hf_config_from_gpt",
    "import_hf",
    "state_dict_from_hf",
    "state_dict_to_hf",
]
